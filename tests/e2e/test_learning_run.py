"""A run that measures learning and forgetting: general data mixed in, FIM, the general column,
completion (plain and infill) in the forgetting matrix, the learning-vs-forgetting report; and
the learning rate at every step of rewarm and wsd runs. The CLI runs in this process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from phased_cpt.cli import main
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PEAK = 1e-2


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("learning-data")
    return {
        "p1": write_jsonl(root / "p1.jsonl", bundled_texts("phase1_foundation", 12)),
        "p2": write_jsonl(root / "p2.jsonl", bundled_texts("phase2_evolution", 20)),
        "p3": write_jsonl(root / "p3.jsonl", bundled_texts("phase3_pr_mastery", 12)),
        "general": write_jsonl(root / "general.jsonl", bundled_texts("phase3_pr_mastery")[12:40]),
    }


def run(
    work: Path,
    model_dir: Path,
    phases: list[str],
    files: dict[str, Path],
    lr_scales: dict[str, float] | None = None,
    **sections,
) -> Path:
    cfg = tiny_run_config(
        model_dir,
        [(name, files[name], 1) for name in phases],
        training={
            "max_steps": 4,
            "learning_rate": PEAK,
            "warmup_ratio": 0.25,
            "lr_scheduler": "cosine",
            "gradient_checkpointing": False,
        },
        context={"max_tokens": 128, "overlap_tokens": 16},
        data={"eval_ratio": 0.2},
        output={"dir": str(work / "outputs")},
        tensorboard={"enabled": False},
    )
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    for phase in cfg["phases"]:
        phase["lr_scale"] = (lr_scales or {}).get(phase["name"], 1.0)
    assert main(["train", str(write_yaml(work / "config.yaml", cfg))]) == 0
    (run_dir,) = (work / "outputs").iterdir()
    return run_dir


def learning_rates(run_dir: Path) -> dict[str, list[float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    found: dict[str, list[float]] = {}
    for r in records:
        if r.get("kind") == "train":
            found.setdefault(r["phase"], []).append(r["learning_rate"])
    return found


@pytest.fixture(scope="module")
def learning_run(tiny_fim_model_dir, files, tmp_path_factory):
    return run(
        tmp_path_factory.mktemp("learning"),
        tiny_fim_model_dir,
        ["p1", "p2"],
        files,
        general={"file": str(files["general"]), "ratio": 0.25},
        context={"fim_rate": 0.5},
        evaluation={"completion": {"samples": 4, "max_new_tokens": 8, "infill": True}, "batch_size": 4},
    )


def test_the_forgetting_matrix_has_a_general_column_and_completion_scores(learning_run):
    matrix = json.loads((learning_run / "eval" / "forgetting.json").read_text())
    assert matrix["columns"] == ["p1", "p2", "general"]
    assert [row["after"] for row in matrix["rows"]] == ["base", "p1", "p2"]
    for row in matrix["rows"]:
        for column, cell in row["results"].items():
            assert cell["samples"] == 4 == cell["infill_samples"], (row["after"], column)
            for metric in ("top1_accuracy", "exact_match", "edit_similarity", "infill_exact_match"):
                assert 0.0 <= cell[metric] <= 1.0
            assert math.isfinite(cell["perplexity"])
    base, after_p1, _ = matrix["rows"]
    assert after_p1["results"]["p1"]["perplexity"] < base["results"]["p1"]["perplexity"]


def test_the_report_sets_learning_against_forgetting(learning_run):
    report = (learning_run / "eval" / "report.md").read_text()
    assert "## Learning vs forgetting" in report and "![learning vs forgetting](learning.png)" in report
    summary = report.split("## Learning vs forgetting")[1].split("##")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| after")]
    assert [row.split("|")[1].strip() for row in rows] == ["base", "p1", "p2"]
    assert (
        "## Next-line completion: exact match" in report
        and "## Fill-in-the-middle line completion: exact match" in report
    )
    assert (learning_run / "eval" / "learning.png").stat().st_size > 1000


def test_rewarm_warms_up_and_decays_within_every_phase(learning_run):
    # the learning rate of steps 1..4 of a phase: 1 warmup step from 0, then cosine towards 0
    expected = [PEAK * f for f in (0.0, 1.0, 0.75, 0.25)]
    assert learning_rates(learning_run) == {"p1": pytest.approx(expected), "p2": pytest.approx(expected)}


def test_wsd_holds_the_peak_across_phase_boundaries_and_anneals_at_the_end_at_the_phases_lr_scale(
    tiny_model_dir, files, tmp_path
):
    run_dir = run(
        tmp_path,
        tiny_model_dir,
        ["p1", "p2", "p3"],
        files,
        lr_scales={"p3": 0.5},
        training={"lr_across_phases": "wsd", "decay_ratio": 0.5, "lr_scheduler": "linear"},
        evaluation={"forgetting_matrix": False, "completion": {"samples": 0}},
    )
    rates = learning_rates(run_dir)
    assert rates["p1"] == pytest.approx([0.0, PEAK, PEAK, PEAK])  # warms up over its first step, then holds
    assert rates["p2"] == pytest.approx([PEAK] * 4)  # no re-warming at the boundary
    half = PEAK * 0.5  # phases.p3.lr_scale
    assert rates["p3"] == pytest.approx([half, half, half, half / 2])  # anneals over the last half (steps 3-4)
