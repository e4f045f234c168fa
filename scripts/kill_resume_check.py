"""Kill a training run with SIGKILL at random points, resume it, and compare with an
uninterrupted run of the same seed.

    python scripts/kill_resume_check.py [--trials 10] [--seed 0]

Builds a tiny model offline, trains a two-phase reference run, then for each trial starts the
same run, sends SIGKILL once a random (phase, step) has been logged, resumes it with
`phased-cpt train CONFIG --resume`, and compares the final adapter with the reference
(identical: max abs diff <= 1e-5). Prints one line per trial and the count of identical ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from safetensors.torch import load_file

from phased_cpt.quickstart import DATA_DIR
from phased_cpt.quickstart.tiny_model import build_tiny_model

PHASES = ("phase1_foundation", "phase2_evolution")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"}


def write_config(work: Path, model_dir: Path) -> Path:
    (work / "data").mkdir(parents=True, exist_ok=True)
    for name, limit in (("phase1_foundation", 20), ("phase2_evolution", 48)):
        lines = (DATA_DIR / f"{name}.jsonl").read_text().splitlines()[:limit]
        (work / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {
        "model": {"name": str(model_dir), "dtype": "float32", "attn_implementation": "sdpa"},
        "training": {"micro_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 3e-3,
                     "warmup_ratio": 0.1, "weight_decay": 0.01, "logging_steps": 1, "save_steps": 3,
                     "save_total_limit": 2, "gradient_checkpointing": True,
                     "lora": {"r": 8, "alpha": 16, "dropout": 0.1}},
        "context": {"max_tokens": 128, "overlap_tokens": 16},
        "phases": [{"name": PHASES[0], "file": "data/phase1_foundation.jsonl", "epochs": 2},
                   {"name": PHASES[1], "file": "data/phase2_evolution.jsonl", "epochs": 1}],
        "data": {"eval_ratio": 0.1},
        "evaluation": {"eval_steps": 4},
        "output": {"dir": "outputs", "run_name": "killcheck"},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "phased_cpt", "train", str(config), *extra], cwd=config.parent,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def logged(work: Path) -> list[dict]:
    files = list((work / "outputs").glob("*/metrics.jsonl")) if (work / "outputs").exists() else []
    records = []
    for line in files[0].read_text().splitlines() if files else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return [r for r in records if r.get("kind") == "train"]


def final_adapter(work: Path) -> dict:
    (run_dir,) = (work / "outputs").iterdir()
    return load_file(run_dir / PHASES[-1] / "adapter" / "adapter_model.safetensors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="killcheck-"))
    model_dir = build_tiny_model(root / "model", sorted(DATA_DIR.glob("*.jsonl")), architecture="qwen2",
                                 vocab_size=512, hidden_size=32, num_layers=2)
    reference = root / "reference"
    process = train(write_config(reference, model_dir))
    if process.wait() != 0:
        print(process.stderr.read()[-2000:])
        return 1
    ref = final_adapter(reference)
    steps_per_phase = {p: sum(1 for r in logged(reference) if r["phase"] == p) for p in PHASES}
    identical = 0
    for trial in range(args.trials):
        work = root / f"trial{trial}"
        config = write_config(work, model_dir)
        phase = rng.choice(PHASES)
        step = rng.randint(1, steps_per_phase[phase] - 1)
        process = train(config)
        while len([r for r in logged(work) if r["phase"] == phase]) < step and process.poll() is None:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = max((r["step"] for r in logged(work)), default=0)
        resumed = train(config, "--resume")
        if resumed.wait() != 0:
            print(f"trial {trial}: resume failed: {resumed.stderr.read()[-1000:]}")
            continue
        diff = max((final_adapter(work)[k] - ref[k]).abs().max().item() for k in ref)
        same = diff <= 1e-5
        identical += same
        print(f"trial {trial}: SIGKILL in {phase} after global step {killed_at}: max abs diff {diff:.2e} "
              f"-> {'identical' if same else 'DIFFERENT'}", flush=True)
    print(f"{identical}/{args.trials} resumed runs ended identical to the uninterrupted run")
    return 0 if identical == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
