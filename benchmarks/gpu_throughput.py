"""GPU training speed and memory of LoRA CPT, every variant measured in one process.

Variants (random-init weights of real Qwen2.5 shapes, written out in `SHAPES`; nothing from the hub):
  plain            HF+PEFT, a minimal loop: bf16 weights + bf16 autocast, full activation
                   checkpointing, SDPA, micro-batch 1 (one full row), torch AdamW (foreach);
                   LoRA r=128, alpha=256, dropout 0.05 on all 7 projections
  liger            plain + Liger kernels (liger-kernel's public `apply_liger_kernel_to_<arch>(model=)`)
  ours             phased-cpt: `attach_lora`, the HF Trainer with `training_arguments` from a
                   `TrainingConfig` (training.performance defaults: Liger auto, fused AdamW)
  ours-noliger, ours-dropout0, ours-every2, ours-offload, ours-compile
                   ours with one option changed (Liger off, LoRA dropout 0, checkpoint every 2nd
                   layer, checkpoint offload to CPU, torch.compile), to see what each pays
  hf-packed(-liger)  a mixed-length corpus (median ~150 tokens, seeded log-normal lengths):
                   greedy in-order packing + DataCollatorWithFlattening (padding-free), minimal loop
  ours-packed      the same corpus: `pack_best_fit_decreasing`, `RowDataset`, `PackedCollator`, Trainer

Full-row variants report the median of `--steps` steps after `--warmup`; corpus variants train
through the whole corpus (after one warm-up row) and report totals, since the two packings make
different numbers of rows. "target tok/s" counts labels that are not -100 (useful targets).
MFU uses `phased_cpt.training.throughput` (useful FLOPs, spec peak of known GPUs; nan on a CPU). Ratios are
against the first variant of the case that ran (its name is printed). Variants whose packages are
missing print "skipped: ...", an OOM prints "out of memory" and the run goes on.

On CPU, in seconds (CI runs this through tests/e2e/test_gpu_benchmark_tiny.py):
    python benchmarks/gpu_throughput.py --tiny

The first GPU run, in 8 minutes with everything it needs: `benchmarks/gpu_check.py` (docs/gpu-check.md;
`make gpu-wheels` makes the wheels folder). The whole suite, by hand:

On one H100 80GB. The GPU machines have torch, transformers, peft, accelerate and triton, but not
liger-kernel, flash-attn or deepspeed, and no network, so bring wheels with the repository
(phased-cpt itself needs only pydantic beyond those; check with `python -c "import pydantic"`):
    # on a machine with network, for the GPU machine's Python (here 3.11) and platform; liger-kernel
    # is pure Python and its triton comes with torch, hence --no-deps
    pip download -d wheels/ --no-deps liger-kernel==0.8.5
    pip download -d wheels/ --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
        pydantic==2.14.4     # only if the GPU machine lacks it (pulls pydantic-core, annotated-types, ...)
    # flash-attn has no PyPI wheel for every torch/CUDA pair: use a prebuilt wheel matching the GPU
    # machine's torch, CUDA and Python (github.com/Dao-AILab/flash-attention/releases), or skip it (SDPA)
    # then, on the GPU machine, from the repository root (no install of phased-cpt needed):
    pip install --no-index --no-deps wheels/*.whl && export PYTHONPATH=$PWD/src
    python benchmarks/gpu_throughput.py --suite h100 --json h100.json    # every H100 case (estimate: 30-45 min)
    python benchmarks/gpu_throughput.py --suite h100 --case 7b-16k       # one case at a time
    # where one command may run at most 10 minutes (estimates, not measured): 7b-16k builds the
    # 7B model 7 times and compiles once (~8 min); 7b-128k steps take ~1 min, so add --steps 2
    python benchmarks/gpu_throughput.py --suite h200 --json h200.json    # the 32B case, on an H200
    python benchmarks/gpu_throughput.py --shape 7b --tokens 16384 --variants plain,ours --profile ours
Cases of a suite: `--list`. `--profile VARIANT` prints the top kernels of one timed step of that
variant (torch.profiler): the breakdown of where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from gpu_workloads import (  # noqa: E402
    SHAPES,
    attended_lengths_of,
    build_base,
    corpus_documents,
    corpus_lengths,
    device_and_dtype,
    full_rows,
    hf_packed_batches,
    lora_settings,
    ours_packed_dataset,
    stack_rows,
)
from peft import LoraConfig as PeftLoraConfig  # noqa: E402
from peft import get_peft_model  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.models.qwen2 import modeling_qwen2  # noqa: E402

from phased_cpt.config import LoraConfig, PerformanceConfig, TrainingConfig  # noqa: E402
from phased_cpt.data.chunking import IGNORE_INDEX  # noqa: E402
from phased_cpt.data.collate import PackedCollator  # noqa: E402
from phased_cpt.modeling import attach_lora, resolve_attn_implementation  # noqa: E402
from phased_cpt.training.phase import PhaseTrainer, training_arguments  # noqa: E402
from phased_cpt.training.throughput import ModelShape, device_peak, liger_installed, step_flops  # noqa: E402

FULL_ROW = ["plain", "liger", "ours", "ours-noliger", "ours-dropout0", "ours-every2", "ours-offload", "ours-compile"]
CORPUS = ["hf-packed-liger", "hf-packed", "ours-packed"]

# case name -> (shape, tokens per row, variants); "corpus" variants train on the mixed-length corpus
SUITES: dict[str, dict[str, tuple[str, int, list[str]]]] = {
    "h100": {
        "0.5b-4k": ("0.5b", 4096, ["plain", "liger", "ours"]),
        "0.5b-16k": ("0.5b", 16384, ["plain", "liger", "ours"]),
        "0.5b-corpus-16k": ("0.5b", 16384, ["hf-packed-liger", "hf-packed", "ours-packed", "ours"]),
        "7b-4k": ("7b", 4096, ["plain", "liger", "ours"]),
        "7b-16k": (
            "7b",
            16384,
            ["plain", "liger", "ours", "ours-noliger", "ours-dropout0", "ours-every2", "ours-compile"],
        ),
        "7b-32k": ("7b", 32768, ["plain", "liger", "ours", "ours-offload"]),
        "7b-128k": ("7b", 131072, ["ours", "ours-offload"]),
    },
    "h200": {"32b-32k": ("32b", 32768, ["liger", "ours", "ours-offload", "ours-dropout0"])},
    "tiny": {
        "tiny-128": ("tiny", 128, ["plain", "liger", "ours", "ours-dropout0", "ours-every2", "ours-offload"]),
        "tiny-corpus-128": ("tiny", 128, ["hf-packed-liger", "hf-packed", "ours-packed", "ours"]),
    },
}


@dataclass
class Result:
    case: str
    variant: str
    tokens_per_row: int
    status: str = "ok"
    tokens_per_second: float = math.nan
    target_tokens_per_second: float = math.nan
    step_seconds: float = math.nan
    peak_gib: float = math.nan
    mfu: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


# --- timing ----------------------------------------------------------------------------------


class StepTimer:
    """Wall time of each step, synchronised with the device; optionally profiles one step."""

    def __init__(self, device: torch.device, profile_step: int | None = None) -> None:
        self.device = device
        self.seconds: list[float] = []
        self.profile_step = profile_step
        self.profiler = None
        self._started = 0.0

    def begin(self) -> None:
        if self.profile_step == len(self.seconds):
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
        sync(self.device)  # note: a CPU-GPU sync point, so each step is timed to completion
        self._started = time.perf_counter()

    def end(self) -> None:
        sync(self.device)
        self.seconds.append(time.perf_counter() - self._started)
        if self.profiler is not None and self.profile_step == len(self.seconds) - 1:
            self.profiler.stop()


class TimerCallback(TrainerCallback):
    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer

    def on_step_begin(self, args, state, control, **kwargs):
        self.timer.begin()

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.end()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minimal_loop(model, batches, device, dtype, timer: StepTimer) -> None:
    """plain HF+PEFT: forward, backward, AdamW step; bf16 autocast where the weights are bf16."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        timer.begin()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.end()


def trainer_loop(model, dataset, collator, training: TrainingConfig, timer: StepTimer, work: Path) -> None:
    """phased-cpt's path: PhaseTrainer with `training_arguments` (what `phased-cpt train` builds)."""
    args = training_arguments(training, epochs=1, phase_dir=work)
    trainer = PhaseTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[TimerCallback(timer)],
        max_nonfinite_losses=10**9,
    )
    trainer.train()


def apply_liger(model) -> None:
    """liger-kernel's public per-architecture entry point, on this instance."""
    import liger_kernel.transformers as liger

    getattr(liger, f"apply_liger_kernel_to_{model.config.model_type}")(model=model)


def skip_reason(variant: str, device: torch.device) -> str | None:
    needs_liger = variant in ("liger", "hf-packed-liger")
    if needs_liger and not liger_installed():
        return "skipped: liger-kernel not installed"
    if needs_liger and device.type != "cuda":
        return "skipped: liger needs a CUDA GPU"
    if variant == "ours-compile" and device.type != "cuda":
        return "skipped: torch.compile measured on GPU only"
    return None


@contextlib.contextmanager
def restored(module):
    """Undo what Liger patches in a transformers modeling module (functions, classes, and the
    methods of its classes), so a variant measured after a Liger variant runs without it."""
    saved = dict(vars(module))
    classes = {c: dict(vars(c)) for c in saved.values() if isinstance(c, type) and c.__module__ == module.__name__}
    try:
        yield
    finally:
        for name, value in saved.items():
            if vars(module).get(name) is not value:
                setattr(module, name, value)
        for cls, attributes in classes.items():
            for name in set(vars(cls)) - set(attributes):
                delattr(cls, name)
            for name, value in attributes.items():
                if vars(cls).get(name) is not value:
                    setattr(cls, name, value)


def uses_liger(variant: str, device: torch.device) -> bool:
    """Liger patches module-level functions (RoPE) for good, so these variants run last."""
    if variant in ("liger", "hf-packed-liger"):
        return True
    return variant.startswith("ours") and variant != "ours-noliger" and liger_installed() and device.type == "cuda"


# --- one variant -----------------------------------------------------------------------------


def run_variant(
    case: str, shape: str, tokens: int, variant: str, steps: int, warmup: int, profile: str | None, work: Path
) -> Result:
    device, dtype = device_and_dtype()
    result = Result(case, variant, tokens)
    reason = skip_reason(variant, device)
    if reason:
        result.status = reason
        return result
    timer = StepTimer(device, profile_step=warmup if profile == variant else None)
    vocab = SHAPES[shape]["vocab_size"]
    # the anchors (plain, liger) use SDPA; HF packing and phased-cpt take flash-attn 2 when installed
    attn = "sdpa" if variant in ("plain", "liger") else resolve_attn_implementation("auto")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = None
    try:
        model = build_base(shape, attn, device, dtype)
        model_shape = ModelShape.of(model)
        dropout = 0.0 if variant == "ours-dropout0" else None
        lora = lora_settings(shape, dropout)
        if variant in CORPUS:
            documents = corpus_documents(corpus_lengths(steps * tokens, tokens), vocab)
            warm = full_rows(1, tokens, vocab)
        if variant in ("plain", "liger", "hf-packed", "hf-packed-liger"):
            if variant.endswith("liger"):
                apply_liger(model)
            model = get_peft_model(
                model,
                PeftLoraConfig(
                    r=lora["r"],
                    lora_alpha=lora["alpha"],
                    lora_dropout=lora["dropout"],
                    bias="none",
                    target_modules=LoraConfig().target_modules,
                    task_type="CAUSAL_LM",
                ),
            )
            if variant in CORPUS:
                batches = [stack_rows(warm)] + hf_packed_batches(documents, tokens)
            else:
                batches = [stack_rows([row]) for row in full_rows(warmup + steps, tokens, vocab)]
            minimal_loop(model, batches, device, dtype, timer)
            counted = batches[1 if variant in CORPUS else warmup :]
            attended_lists = [attended_lengths_of(b) for b in counted]
            targets = [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in counted]
        else:
            model = attach_lora(model, LoraConfig(**lora))
            performance = PerformanceConfig(
                liger_kernel=False if variant == "ours-noliger" else "auto",
                checkpoint_every_n_layers=2 if variant == "ours-every2" else 1,
                checkpoint_offload=variant == "ours-offload",
                torch_compile=variant == "ours-compile",
            )
            if variant in CORPUS:
                dataset = ours_packed_dataset(documents, tokens)
                rows = [dict(warm[0], position_ids=list(range(tokens)))] + [dataset[i] for i in range(len(dataset))]
                collator = PackedCollator()
                counted = [collator([row]) for row in rows[1:]]
            else:
                rows = full_rows(warmup + steps, tokens, vocab)
                collator = stack_rows
                counted = [stack_rows([row]) for row in rows[warmup:]]
            training = TrainingConfig(
                micro_batch_size=1,
                gradient_accumulation_steps=1,
                learning_rate=1e-5,
                warmup_ratio=0.0,
                logging_steps=10**6,
                save_steps=10**6,
                gradient_checkpointing=True,
                performance=performance,
                max_steps=len(rows),
            )
            trainer_loop(model, rows, collator, training, timer, work / variant)
            attended_lists = [attended_lengths_of(b) for b in counted]
            targets = [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in counted]
        measure(
            result,
            timer,
            warmup if variant not in CORPUS else 1,
            attended_lists,
            targets,
            model_shape,
            device,
            dtype,
            corpus=variant in CORPUS,
        )
        if profile == variant and timer.profiler is not None:
            sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
            print(f"\nprofile of one step of {case}/{variant}:", file=sys.stderr)
            print(timer.profiler.key_averages().table(sort_by=sort, row_limit=20), file=sys.stderr)
    except torch.OutOfMemoryError:
        result.status = "out of memory"
    except Exception as err:  # one broken variant (e.g. torch.compile) must not end the whole run
        result.status = f"failed: {type(err).__name__}: {err}".replace("|", "/").replace("\n", " ")[:160]
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            result.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.empty_cache()
    return result


def measure(
    result: Result,
    timer: StepTimer,
    skip: int,
    attended_lists: list[list[int]],
    targets: list[int],
    shape: ModelShape,
    device: torch.device,
    dtype: torch.dtype,
    corpus: bool,
) -> None:
    seconds = timer.seconds[skip:]
    if len(seconds) != len(attended_lists):
        raise RuntimeError(f"timed {len(seconds)} steps for {len(attended_lists)} batches")
    tokens = [sum(s) for s in attended_lists]
    flops = [step_flops(shape, np.asarray(s)) for s in attended_lists]
    peak = device_peak(device, dtype)  # None on a CPU or an unknown GPU: MFU is then nan
    peak_flops = peak.flops_per_second if peak else math.nan
    if corpus:  # every row once: totals, since the two packings make different numbers of rows
        total = sum(seconds)
        result.tokens_per_second = sum(tokens) / total
        result.target_tokens_per_second = sum(targets) / total
        result.step_seconds = total / len(seconds)
        result.mfu = sum(flops) / total / peak_flops
        result.extra = {
            "rows": len(seconds),
            "packing_efficiency": sum(tokens) / (len(seconds) * result.tokens_per_row),
        }
    else:
        step = statistics.median(seconds)
        result.step_seconds = step
        result.tokens_per_second = tokens[0] / step
        result.target_tokens_per_second = targets[0] / step
        result.mfu = flops[0] / step / peak_flops
    result.extra["peak_source"] = peak.source if peak else "no known peak on this device"


# --- the table -------------------------------------------------------------------------------

COLUMNS = [
    "case",
    "variant",
    "tokens/row",
    "status",
    "tok/s",
    "target tok/s",
    "step s",
    "peak GiB",
    "MFU",
    "vs baseline",
    "baseline",
]


def ratios(results: list[Result]) -> dict[tuple[str, str], tuple[float, str]]:
    """Each result's target tokens/s over its case's first variant that ran (in display order)."""
    out = {}
    for case in dict.fromkeys(r.case for r in results):
        rows = [r for r in results if r.case == case]
        base = next((r for r in rows if r.status == "ok"), None)
        for r in rows:
            if base is not None and r.status == "ok":
                out[(case, r.variant)] = (r.target_tokens_per_second / base.target_tokens_per_second, base.variant)
    return out


def format_table(results: list[Result]) -> str:
    ratio = ratios(results)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        value, base = ratio.get((r.case, r.variant), (math.nan, "-"))
        cells = [
            r.case,
            r.variant,
            str(r.tokens_per_row),
            r.status,
            f"{r.tokens_per_second:.1f}",
            f"{r.target_tokens_per_second:.1f}",
            f"{r.step_seconds:.4f}",
            f"{r.peak_gib:.2f}",
            f"{r.mfu:.4f}",
            f"{value:.3f}",
            base,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> dict[str, str]:
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("peft", "liger_kernel", "flash_attn", "triton"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "installed")
        except ImportError:
            versions[name] = "not installed"
    versions["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    versions["attention"] = resolve_attn_implementation("auto")
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU in seconds: the tiny suite, 2 steps")
    parser.add_argument("--suite", choices=sorted(SUITES), help="a named set of cases")
    parser.add_argument("--case", action="append", help="only these cases of the suite (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the suite's cases and exit")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="one ad-hoc case: model shape")
    parser.add_argument("--tokens", type=int, help="one ad-hoc case: tokens per row (max_tokens for corpus variants)")
    parser.add_argument("--variants", help="one ad-hoc case: comma-separated, from " + ", ".join(FULL_ROW + CORPUS))
    parser.add_argument("--steps", type=int, help="timed steps (corpus variants: rows of corpus); default 4, tiny 2")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--profile", help="print a kernel profile of one step of this variant")
    parser.add_argument("--json", type=Path, help="also write the results and environment here")
    args = parser.parse_args(argv)
    suite = "tiny" if args.tiny else args.suite
    if args.shape:
        variants = (args.variants or "plain,liger,ours").split(",")
        unknown = [v for v in variants if v not in FULL_ROW + CORPUS]
        if unknown or not args.tokens:
            parser.error(f"--shape needs --tokens and known --variants (unknown: {unknown})")
        cases = {f"{args.shape}-{args.tokens}": (args.shape, args.tokens, variants)}
    elif suite:
        cases = {k: v for k, v in SUITES[suite].items() if not args.case or k in args.case}
    else:
        parser.error("give --tiny, --suite or --shape")
    if args.list:
        for name, (shape, tokens, variants) in cases.items():
            print(f"{name}: {shape} shape, {tokens} tokens/row: {', '.join(variants)}")
        return 0
    steps = args.steps or (2 if suite == "tiny" else 4)
    device, _ = device_and_dtype()
    env = environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    results: list[Result] = []
    # libraries print notices (the Trainer its summary) on stdout; stdout is the environment and the table
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp, contextlib.redirect_stdout(sys.stderr):
        for name, (shape, tokens, variants) in cases.items():
            done = {}
            for variant in sorted(variants, key=lambda v: uses_liger(v, device)):  # stable: Liger last, in case
                with restored(modeling_qwen2):  # `restored` misses a patch outside modeling_qwen2
                    done[variant] = run_variant(
                        name, shape, tokens, variant, steps, args.warmup, args.profile, Path(tmp)
                    )
            results.extend(done[v] for v in variants)
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(format_table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"environment": env, "steps": steps, "warmup": args.warmup, "results": [vars(r) for r in results]},
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
