"""Graceful stop on SIGTERM / SIGINT: finish the current optimizer step, save a checkpoint,
stop, and let the CLI print the resume command (exit 143 / 130).

Preemptible clusters send SIGTERM some time before SIGKILL. The handler only sets a flag; the
callback acts at the next step boundary. Under several processes the flag is all-reduced each
step so every rank stops at the same step (a save is a collective under DeepSpeed).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phased_cpt import distributed, interrupt


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum


@contextmanager
def stop_on_signals():
    """Install the SIGTERM/SIGINT handlers for the duration of training; restore them after.
    A Ctrl-C that a library swallowed while the run was loading stops it here, before training."""
    interrupt.take_over()
    request = StopRequest()
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class GracefulStopCallback(TrainerCallback):
    def __init__(self, request: StopRequest) -> None:
        self.request = request

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        requested = bool(self.request)
        if distributed.is_distributed():
            flag = distributed.all_reduce(torch.tensor([self.request.signum or 0], device=args.device), "max")
            signum = int(flag.item())  # one device-to-host copy per step
            if signum and not requested:
                self.request.signum = signum
            requested = bool(signum)
        if requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class TrainingInterrupted(Exception):
    """Raised by the recipe after a graceful stop; the CLI turns it into the resume message."""

    def __init__(self, run_path, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.run_path = run_path
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
