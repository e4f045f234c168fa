"""The non-finite guard: a training step that saw a NaN/inf loss or gradient norm is skipped,
never applied, never logged as a number, and counted; too many in a row stop the phase."""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

from phased_cpt import distributed
from phased_cpt.errors import TrainingDiverged

logger = logging.getLogger(__name__)


class NonFiniteGuard(TrainerCallback):
    """Skips every optimizer step that saw a NaN/inf micro-batch loss or gradient norm, and stops
    the phase after `max_in_a_row` skipped steps in a row (`TrainingDiverged`, exit 3).

    A non-finite micro-batch loss is replaced by a zero that is connected to the graph (so every
    process still runs the same backward), and just before the optimizer step every gradient is
    set to None: torch's optimizers leave a parameter without a gradient untouched, so a skipped
    step changes no weight and no Adam moment (feeding zeros instead would still move the weights
    through the momentum). The LR schedule advances as for any step. Under DeepSpeed the engine
    steps inside backward, before this callback: the bad micro-batch then adds no gradient, but
    the step itself is taken.
    """

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.window_nonfinite = False
        """A micro-batch loss of the current accumulation window was non-finite."""
        self.skipped_in_a_row = 0
        self.reason = ""
        self.last_step_skipped = False
        self.since_log = {"skipped": 0, "nonfinite_loss": 0}
        self.nonfinite_loss_steps = 0
        """Steps of this phase skipped for a non-finite loss: the phase's mean loss is then unknown."""

    def loss_seen(self, finite: bool) -> None:
        if not finite:
            self.window_nonfinite = True

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]] if optimizer is not None else []
        grads = [p.grad for p in params if p.grad is not None]
        grads_finite = not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if distributed.is_distributed():
            # Every process must skip the same steps, or DDP replicas drift apart.
            flags = torch.tensor([float(self.window_nonfinite), float(not grads_finite)], device=args.device)
            distributed.all_reduce(flags, "max")
            self.window_nonfinite, grads_finite = bool(flags[0]), not bool(flags[1])
        self.last_step_skipped = self.window_nonfinite or not grads_finite
        if self.last_step_skipped:
            self.reason = "loss" if self.window_nonfinite else "gradient norm"
            for p in params:
                p.grad = None
            self.skipped_in_a_row += 1
            self.since_log["skipped"] += 1
            if self.window_nonfinite:
                self.since_log["nonfinite_loss"] += 1
                self.nonfinite_loss_steps += 1
            logger.warning(
                "non-finite %s at step %d: the optimizer step is skipped", self.reason, state.global_step + 1
            )
        else:
            self.skipped_in_a_row = 0
        self.window_nonfinite = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.skipped_in_a_row >= self.max_in_a_row:
            raise TrainingDiverged(
                f"{self.skipped_in_a_row} consecutive non-finite losses or gradient norms, the last at step "
                f"{state.global_step} (a non-finite {self.reason}; training.max_nonfinite_losses={self.max_in_a_row}); "
                "the phase stopped. Checkpoints written before are untouched. Lower training.learning_rate, keep "
                "training.max_grad_norm > 0, use bfloat16 rather than float16, or check the data of this phase."
            )

    def amend_log(self, logs: dict[str, float]) -> None:
        """Make a training log record honest about skipped steps: `skipped_steps` since the last
        record; a non-finite loss in the window makes the loss NaN (the Trainer's mean would count
        the zero that replaced it); a skipped last step has no gradient norm."""
        logs["skipped_steps"] = self.since_log["skipped"]
        if self.since_log["nonfinite_loss"]:
            logs["loss"] = math.nan
        if self.last_step_skipped and "grad_norm" in logs:
            logs["grad_norm"] = math.nan
        self.since_log = {"skipped": 0, "nonfinite_loss": 0}
