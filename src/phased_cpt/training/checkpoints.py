"""Crash-safe checkpoints: a checkpoint counts only once it is complete, and old ones are
removed only after a newer one is.

The HF Trainer writes `checkpoint-N/` file by file and rotates old checkpoints right after, so a
crash during a save can leave a partial newest checkpoint after the previous one was deleted.
Here the Trainer's own rotation is off (`save_total_limit=None` in its arguments); after every
rank has finished writing and the main process sees every rank's part (`run_dir.missing_rank_parts`: on
several nodes each node writes its own), `CheckpointCallback` marks the checkpoint `COMPLETE`
and only then deletes the oldest complete checkpoints beyond `save_total_limit` and any partial
leftovers. A node that dies during a save never reaches the barrier, so no marker is written and
the previous complete checkpoint is the one a resume continues from.
Resume only considers complete checkpoints (`run_dir.latest_checkpoint`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phased_cpt import distributed
from phased_cpt.crash_points import crash_point
from phased_cpt.errors import TrainingDiverged, UserError
from phased_cpt.run_dir import checkpoint_dir, list_checkpoints, mark_complete, missing_rank_parts

RANK_PARTS_VISIBLE_SECONDS = 60.0


class CheckpointCallback(TrainerCallback):
    def __init__(self, phase_dir: Path, save_total_limit: int | None) -> None:
        self.phase_dir = Path(phase_dir)
        self.save_total_limit = save_total_limit

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        if model is not None and not trainable_weights_finite(model):
            # Never let a diverged state become "the latest good checkpoint".
            shutil.rmtree(checkpoint_dir(self.phase_dir, state.global_step), ignore_errors=True)
            raise TrainingDiverged(
                f"the adapter weights became non-finite (NaN/inf) at step {state.global_step}; that checkpoint was "
                "discarded and earlier checkpoints are untouched. Lower training.learning_rate, keep "
                "training.max_grad_norm > 0, or use bfloat16 rather than float16."
            )
        distributed.barrier()  # every rank has written its shards
        checkpoint = checkpoint_dir(self.phase_dir, state.global_step)
        missing = []
        if distributed.is_main_process():
            missing = wait_for_rank_parts(checkpoint, distributed.world_size() if distributed.is_distributed() else 1)
            if not missing:
                crash_point("checkpoint_written", f"{self.phase_dir.name}/{state.global_step}")
                mark_complete(checkpoint, state.global_step)
                _fsync_dir(checkpoint)
                self.rotate(keep=checkpoint)
        missing = distributed.broadcast_object(missing)  # also: no rank goes on before the marker is written
        if missing:
            raise UserError(
                f"{checkpoint}: rank 0 does not see what other ranks wrote ({', '.join(missing[:4])}"
                f"{', ...' if len(missing) > 4 else ''}); output.dir must be one directory shared by every node. "
                "This checkpoint stays incomplete; a resume continues from the previous complete one."
            )

    def rotate(self, keep: Path) -> None:
        complete = list_checkpoints(self.phase_dir)
        if self.save_total_limit is not None:
            for old in complete[: max(len(complete) - self.save_total_limit, 0)]:
                if old != keep:
                    shutil.rmtree(old, ignore_errors=True)
        for partial in set(list_checkpoints(self.phase_dir, complete_only=False)) - set(complete):
            shutil.rmtree(partial, ignore_errors=True)


def wait_for_rank_parts(checkpoint: Path, world_size: int, timeout_s: float = RANK_PARTS_VISIBLE_SECONDS) -> list[str]:
    """`run_dir.missing_rank_parts` once every rank's files are visible here, or after `timeout_s`
    (a network file system may show another node's files a moment late)."""
    deadline = time.monotonic() + timeout_s
    while (missing := missing_rank_parts(checkpoint, world_size)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return missing


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trainable_weights_finite(model: torch.nn.Module) -> bool:
    """This rank's trainable weights are all finite (under ZeRO-3, its own shards)."""
    return all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters() if p.requires_grad)
