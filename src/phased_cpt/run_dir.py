"""The run directory: its layout and state file, the contract between training and its readers.

    outputs/<run_name>-YYYYMMDD_HHMMSS/
      config.resolved.yaml      the validated config, secrets removed
      state.json                finished phases (name, steps, adapter fingerprint)
      metrics.jsonl             one JSON object per logged step or event
      tensorboard/              one log dir for the whole run
      <phase>/checkpoint-N/     Trainer checkpoints of the phase; complete once `COMPLETE` is in it
      <phase>/adapter/          the phase's final LoRA adapter (PEFT format)
      eval/                     forgetting.json/.md/.png, curves.png, report.md
      rejected/<phase>.jsonl    lines rejected under data.on_bad_record: skip, with their reasons

Training writes it; evaluation and inference only read it (they never import training).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.resolved.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
ADAPTER_DIR = "adapter"
EVAL_DIR = "eval"
REJECTED_DIR = "rejected"
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
"""Written into a checkpoint directory after every file of it (on every rank) is written: a
checkpoint without it is partial (a crash during the save) and is never resumed from."""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see either the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_step(path: Path) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX):])


def list_checkpoints(phase_dir: Path, complete_only: bool = True) -> list[Path]:
    """Checkpoint directories of a phase, oldest first by step."""
    if not phase_dir.is_dir():
        return []
    found = [
        p for p in phase_dir.iterdir()
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX):].isdigit()
    ]
    if complete_only:
        found = [p for p in found if (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(phase_dir: Path) -> Path | None:
    """The newest complete checkpoint of a phase; partial ones are ignored."""
    complete = list_checkpoints(phase_dir)
    return complete[-1] if complete else None


@dataclass
class RunDir:
    path: Path
    writer: bool = True
    """False on ranks other than 0 of a multi-process run: they read the directory, and write
    only what DeepSpeed needs (their checkpoint shards), never its files."""
    _state: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, output_dir: Path, run_name: str, now: datetime | None = None) -> RunDir:
        stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
        path = Path(output_dir) / f"{run_name}-{stamp}"
        suffix = 1
        while path.exists():  # two runs started in the same second
            path = Path(output_dir) / f"{run_name}-{stamp}-{suffix}"
            suffix += 1
        path.mkdir(parents=True)
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def phase_dir(self, phase_name: str) -> Path:
        return self.path / phase_name

    def adapter_dir(self, phase_name: str) -> Path:
        return self.phase_dir(phase_name) / ADAPTER_DIR

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def rejected_dir(self) -> Path:
        return self.path / REJECTED_DIR

    def read_state(self) -> dict[str, Any]:
        """The run's state; read from disk once, then kept in memory so every rank of a
        multi-process run sees its own updates without waiting for rank 0's file."""
        if self._state is None:
            state_file = self.path / STATE_FILE
            self._state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {"finished_phases": []}
        return copy.deepcopy(self._state)

    def write_state(self, state: dict[str, Any]) -> None:
        self._state = copy.deepcopy(state)
        if self.writer:
            write_atomic(self.path / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def write_config(self, text: str) -> None:
        if self.writer:
            write_atomic(self.config_file, text)

    def update_state(self, **fields: Any) -> None:
        self.write_state(self.read_state() | fields)

    def finished_phases(self) -> list[str]:
        return [p["name"] for p in self.read_state()["finished_phases"]]

    def finished_steps(self) -> int:
        """Optimizer steps of all finished phases: the global step the next phase starts from."""
        return sum(p.get("steps", 0) for p in self.read_state()["finished_phases"])

    def mark_done(self, phase_name: str, **info: Any) -> None:
        state = self.read_state()
        state["finished_phases"].append({"name": phase_name, **info})
        self.write_state(state)

    def pending_phases(self, phases: list) -> list:
        """The configured phases not finished yet, in order."""
        finished = set(self.finished_phases())
        return [p for p in phases if p.name not in finished]

    def final_adapter(self) -> Path | None:
        finished = self.finished_phases()
        return self.adapter_dir(finished[-1]) if finished else None


def find_runs(output_dir: Path) -> list[RunDir]:
    """Run directories under `output_dir`, newest first (by their config file's mtime)."""
    if not Path(output_dir).is_dir():
        return []
    runs = [RunDir(p) for p in Path(output_dir).iterdir() if (p / CONFIG_FILE).is_file()]
    return sorted(runs, key=lambda r: r.config_file.stat().st_mtime, reverse=True)
