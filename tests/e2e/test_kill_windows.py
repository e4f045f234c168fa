"""A run SIGKILLed in any window between its start and its report resumes to exactly the model an
uninterrupted run trains: the final adapter within 1e-5 (CPU), the same forgetting matrix and
the same finished phases. Each window is hit deterministically through a crash point
(`phased_cpt.crash_points`); LoRA dropout is on, so every random stream must match too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phased_cpt.crash_points import CRASH_AT_ENV
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import phased_cpt_command, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PHASES = ("phase1_foundation", "phase2_evolution")

WINDOWS = {
    # window: (crash point, what the killed run must have left behind)
    "data_preparation": "data_prepared:phase2_evolution",
    "after_phase_start_before_first_checkpoint": "phase_start:phase2_evolution",
    "checkpoint_save": "checkpoint_written:phase2_evolution/2",
    "phase_end_evaluation": "phase_evaluation:phase1_foundation",
    "forgetting_matrix_row": "forgetting_row:phase1_foundation",
    "adapter_written_state_not_updated": "state_update:phase1_foundation",
    "report": "report",
}


def kill_config(model_dir: Path, work: Path) -> Path:
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 8))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 12))
    cfg = tiny_run_config(
        model_dir, [(PHASES[0], p1, 1), (PHASES[1], p2, 1)],
        training={"save_steps": 2, "save_total_limit": 2, "logging_steps": 1,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.1}},
        context={"max_tokens": 64, "overlap_tokens": 8},
        data={"eval_ratio": 0.25, "cache_dir": str(work / "cache")},
        evaluation={"eval_steps": 2},
        tensorboard={"enabled": False},
    )
    return write_yaml(work / "config.yaml", cfg)


def run_outputs(work: Path) -> dict:
    (run_dir,) = (work / "outputs").iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    forgetting = json.loads((run_dir / "eval" / "forgetting.json").read_text())
    return {
        "adapter": load_file(run_dir / PHASES[-1] / "adapter" / "adapter_model.safetensors"),
        "steps": [(p["name"], p["steps"]) for p in state["finished_phases"]],
        "forgetting": forgetting["perplexity"],
        "report": (run_dir / "eval" / "report.md").is_file(),
    }


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli(["train", str(kill_config(tiny_model_dir, work))], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_outputs(work)


@pytest.mark.parametrize("window", WINDOWS)
def test_a_run_killed_in_any_window_resumes_to_the_uninterrupted_result(reference, tiny_model_dir, tmp_path, window):
    config = kill_config(tiny_model_dir, tmp_path)
    killed = run_cli(["train", str(config)], cwd=tmp_path, env={CRASH_AT_ENV: WINDOWS[window]})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    started = (tmp_path / "outputs").is_dir()
    assert started == (window != "data_preparation")
    resumed = run_cli(["train", str(config), *(["--resume"] if started else [])], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = run_outputs(tmp_path)
    diff = max((result["adapter"][k] - reference["adapter"][k]).abs().max().item() for k in reference["adapter"])
    assert diff <= 1e-5, f"{window}: final adapter differs by {diff:.2e}"
    assert result["steps"] == reference["steps"]
    assert result["forgetting"] == pytest.approx(reference["forgetting"], rel=1e-5)
    assert result["report"]
