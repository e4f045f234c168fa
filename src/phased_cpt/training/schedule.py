r"""The learning rate across phases (`training.lr_across_phases`), one phase at a time.

Every phase is its own Trainer run with a fresh optimizer, so its scheduler only sees its own
steps; what differs is which part of the run-level shape each phase gets. A phase's peak is its
learning_rate times its `lr_scale` (`PhaseConfig.training_for`).

    phases            1                2                3
    rewarm        /‾‾‾‾\__         /‾‾‾‾\__         /‾‾‾‾\__       warmup + lr_scheduler decay, every phase
    wsd           /‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\     warmup once, anneal at the very end
    wsd_each      /‾‾‾‾‾‾‾‾‾\      /‾‾‾‾‾‾‾‾‾\      /‾‾‾‾‾‾‾‾‾\    warmup, hold, anneal, every phase

- `rewarm` (default) is the HF Trainer's own scheduler per phase (`lr_scheduler`, warmup_ratio of
  the phase's steps), as a fresh optimizer gives: Ibrahim et al. 2024 ("Simple and Scalable
  Strategies to Continually Pre-train LLMs") find re-warming and re-decaying the LR for each new
  dataset, with a little replay, matches re-training on all the data at once.
- `wsd` warms up over warmup_ratio of the first phase, holds the peak, and anneals (cosine or
  linear, to 0) over the last decay_ratio of the last phase's steps: no re-warming, so phase k+1
  does not start with a jump after phase k's anneal; adapters of earlier phases are un-annealed.
- `wsd_each_phase` warms up, holds and anneals within every phase: each phase's adapter is
  annealed, with a longer time at the peak than cosine gives.

Built with transformers' own schedulers (`get_scheduler`: constant, constant_with_warmup,
warmup_stable_decay), from the phase's step count once the Trainer knows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import get_scheduler

from phased_cpt.config import TrainingConfig


@dataclass(frozen=True)
class PhaseLr:
    """The warmup-stable-decay part one phase gets (None for rewarm: the Trainer's own schedule)."""

    warmup: bool
    """Warm up over the phase's warmup_ratio (the first phase of `wsd`, every phase of `wsd_each_phase`)."""
    decay: bool
    """Anneal over the phase's last decay_ratio (the last phase of `wsd`, every phase of `wsd_each_phase`)."""
    decay_ratio: float
    shape: str
    """cosine or linear: the anneal's shape."""

    def scheduler(self, optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int):
        """The scheduler over the phase's `steps` optimizer steps (`warmup_steps` when it warms up)."""
        warmup = warmup_steps if self.warmup else 0
        if not self.decay:
            return get_scheduler("constant_with_warmup" if warmup else "constant", optimizer, num_warmup_steps=warmup)
        decay = min(max(1, math.ceil(steps * self.decay_ratio)), steps - warmup)
        return get_scheduler(
            "warmup_stable_decay",
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=steps,
            scheduler_specific_kwargs={"num_decay_steps": decay, "decay_type": self.shape},
        )


def phase_lr(training: TrainingConfig, index: int, phases: int) -> PhaseLr | None:
    """The schedule of the phase at `index` (0-based) of `phases`; None: the Trainer's own (rewarm)."""
    if training.lr_across_phases == "rewarm":
        return None
    each = training.lr_across_phases == "wsd_each_phase"
    return PhaseLr(
        warmup=each or index == 0,
        decay=each or index == phases - 1,
        decay_ratio=training.decay_ratio,
        shape=training.lr_scheduler,
    )
