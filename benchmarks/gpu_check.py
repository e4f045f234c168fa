"""The first GPU run: one command that, on a bare GPU machine, answers five questions in one table
and one JSON file within a time budget (8 minutes on an H100, install of the wheels included).

    python3 benchmarks/gpu_check.py --out DIR --wheels .gpu-wheels   # on the GPU machine (make gpu-check)
    python3 benchmarks/gpu_check.py --out DIR --cpu-rehearsal         # the same code path, tiny shapes, CPU

1. train      `phased-cpt train` on a Qwen2.5-0.5B-shaped model (random init from the shipped
              config.json) through 2 short phases: bf16, Liger on where installed, killed after a
              checkpoint of phase 2 and resumed from it, both adapters saved
2. 7b-16k     tokens/s and peak memory at 7B shapes, 16K-token rows: plain HF+PEFT, HF+PEFT+Liger
              and ours in one process (`gpu_throughput.run_variant`)
3. (with 2 and 4) the memory estimator's prediction (`memory.estimate_memory`) next to each peak
4. corpus     the packed mixed-length corpus at 0.5B shapes: HF padding-free packing
              (DataCollatorWithFlattening) against ours (`pack_best_fit_decreasing`, Trainer)
5. environment  GPU, driver, CUDA, torch, transformers, peft; liger-kernel, flash-attn, deepspeed

The time plan (`gpu_time_plan.plan_cases`) gives each case its seconds from the recorded H100 step times
(tests/calibration.py's H100_TABLE, issue 13) or, for rows it lacks, `flops.estimate_seconds`,
plus the fixed costs in `GPU_COSTS`. A case whose planned seconds exceed what is left of
`--budget-s` is not started; the table says so, with the arithmetic. Everything missing on the
machine (a wheel, liger-kernel, a GPU) is a "skipped: ..." line, never a traceback.

Only the standard library is imported before the wheels are installed, so the wheels (pydantic,
liger-kernel, transformers at the project's pin, phased-cpt) load in this same process.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from gpu_time_plan import (  # noqa: E402  (standard library only: safe before the wheels are installed)
    CASES,
    CORPUS_VARIANTS,
    CPU_COSTS,
    GPU_COSTS,
    GPU_SIZES,
    REHEARSAL_SIZES,
    THROUGHPUT_VARIANTS,
    Costs,
    PlannedCase,
    Sizes,
    plan_cases,
)

QUICKSTART_DATA = REPO / "src" / "phased_cpt" / "quickstart" / "data"
GPU_BUDGET_SECONDS = 450.0
"""What the check itself may take on an H100: 8 minutes less 30 s for the machine's own start of
Python and the copy of the working tree (not measured: the device tool reports only wall_s)."""
REHEARSAL_BUDGET_SECONDS = 120.0
"""The rehearsal plans ~55 s (`CPU_COSTS`); on the shared 2-core box under a load of 10 its train
case alone took 47 s, hence twice that."""


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    question: str
    case: str
    status: str
    result: str = ""
    planned_seconds: float = math.nan
    seconds: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


def install_wheels(folder: Path | None, costs: Costs) -> Row:
    """pip install --no-index --no-deps of the wheels `make gpu-wheels` put in `folder`
    (requirements.txt there names them); a line saying what is missing otherwise."""
    row = Row("-", "wheels", "ok", planned_seconds=costs.install)
    if folder is None:
        row.status = "skipped: no --wheels folder given (the packages this machine has are used)"
        return row
    listing = folder / "requirements.txt"
    if not listing.is_file():
        row.status = f"skipped: {listing} not found; run `make gpu-wheels` on a machine with the package index"
        return row
    started = time.monotonic()
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links", str(folder)]
    done = subprocess.run([*command, *names], capture_output=True, text=True)
    row.seconds = time.monotonic() - started
    if done.returncode != 0:
        row.status = "failed: pip install: " + one_line(done.stderr)
    else:
        row.result = ", ".join(names)
    importlib.invalidate_caches()
    return row


def one_line(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "").replace("|", "/")[:limit]


def missing_packages() -> list[str]:
    """What this check needs that cannot be imported here (torch first: nothing runs without it)."""
    missing = []
    for module in ("torch", "transformers", "peft", "pydantic", "yaml", "filelock", "phased_cpt"):
        try:
            importlib.import_module(module)
        except Exception as err:  # a broken install is as missing as an absent one
            missing.append(f"{module} ({type(err).__name__})")
    return missing


def environment() -> Row:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)",
        "driver": driver_version(),
    }
    for module in (
        "transformers",
        "peft",
        "accelerate",
        "pydantic",
        "triton",
        "liger_kernel",
        "flash_attn",
        "deepspeed",
    ):
        info[module] = package_version(module)
    from phased_cpt.modeling import resolve_attn_implementation

    info["attention (auto)"] = resolve_attn_implementation("auto")
    shown = ", ".join(f"{k}={v}" for k, v in info.items())
    return Row("5", "environment", "ok", shown, details=info)


def package_version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    distribution = {"liger_kernel": "liger-kernel", "flash_attn": "flash-attn"}.get(module, module)
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def driver_version() -> str:
    if shutil.which("nvidia-smi") is None:
        return "n/a (no nvidia-smi)"
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "unknown"


# --- 1. phased-cpt train on a real-shaped model -----------------------------------------------------


def build_train_model(out: Path, shape_name: str, device: Any, dtype: Any) -> Path:
    """A random-init model of `shape_name` (the shipped Qwen2.5 config.json shapes, the tokenizer a
    byte-level BPE trained on the bundled quickstart data), saved with save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from phased_cpt.quickstart.tiny_model import build_tokenizer, iter_corpus

    sys.path.insert(0, str(BENCHMARKS))
    from gpu_workloads import SHAPES

    tokenizer = build_tokenizer(iter_corpus(sorted(QUICKSTART_DATA.glob("*.jsonl"))), 4096, bos=False)
    shape = dict(SHAPES[shape_name])
    shape["vocab_size"] = max(shape["vocab_size"], len(tokenizer))
    config = Qwen2Config(
        **shape,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        use_cache=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


def train_config(model_dir: Path, out: Path, sizes: Sizes, liger: bool) -> Path:
    import yaml

    config = {
        "model": {"name": str(model_dir), "dtype": "auto", "attn_implementation": "auto"},
        "training": {
            "micro_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "max_steps": sizes.train_steps,
            "save_steps": 2,
            "logging_steps": 1,
            "warmup_ratio": 0.0,
            "lora": {"r": 16, "alpha": 32},
            "performance": {"liger_kernel": True if liger else "auto"},
        },
        "context": {"max_tokens": sizes.train_tokens, "overlap_tokens": 64 if sizes.train_tokens > 128 else 16},
        "phases": [
            {"name": "p1", "file": str(QUICKSTART_DATA / "phase1_foundation.jsonl")},
            {"name": "p2", "file": str(QUICKSTART_DATA / "phase2_evolution.jsonl")},
        ],
        "data": {"eval_ratio": 0.0, "cache_dir": str(out / "cache")},
        "evaluation": {"forgetting_matrix": False, "eval_steps": None},
        "output": {"dir": str(out / "outputs"), "run_name": "gpu-check"},
        "tensorboard": {"enabled": False},
    }
    config["context"]["sample_packing"] = True
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_train(out: Path, logs: Path, sizes: Sizes, liger: bool, budget: Budget) -> Row:
    """Build the model in `out`, train p1 and p2 with a SIGKILL after phase 2's checkpoint at step 4,
    resume; the two runs' logs go to `logs`."""
    import torch

    from phased_cpt.crash_points import CRASH_AT_ENV
    from phased_cpt.modeling import resolve_dtype

    row = Row("1", "train", "ok")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = build_train_model(out / "model", sizes.train_shape, device, resolve_dtype("auto"))
    config = train_config(model_dir, out, sizes, liger)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "phased_cpt", "train", str(config)]
    first = subprocess.run(
        command,
        env={**env, CRASH_AT_ENV: "checkpoint_written:p2/4"},
        capture_output=True,
        text=True,
        timeout=max(budget.left(), 1),
    )
    (logs / "train-killed.log").write_text(first.stderr)
    if first.returncode != -9:
        row.status = (
            f"failed: the first run should be killed at p2's checkpoint 4, exited {first.returncode}: "
            + one_line(first.stderr)
        )
        return row
    second = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=max(budget.left(), 1)
    )
    (logs / "train-resumed.log").write_text(second.stderr)
    if second.returncode != 0:
        row.status = f"failed: resume exited {second.returncode}: " + one_line(second.stderr)
        return row
    row.details = train_evidence(out / "outputs", first.stderr + second.stderr)
    problems = [name for name, ok in row.details["checks"].items() if not ok]
    row.status = "ok" if not problems else "failed: " + ", ".join(problems)
    row.result = (
        f"dtype {row.details['dtype']}; {row.details['speed_path']}; resumed from "
        f"{row.details['resumed_from']}; adapters: {', '.join(row.details['adapters'])}"
    )
    return row


def train_evidence(outputs: Path, log: str) -> dict[str, Any]:
    """What the two runs left: the speed path line, the resume point and the saved adapters."""
    import yaml

    (run_dir,) = [p for p in outputs.iterdir() if p.is_dir()]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    starts = [e for e in events if e.get("event") == "phase_start" and e.get("phase") == "p2"]
    resumed_from = next((e["resumed_from"] for e in starts if e.get("resumed_from")), None)
    adapters = sorted(str(p.parent.relative_to(run_dir)) for p in run_dir.rglob("adapter_model.safetensors"))
    speed = [line[line.index("speed path:") :] for line in log.splitlines() if "speed path:" in line]
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    import torch

    from phased_cpt.config import training_dtype

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    dtype = training_dtype(resolved["model"]["dtype"], bf16)
    on_gpu = torch.cuda.is_available()
    checks = {
        "killed and resumed from checkpoint-2 of p2": bool(resumed_from) and resumed_from.endswith("checkpoint-2"),
        "an adapter for each phase": {"p1/adapter", "p2/adapter"} <= set(adapters),
        "bf16 on the GPU": dtype == "bfloat16" or not on_gpu,
        "Liger on where installed": not on_gpu
        or package_version("liger_kernel") == "not installed"
        or all("liger=on" in line for line in speed),
    }
    return {
        "run_dir": str(run_dir),
        "dtype": dtype,
        "speed_path": speed[-1] if speed else "no speed path line",
        "resumed_from": str(Path(resumed_from).relative_to(run_dir)) if resumed_from else None,
        "adapters": adapters,
        "checks": checks,
    }


# --- 2, 3, 4: throughput, memory and the estimate ---------------------------------------------------


def run_throughput(case: str, shape: str, tokens: int, variants: list[str], sizes: Sizes, out: Path) -> list[Row]:
    """The variants of `gpu_throughput.py` in one process (Liger variants last), each row with the
    memory estimator's prediction for the same settings."""
    import torch

    sys.path.insert(0, str(BENCHMARKS))
    from gpu_throughput import restored, run_variant, uses_liger
    from transformers.models.qwen2 import modeling_qwen2

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {}
    for variant in sorted(variants, key=lambda v: uses_liger(v, device)):
        with restored(modeling_qwen2), contextlib.redirect_stdout(sys.stderr):
            results[variant] = run_variant(case, shape, tokens, variant, sizes.steps, 1, None, out / case)
    rows = []
    for variant in variants:
        result = results[variant]
        question = "4, 3" if case.endswith("corpus") else "2, 3"
        row = Row(question, f"{case}/{variant}", result.status, details=asdict(result))
        if result.status == "ok":
            predicted = predicted_peak_gib(shape, tokens, variant, uses_liger(variant, device))
            measured = result.peak_gib
            error = (predicted - measured) / measured if device.type == "cuda" and measured > 0 else math.nan
            row.details.update(predicted_peak_gib=predicted, estimate_error=error)
            peak = (
                f"peak {measured:.2f} GiB, estimate {predicted:.2f} GiB ({error:+.1%})"
                if math.isfinite(error)
                else (f"peak not measured on a CPU, estimate {predicted:.3f} GiB")
            )
            row.result = (
                f"{result.target_tokens_per_second:,.0f} target tok/s, {result.step_seconds:.3f} s/step; {peak}"
            )
        rows.append(row)
    base = next((results[v] for v in variants if results[v].status == "ok"), None)
    for row, variant in zip(rows, variants):
        if base is not None and results[variant].status == "ok":
            ratio = results[variant].target_tokens_per_second / base.target_tokens_per_second
            row.details["vs_first"] = ratio
            row.result += f"; {ratio:.3f}x {base.variant}"
    return rows


def predicted_peak_gib(shape_name: str, tokens: int, variant: str, liger: bool) -> float:
    """`estimate_memory` for what `run_variant` runs: the H100 table's settings (tests/calibration.py:
    checkpointing on, micro-batch 1) with its LoRA; torch's foreach AdamW for the plain loops, fused
    AdamW for ours."""
    sys.path.insert(0, str(BENCHMARKS))
    sys.path.insert(0, str(REPO))
    import torch
    from gpu_workloads import SHAPES, lora_settings

    from phased_cpt.memory import GiB, estimate_memory
    from phased_cpt.model_shape import shape_from_config
    from tests.calibration import table_training, target

    optimizer = "adamw_torch_fused" if variant.startswith("ours") else "adamw_torch"
    training = table_training(lora=lora_settings(shape_name), performance={"optimizer": optimizer})
    on_cuda = torch.cuda.is_available()
    dtype = "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else "float32"
    shape = shape_from_config(SHAPES[shape_name])
    device = "cuda" if on_cuda else "cpu"
    return estimate_memory(target(shape, training, tokens, dtype=dtype, liger=liger, device=device)).peak_bytes / GiB


# --- the table ------------------------------------------------------------------------------------

COLUMNS = ["question", "case", "status", "result", "planned s", "s"]


def format_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row.question, row.case, row.status, row.result, f"{row.planned_seconds:.0f}", f"{row.seconds:.1f}"]
        lines.append("| " + " | ".join(cell.replace("|", "/").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines)


def run_case(name: str, plan: PlannedCase, budget: Budget, run) -> list[Row]:
    """Start the case only if its planned seconds fit what is left; a failure is a row, not a traceback."""
    left = budget.left()
    if plan.seconds > left:
        return [
            Row(
                plan.question,
                name,
                f"left out: planned {plan.seconds:.0f} s, {max(left, 0):.0f} s left of the budget",
                planned_seconds=plan.seconds,
            )
        ]
    started = time.monotonic()
    try:
        rows = run()
    except Exception as err:
        rows = [Row(plan.question, name, f"failed: {type(err).__name__}: {one_line(str(err))}")]
        traceback.print_exc(file=sys.stderr)  # the log keeps it; the table keeps one line
    seconds = time.monotonic() - started
    for row in rows:
        row.planned_seconds = plan.seconds / len(rows)
        row.seconds = seconds / len(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="where gpu_check.json, gpu_check.md and the two train logs go"
    )
    parser.add_argument("--work", type=Path, help="models, runs and caches (default: a temporary directory)")
    parser.add_argument("--wheels", type=Path, help="the folder `make gpu-wheels` made: installed first")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="tiny shapes on the CPU: the same code path")
    parser.add_argument("--budget-s", type=float, help=f"seconds the check may take (GPU {GPU_BUDGET_SECONDS:g})")
    parser.add_argument("--only", action="append", choices=CASES, help="run only these cases (repeatable)")
    args = parser.parse_args(argv)
    rehearsal = args.cpu_rehearsal
    costs, sizes = (CPU_COSTS, REHEARSAL_SIZES) if rehearsal else (GPU_COSTS, GPU_SIZES)
    budget = Budget(args.budget_s or (REHEARSAL_BUDGET_SECONDS if rehearsal else GPU_BUDGET_SECONDS))
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows = [install_wheels(args.wheels, costs)]
    sys.path.insert(0, str(REPO / "src"))  # the tree's phased-cpt is what is checked (the wheel gives the command)
    missing = missing_packages()
    if missing:
        rows.append(
            Row(
                "-",
                "packages",
                f"skipped every case: cannot import {', '.join(missing)}; "
                "make gpu-wheels on a machine with the package index, then pass --wheels",
            )
        )
        return finish(args.out, rows, [], budget)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # What the imports made lives as long as this process: frozen, it is skipped by the full
    # collections each throughput variant runs to free its model (0.8 s each on the loaded CPU box).
    gc.collect()
    gc.freeze()
    import torch

    if rehearsal:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the rehearsal never touches a GPU, even where there is one
    elif not torch.cuda.is_available():
        rows.append(Row("-", "gpu", "skipped every case: no CUDA GPU here; --cpu-rehearsal runs the tiny shapes"))
        return finish(args.out, rows, [], budget)
    rows.append(environment())
    liger = rows[-1].details["liger_kernel"] != "not installed" and torch.cuda.is_available()
    plans = plan_cases(sizes, costs, liger)
    by_name = {plan.name: plan for plan in plans}
    runs = {
        "train": lambda: [run_train(work / "train", args.out, sizes, liger, budget)],
        "throughput": lambda: run_throughput(
            f"{sizes.throughput_shape}-{sizes.throughput_tokens}",
            sizes.throughput_shape,
            sizes.throughput_tokens,
            THROUGHPUT_VARIANTS,
            sizes,
            work,
        ),
        "corpus": lambda: run_throughput(
            f"{sizes.corpus_shape}-corpus", sizes.corpus_shape, sizes.corpus_tokens, CORPUS_VARIANTS, sizes, work
        ),
    }
    for name in CASES:
        if args.only and name not in args.only:
            continue
        rows.extend(run_case(name, by_name[name], budget, runs[name]))
    return finish(args.out, rows, plans, budget)


def finish(out: Path, rows: list[Row], plans: list[PlannedCase], budget: Budget) -> int:
    table = format_table(rows)
    plan_lines = [f"plan: {p.name} ({p.question}): {p.arithmetic}" for p in plans]
    total = sum(p.seconds for p in plans)
    plan_lines.append(
        f"plan: {total:.0f} s of a {budget.seconds:.0f} s budget; took {budget.seconds - budget.left():.0f} s"
    )
    print("\n".join([table, *plan_lines]))
    (out / "gpu_check.md").write_text(table + "\n\n" + "\n".join(plan_lines) + "\n")
    report = {
        "rows": [asdict(row) for row in rows],
        "plan": [asdict(plan) for plan in plans],
        "budget_seconds": budget.seconds,
        "seconds": budget.seconds - budget.left(),
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    failed = [row for row in rows if row.status.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
