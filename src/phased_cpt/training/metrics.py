"""Where metrics go: `metrics.jsonl`, TensorBoard and Weights & Biases, all on one global step.

A run has one `MetricsSink`. Steps are global across phases (phase 2's first step follows
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

from phased_cpt.config import TensorboardConfig, WandbConfig
from phased_cpt.run_dir import RunDir, write_atomic

logger = logging.getLogger(__name__)


class MetricsSink:
    def __init__(
        self,
        metrics_file: Path,
        tensorboard_dir: Path | None,
        wandb_cfg: WandbConfig | None,
        run_name: str,
        run_path: Path,
        run_config: dict[str, Any] | None = None,
        resume_step: int | None = None,
        wandb_run_id: str | None = None,
    ) -> None:
        """`resume_step`: the run continues after this global step; what an interrupted process
        logged beyond it is dropped, so every backend keeps one monotonic step."""
        if resume_step is not None:
            truncate_metrics(metrics_file, resume_step)
        self._file = open(metrics_file, "a", encoding="utf-8")  # noqa: SIM115 (open until close())
        self._tensorboard = None
        self._wandb_run = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tensorboard = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge)
        if wandb_cfg is not None and wandb_cfg.enabled:
            self._wandb_run = start_wandb(wandb_cfg, run_name, run_path, run_config or {}, wandb_run_id)

    @property
    def wandb_run_id(self) -> str | None:
        return self._wandb_run.id if self._wandb_run is not None else None

    def log(self, step: int, phase: str, values: dict[str, float], kind: str = "train") -> None:
        """Record scalar `values` at global `step`; non-finite values are kept as null in JSON."""
        record = {"step": step, "phase": phase, "kind": kind}
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(f"{kind}/{key}", value, step)
                self._tensorboard.add_scalar(f"{phase}/{kind}/{key}", value, step)
            self._tensorboard.flush()
        if self._wandb_run is not None:
            self._wandb_run.log({f"{kind}/{k}": v for k, v in values.items()} | {"phase": phase}, step=step)

    def event(self, name: str, **fields: Any) -> None:
        """A non-scalar record (phase start/end) in metrics.jsonl only."""
        self._file.write(json.dumps({"event": name, **fields}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()


class SilentSink(MetricsSink):
    """The sink of ranks other than 0: only rank 0 writes metrics, TensorBoard and W&B."""

    def __init__(self) -> None:
        self._wandb_run = None

    def log(self, step: int, phase: str, values: dict[str, float], kind: str = "train") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


def truncate_metrics(metrics_file: Path, last_step: int) -> None:
    """Drop step records after `last_step` (logged by a process that died before its next checkpoint)."""
    if not metrics_file.is_file():
        return
    kept = [
        line for line in metrics_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    write_atomic(metrics_file, "".join(line + "\n" for line in kept))


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


def open_sink(
    run: RunDir, tensorboard: TensorboardConfig, wandb_cfg: WandbConfig, run_config: dict[str, Any], resume_step: int | None
) -> MetricsSink:
    if not run.writer:
        return SilentSink()  # ranks other than 0 of a multi-process run
    sink = MetricsSink(
        run.metrics_file,
        run.tensorboard_dir if tensorboard.enabled else None,
        wandb_cfg,
        run.name,
        run.path,
        run_config,
        resume_step=resume_step,
        wandb_run_id=run.read_state().get("wandb_run_id"),
    )
    if sink.wandb_run_id:
        run.update_state(wandb_run_id=sink.wandb_run_id)
    return sink
