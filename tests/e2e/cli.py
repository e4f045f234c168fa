"""Running the `phased-cpt` command as a user would, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def phased_cpt_command() -> list[str]:
    script = shutil.which("phased-cpt")
    return [script] if script else [sys.executable, "-m", "phased_cpt"]


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    # OMP_NUM_THREADS from the environment wins: on a 2-core machine shared with other work, two
    # threads per tiny model spin against each other (a step measured ~100x slower than one thread).
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": threads, **(env or {})}
    return subprocess.run(
        [*phased_cpt_command(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_run_config(model_dir: Path, phase_files: list[tuple[str, Path, float]], **sections) -> dict:
    data = {
        "model": {"name": str(model_dir), "dtype": "float32", "attn_implementation": "sdpa"},
        "training": {
            "micro_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "learning_rate": 3e-3,
            "warmup_ratio": 0.0,
            "weight_decay": 0.0,
            "logging_steps": 1,
            "save_steps": 5,
            "save_total_limit": 2,
            "gradient_checkpointing": True,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        },
        "context": {"max_tokens": 128, "overlap_tokens": 16},
        "phases": [{"name": name, "file": str(file), "epochs": epochs} for name, file, epochs in phase_files],
        "output": {"dir": "outputs", "run_name": "e2e"},
        "wandb": {"enabled": False},
        # generation costs seconds; the tests that need it turn it on
        "evaluation": {"completion": {"samples": 0}, "humaneval": {"problems": 0}},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


def assert_user_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def train_run(work: Path, cfg: dict) -> Path:
    """Write `cfg` to work/config.yaml, run `phased-cpt train` on it, return the run directory."""
    config = write_yaml(work / "config.yaml", cfg)
    result = run_cli(["train", str(config)], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (work / "outputs").iterdir()
    return run_dir
