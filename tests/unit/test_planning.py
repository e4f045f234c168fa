"""planning.py: what `plan` says, from the config and the model's shapes, without training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from phased_cpt.cli import main
from phased_cpt.config import load_config

REPO = Path(__file__).resolve().parents[2]


QWEN25_32B = REPO / "tests" / "fixtures" / "model_configs" / "qwen2.5-32b"


QUICKSTART_DATA = REPO / "src" / "phased_cpt" / "quickstart" / "data"


def plan_json(capsys, *args: str) -> dict:
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_of_the_quickstart_says_auto_chose_off(capsys):
    plan = plan_json(capsys)
    assert plan["checkpointing"].startswith("off (auto: needs ~")
    assert plan["memory"]["no_liger"]["checkpointing"].startswith("off (auto:")


def test_plan_of_the_documented_32b_32k_config_says_auto_chose_checkpointing(tmp_path, capsys):
    """config.yaml at the repository root (32B, rows of 32K tokens), planned from the shipped
    Qwen2.5-32B config.json without weights, with a phase holding a document longer than 32K tokens."""
    config = tmp_path / "config.yaml"
    shutil.copy(REPO / "config.yaml", config)
    cfg, _ = load_config(config, check_files=False)
    assert cfg.training.gradient_checkpointing == "auto" and cfg.context.max_tokens == 32768
    (tmp_path / "dataset").mkdir()
    for phase in cfg.phases:
        shutil.copy(QUICKSTART_DATA / f"{phase.name}.jsonl", tmp_path / "dataset" / f"{phase.name}.jsonl")
    long_document = {"training_content": "def f(x):\n    return x + 1\n" * 6000}  # ~168K bytes: > 32K tokens
    with open(tmp_path / "dataset" / "phase1_foundation.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(long_document) + "\n")
    one_h100 = plan_json(capsys, str(config), "--model-config", str(QWEN25_32B))
    assert one_h100["memory"]["row_tokens"] == 32768
    assert one_h100["checkpointing"].startswith("full")  # every layer (+ offload where nothing fits)
    assert "auto: nothing fits 71.3 GiB" in one_h100["checkpointing"]
    # the attention line, from the same --model-config (a qwen2 config.json; these rows are not packed)
    assert one_h100["attention"].endswith("on a GPU; sdpa (auto: rows are not packed) on a CPU")
    eight_h200 = plan_json(capsys, str(config), "--gpus", "8", "--gpu-model", "h200", "--model-config", str(QWEN25_32B))
    assert eight_h200["checkpointing"].startswith("full")
