"""evaluation/forgetting.py: the forgetting matrix, its files and plots."""

from __future__ import annotations

import json
import math

import pytest

from phased_cpt.evaluation.forgetting import ForgettingMatrix


def test_forgetting_matrix_round_trip_and_outputs(tmp_path):
    matrix = ForgettingMatrix(["p1", "p2"])
    matrix.add_row(
        "base",
        {
            "p1": {"loss": 2.0, "perplexity": math.exp(2.0), "target_tokens": 10},
            "p2": {"loss": 3.0, "perplexity": math.exp(3.0), "target_tokens": 5},
        },
    )
    matrix.add_row("p1", {"p1": {"loss": 1.0, "perplexity": math.exp(1.0), "target_tokens": 10}})
    matrix.save(tmp_path / "forgetting.json")
    data = json.loads((tmp_path / "forgetting.json").read_text())
    assert data["perplexity"] == [
        [pytest.approx(math.exp(2)), pytest.approx(math.exp(3))],
        [pytest.approx(math.e), None],
    ]
    md = (tmp_path / "forgetting.md").read_text().splitlines()
    assert md[0] == "| perplexity after \\ on | p1 | p2 |" and md[3] == "| p1 | 2.72 | — |"
    assert (tmp_path / "forgetting.png").read_bytes()[:4] == b"\x89PNG"
    loaded = ForgettingMatrix.load(tmp_path / "forgetting.json")
    assert loaded.columns == ["p1", "p2"] and loaded.has_row("p1") and not loaded.has_row("p2")
    loaded.add_row("p1", {"p1": {"loss": 0.5, "perplexity": math.exp(0.5), "target_tokens": 10}})
    assert len(loaded.rows) == 2  # re-evaluating a phase replaces its row
