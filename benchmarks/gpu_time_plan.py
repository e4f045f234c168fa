"""The time plan of `gpu_check.py`: each case's seconds from the recorded H100 step times
(tests/calibration.py's H100_TABLE, issue 13) or, for rows it lacks, `flops.estimate_seconds`, plus
fixed costs; the sum behind each, shown in the table and in benchmarks/RESULTS.md."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"


@dataclass(frozen=True)
class Costs:
    """Seconds the plan assumes beyond training steps (estimates, not measurements: the first GPU
    run measures them: gpu_check.json records each case's planned and actual seconds)."""

    install: float
    """pip install of the wheels folder (--no-index, ~20 MB)."""
    process_start: float
    """A fresh Python importing torch, transformers, peft and phased-cpt (`phased-cpt train`)."""
    build_per_billion: float
    """Random init of a model on the device, per billion parameters."""
    save_per_billion: float
    """save_pretrained (safetensors, bf16) and a later from_pretrained, per billion parameters."""
    liger_compile: float
    """Triton's first compile of Liger's kernels in a process (cached on disk afterwards)."""
    checkpoint: float
    """One Trainer checkpoint of a small adapter with its optimizer state."""
    variant_setup: float
    """A throughput variant's PEFT wrapping, optimizer and (ours) Trainer set-up and teardown."""
    cpu_step: float = 0.0
    """Rehearsal only: one training step of the tiny model on a CPU."""


GPU_COSTS = Costs(
    install=20,
    process_start=15,
    build_per_billion=2,
    save_per_billion=4,
    liger_compile=25,
    checkpoint=2,
    variant_setup=5,
)
CPU_COSTS = Costs(
    install=0,
    process_start=12,
    build_per_billion=0,
    save_per_billion=0,
    liger_compile=0,
    checkpoint=0.3,
    variant_setup=3,
    cpu_step=0.5,
)
"""The rehearsal's, on the shared 2-core CPU box (load 3-8): seconds seen there, rounded up."""


@dataclass(frozen=True)
class Sizes:
    """The shapes and lengths of a mode: the GPU's real ones, or the rehearsal's tiny ones."""

    train_shape: str
    train_tokens: int
    train_steps: int
    """Optimizer steps of each of the two phases; phase 2 is killed after its checkpoint at step 4."""
    throughput_shape: str
    throughput_tokens: int
    corpus_shape: str
    corpus_tokens: int
    steps: int
    """Timed steps of each throughput variant (after one warm-up step); rows of corpus."""


GPU_SIZES = Sizes("0.5b", 2048, 6, "7b", 16384, "0.5b", 16384, 3)
REHEARSAL_SIZES = Sizes("tiny", 128, 4, "tiny", 128, "tiny", 128, 2)
THROUGHPUT_VARIANTS = ["plain", "liger", "ours"]
CORPUS_VARIANTS = ["hf-packed", "hf-packed-liger", "ours-packed"]
CASES = ("train", "throughput", "corpus")


@dataclass
class PlannedCase:
    name: str
    question: str
    seconds: float
    arithmetic: str
    """How `seconds` adds up, shown in the table and the JSON."""


def step_seconds(shape_name: str, tokens: int, liger: bool, costs: Costs) -> tuple[float, str]:
    """One training step of a full row: the recorded H100 tokens/s where the table has the row,
    else `flops.estimate_seconds` on an H100 with the table's settings; the rehearsal's CPU step on a CPU."""
    if costs.cpu_step:
        return costs.cpu_step, "CPU step"
    sys.path.insert(0, str(REPO))
    from tests.calibration import H100_TABLE, qwen25, table_training, target

    for shape, max_tokens, with_liger, tokens_per_second, _ in H100_TABLE:
        if (shape, max_tokens, with_liger) == (shape_name, tokens, liger):
            return tokens / tokens_per_second, f"recorded {tokens_per_second:,} tok/s"
    import numpy as np

    from phased_cpt.flops import Workload, estimate_seconds
    from phased_cpt.gpus import gpu_spec

    work = Workload(np.asarray([tokens]), 1.0, 1, tokens)
    as_measured = target(qwen25(shape_name), table_training(), tokens, liger=liger)  # its LoRA, checkpointing, AdamW
    return estimate_seconds(as_measured, work, gpu_spec("h100")).seconds, "flops.py estimate"


def billions(shape_name: str) -> float:
    from phased_cpt.model_shape import shape_from_config

    sys.path.insert(0, str(BENCHMARKS))
    from gpu_workloads import SHAPES

    return shape_from_config(SHAPES[shape_name]).parameters / 1e9


def plan_cases(sizes: Sizes, costs: Costs, liger: bool) -> list[PlannedCase]:
    """Each case's planned seconds and the sum behind them (the arithmetic RESULTS.md shows)."""
    plans = []
    # 1. train: model built and saved once; two processes (killed, resumed), each loading it;
    # 6 + 4 + 2 steps in all (phase 2's steps 3-4 are trained twice: killed before checkpoint 4
    # was complete, resumed from checkpoint 2); checkpoints every 2 steps
    step, source = step_seconds(sizes.train_shape, 4096 if sizes.train_tokens <= 4096 else 16384, liger, costs)
    if not costs.cpu_step:
        source += f", the 4K row's time bounds the {sizes.train_tokens}-token row's"
    size = billions(sizes.train_shape)
    steps = 2 * sizes.train_steps + 2
    parts = {
        "model build + save": size * (costs.build_per_billion + costs.save_per_billion),
        "2 processes": 2 * (costs.process_start + size * costs.save_per_billion),
        "Liger compile x2": 2 * costs.liger_compile if liger else 0.0,
        f"{steps} steps x {step:.2f} s ({source})": steps * step,
        f"7 checkpoints x {costs.checkpoint:g} s": 7 * costs.checkpoint,
    }
    plans.append(PlannedCase("train", "1", sum(parts.values()), describe(parts)))
    # 2+3. full rows: each variant builds the model and runs 1 + steps steps
    parts = {}
    size = billions(sizes.throughput_shape)
    for variant in THROUGHPUT_VARIANTS:
        with_liger = variant != "plain" and liger
        step, source = step_seconds(sizes.throughput_shape, sizes.throughput_tokens, with_liger, costs)
        parts[f"{variant}: build + set-up + {1 + sizes.steps} x {step:.2f} s ({source})"] = (
            size * costs.build_per_billion + costs.variant_setup + (1 + sizes.steps) * step
        )
    parts["Liger compile"] = costs.liger_compile if liger else 0.0
    plans.append(PlannedCase("throughput", "2, 3", sum(parts.values()), describe(parts)))
    # 4. corpus: `steps` rows of corpus + one warm-up row, per variant
    parts = {}
    size = billions(sizes.corpus_shape)
    for variant in CORPUS_VARIANTS:
        with_liger = variant.endswith("liger") or (variant.startswith("ours") and liger)
        if variant.endswith("liger") and not liger:
            continue
        step, source = step_seconds(sizes.corpus_shape, sizes.corpus_tokens, with_liger, costs)
        rows = sizes.steps + 2  # in-order packing leaves about one row more than best-fit decreasing
        parts[f"{variant}: build + set-up + {rows} x {step:.2f} s ({source})"] = (
            size * costs.build_per_billion + costs.variant_setup + rows * step
        )
    plans.append(PlannedCase("corpus", "4, 3", sum(parts.values()), describe(parts)))
    return plans


def describe(parts: dict[str, float]) -> str:
    shown = " + ".join(
        f"{name} {seconds:.0f} s" if seconds >= 1 else f"{name} {seconds:.1f} s"
        for name, seconds in parts.items()
        if seconds
    )
    return f"{shown} = {sum(parts.values()):.0f} s"
