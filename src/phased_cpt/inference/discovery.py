"""Finding what to load from the run directory: the base model and the phase adapters.

Reads the run directory only through its contract (`phased_cpt.run_dir.RunDir`): the stored config
names the base model and the phases, the state lists the finished phases in order, each finished
phase has its final adapter and its Trainer checkpoints. A directory given by the user
is either a run directory or an adapter directory (one with `adapter_config.json`); an adapter
directory inside a run (`<run>/<phase>/adapter`, `<run>/<phase>/checkpoint-N`) still makes the
run's other phases available.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.config import ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.run_dir import ADAPTER_DIR, CONFIG_FILE, RunDir, find_runs, latest_run, list_checkpoints

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Target:
    """A base model and the adapters that can be put on it, by label (phase name, or
    `phase/checkpoint-N`), in phase order; `active` is the one to start with."""

    model: ModelConfig
    adapters: dict[str, Path]
    active: str
    run: RunDir | None = None

    @property
    def adapter_dir(self) -> Path:
        return self.adapters[self.active]


def resolve_target(
    path: Path | None = None,
    *,
    output_dir: Path = Path("outputs"),
    phase: str | None = None,
    adapter: Path | None = None,
    base_model: str | None = None,
) -> Target:
    """What `chat` and `merge` load.

    `path` is a run directory or an adapter directory; without it (and without `adapter`) the
    newest run under `output_dir` that has a finished phase. `phase` (a name, or N counting
    finished phases from 1) picks a phase of the run, `adapter` any adapter directory.
    `base_model` replaces the base model the run or adapter names (e.g. it moved).
    """
    if adapter is not None and path is not None:
        raise UserError("give either RUN_DIR/ADAPTER_DIR or --adapter, not both")
    if adapter is not None and phase is not None:
        raise UserError("give either --phase or --adapter, not both")
    if path is not None and is_adapter_dir(path):
        if phase is not None:
            raise UserError(f"{path} is an adapter directory; --phase needs a run directory")
        adapter, path = path, None

    if adapter is not None:
        target = _adapter_target(Path(adapter))
    else:
        run = _run_at(Path(path)) if path is not None else newest_finished_run(Path(output_dir))
        target = _run_target(run, phase)
    if base_model is not None:
        target.model = target.model.model_copy(update={"name": base_model})
    return target


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def newest_finished_run(output_dir: Path) -> RunDir:
    """The latest run under `output_dir` with a finished phase (`run_dir.latest_run`)."""
    run = latest_run(output_dir, finished=True)
    if run is not None:
        return run
    newest = latest_run(output_dir)
    if newest is None:
        raise UserError(
            f"no run found under {output_dir}/ (a run directory holds {CONFIG_FILE}); "
            "train one with `phased-cpt train CONFIG`, or pass a RUN_DIR, --adapter PATH or --output-dir DIR"
        )
    raise UserError(
        f"no run under {output_dir}/ has a finished phase (newest: {newest.path}); "
        f"pass a checkpoint with --adapter (`--list` shows them)"
    )


def phase_adapters(run: RunDir) -> dict[str, Path]:
    """Finished phase name -> its final adapter directory, in training order."""
    return {name: run.adapter_dir(name) for name in run.finished_phases() if is_adapter_dir(run.adapter_dir(name))}


def pick_phase(run: RunDir, phase: str | None) -> str:
    finished = run.finished_phases()
    if not finished:
        raise UserError(f"{run.path}: no phase has finished; pass a checkpoint with --adapter (`--list` shows them)")
    if phase is None:
        return finished[-1]
    if phase in finished:
        return phase
    if phase.isdigit() and 1 <= int(phase) <= len(finished):
        return finished[int(phase) - 1]
    hint = f"finished phases: {', '.join(f'{i} {n}' for i, n in enumerate(finished, 1))}"
    if phase in run.phase_names():
        checkpoints = list_checkpoints(run.phase_dir(phase))
        if checkpoints:
            hint += f"; to use its latest checkpoint pass --adapter {checkpoints[-1]}"
        raise UserError(f"--phase {phase}: this phase has not finished in {run.path}; {hint}")
    raise UserError(f"--phase {phase}: no such phase in {run.path}; {hint}")


def describe_runs(output_dir: Path, run_path: Path | None = None) -> str:
    """The text `--list` prints: runs newest first, their phases, adapters and checkpoints; only
    the run at `run_path` when one is given (`chat RUN_DIR --list`)."""
    runs = [_run_at(run_path)] if run_path is not None else find_runs(output_dir)
    if not runs:
        return f"no run found under {output_dir}/\n"
    lines = []
    for run in runs:
        try:
            base = run.model_config().name
        except UserError:
            base = "?"
        lines.append(f"{run.path}  (base model: {base})")
        state = {p.name: p for p in run.read_state().finished_phases}
        for index, name in enumerate(run.phase_names(), 1):
            info = state.get(name)
            status = f"finished, {info.steps} steps" if info else "not finished"
            lines.append(f"  {index}. {name}: {status}")
            if info and is_adapter_dir(run.adapter_dir(name)):
                lines.append(f"       adapter     {run.adapter_dir(name)}")
            for checkpoint in list_checkpoints(run.phase_dir(name)):
                lines.append(f"       checkpoint  {checkpoint}")
    return "\n".join(lines) + "\n"


def _run_at(path: Path) -> RunDir:
    if not RunDir.is_run_dir(path):
        raise UserError(
            f"{path} is neither a run directory (no {CONFIG_FILE}) nor an adapter directory (no {ADAPTER_CONFIG})"
        )
    return RunDir(path)


def _run_target(run: RunDir, phase: str | None) -> Target:
    name = pick_phase(run, phase)
    adapters = phase_adapters(run)
    if name not in adapters:
        raise UserError(f"{run.adapter_dir(name)}: the adapter of finished phase {name} is missing")
    return Target(model=run.model_config(), adapters=adapters, active=name, run=run)


def _adapter_target(adapter: Path) -> Target:
    if not is_adapter_dir(adapter):
        raise UserError(f"--adapter {adapter}: not an adapter directory (no {ADAPTER_CONFIG})")
    run = RunDir.containing(adapter)
    if run is not None:
        phase_name = adapter.resolve().parent.name
        label = phase_name if adapter.name == ADAPTER_DIR else f"{phase_name}/{adapter.name}"
        adapters = phase_adapters(run)
        adapters[label] = adapter  # a phase's own final adapter keeps its place in phase order
        return Target(model=run.model_config(), adapters=adapters, active=label, run=run)
    return Target(model=_adapter_base_model(adapter), adapters={adapter.name: adapter}, active=adapter.name)


def _adapter_base_model(adapter: Path) -> ModelConfig:
    try:
        name = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as err:
        raise UserError(f"{adapter / ADAPTER_CONFIG}: cannot read it: {err}") from None
    if not name:
        raise UserError(f"{adapter / ADAPTER_CONFIG} names no base model; pass --base-model NAME_OR_DIR")
    return ModelConfig(name=name)
