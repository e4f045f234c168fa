"""Where metrics go: `metrics.jsonl`, TensorBoard and Weights & Biases, all on one global step.

A run has one `MetricsSink`, which hands every record to its backends, one class each
(`JsonlBackend`, `TensorBoardBackend`, `WandbBackend`, listed in `BACKENDS`). A backend opens
itself from its own section of the run's config (`MetricsBackend.open`); a new backend is a class
here and its entry in `BACKENDS` (and its config section in `config/schema.py`). Steps are global across phases (phase 2's first step follows
phase 1's last), so each backend shows one monotonic curve for the whole run; the phase name is
logged with every record and TensorBoard also gets per-phase tags.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from phased_cpt.config import RunConfig, WandbConfig, public_config
from phased_cpt.distributed import is_main_process
from phased_cpt.run_dir import RunDir, read_metrics, write_atomic

logger = logging.getLogger(__name__)


class MetricsBackend:
    """One place metrics go. `log` gets scalars at a global step, `event` a non-scalar record;
    a backend that has no use for events ignores them."""

    section: str | None = None
    """The key of the run config's section that configures this backend (None: it has none). A
    resumed run may change it (`resume.MAY_CHANGE`)."""

    @classmethod
    def open(cls, run: RunDir, cfg: RunConfig, resume_step: int | None) -> MetricsBackend | None:
        """This backend for the run, or None when its config section leaves it off. `resume_step`:
        the global step a resumed run continues after (None: a new run)."""
        raise NotImplementedError

    def log(self, step: int, phase: str, values: dict[str, float], kind: str) -> None:
        raise NotImplementedError

    def event(self, name: str, fields: dict[str, Any]) -> None:
        pass

    def sync(self) -> None:
        """Make what was logged so far durable (at checkpoints: a resume continues from there)."""

    def close(self) -> None:
        pass


class JsonlBackend(MetricsBackend):
    """`metrics.jsonl`: one JSON object per step record or event; non-finite values as null."""

    def __init__(self, metrics_file: Path, resume_step: int | None = None) -> None:
        """`resume_step`: the run continues after this global step; what an interrupted process
        logged beyond it is dropped, so the file keeps one monotonic step. A torn last line (a
        process killed mid-write) is dropped either way, so new records start on a line of their own."""
        truncate_metrics(metrics_file, resume_step)
        self._file = open(metrics_file, "a", encoding="utf-8")  # noqa: SIM115 (open until close())

    @classmethod
    def open(cls, run: RunDir, cfg: RunConfig, resume_step: int | None) -> JsonlBackend:
        """Always on: resume, `report` and the tests read metrics.jsonl."""
        return cls(run.metrics_file, resume_step)

    def log(self, step: int, phase: str, values: dict[str, float], kind: str) -> None:
        record = {"step": step, "phase": phase, "kind": kind}
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        self._write(record)

    def event(self, name: str, fields: dict[str, Any]) -> None:
        self._write({"event": name, **fields})

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class TensorBoardBackend(MetricsBackend):
    """One TensorBoard log dir for the run: `<kind>/<key>` on the global step, and per-phase tags."""

    section = "tensorboard"

    def __init__(self, log_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    @classmethod
    def open(cls, run: RunDir, cfg: RunConfig, resume_step: int | None) -> TensorBoardBackend | None:
        return cls(run.tensorboard_dir, resume_step) if cfg.tensorboard.enabled else None

    def log(self, step: int, phase: str, values: dict[str, float], kind: str) -> None:
        for key, value in finite(values).items():
            self._writer.add_scalar(f"{kind}/{key}", value, step)
            self._writer.add_scalar(f"{phase}/{kind}/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbBackend(MetricsBackend):
    """One W&B run per training run (see `start_wandb`)."""

    section = "wandb"

    def __init__(self, wandb_run: Any) -> None:
        self.run = wandb_run

    @classmethod
    def open(cls, run: RunDir, cfg: RunConfig, resume_step: int | None) -> WandbBackend | None:
        """The W&B run this run started, continued on resume (its id is kept in state.json)."""
        if not cfg.wandb.enabled:
            return None
        state = run.read_state()
        config = {k: v for k, v in public_config(cfg).items() if k != "wandb"}
        wandb_run = start_wandb(cfg.wandb, run.name, run.path, config, state.wandb_run_id)
        state.wandb_run_id = wandb_run.id
        run.write_state(state)
        return cls(wandb_run)

    def log(self, step: int, phase: str, values: dict[str, float], kind: str) -> None:
        self.run.log({f"{kind}/{k}": v for k, v in finite(values).items()} | {"phase": phase}, step=step)

    def close(self) -> None:
        self.run.finish()


def finite(values: dict[str, float]) -> dict[str, float]:
    """`values` without NaN/inf: a non-finite loss or gradient norm is never logged as a number
    (metrics.jsonl records it as null; TensorBoard and W&B get nothing for it)."""
    return {key: value for key, value in values.items() if math.isfinite(value)}


class MetricsSink:
    """The run's metrics: every record goes to each backend. Without backends (every process but
    the main one) it records nothing."""

    def __init__(self, backends: list[MetricsBackend]) -> None:
        self.backends = backends

    @property
    def wandb_run_id(self) -> str | None:
        return next((b.run.id for b in self.backends if isinstance(b, WandbBackend)), None)

    def log(self, step: int, phase: str, values: dict[str, float], kind: str = "train") -> None:
        """Record scalar `values` at global `step`."""
        for backend in self.backends:
            backend.log(step, phase, values, kind)

    def event(self, name: str, **fields: Any) -> None:
        """A non-scalar record (phase start/end, throughput model): metrics.jsonl only."""
        for backend in self.backends:
            backend.event(name, fields)

    def sync(self) -> None:
        for backend in self.backends:
            backend.sync()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def truncate_metrics(metrics_file: Path, last_step: int | None) -> None:
    """Drop step records after `last_step` (logged by a process that died before its next
    checkpoint; None keeps every step) and lines that are not records (a torn last line)."""
    if not metrics_file.is_file():
        return
    kept = [r for r in read_metrics(metrics_file) if last_step is None or r.get("step", 0) <= last_step]
    write_atomic(metrics_file, "".join(json.dumps(r) + "\n" for r in kept))


def start_wandb(cfg: WandbConfig, run_name: str, run_path: Path, run_config: dict[str, Any], run_id: str | None = None):
    """One W&B run per training run (a resumed run continues the same W&B run id). Offline when
    no API key is known; WANDB_MODE wins if set.

    The key is handed to wandb through the environment of this process only; it is never
    logged, printed or written to the run directory.
    """
    import wandb

    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    if key:
        os.environ["WANDB_API_KEY"] = key
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    logger.info("Weights & Biases: %s mode, project %s", mode, cfg.project)
    return wandb.init(
        project=cfg.project,
        entity=cfg.entity,
        name=run_name,
        dir=str(run_path),
        config=run_config,
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        settings=wandb.Settings(console="off", quiet=True),
    )


BACKENDS: tuple[type[MetricsBackend], ...] = (JsonlBackend, TensorBoardBackend, WandbBackend)
"""Every metrics backend, in the order a record reaches them."""


def open_sink(run: RunDir, cfg: RunConfig, resume_step: int | None) -> MetricsSink:
    """The run's sink: each backend of `BACKENDS` its config section turns on (metrics.jsonl
    always); on every process but the main one (`distributed.is_main_process`), a sink with no
    backend. `resume_step`: the global step a resumed run continues after (None: a new run)."""
    if not is_main_process():
        return MetricsSink([])
    opened = (backend.open(run, cfg, resume_step) for backend in BACKENDS)
    return MetricsSink([backend for backend in opened if backend is not None])
