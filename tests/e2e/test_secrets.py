"""A W&B key never reaches the printed resume command, the W&B offline run file (which records
the command line) or any file of the run (issue 19 item 1): a key on the command line is refused
before anything starts, and a key from the environment stays out of both after a SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import phased_cpt_command, run_cli, tiny_run_config, write_yaml
from tests.e2e.test_resume import kill_at
from tests.wandb_records import read_records

pytestmark = pytest.mark.e2e
SECRET = "wandbkey-0123456789abcdef0123456789abcdef"


@pytest.fixture
def config(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", 20))
    cfg = tiny_run_config(
        tiny_model_dir,
        [("phase1_foundation", data, 3)],
        wandb={"enabled": True, "project": "e2e", "api_key": "${WANDB_API_KEY:-}"},
        training={"save_steps": 2},
        evaluation={"eval_steps": None, "forgetting_matrix": False},
    )
    return write_yaml(tmp_path / "config.yaml", cfg)


def test_a_key_given_with_set_is_refused_and_never_printed(config, tmp_path):
    result = run_cli(["train", str(config), "--set", f"wandb.api_key={SECRET}"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--set wandb.api_key: a secret on the command line" in result.stderr and "export" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "outputs").exists()  # refused before a run directory or a W&B run exists


def test_after_sigterm_the_resume_line_and_the_wandb_file_hold_no_key(config, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "2",
        "WANDB_API_KEY": SECRET,
    }
    process = subprocess.Popen(
        [*phased_cpt_command(), "train", str(config), "--set", "wandb.project=e2e-secrets"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_at(process, tmp_path, "phase1_foundation", 2, sig=signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 143, stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    resume = next(line for line in stderr.splitlines() if line.startswith("resume with:"))
    assert resume.split("resume with:", 1)[1].split() == [
        "phased-cpt",
        "train",
        str(config),
        "--set",
        "wandb.project=e2e-secrets",
        "--resume",
        str(run_dir.resolve()),
    ]
    assert SECRET not in stderr
    (run_file,) = run_dir.glob("wandb/offline-run-*/*.wandb")
    recorded = str(read_records(run_file))
    assert "wandb.project=e2e-secrets" in recorded  # the file does record the command-line arguments
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
