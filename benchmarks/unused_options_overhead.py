"""What the learning-vs-forgetting options (issue 14: several sources, general mixing, FIM, LR
schedules across phases, LoRA variants, completion eval) cost when they are not used.

The same `phased-cpt train` of the embedded quickstart (tiny model, its bundled data, default
settings, evaluations off) runs with the code of two revisions side by side: `--base` (default:
main just before those options were merged) and the working tree. Runs alternate (base, head,
base, head, ...) so machine load hits both alike; each run's training tokens/s is the median of
its logged tokens/s (the first log of every phase left out: warm-up). Prints both medians and the
ratio head / base.

    python benchmarks/unused_options_overhead.py                 # 3 rounds, 40 steps per phase
    python benchmarks/unused_options_overhead.py --rounds 1 --steps 8   # seconds
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = "b32893a^1"
"""main before the merge of the learning-vs-forgetting options (issue 14)."""


def export_src(revision: str, into: Path) -> Path:
    """The `src/` tree of `revision`, extracted under `into` (no worktree, no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def train_tokens_per_second(src: Path, work: Path, steps: int) -> float:
    """Median logged tokens/s of one quickstart training run with the package found in `src`."""
    work.mkdir(parents=True)
    overrides = [
        f"training.max_steps={steps}",
        "training.logging_steps=2",
        "training.save_steps=100000",
        "evaluation.forgetting_matrix=false",
        "evaluation.eval_steps=100000",
        "tensorboard.enabled=false",
    ]
    code = "import sys; from phased_cpt.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "train"] + [a for o in overrides for a in ("--set", o)]
    env = os.environ | {
        "PYTHONPATH": str(src),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "disabled",
    }
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training with {src} failed:\n{done.stderr[-3000:]}")
    (metrics,) = work.glob("outputs/*/metrics.jsonl")
    per_phase: dict[str, list[float]] = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "tokens_per_second" in record:
            per_phase.setdefault(record.get("phase", ""), []).append(record["tokens_per_second"])
    values = [v for logged in per_phase.values() for v in logged[1:]]
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=BASE, help=f"revision to compare with (default {BASE})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        variants = {"base": export_src(args.base, Path(tmp) / "base"), "head": REPO / "src"}
        measured: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, src in variants.items():
                value = train_tokens_per_second(src, Path(tmp) / f"run-{name}-{round_}", args.steps)
                measured[name].append(value)
                print(f"round {round_ + 1}: {name} {value:,.0f} tokens/s", flush=True)
    base, head = (statistics.median(measured[n]) for n in ("base", "head"))
    print(
        f"base ({args.base}): {base:,.0f} tokens/s, head (working tree): {head:,.0f} tokens/s, "
        f"head / base = {head / base:.3f} ({(head / base - 1):+.1%})"
    )


if __name__ == "__main__":
    main()
