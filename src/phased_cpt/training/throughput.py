"""How fast training runs and which speed path is active: MFU, and the resolution of
`training.performance` (Liger kernels, fused AdamW, checkpointing) on this machine.

Useful FLOPs per token come from `phased_cpt.flops` (the formula `plan` also uses for its time
estimate). MFU = useful FLOP/s per device / the device's peak, and is shown only against a
known peak: the dense bf16/fp16 spec of a GPU in `phased_cpt.gpus` (an H100 SXM is 989 TFLOP/s,
of which ~800 are reached by a plain bf16 matmul, so ~0.8 is the practical ceiling). On a CPU,
an unknown GPU or in float32 there is no such peak, and no MFU is logged: a number measured
against some matmul would not be a peak, and reads as more than 100%.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from phased_cpt.config import ContextConfig, PerformanceConfig, RunConfig, TrainingConfig
from phased_cpt.config.schema import liger_installed
from phased_cpt.flops import attention_flops, flops_per_token, step_flops
from phased_cpt.gpus import gpu_spec
from phased_cpt.memory import CheckpointingChoice, Parallelism, describe_checkpointing_setting, estimate_run
from phased_cpt.model_shape import ModelShape, base_parameters
from phased_cpt.plans.kernels import Choice, resolve_liger
from phased_cpt.plans.target import target_gpus

logger = logging.getLogger(__name__)

__all__ = [
    "ModelShape",
    "Peak",
    "Throughput",
    "attention_flops",
    "base_parameters",
    "chunk_lengths",
    "device_peak",
    "flops_per_token",
    "imports_frozen",
    "liger_installed",
    "phase_throughput",
    "spec_peak_tflops",
    "step_flops",
]


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """Within: the objects that exist on entry (in a fresh `train` process, what the imports of
    torch, transformers and peft made) are left out of garbage collection (`gc.freeze`), so the
    full collections the Trainer runs after each phase (accelerate's `free_memory`) scan only
    what training made: ~1 s each on the loaded 2-core CPU box. On exit they are collectable
    again (`gc.unfreeze`): a process that trains twice (tests) keeps nothing for good."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def chunk_lengths(dataset: Any) -> np.ndarray | None:
    """Lengths of the attended chunks of a `RowDataset` (attention never crosses a chunk; a row
    without packing is one chunk); None for a dataset that does not describe its chunks."""
    from phased_cpt.data.chunking import LENGTH

    chunks = getattr(dataset, "chunks", None)
    if chunks is None:
        return None
    return np.asarray(chunks)[:, LENGTH] if len(chunks) else np.zeros(0)


# --- the device's peak -----------------------------------------------------------------------


@dataclass(frozen=True)
class Peak:
    flops_per_second: float
    source: str
    """e.g. "spec: NVIDIA H100 80GB HBM3 dense bf16"."""


def spec_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 TFLOP/s of a known GPU by its name, else None."""
    spec = gpu_spec(device_name)
    return spec.peak_tflops if spec else None


def device_peak(device: torch.device, dtype: torch.dtype) -> Peak | None:
    """The spec peak of a known GPU computing in bf16/fp16; None anywhere else (CPU, an unknown
    GPU, float32), where MFU is not shown."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    tflops = spec_peak_tflops(name)
    if tflops is None:
        return None
    return Peak(tflops * 1e12, f"spec: {name} dense {str(dtype).removeprefix('torch.')}")


def compute_dtype(args: Any, model: Any) -> torch.dtype:
    """The dtype the matmuls run in: the autocast dtype, else the embedding weights' dtype."""
    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False):
        return torch.float16
    return model.get_input_embeddings().weight.dtype


@dataclass(frozen=True)
class Throughput:
    """Turns tokens per second per device into useful FLOP/s, and MFU where the peak is known."""

    flops_per_token: float
    peak: Peak | None

    def values(self, tokens_per_second_per_device: float) -> dict[str, float]:
        flops = tokens_per_second_per_device * self.flops_per_token
        values = {"model_tflops_per_second": flops / 1e12}
        if self.peak is not None:
            values["mfu"] = flops / self.peak.flops_per_second
        return values


def phase_throughput(model: Any, dataset: Any, args: Any) -> Throughput:
    """The throughput model of a phase: this model's shape, the phase's chunk lengths, and the
    peak of the device the Trainer trains on."""
    shape = ModelShape.of(model)
    lengths = chunk_lengths(dataset)
    per_token = flops_per_token(shape, lengths) if lengths is not None else 4.0 * shape.parameters
    return Throughput(per_token, device_peak(args.device, compute_dtype(args, model)))


# --- which speed path is active --------------------------------------------------------------


def resolve_optimizer(name: str, device_type: str | None = None) -> Choice:
    """The Trainer's `optim`: fused AdamW where torch has it for the device, else adamw_torch."""
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "adamw_torch_fused" and device_type not in fused_adamw_devices():
        return Choice("adamw_torch", f"no fused AdamW on {device_type}")
    return Choice(name)


# --- private library internals, behind version checks ----------------------------------------
# Neither torch nor liger-kernel answers these two questions in a public API. Their private
# names are used only on the versions where they were checked; elsewhere a stated fallback.

TORCH_CHECKED = ("2.4", "2.14")
"""[first, last) torch versions that have `torch.utils._foreach_utils._get_fused_kernels_supported_devices`."""
LIGER_CHECKED = ("0.5", "0.9")
"""[first, last) liger-kernel versions that have `liger_kernel.transformers.monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN`."""


def version_within(package: str, bounds: tuple[str, str]) -> bool:
    """Whether the installed `package` is in [bounds[0], bounds[1]) (local suffixes like +cu124 ignored)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        installed = Version(version(package)).release
    except PackageNotFoundError:
        return False
    return Version(bounds[0]).release <= installed < Version(bounds[1]).release


def fused_adamw_devices() -> tuple[str, ...]:
    """Device types torch's fused AdamW runs on; only CUDA on a torch version not checked."""
    if not version_within("torch", TORCH_CHECKED):
        return ("cuda",)
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return tuple(_get_fused_kernels_supported_devices())


def liger_supports(model_type: str) -> bool:
    """Whether liger-kernel has kernels for this architecture (it patches nothing otherwise);
    assumed yes on a liger-kernel version not checked (liger then warns itself)."""
    if not version_within("liger-kernel", LIGER_CHECKED):
        return True
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return model_type in MODEL_TYPE_TO_APPLY_LIGER_FN


def checkpointing_kwargs(training: TrainingConfig, on_cuda: bool | None = None) -> dict[str, Any] | None:
    """The Trainer's `activation_checkpointing_kwargs`; None without checkpointing. Offloading
    needs pinned memory, which only exists with an accelerator (on a CPU the activations are in
    host memory already), so it is left out there. `auto` is resolved first (`resolve_checkpointing`)."""
    if training.gradient_checkpointing == "auto":
        raise ValueError("training.gradient_checkpointing: auto is resolved by resolve_checkpointing first")
    if not training.gradient_checkpointing:
        return None
    on_cuda = torch.cuda.is_available() if on_cuda is None else on_cuda
    performance: PerformanceConfig = training.performance
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if performance.checkpoint_every_n_layers != 1:
        kwargs["every_n_layers"] = performance.checkpoint_every_n_layers
    if performance.checkpoint_offload and on_cuda:
        kwargs["offload"] = True
    return kwargs


def describe_checkpointing(training: TrainingConfig, on_cuda: bool | None = None) -> str:
    on_cuda = torch.cuda.is_available() if on_cuda is None else on_cuda
    return describe_checkpointing_setting(training, offload_possible=on_cuda)


def resolve_checkpointing(model: Any, cfg: RunConfig, deepspeed: Any, max_tokens: int) -> CheckpointingChoice:
    """`training.gradient_checkpointing` for this run on this machine: `auto` becomes the least
    recomputation whose estimated peak (`memory.estimate_run`, this model's shape, rows of
    `max_tokens`, Liger and DeepSpeed as they will run) fits this GPU, or on a CPU this machine's memory."""
    from phased_cpt.distributed import world_size

    gpu = target_gpus(cfg.training.performance.liger_kernel, here="train")[0]
    gpu = replace(gpu, liger=gpu.liger and liger_supports(model.config.get_text_config().model_type))
    parallel = Parallelism(deepspeed.zero_stage, world_size(), cfg.deepspeed_offload) if deepspeed else None
    return estimate_run(
        cfg, ModelShape.of(model), gpu, parallel or Parallelism(world_size=world_size()), max_tokens
    ).checkpointing


def speed_path(
    model: Any,
    training: TrainingConfig,
    context: ContextConfig,
    deepspeed: Any = None,
    checkpointing: CheckpointingChoice | None = None,
) -> str:
    """The one line logged at training start: which speed path is active and why. `deepspeed`:
    the run's `DeepSpeedPlan` or None; an `optimizer` section in its config replaces ours.
    `checkpointing`: how `training.gradient_checkpointing` was resolved (its reason is shown)."""
    performance = training.performance
    liger = resolve_liger(performance.liger_kernel)
    model_type = model.config.get_text_config().model_type
    if liger.value and not liger_supports(model_type):
        liger = Choice(False, f"no Liger kernels for model type {model_type}")
    optimizer = resolve_optimizer(performance.optimizer)
    if deepspeed is not None and "optimizer" in deepspeed.config:
        optimizer = Choice(
            f"deepspeed {deepspeed.config['optimizer'].get('type', '')}".rstrip(), "from the DeepSpeed config"
        )
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    recompute = Choice(describe_checkpointing(training), checkpointing.reason if checkpointing else "")
    return (
        f"speed path: liger={liger.describe('on' if liger.value else 'off')}, attention={attention}, "
        f"optimizer={optimizer.describe(optimizer.value)}, checkpointing={recompute.describe(recompute.value)}, "
        f"compile={'on' if performance.torch_compile else 'off'}, "
        f"packing={'on' if context.sample_packing else 'off'}"
    )
