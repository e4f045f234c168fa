"""A quickstart-sized run with the repository's held-out future (`evaluation.future`, the files
`data from-git --holdout-*` writes) and HumanEval: the future columns, their contamination and the
HumanEval column appear in eval/forgetting.json, eval/contamination.json and the report, for the
base model and after each phase. The CLI runs in this process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from phased_cpt.cli import main
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
FUTURE = ["future_evolution", "future_pr_mastery"]
TASKS = ["future_tasks.next_line", "future_tasks.scope", "future_tasks.fim"]


def future_tasks(texts: list[str]) -> list[dict]:
    """Tasks in the agreed format, cut from `texts` (standing in for files after a change)."""
    tasks = []
    for n, text in enumerate(texts):
        lines = [line for line in text.splitlines(keepends=True) if line.strip()]
        if len(lines) < 6:
            continue
        head, line, block = "".join(lines[:2]), lines[2], "".join(lines[2:5])
        common = {"path": f"src/file{n}.py", "commit": f"{n:040x}"}
        tasks += [
            {"kind": "next_line", "prefix": head, "suffix": "", "target": line, **common},
            {"kind": "scope", "prefix": head, "suffix": "", "target": block, **common},
            {"kind": "fim", "prefix": head, "suffix": "".join(lines[3:]), "target": line, **common},
        ]
    return tasks


@pytest.fixture(scope="module")
def future_run(tiny_fim_model_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("future")
    data = work / "dataset"
    files = {
        "p1": write_jsonl(data / "p1.jsonl", bundled_texts("phase1_foundation", 12)),
        "p2": write_jsonl(data / "p2.jsonl", bundled_texts("phase2_evolution", 16)),
    }
    write_jsonl(data / "future_evolution.jsonl", bundled_texts("phase2_evolution")[40:46])
    write_jsonl(data / "future_pr_mastery.jsonl", bundled_texts("phase3_pr_mastery", 6))
    tasks = future_tasks(bundled_texts("phase1_foundation")[20:40])
    (data / "future_tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    cfg = tiny_run_config(
        tiny_fim_model_dir,
        [(name, files[name], 1) for name in ("p1", "p2")],
        training={"max_steps": 2, "gradient_checkpointing": False},
        data={"eval_ratio": 0.2},
        output={"dir": str(work / "outputs")},
        tensorboard={"enabled": False},
        evaluation={
            "batch_size": 4,
            "completion": {"samples": 2, "max_new_tokens": 4},
            "future": {
                "documents": [f"dataset/{name}.jsonl" for name in FUTURE],
                "tasks": "dataset/future_tasks.jsonl",
            },
            "humaneval": {"problems": 2, "final_problems": 3, "max_new_tokens": 16, "timeout_s": 5},
        },
    )
    assert main(["train", str(write_yaml(work / "config.yaml", cfg))]) == 0
    (run_dir,) = (work / "outputs").iterdir()
    return run_dir


def test_future_and_humaneval_columns_have_base_and_every_phase(future_run):
    matrix = json.loads((future_run / "eval" / "forgetting.json").read_text())
    assert matrix["columns"] == ["p1", "p2", *FUTURE, *TASKS, "humaneval"]
    assert matrix["groups"]["future"] == FUTURE and matrix["groups"]["tasks"] == TASKS
    assert [row["after"] for row in matrix["rows"]] == ["base", "p1", "p2"]
    for row in matrix["rows"]:
        results = row["results"]
        for column in FUTURE:
            assert math.isfinite(results[column]["perplexity"]) and results[column]["target_tokens"] > 0
        for column in TASKS:
            assert results[column]["samples"] == 2 and 0 <= results[column]["edit_similarity"] <= 1
        humaneval = results["humaneval"]
        assert humaneval["problems"] == (2 if row["after"] == "p1" else 3)
        assert len(humaneval["passed"]) == humaneval["problems"]
    # the future documents were never trained on: a future column differs from every phase's
    after_p2 = matrix["rows"][-1]["results"]
    assert after_p2["future_evolution"]["target_tokens"] != after_p2["p2"]["target_tokens"]


def test_contamination_is_written_for_every_evaluation_set(future_run):
    table = json.loads((future_run / "eval" / "contamination.json").read_text())
    assert table["columns"] == ["p1", "p2", *FUTURE, *TASKS]
    assert [row["after"] for row in table["rows"]] == ["base", "p1", "p2"]
    assert all(cell["seen"] == 0 for cell in table["rows"][0]["results"].values())
    shares = [row["results"]["p1"]["share"] for row in table["rows"]]
    assert shares == sorted(shares)  # training text only grows
    assert (future_run / "eval" / "contamination.md").is_file()


def test_the_report_shows_future_columns_contamination_and_humaneval(future_run):
    report = (future_run / "eval" / "report.md").read_text()
    assert "Learning on the least contaminated sets" in report
    assert "## Contamination (share of each evaluation set's lines seen verbatim in training)" in report
    assert "| future_evolution | future_pr_mastery |" in report.split("## Forgetting matrix")[1]
    assert "future_tasks.scope" in report.split("## Next-line completion: exact match")[1]
    assert "## HumanEval pass@1" in report and "| p2 | 3 |" in report and "Sandbox: audit-hook" in report
    assert "future ppl" in report and "HumanEval pass@1 |" in report
