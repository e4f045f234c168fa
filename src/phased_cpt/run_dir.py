"""The run directory: its layout and state file, the contract between training and its readers.

    outputs/<run_name>-YYYYMMDD_HHMMSS/
      config.resolved.yaml      the validated config, secrets removed
      state.json                `RunState`: finished phases (`FinishedPhase`), input sha256s, W&B run id
      metrics.jsonl             one JSON object per logged step or event
      tensorboard/              one log dir for the whole run
      <phase>/checkpoint-N/     Trainer checkpoints of the phase; complete once `COMPLETE` is in it
      <phase>/adapter/          the phase's final LoRA adapter (PEFT format)
      eval/                     forgetting.json/.md/.png, curves.png, report.md
      rejected/<phase>.jsonl    lines rejected under data.on_bad_record: skip, with their reasons
      run.lock                  held by the process training into the run (its pid inside)

Training writes it, and evaluation writes its results into `eval/` (their file names are
evaluation's); inference only reads it. For everything else this module is the whole contract:
nobody else parses the stored config or the state, or names checkpoints. "The latest run"
(`latest_run`), a checkpoint's step (`checkpoint_step`) and whether it is complete (`is_complete`)
are each decided here, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, ValidationError

from phased_cpt.config import ModelConfig, PhaseConfig
from phased_cpt.distributed import is_main_process
from phased_cpt.errors import DataError, UserError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.resolved.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
ADAPTER_DIR = "adapter"
EVAL_DIR = "eval"
FORGETTING_FILE = f"{EVAL_DIR}/forgetting.json"
"""The forgetting matrix (its table for people beside it, `forgetting.md`)."""
REJECTED_DIR = "rejected"
WANDB_DIR = "wandb"
LOCK_FILE = "run.lock"
"""Held (an flock, with the holder's pid in it) by the one process that trains into the run."""
STAMP_FORMAT = "%Y%m%d_%H%M%S"
STAMP_PATTERN = r"\d{8}_\d{6}(-\d+)?"
"""A run directory is `<run_name>-<stamp>`, with `-N` when two runs start in the same second."""
RUN_LAYOUT_NAMES = (
    CONFIG_FILE,
    STATE_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    EVAL_DIR,
    REJECTED_DIR,
    WANDB_DIR,
    LOCK_FILE,
)
"""Names the run directory itself uses: a phase may not be called any of them (any case)."""
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
"""Written into a checkpoint directory after every file of it (on every rank of every node) is
written (`missing_rank_parts` is empty): a checkpoint without it is partial (a crash during the
save, a node that died) and is never resumed from. It holds the step and every file of the
checkpoint with its size and sha256 (`mark_complete`), so a file deleted, truncated or overwritten
later is found before it is resumed from (`checkpoint_problem`)."""
TRAINER_STATE_FILE = "trainer_state.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
DEEPSPEED_STATE_GLOB = "global_step*"
"""DeepSpeed's own checkpoint directory inside `checkpoint-N`: optimizer (and scheduler) state."""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see either the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


METRIC_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,),
    "loss": (int, float, type(None)),
    "perplexity": (int, float, type(None)),
    "time": (int, float),
    "seconds": (int, float),
    "preparation_seconds": (int, float),
    "event": (str,),
    "kind": (str,),
    "phase": (str,),
}
"""The types of the metrics.jsonl fields that resume, `report` and the plots compute with."""


def check_metric_record(record: dict[str, Any], where: str) -> None:
    """A DataError naming `where` (file:line) and the field when a field of `METRIC_FIELD_TYPES`
    holds another type (a hand edit, another program): it would fail deep in a sum or a plot."""
    for key, types in METRIC_FIELD_TYPES.items():
        value = record.get(key)
        if key in record and (isinstance(value, bool) or not isinstance(value, types)):
            kind = "a whole number" if types == (int,) else "a string" if types == (str,) else "a number"
            raise DataError(
                f"{where}: {key!r} is {value!r}, not {kind}; the file was edited or damaged: "
                "restore that line or delete it"
            )


def read_metrics(metrics_file: Path) -> list[dict[str, Any]]:
    """The records of `metrics.jsonl`, in order. A line that is not a JSON object is skipped with
    a warning naming it: the last line is torn when the process died while writing it (power
    loss, a full disk), and a run must stay resumable and reportable after that."""
    if not metrics_file.is_file():
        return []
    lines = metrics_file.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            check_metric_record(record, f"{metrics_file}:{number}")
            records.append(record)
            continue
        what = (
            "the last line is torn (the process stopped while writing it)"
            if number == len(lines)
            else "not a JSON object"
        )
        logger.warning("warning: %s:%d: %s; skipped", metrics_file, number, what)
    return records


def save_figure(fig: Any, path: Path, dpi: int = 110) -> None:
    """Save a matplotlib figure so that `path` is either the old image or the new one: a full disk
    leaves no 0-byte or half-drawn PNG behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


MODEL_KEYS = ("name", "dtype", "attn_implementation", "trust_remote_code")
"""The keys of the stored `model` section that say which base model to load, and how."""


def checkpoint_dir(phase_dir: Path, step: int) -> Path:
    """Where the Trainer writes the checkpoint of optimizer step `step` of a phase."""
    return Path(phase_dir) / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(path: Path) -> int | None:
    """The step of a checkpoint directory (`checkpoint-N`), None for any other name."""
    number = Path(path).name.removeprefix(CHECKPOINT_PREFIX)
    return int(number) if Path(path).name.startswith(CHECKPOINT_PREFIX) and number.isdigit() else None


def is_complete(checkpoint: Path) -> bool:
    """Whether the checkpoint was declared complete (its marker exists); `checkpoint_problem`
    also checks that its files are still what was written."""
    return (checkpoint / COMPLETE_MARKER).is_file()


def missing_rank_parts(checkpoint: Path, world_size: int) -> list[str]:
    """The files of a checkpoint that some rank writes for itself and that are not (yet) there,
    for a run of `world_size` processes: the HF Trainer's `rng_state_<rank>.pth` of every rank
    and, under DeepSpeed ZeRO, every rank's optimizer partition
    (`global_step<N>/*zero_pp_rank_<rank>_mp_rank_*_optim_states.pt`) and, under ZeRO-3 (where
    the weights are partitioned too), its weight partition (`..._model_states.pt`). Empty: every
    rank of every node wrote its part, and this process sees it (a node-local output dir would
    not)."""
    if world_size <= 1:
        return []
    missing = [f"rng_state_{r}.pth" for r in range(world_size) if not (checkpoint / f"rng_state_{r}.pth").is_file()]
    for step_dir in sorted(checkpoint.glob("global_step*")):
        kinds = ["optim_states"] + (["model_states"] if any(step_dir.glob("zero_pp_rank_*_model_states.pt")) else [])
        missing += [
            f"{step_dir.name}/*zero_pp_rank_{r}_mp_rank_*_{kind}.pt"
            for kind in kinds
            for r in range(world_size)
            if not any(step_dir.glob(f"*zero_pp_rank_{r}_mp_rank_*_{kind}.pt"))
        ]
    return missing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(checkpoint: Path) -> list[Path]:
    """Every file of a checkpoint (DeepSpeed's subdirectories included), marker and temporary files aside."""
    return sorted(
        p
        for p in checkpoint.rglob("*")
        if p.is_file() and p.name != COMPLETE_MARKER and not p.name.startswith(f".{COMPLETE_MARKER}")
    )


def mark_complete(checkpoint: Path, step: int) -> None:
    """Declare `checkpoint` complete: call only once every rank has written all its files. The
    marker records each file's size and sha256."""
    files = {
        p.relative_to(checkpoint).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in checkpoint_files(checkpoint)
    }
    write_atomic(checkpoint / COMPLETE_MARKER, json.dumps({"step": step, "files": files}, indent=1) + "\n")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it can: it is marked complete, every
    file the marker lists is there with its recorded size and sha256, and the files a resume needs
    are among them (adapter weights, trainer state, optimizer and scheduler state)."""
    marker = checkpoint / COMPLETE_MARKER
    if not marker.is_file():
        return "it is partial (no COMPLETE marker: the save did not finish)"
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"its COMPLETE marker is unreadable ({err})"
    recorded = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(recorded, dict):  # markers before file lists held only the step: nothing to compare
        for name, expected in recorded.items():
            path = checkpoint / name
            if not path.is_file():
                return f"{name} is missing"
            size = path.stat().st_size
            if size != expected.get("bytes"):
                return f"{name} is {size} bytes, {expected.get('bytes')} were written"
            if file_sha256(path) != expected.get("sha256"):
                return f"{name} changed after it was written (sha256 differs)"
    missing = missing_resume_files(checkpoint)
    if missing:
        return f"{missing} is missing"
    try:
        json.loads((checkpoint / TRAINER_STATE_FILE).read_text(encoding="utf-8"))["global_step"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        return f"{TRAINER_STATE_FILE} is unreadable ({type(err).__name__}: {err})"
    return None


def missing_resume_files(checkpoint: Path) -> str | None:
    """The first file a resume needs that the checkpoint lacks: adapter weights, the trainer
    state, and the optimizer and scheduler state (optimizer.pt and scheduler.pt, or DeepSpeed's
    `global_step*` directory, beside which the Trainer writes scheduler.pt unless DeepSpeed owns it)."""
    if not any((checkpoint / name).is_file() for name in ADAPTER_WEIGHTS):
        return ADAPTER_WEIGHTS[0]
    if not (checkpoint / TRAINER_STATE_FILE).is_file():
        return TRAINER_STATE_FILE
    if any(p.is_dir() for p in checkpoint.glob(DEEPSPEED_STATE_GLOB)):
        return None
    return next((name for name in ("optimizer.pt", "scheduler.pt") if not (checkpoint / name).is_file()), None)


def list_checkpoints(phase_dir: Path, complete_only: bool = True) -> list[Path]:
    """Checkpoint directories of a phase, oldest first by step."""
    if not phase_dir.is_dir():
        return []
    found = [p for p in phase_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    if complete_only:
        found = [p for p in found if is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(phase_dir: Path) -> Path | None:
    """The newest checkpoint of a phase that can be resumed from (`checkpoint_problem`); each
    newer one that cannot is skipped with a warning saying why and what is used instead."""
    candidates = list_checkpoints(phase_dir, complete_only=False)
    for index in range(len(candidates) - 1, -1, -1):
        checkpoint = candidates[index]
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        if not is_complete(checkpoint):
            continue  # a save cut short by a crash: expected, never resumed from
        older = next((c for c in reversed(candidates[:index]) if is_complete(c)), None)
        fallback = f"falling back to {older.name}" if older else "no earlier checkpoint: the phase starts over"
        logger.warning("warning: %s is not usable: %s; %s", checkpoint, problem, fallback)
    return None


class FinishedPhase(BaseModel):
    """One finished phase in state.json, as the recipe records it when the phase's adapter is saved.

    Records written by earlier versions are read as they are: the first ones held only `name`,
    `steps`, `train_loss` and `adapter_sha256` (the fingerprint's former name); a field a record
    lacks is not written back, and a field this version does not know is kept (`extra="allow"`).
    """

    model_config = ConfigDict(extra="allow")

    name: str
    steps: int = 0
    """Optimizer steps of the phase."""
    train_loss: float | None = None
    """Mean training loss; None when a step's loss was non-finite (skipped)."""
    tokens: int = 0
    seconds: float = 0.0
    adapter_fingerprint: str | None = None
    """`modeling.adapter_fingerprint`: over the adapter's tensors."""
    adapter_file_sha256: str | None = None
    """sha256 of the saved `adapter_model.safetensors` (what `sha256sum` prints)."""
    adapter_sha256: str | None = None
    """Runs of the first versions: the fingerprint, under its former name."""


class RunState(BaseModel):
    """The whole of state.json. `RunDir.read_state` is its one reader, `RunDir.write_state` its one writer."""

    model_config = ConfigDict(extra="allow")

    finished_phases: list[FinishedPhase] = []
    inputs: dict[str, str] = {}
    """sha256 of every data file the run started with (`resume.input_fingerprints`); empty in
    runs of versions that did not record them (a resume then does not compare them)."""
    wandb_run_id: str | None = None
    """The W&B run a resumed run continues."""

    def to_json(self) -> str:
        """state.json's text: the fields that were set (written by this version, or read from the
        file), so a record of an older version is written back as it was, plus what was added."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data["finished_phases"] = [p.model_dump(mode="json", exclude_unset=True) for p in self.finished_phases]
        return json.dumps(data, indent=2) + "\n"


def read_state_file(state_file: Path) -> RunState:
    """`state.json`, checked: an object whose `finished_phases` lists objects with a `name`."""
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "finished_phases" not in data:
            raise KeyError("finished_phases")
        state = RunState.model_validate(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        raise UserError(
            f"{state_file}: the run's state is unreadable ({where}: {problem['msg']}); the run directory is damaged. "
            "Restore the file from a backup, or point at a phase's adapter directly (chat --adapter RUN/PHASE/adapter)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        what = f"{type(err).__name__}: {err}" if not isinstance(err, KeyError) else f"no {err} in it"
        raise UserError(
            f"{state_file}: the run's state is unreadable ({what}); the run directory is damaged. Restore the file "
            "from a backup, or point at a phase's adapter directly (chat --adapter RUN/PHASE/adapter)"
        ) from None
    return state


class InRun:
    """A fixed path inside the run directory, read as an attribute: `run.config_file`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, run: RunDir, owner: type | None = None) -> Path:
        return run.path / self.name


@dataclass
class RunDir:
    """Only the main process (`distributed.is_main_process`) writes the directory's files; the other
    ranks of a multi-process run read it and write only what DeepSpeed needs (their checkpoint
    shards). Each process keeps its own copy of the state in memory."""

    path: Path
    _state: RunState | None = field(default=None, repr=False, compare=False)
    _resume_checkpoints: dict[str, Path | None] = field(default_factory=dict, repr=False, compare=False)
    _lock: FileLock | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, output_dir: Path, run_name: str, now: datetime | None = None) -> RunDir:
        stamp = (now or datetime.now()).strftime(STAMP_FORMAT)
        path = Path(output_dir) / f"{run_name}-{stamp}"
        suffix = 1
        while path.exists():  # two runs started in the same second
            path = Path(output_dir) / f"{run_name}-{stamp}-{suffix}"
            suffix += 1
        path.mkdir(parents=True)
        return cls(path)

    @staticmethod
    def is_run_dir(path: Path) -> bool:
        """Whether `path` is a run directory (it holds the stored config)."""
        return (Path(path) / CONFIG_FILE).is_file()

    @classmethod
    def containing(cls, path: Path) -> RunDir | None:
        """The run a phase's adapter or checkpoint directory (`<run>/<phase>/<dir>`) belongs to."""
        parents = Path(path).resolve().parents
        if len(parents) > 1 and cls.is_run_dir(parents[1]):
            return cls(parents[1])
        return None

    @property
    def name(self) -> str:
        return self.path.name

    config_file = InRun(CONFIG_FILE)
    state_file = InRun(STATE_FILE)
    metrics_file = InRun(METRICS_FILE)
    tensorboard_dir = InRun(TENSORBOARD_DIR)
    eval_dir = InRun(EVAL_DIR)
    forgetting_file = InRun(FORGETTING_FILE)
    rejected_dir = InRun(REJECTED_DIR)
    lock_file = InRun(LOCK_FILE)

    def acquire_lock(self) -> None:
        """Make this process the only one training into the run until `release_lock` or its exit (the kernel
        drops an flock when its process dies, so a dead process's lock is taken over). Another
        live process holding it is a UserError naming its pid."""
        lock = FileLock(self.lock_file, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = self.lock_file.read_text(encoding="utf-8").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise UserError(
                f"{self.path} is in use: another phased-cpt process (pid {holder}) is training into it "
                f"({self.lock_file} is locked). Wait for it to finish, or stop it, then resume"
            ) from None
        self.lock_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        self._lock = lock

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def phase_dir(self, phase_name: str) -> Path:
        return self.path / phase_name

    def adapter_dir(self, phase_name: str) -> Path:
        return self.phase_dir(phase_name) / ADAPTER_DIR

    def resume_checkpoint(self, phase_name: str) -> Path | None:
        """The checkpoint this session continues `phase_name` from (`latest_checkpoint`), decided
        once per session: the files are verified and any fallback reported once."""
        if phase_name not in self._resume_checkpoints:
            self._resume_checkpoints[phase_name] = latest_checkpoint(self.phase_dir(phase_name))
        return self._resume_checkpoints[phase_name]

    def read_state(self) -> RunState:
        """The run's state (a copy); read from disk once, then kept in memory so every rank of a
        multi-process run sees its own updates without waiting for the main process's file. A
        damaged state file is a UserError saying so."""
        if self._state is None:
            state_file = self.state_file
            self._state = read_state_file(state_file) if state_file.exists() else RunState()
        return self._state.model_copy(deep=True)

    def write_state(self, state: RunState) -> None:
        """Keep `state` as the run's state; the main process also writes it to state.json."""
        self._state = state.model_copy(deep=True)
        if is_main_process():
            write_atomic(self.state_file, state.to_json())

    def write_config(self, text: str) -> None:
        if is_main_process():
            write_atomic(self.config_file, text)

    def read_config(self) -> dict[str, Any]:
        """The stored (resolved, secret-free) config as plain data."""
        try:
            data = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise UserError(f"{self.config_file}: cannot read the run's config: {err}") from None
        if not isinstance(data, dict):
            raise UserError(f"{self.config_file}: the run's config is not a mapping; the run directory is damaged")
        return data

    def model_config(self) -> ModelConfig:
        """The base model of the run, from the `model` section of its stored config."""
        section = self.read_config().get("model")
        try:
            return ModelConfig(**{k: section[k] for k in MODEL_KEYS if k in section})
        except (ValueError, TypeError) as err:
            raise UserError(f"{self.config_file}: cannot read the model section: {err}") from None

    def data_files(self) -> list[Path]:
        """Every data file the stored config names (phase files and globs expanded, eval files,
        the general source): what nothing but the user may overwrite."""
        from phased_cpt.config.files import expand_pattern

        config = self.read_config()
        specs: list = []
        for phase in config.get("phases") or []:
            items = phase.get("file") if isinstance(phase, dict) else None
            specs += items if isinstance(items, list) else [items]
            specs.append(phase.get("eval_file") if isinstance(phase, dict) else None)
        general = (config.get("general") or {}).get("file")
        specs += general if isinstance(general, list) else [general]
        specs.append((config.get("evaluation") or {}).get("general_file"))
        paths = [spec.get("path") if isinstance(spec, dict) else spec for spec in specs]
        return [f for spec in paths if isinstance(spec, str) for f in expand_pattern(Path(spec))]

    def phase_names(self) -> list[str]:
        """The phases the run's config lists, in order (finished or not); the finished ones when
        the stored config cannot be read."""
        try:
            return [p["name"] for p in self.read_config().get("phases") or []]
        except (UserError, KeyError, TypeError):
            return self.finished_phases()

    def finished_phases(self) -> list[str]:
        return [p.name for p in self.read_state().finished_phases]

    def finished_steps(self) -> int:
        """Optimizer steps of all finished phases: the global step the next phase starts from."""
        return sum(p.steps for p in self.read_state().finished_phases)

    def mark_done(self, phase: FinishedPhase) -> None:
        """Record a finished phase (after its adapter is saved)."""
        state = self.read_state()
        state.finished_phases.append(phase)
        self.write_state(state)

    def check_carried_adapter(self) -> None:
        """The adapter the next phase starts from (the last finished phase's) must be the file that
        phase saved: its sha256 against state.json's `adapter_file_sha256` (runs that recorded one)."""
        finished = self.read_state().finished_phases
        if not finished or not finished[-1].adapter_file_sha256:
            return
        name, recorded = finished[-1].name, finished[-1].adapter_file_sha256
        found = adapter_file_sha256(self.adapter_dir(name))
        if found != recorded:
            what = "is missing" if found is None else f"has sha256 {found[:12]}..., not the {recorded[:12]}... it saved"
            raise UserError(
                f"cannot resume {self.path}: the adapter of the finished phase {name} "
                f"({self.adapter_dir(name) / ADAPTER_WEIGHTS[0]}) {what} (state.json adapter_file_sha256); the next "
                "phase would start from other weights. Put the phase's own adapter back, or start a new run"
            )

    def pending_phases(self, phases: list[PhaseConfig]) -> list[PhaseConfig]:
        """The configured phases not finished yet, in order."""
        finished = set(self.finished_phases())
        return [p for p in phases if p.name not in finished]

    def final_adapter(self) -> Path | None:
        finished = self.finished_phases()
        return self.adapter_dir(finished[-1]) if finished else None


def find_runs(output_dir: Path) -> list[RunDir]:
    """Run directories under `output_dir`, latest first: by when their stored config was last
    written (a run started or resumed last comes first)."""
    if not Path(output_dir).is_dir():
        return []
    runs = [RunDir(p) for p in Path(output_dir).iterdir() if RunDir.is_run_dir(p)]
    return sorted(runs, key=lambda r: r.config_file.stat().st_mtime, reverse=True)


def latest_run(output_dir: Path, run_name: str | None = None, finished: bool = False) -> RunDir | None:
    """The latest run under `output_dir` (see `find_runs`), None if there is none.

    `run_name`: only runs of that `output.run_name` (`<run_name>-<timestamp>`); `finished`: only
    runs with at least one finished phase.
    """
    own = re.compile(rf"{re.escape(run_name)}-{STAMP_PATTERN}") if run_name is not None else None
    for run in find_runs(output_dir):
        if own is not None and not own.fullmatch(run.name):
            continue  # another run whose name starts the same (`rx` and `rx-large-<stamp>`)
        if finished and not run.finished_phases():
            continue
        return run
    return None


def adapter_file_sha256(adapter_dir: Path) -> str | None:
    """sha256 of the saved `adapter_model.safetensors` (what `sha256sum` prints), None when the
    directory holds none. Unlike `adapter_fingerprint`, it changes with the file's metadata and
    dtype, so it identifies the file, not the weights."""
    path = Path(adapter_dir) / ADAPTER_WEIGHTS[0]
    return file_sha256(path) if path.is_file() else None
