"""The memory and time estimates (`phased_cpt.memory`, `phased_cpt.flops`) against measurements.

1. The issue's H100 table (issue 13: one H100 80GB, Qwen2.5 shapes with random bf16 weights, LoRA
   r=128/alpha 256/dropout 0.05 on all seven projections, non-reentrant checkpointing, SDPA,
   micro-batch 1, torch AdamW, a plain loop): estimate vs measured peak memory and tokens/s.
2. Real training steps on this CPU, measured storage by storage (`tests/memory_tracker.py`), for
   shapes, lengths and settings outside the table: the bytes one step adds on top of the weights
   and Adam states, against the estimate's activations + logits + gradients.
3. Predictions outside the table (no measurement here): larger models, longer rows, other GPUs,
   ZeRO-2/3 across 8 GPUs, offload.

    python benchmarks/memory_estimate.py            # all three (part 2 takes about a minute)
    python benchmarks/memory_estimate.py --no-cpu   # parts 1 and 3 only, instantly
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from phased_cpt.flops import Workload, estimate_seconds  # noqa: E402
from phased_cpt.gpus import gpu_spec  # noqa: E402
from phased_cpt.memory import GiB, estimate_memory  # noqa: E402
from tests.calibration import ALL, H100_TABLE, step_bytes, target, tiny_qwen2  # noqa: E402
from tests.calibration import qwen25 as shape  # noqa: E402
from tests.calibration import table_training as training  # noqa: E402


def h100_table() -> None:
    h100 = gpu_spec("h100")
    print(
        "| shape | max_tokens | Liger | peak GiB measured | estimated | error | tokens/s measured | estimated | error |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, tokens, liger, tokens_per_second, peak in H100_TABLE:
        memory = estimate_memory(target(shape(size), training(), tokens, liger=liger)).peak_bytes / GiB
        work = Workload(np.array([tokens]), 1, 1, tokens)
        speed = tokens / estimate_seconds(target(shape(size), training(), tokens, liger=liger), work, h100).seconds
        print(
            f"| {size} | {tokens:,} | {'yes' if liger else 'no'} | {peak:.2f} | {memory:.2f} | "
            f"{memory / peak - 1:+.1%} | {tokens_per_second:,} | {speed:,.0f} | {speed / tokens_per_second - 1:+.1%} |"
        )


def cpu_step_bytes(c: dict) -> tuple[int, object]:
    """(bytes one real training step adds on this CPU, the estimate) for one case."""
    import torch

    shape_keys = ("layers", "hidden", "intermediate", "vocab", "heads", "tied", "dropout", "targets", "embeddings")
    dtype = torch.bfloat16 if c["dtype"] == "bfloat16" else torch.float32
    model, model_shape, tiny = tiny_qwen2(**{k: c[k] for k in shape_keys}, dtype=dtype, r=16, dora=c["dora"])
    measured = step_bytes(model, c["tokens"], c["checkpointing"], c["accumulate"])
    settings = training(
        gradient_checkpointing=c["checkpointing"], gradient_accumulation_steps=c["accumulate"], lora=tiny.lora
    )
    estimate = estimate_memory(target(model_shape, settings, c["tokens"], dtype=c["dtype"], device="cpu"))
    return measured, estimate


def cpu_steps() -> None:
    cases = [
        dict(),
        dict(vocab=16000),
        dict(checkpointing=False),
        dict(tokens=1024),
        dict(dtype="float32"),
        dict(dtype="float32", checkpointing=False),
        dict(dropout=0.0),
        dict(targets=["q_proj", "v_proj"]),
        dict(accumulate=2),
        dict(layers=6, tokens=512),
        dict(hidden=256, intermediate=688, heads=8, tokens=512, vocab=4000),
        dict(tied=True, vocab=8000),
        dict(embeddings="full"),
        dict(embeddings="full", vocab=16000),
        dict(embeddings="full", tied=True, checkpointing=False),
        dict(dora=True),
        dict(dora=True, tokens=1024),
        dict(dora=True, checkpointing=False),
        dict(dora=True, hidden=256, intermediate=688, heads=8, tokens=512, vocab=4000),
    ]
    defaults = dict(
        hidden=128,
        intermediate=352,
        layers=2,
        heads=4,
        vocab=1000,
        tokens=256,
        checkpointing=True,
        dtype="bfloat16",
        dropout=0.05,
        targets=ALL,
        accumulate=1,
        tied=False,
        embeddings="frozen",
        dora=False,
    )
    print("| case | measured MB | estimated MB | error | peak at |")
    print("|---|---|---|---|---|")
    for case in cases:
        measured, estimate = cpu_step_bytes(defaults | case)
        estimated = estimate.activations_bytes + estimate.logits_bytes + estimate.gradients_bytes
        label = ", ".join(f"{k}={v}" for k, v in case.items()) or "defaults"
        print(
            f"| {label} | {measured / 1e6:.3f} | {estimated / 1e6:.3f} | {estimated / measured - 1:+.1%} | "
            f"{estimate.peak_at} |"
        )


def outside() -> None:
    rows = [
        ("32b", 32768, False, 3, 8, "none", 6, "h200"),
        ("32b", 32768, True, 3, 8, "none", 6, "h200"),
        ("32b", 32768, True, 3, 8, "optimizer", 6, "h200"),
        ("32b", 32768, True, 2, 8, "none", 6, "h200"),
        ("32b", 32768, True, 3, 8, "none", 6, "h100"),
        ("7b", 32768, True, 0, 1, "none", 1, "h100"),
        ("7b", 32768, False, 0, 1, "none", 1, "h100"),
        ("7b", 131072, True, 0, 1, "none", 1, "h100"),
        ("0.5b", 65536, True, 0, 1, "none", 1, "a100-40gb"),
    ]
    print(
        "| shape | tokens/row | Liger | ZeRO | GPUs | offload | GPU | needs GiB/GPU (peak allocated) | peak at | "
        "tokens/s per GPU | fits |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size, tokens, liger, zero, n, offload, accumulate, gpu_name in rows:
        gpu = gpu_spec(gpu_name)
        estimate = estimate_memory(
            target(
                shape(size),
                training(gradient_accumulation_steps=accumulate),
                tokens,
                liger=liger,
                zero_stage=zero,
                world_size=n,
                offload=offload,
            )
        )
        work = Workload(np.full(n, tokens), 1, 1, tokens, n)
        seconds = estimate_seconds(
            target(shape(size), training(), tokens, liger=liger, zero_stage=zero, world_size=n), work, gpu
        ).seconds
        fits = "yes" if estimate.gpu_bytes <= gpu.memory_gib * GiB else "no"
        print(
            f"| {size} | {tokens:,} | {'yes' if liger else 'no'} | {zero} | {n} | {offload} | {gpu.name} | "
            f"{estimate.gpu_bytes / GiB:.1f} ({estimate.peak_bytes / GiB:.1f}) | {estimate.peak_at} | "
            f"{tokens / seconds:,.0f} | {fits} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurements (part 2)")
    args = parser.parse_args()
    print("## 1. The issue's H100 table\n")
    h100_table()
    if not args.no_cpu:
        print("\n## 2. Real training steps on this CPU (bytes one step adds)\n")
        cpu_steps()
    print("\n## 3. Outside the table (predictions)\n")
    outside()
    return 0


if __name__ == "__main__":
    sys.exit(main())
