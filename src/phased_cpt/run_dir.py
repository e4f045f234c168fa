"""The run directory: its layout and state file, the contract between training and its readers.

    outputs/<run_name>-YYYYMMDD_HHMMSS/
      config.resolved.yaml      the validated config, secrets removed
      state.json                finished phases (name, steps, adapter fingerprint)
      metrics.jsonl             one JSON object per logged step or event
      tensorboard/              one log dir for the whole run
      <phase>/checkpoint-N/     Trainer checkpoints of the phase
      <phase>/adapter/          the phase's final LoRA adapter (PEFT format)

Training writes it; evaluation and inference only read it (they never import training).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.resolved.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
ADAPTER_DIR = "adapter"


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see either the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunDir:
    path: Path

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

    def read_state(self) -> dict[str, Any]:
        state_file = self.path / STATE_FILE
        if not state_file.exists():
            return {"finished_phases": []}
        return json.loads(state_file.read_text(encoding="utf-8"))

    def finished_phases(self) -> list[str]:
        return [p["name"] for p in self.read_state()["finished_phases"]]

    def mark_done(self, phase_name: str, **info: Any) -> None:
        state = self.read_state()
        state["finished_phases"].append({"name": phase_name, **info})
        write_atomic(self.path / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def final_adapter(self) -> Path | None:
        finished = self.finished_phases()
        return self.adapter_dir(finished[-1]) if finished else None


def find_runs(output_dir: Path) -> list[RunDir]:
    """Run directories under `output_dir`, newest first (by their config file's mtime)."""
    if not Path(output_dir).is_dir():
        return []
    runs = [RunDir(p) for p in Path(output_dir).iterdir() if (p / CONFIG_FILE).is_file()]
    return sorted(runs, key=lambda r: r.config_file.stat().st_mtime, reverse=True)
