"""Crash-safe checkpoints: a checkpoint counts only once it is complete, and old ones are
removed only after a newer one is.

The HF Trainer writes `checkpoint-N/` file by file and rotates old checkpoints right after, so a
crash during a save can leave a partial newest checkpoint after the previous one was deleted.
Here the Trainer's own rotation is off (`save_total_limit=None` in its arguments); after every
rank has finished writing, `CheckpointCallback` marks the checkpoint `COMPLETE` and only then
deletes the oldest complete checkpoints beyond `save_total_limit` and any partial leftovers.
Resume only considers complete checkpoints (`run_dir.latest_checkpoint`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phased_cpt.crash_points import crash_point
from phased_cpt.errors import TrainingDiverged
from phased_cpt.run_dir import checkpoint_dir, list_checkpoints, mark_complete


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
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its shards
        if state.is_world_process_zero:
            checkpoint = checkpoint_dir(self.phase_dir, state.global_step)
            crash_point("checkpoint_written", f"{self.phase_dir.name}/{state.global_step}")
            mark_complete(checkpoint, state.global_step)
            _fsync_dir(checkpoint)
            self.rotate(keep=checkpoint)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    def rotate(self, keep: Path) -> None:
        complete = list_checkpoints(self.phase_dir)
        if self.save_total_limit is not None:
            for old in complete[: max(len(complete) - self.save_total_limit, 0)]:
                if old != keep:
                    shutil.rmtree(old, ignore_errors=True)
        for partial in set(list_checkpoints(self.phase_dir, complete_only=False)) - set(complete):
            shutil.rmtree(partial, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trainable_weights_finite(model: torch.nn.Module) -> bool:
    """This rank's trainable weights are all finite (under ZeRO-3, its own shards)."""
    return all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters() if p.requires_grad)
