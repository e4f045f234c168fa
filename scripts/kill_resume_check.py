"""Kill a training run with SIGKILL at random points, resume it, and compare with an
uninterrupted run of the same seed (LoRA dropout on).

    python scripts/kill_resume_check.py [--trials 20] [--seed 0]

Builds a tiny model offline, trains a two-phase reference run, then for each trial starts the
same run, kills it at one kill point, resumes it (`phased-cpt train CONFIG --resume`, or the
plain command again when the run directory was not made yet) and compares the final adapter
with the reference (identical: max abs diff <= 1e-5). Kill points, of four kinds:

    crash   a crash point (`phased_cpt.crash_points`): the process SIGKILLs itself exactly in a window
            (data preparation, phase start, a checkpoint save, the phase-end evaluation, the
            forgetting-matrix row, between phase_end and state.json, the report)
    event   SIGKILL from outside once metrics.jsonl shows an event (phase_start, an eval record,
            phase_end, session_end)
    file    SIGKILL from outside once the run has written a file (a checkpoint directory, its
            COMPLETE marker, a phase's adapter, forgetting.json, curves.png)
    step    SIGKILL from outside once a random (phase, step) has been logged

The trials go through every kind of point in a shuffled order (then again), each with a random
phase, so 20 trials cover every window. Prints one line per trial and the count of identical ones.
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

from phased_cpt.crash_points import CRASH_AT_ENV
from phased_cpt.quickstart import DATA_DIR
from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

PHASES = ("phase1_foundation", "phase2_evolution")
ENV = {"OMP_NUM_THREADS": "2", **os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def write_config(work: Path, model_dir: Path) -> Path:
    (work / "data").mkdir(parents=True, exist_ok=True)
    for name, limit in (("phase1_foundation", 12), ("phase2_evolution", 24)):
        lines = (DATA_DIR / f"{name}.jsonl").read_text().splitlines()[:limit]
        (work / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {
        "model": {"name": str(model_dir), "dtype": "float32", "attn_implementation": "sdpa"},
        "training": {
            "micro_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "learning_rate": 3e-3,
            "warmup_ratio": 0.1,
            "weight_decay": 0.01,
            "logging_steps": 1,
            "save_steps": 3,
            "save_total_limit": 2,
            "gradient_checkpointing": True,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        },
        "context": {"max_tokens": 128, "overlap_tokens": 16},
        "phases": [
            {"name": PHASES[0], "file": "data/phase1_foundation.jsonl", "epochs": 1},
            {"name": PHASES[1], "file": "data/phase2_evolution.jsonl", "epochs": 1},
        ],
        "data": {"eval_ratio": 0.1, "cache_dir": str(work / "cache")},
        # next-line completion (greedy generation: no random draws) takes tens of seconds per
        # forgetting-matrix row on a loaded 2-core CPU; the perplexity columns stay on
        "evaluation": {"eval_steps": 4, "completion": {"samples": 0}},
        "output": {"dir": "outputs", "run_name": "killcheck"},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train(config: Path, *extra: str, crash_at: str | None = None) -> subprocess.Popen:
    env = {**ENV, CRASH_AT_ENV: crash_at} if crash_at else ENV
    return subprocess.Popen(
        [sys.executable, "-m", "phased_cpt", "train", str(config), *extra],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def records(work: Path) -> list[dict]:
    files = list((work / "outputs").glob("*/metrics.jsonl")) if (work / "outputs").exists() else []
    found = []
    for line in files[0].read_text().splitlines() if files else []:
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return found


def logged(work: Path) -> list[dict]:
    return [r for r in records(work) if r.get("kind") == "train"]


CRASH_POINTS = (
    "data_prepared:{phase}",
    "phase_start:{phase}",
    "checkpoint_written:{phase}/{step}",
    "phase_evaluation:{phase}",
    "forgetting_row:{phase}",
    "state_update:{phase}",
    "report",
)
EVENTS = ("phase_start", "eval", "phase_end", "session_end")
FILES = (
    "{phase}/checkpoint-*",
    "{phase}/checkpoint-*/COMPLETE",
    "{phase}/adapter/adapter_model.safetensors",
    "eval/forgetting.json",
    "eval/curves.png",
)
KINDS = (
    [("crash", c) for c in CRASH_POINTS]
    + [("event", e) for e in EVENTS]
    + [("file", f) for f in FILES]
    + [("step", "")]
)


def kill_points(rng: random.Random, trials: int, steps_per_phase: dict[str, int], save_steps: int) -> list[tuple]:
    """`trials` kill points: every kind in a shuffled order, again and again, each with a random phase."""
    points = []
    while len(points) < trials:
        for kind, what in rng.sample(KINDS, len(KINDS)):
            phase = rng.choice(PHASES)
            saves = list(range(save_steps, steps_per_phase[phase] + 1, save_steps)) or [steps_per_phase[phase]]
            step = rng.choice(saves) if kind == "crash" else rng.randint(1, steps_per_phase[phase] - 1)
            points.append((kind, what.format(phase=phase, step=step), phase, step))
    return points[:trials]


def reached(work: Path, kind: str, what: str, phase: str, step: int) -> bool:
    """Whether the run has reached an outside kill point."""
    if kind == "step":
        return len([r for r in logged(work) if r["phase"] == phase]) >= step
    if kind == "event":
        found = records(work)
        if what == "eval":
            return any(r.get("kind") == "eval" and r.get("phase") == phase for r in found)
        return any(r.get("event") == what and r.get("phase") in (phase, None) for r in found)
    return bool(list((work / "outputs").glob(f"*/{what}")))


def final_adapter(work: Path) -> dict:
    (run_dir,) = (work / "outputs").iterdir()
    return load_file(run_dir / PHASES[-1] / "adapter" / "adapter_model.safetensors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="killcheck-"))
    model_dir = build_tiny_model(
        root / "model",
        sorted(DATA_DIR.glob("*.jsonl")),
        TinyModelSpec(architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2),
    )
    reference = root / "reference"
    process = train(write_config(reference, model_dir))
    if process.wait() != 0:
        print(process.stderr.read()[-2000:])
        return 1
    ref = final_adapter(reference)
    steps_per_phase = {p: sum(1 for r in logged(reference) if r["phase"] == p) for p in PHASES}
    identical = 0
    save_steps = yaml.safe_load((reference / "config.yaml").read_text())["training"]["save_steps"]
    killed_runs = 0
    for trial, (kind, what, phase, step) in enumerate(kill_points(rng, args.trials, steps_per_phase, save_steps)):
        work = root / f"trial{trial}"
        config = write_config(work, model_dir)
        process = train(config, crash_at=what if kind == "crash" else None)
        if kind != "crash":
            while not reached(work, kind, what, phase, step) and process.poll() is None:
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
        code = process.wait()
        killed = code == -signal.SIGKILL
        killed_runs += killed
        killed_at = max((r["step"] for r in logged(work)), default=0)
        started = bool(list((work / "outputs").glob("*/config.resolved.yaml")))
        resumed = train(config, *(["--resume"] if started else []))
        if resumed.wait() != 0:
            print(f"trial {trial}: resume failed: {resumed.stderr.read()[-1000:]}")
            continue
        diff = max((final_adapter(work)[k] - ref[k]).abs().max().item() for k in ref)
        same = diff <= 1e-5
        identical += same
        point = {"step": f"step {step} of {phase}", "event": f"event {what} of {phase}"}.get(kind, f"{kind} {what}")
        how = f"SIGKILL after global step {killed_at}" if killed else f"not killed (exit {code}: ended first)"
        print(
            f"trial {trial}: {point}: {how}; resumed: max abs diff {diff:.2e} "
            f"-> {'identical' if same else 'DIFFERENT'}",
            flush=True,
        )
    print(f"{killed_runs}/{args.trials} runs were killed at their kill point")
    print(f"{identical}/{args.trials} resumed runs ended identical to the uninterrupted run")
    return 0 if identical == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
