"""Running the `phased-cpt` command as a user would, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, tiny_run_config, write_yaml  # noqa: F401 (the e2e tests import them from here)


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
