"""Which kernels a run trains with, decided before the model exists: Liger on or off, and why
(`Choice`: a value and the reason shown for it). Training (`training/throughput.py`), `doctor`
and the memory estimate's target GPU (`plans/target.py`) ask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from phased_cpt.config.schema import liger_installed
from phased_cpt.errors import UserError


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str = ""

    def describe(self, shown: str) -> str:
        return f"{shown} ({self.reason})" if self.reason else shown


def resolve_liger(setting: str | bool, on_cuda: bool | None = None, installed: bool | None = None) -> Choice:
    """Whether the Trainer applies Liger kernels. `true` where they cannot run is a UserError."""
    on_cuda = torch.cuda.is_available() if on_cuda is None else on_cuda
    installed = liger_installed() if installed is None else installed
    if setting is False:
        return Choice(False, "training.performance.liger_kernel: false")
    if not installed:
        if setting is True:
            raise UserError(
                "training.performance.liger_kernel: true needs liger-kernel, which is not installed; "
                "pip install 'phased-cpt[gpu]' or set it to auto"
            )
        return Choice(False, "not installed")
    if not on_cuda:
        if setting is True:
            raise UserError(
                "training.performance.liger_kernel: true needs a CUDA GPU (Liger kernels are Triton "
                "GPU kernels); set it to auto or false to train on this machine"
            )
        return Choice(False, "no CUDA GPU")
    return Choice(True)
