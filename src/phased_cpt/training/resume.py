"""Starting or resuming a run directory.

A resumed run must be the same run: the resolved config is compared with the one stored in the
run directory, and the phase files' contents with their stored sha256. Anything that changes
what is trained (model, data, LoRA shape, context, schedule, ...) is an error listing every
difference; logging and checkpoint-frequency settings may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from phased_cpt.config import RunConfig, dump_config
from phased_cpt.errors import UserError
from phased_cpt.plans.job import differing_keys, input_fingerprints
from phased_cpt.run_dir import RunDir, RunState, checkpoint_step, latest_run
from phased_cpt.training.metrics import BACKENDS

# Keys that may differ between the original and the resumed run (dotted paths, fnmatch patterns):
# every metrics backend's section among them.
MAY_CHANGE = (
    *(f"{backend.section}.*" for backend in BACKENDS if backend.section),
    "output.*",
    "evaluation.*",
    "phases.*.description",
    "training.logging_steps",
    "training.save_steps",
    "training.save_total_limit",
    "training.performance.*",  # speed options (kernels, fused optimizer, compile, checkpointing granularity)
)


def start_run(cfg: RunConfig) -> RunDir:
    run = RunDir.create(cfg.output.dir, cfg.run_name)
    run.acquire_lock()
    run.write_config(dump_config(cfg))
    run.write_state(RunState(finished_phases=[], inputs=input_fingerprints(cfg)))
    return run


def find_run_to_resume(cfg: RunConfig, target: str) -> RunDir:
    """`target` is a run directory, or "latest": the newest run of `output.run_name` under `output.dir`."""
    if target != "latest":
        run = RunDir(Path(target))
        if not RunDir.is_run_dir(run.path):
            raise UserError(f"--resume {target}: not a phased-cpt run directory (no {run.config_file.name} in it)")
        return run
    run = latest_run(cfg.output.dir, run_name=cfg.run_name)
    if run is None:
        raise UserError(
            f"--resume latest: no run named {cfg.run_name}-* under {cfg.output.dir}/; "
            "pass the run directory explicitly (--resume outputs/<run>)"
        )
    return run


def resume_run(cfg: RunConfig, target: str) -> RunDir:
    run = find_run_to_resume(cfg, target)
    run.acquire_lock()  # before anything is read or written: a second process is refused here
    stored = run.read_config()
    current = yaml.safe_load(dump_config(cfg))
    differences = config_differences(stored, current)
    differences += input_differences(run.read_state().inputs, input_fingerprints(cfg))
    if differences:
        raise UserError(
            f"cannot resume {run.path}: the config differs in ways that change the run:\n"
            + "\n".join(f"  - {d}" for d in differences)
            + "\nrestore those settings, or start a new run (without --resume)"
        )
    run.check_carried_adapter()
    run.write_config(dump_config(cfg))  # logging settings may have changed
    return run


def input_differences(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """How the data files differ from those the run started with (`input_fingerprints`): a file
    whose content changed, and the set of files itself (a glob that now matches more or fewer
    files, a file added to or removed from a list). A run that recorded no inputs is not compared."""
    if not stored:
        return []
    differences = []
    for key in sorted(set(stored) | set(current)):
        where = key if key.startswith("general.") else f"phases.{key}"
        if key not in stored:
            differences.append(f"{where}: a data file the run did not start with (a glob matches more files now?)")
        elif key not in current:
            differences.append(f"{where}: a data file the run started with is no longer among its files")
        elif stored[key] != current[key]:
            differences.append(f"{where}: the file's content changed since the run started")
    return differences


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [f"{key}: was {old!r}, now {new!r}" for key, old, new in differing_keys(stored, current, MAY_CHANGE)]


def resume_point(run: RunDir, phase_name: str) -> tuple[Path | None, int]:
    """(checkpoint to continue the phase from or None, the global step the run continues after).
    The checkpoint is the newest one whose files are all there as written; a newer damaged one is
    skipped with a warning (`run_dir.latest_checkpoint`)."""
    checkpoint = run.resume_checkpoint(phase_name)
    offset = run.finished_steps()
    if checkpoint is None:
        return None, offset
    return checkpoint, offset + checkpoint_step(checkpoint)
