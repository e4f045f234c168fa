"""The embedded default, the older tool's entry point and config layout, as users run them."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from scripts.doc_examples import Workspace, chat_session, quickstart_report, stale
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import REPO, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e


def test_train_without_config_runs_the_embedded_quickstart(quickstart_work):
    cache = quickstart_work / "cache"
    (run_dir,) = (quickstart_work / "outputs").iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    phases = ["phase1_foundation", "phase2_evolution", "phase3_pr_mastery"]
    assert [p["name"] for p in state["finished_phases"]] == phases
    for phase in phases:
        assert (run_dir / phase / "adapter" / "adapter_model.safetensors").is_file()
    # the loss visibly falls in phase 1
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    phase1 = [r["loss"] for r in losses if r.get("kind") == "train" and r["phase"] == phases[0]]
    assert phase1[-1] < phase1[0] - 2.0
    # forgetting matrix: (phases + 1) x phases finite entries; phase 1 learned its data
    matrix = json.loads((run_dir / "eval" / "forgetting.json").read_text())["perplexity"]
    assert len(matrix) == 4 and all(len(row) == 3 and all(math.isfinite(v) for v in row) for row in matrix)
    assert matrix[1][0] < matrix[0][0]
    (model_dir,) = cache.joinpath("phased-cpt").glob("quickstart-*")
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.model").is_file()  # SentencePiece
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    assert resolved["model"]["name"] == str(model_dir)
    # the docs' chat session and the README's report excerpt are this run's (scripts/doc_examples.py;
    # timings and the run's stamp aside)
    workspace = Workspace(quickstart_work, quickstart_run_dir=quickstart_work)
    outputs = {"chat-session": chat_session(workspace), "quickstart-report": quickstart_report(workspace)}
    assert stale(outputs) == [], f"stale doc examples: python scripts/doc_examples.py\n{outputs}"


def test_train_phased_py_accepts_the_launcher_local_rank_argument(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase3_pr_mastery", 8))
    cfg = tiny_run_config(tiny_model_dir, [("only", data, 1)], training={"max_steps": 1})
    write_yaml(tmp_path / "config.yaml", cfg)
    result = subprocess.run(
        [sys.executable, str(REPO / "train_phased.py"), "--local_rank=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    assert (run_dir / "only" / "adapter" / "adapter_model.safetensors").is_file()


def test_older_tool_config_validates_and_prints_the_translation(tmp_path):
    (tmp_path / "dataset").mkdir()
    for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery"):
        write_jsonl(tmp_path / "dataset" / f"{name}.jsonl", ["some text"])
    old = {
        "model": {"name": "Kwaipilot/KAT-Dev", "size": "32B", "type": "qwen2"},
        "training": {"bf16": True, "eval_steps": 100, "learning_rate": 1e-4, "lora": {"r": 64, "alpha": 128}},
        "phased_training": {
            "phases": [
                {"name": "Foundation", "dataset_file": "phase1_foundation.jsonl", "epochs": 3},
                {"name": "Evolution", "dataset_file": "phase2_evolution.jsonl", "epochs": 2},
                {"name": "PR Mastery", "dataset_file": "phase3_pr_mastery.jsonl", "epochs": 2},
            ]
        },
        "dataset": {"output_dir": "./dataset", "max_tokens": 4096, "overlap_tokens": 256},
    }
    config = write_yaml(tmp_path / "old.yaml", old)
    result = run_cli(["validate", str(config), "--print-translated"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "older tool's layout" in result.stderr and "training.eval_steps -> evaluation.eval_steps" in result.stderr
    translated = yaml.safe_load(result.stdout)
    assert [p["name"] for p in translated["phases"]] == ["phase1_foundation", "phase2_evolution", "phase3_pr_mastery"]
    assert translated["model"]["dtype"] == "bfloat16" and translated["context"]["max_tokens"] == 4096
    assert "api_key" not in translated["wandb"]
    # the translation is itself a valid new-layout config
    new = write_yaml(tmp_path / "new.yaml", translated)
    again = run_cli(["validate", str(new)], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "older tool" not in again.stderr
