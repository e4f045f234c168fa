"""The GPU a memory estimate is for (`memory.TargetGpu`), chosen one way for every caller:
`plan`, `doctor`, `deepspeed: auto` and training's `gradient_checkpointing: auto`.

- GPUs the user names (`plan --gpu-model`, `doctor --gpu-memory`, `plan_deepspeed(gpu_bytes=)`):
  their memory, bf16, and Liger as the config asks; `liger_kernel: auto` cannot know whether
  liger-kernel will be installed there, so both are estimated (without it first: what a verdict
  uses).
- Otherwise the GPU here: its memory (`"total"`, or for `doctor` the least `"free"` of its GPUs),
  its bf16 support, and Liger as `resolve_liger` decides on this machine.
- No GPU here: for `doctor` a GPU of unknown memory (bf16, Liger as the config asks); for training
  (`"train"`) this machine's CPU and memory, in float32 as the CPU trains.
"""

from __future__ import annotations

from typing import Literal

from phased_cpt.memory import TargetGpu, host_memory_bytes
from phased_cpt.plans.kernels import resolve_liger

HereMemory = Literal["total", "free", "train"]


def target_gpus(
    liger_kernel: str | bool, planned_bytes: int | None = None, here: HereMemory = "total"
) -> list[TargetGpu]:
    """The device(s) to estimate for, one per Liger setting the run may train with; the first is
    the one a verdict (fits / does not fit, the ZeRO stage) uses. `liger_kernel`: the config's
    `training.performance.liger_kernel`."""
    import torch

    if planned_bytes is None and torch.cuda.is_available():
        if here == "free":
            memory = min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        else:
            memory = torch.cuda.get_device_properties(0).total_memory
        return [TargetGpu(memory, torch.cuda.is_bf16_supported(), resolve_liger(liger_kernel).value)]
    if planned_bytes is None and here == "train":
        return [TargetGpu(host_memory_bytes(), bf16=False, liger=resolve_liger(liger_kernel).value, cuda=False)]
    settings = [False, True] if liger_kernel == "auto" else [liger_kernel is True]
    return [TargetGpu(planned_bytes, bf16=True, liger=liger) for liger in settings]
