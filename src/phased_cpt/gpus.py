"""What phased-cpt knows of GPU models: spec peak, memory, bandwidths, and the utilisation LoRA
CPT reaches on them. MFU (`training/throughput.py`) divides by the peak; `plan` and `doctor`
compare the memory estimate with the memory and turn FLOPs into time with the utilisation.

Sources: vendor spec sheets (dense bf16 tensor TFLOP/s without sparsity, HBM bandwidth, NVLink
bandwidth per direction); memory is what `torch.cuda.get_device_properties().total_memory`
reports, a little under the marketed size. `utilisation` is the MFU (useful FLOPs over the spec
peak, as logged during training) of the matrix work of a LoRA step with gradient checkpointing;
it was measured on an H100 80GB SXM only (`calibrated`), and the other GPUs assume the same
fraction of their peak until someone measures them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

H100_UTILISATION = 0.24
"""Chosen from the issue's H100 rows (plain loop and Liger, Qwen2.5 0.5B and 7B shapes, 4K and
16K tokens): together with `flops.OPERATOR_SECONDS` it puts every row within 16% of the
measured tokens/s (tests/unit/test_memory.py holds the table)."""


@dataclass(frozen=True)
class GpuSpec:
    name: str
    aliases: tuple[str, ...]
    """Lowercase names a user may give (`--gpu-model h200`) and fragments of the CUDA device name."""
    peak_tflops: float
    """Dense bf16/fp16 tensor-core TFLOP/s."""
    memory_gib: float
    hbm_tb_per_second: float
    link_gb_per_second: float
    """GPU-to-GPU bandwidth inside a node, per direction (NVLink, or PCIe)."""
    utilisation: float = H100_UTILISATION
    calibrated: bool = False


# More specific entries first: the first match wins.
GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H100 PCIe 80GB", ("h100 pcie", "h100-pcie"), 756.0, 79.2, 2.0, 32.0),
    GpuSpec("H100 NVL 94GB", ("h100 nvl", "h100-nvl"), 835.0, 93.1, 3.9, 300.0),
    GpuSpec("H100 SXM 80GB", ("h100",), 989.0, 79.2, 3.35, 450.0, calibrated=True),
    GpuSpec("H200 141GB", ("h200", "gh200"), 989.0, 139.8, 4.8, 450.0),
    GpuSpec("H800 80GB", ("h800",), 989.0, 79.2, 3.35, 200.0),
    GpuSpec("B200 180GB", ("b200",), 2250.0, 178.4, 8.0, 900.0),
    GpuSpec("A100 40GB", ("a100-40gb", "a100 40gb", "a100-sxm4-40gb", "a100-pcie-40gb"), 312.0, 39.4, 1.56, 300.0),
    GpuSpec("A100 80GB", ("a100",), 312.0, 79.2, 2.04, 300.0),
    GpuSpec("A800 80GB", ("a800",), 312.0, 79.2, 2.04, 200.0),
    GpuSpec("L40S 48GB", ("l40s",), 362.0, 44.4, 0.864, 32.0),
    GpuSpec("L40 48GB", ("l40",), 181.0, 44.4, 0.864, 32.0),
    GpuSpec("L4 24GB", ("l4",), 121.0, 22.0, 0.3, 32.0),
    GpuSpec("A10G 24GB", ("a10g",), 70.0, 22.0, 0.6, 32.0),
    GpuSpec("A10 24GB", ("a10",), 125.0, 22.0, 0.6, 32.0),
)
INTER_NODE_GB_PER_SECOND = 50.0
"""Between nodes, per GPU: one 400 Gb/s InfiniBand or RoCE link per GPU (an assumption: say
otherwise when your cluster differs)."""


def gpu_spec(name: str) -> GpuSpec | None:
    """The spec of a GPU by its CUDA device name ('NVIDIA H100 80GB HBM3') or a short name a
    user types ('h200', 'A100-40GB'); None for an unknown GPU."""
    text = " " + re.sub(r"\s+", " ", name.lower()) + " "
    for spec in GPUS:
        for alias in spec.aliases:
            # whole words only: 'l4' must not match 'l40s', 'a10' must not match 'a100'
            if re.search(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", text):
                return spec
    return None


def gpu_by_name(name: str) -> GpuSpec | None:
    """The spec of a GPU a user names (`--gpu-model`): exactly one of its aliases or its full
    name, ignoring case and runs of spaces, '-' and '_' ('h200', 'A100-40GB', 'H100 SXM 80GB');
    None otherwise. Unlike `gpu_spec`, no fragment of a longer text matches."""
    key = _name_key(name)
    for spec in GPUS:
        if key in {_name_key(alias) for alias in (spec.name, *spec.aliases)}:
            return spec
    return None


def _name_key(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


def known_gpu_names() -> str:
    return ", ".join(spec.aliases[0].upper() for spec in GPUS)
