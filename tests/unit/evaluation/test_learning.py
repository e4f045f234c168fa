"""Learning vs forgetting from a forgetting matrix with known numbers."""

from __future__ import annotations

import math

import pytest

from phased_cpt.evaluation.forgetting import ForgettingMatrix
from phased_cpt.evaluation.learning import learning_summary, plot_learning, summary_markdown


def cell(loss: float, tokens: int, exact: float | None = None, samples: int = 0) -> dict:
    found = {"loss": loss, "perplexity": math.exp(loss), "target_tokens": tokens}
    return found | ({"exact_match": exact, "samples": samples} if exact is not None else {})


MATRIX = ForgettingMatrix(
    ["a", "b", "general"],
    [
        {
            "after": "base",
            "results": {"a": cell(3.0, 100, 0.0, 4), "b": cell(3.0, 300, 0.0, 4), "general": cell(2.0, 50, 0.5, 4)},
        },
        {
            "after": "a",
            "results": {"a": cell(1.0, 100, 1.0, 4), "b": cell(3.0, 300, 0.0, 4), "general": cell(2.5, 50, 0.25, 4)},
        },
        {
            "after": "b",
            "results": {"a": cell(2.0, 100, 0.5, 4), "b": cell(1.0, 300, 0.5, 12), "general": cell(2.2, 50, 0.5, 4)},
        },
    ],
)


def test_domain_is_token_weighted_and_changes_are_against_the_base():
    base, after_a, after_b = learning_summary(MATRIX)
    assert (
        base.domain_perplexity == pytest.approx(math.exp(3.0)) and base.domain_change == 0 and base.general_change == 0
    )
    assert after_a.domain_perplexity == pytest.approx(math.exp((1.0 * 100 + 3.0 * 300) / 400))
    assert after_a.general_change == pytest.approx(math.exp(2.5) / math.exp(2.0) - 1)
    assert after_b.domain_change == pytest.approx(math.exp((2.0 * 100 + 1.0 * 300) / 400) / math.exp(3.0) - 1)
    assert after_a.domain_exact_match == 0.5 and after_b.domain_exact_match == pytest.approx((0.5 * 4 + 0.5 * 12) / 16)
    assert after_b.general_exact_match == 0.5


def test_without_a_general_column_there_is_no_general_change_and_no_plot(tmp_path):
    matrix = ForgettingMatrix(
        ["a"], [{"after": "base", "results": {"a": cell(3.0, 10)}}, {"after": "a", "results": {"a": cell(2.0, 10)}}]
    )
    summary = learning_summary(matrix)
    assert [r.general_change for r in summary] == [None, None]
    assert "| a | 7.389 | -63.2% | — | — |" in summary_markdown(summary)
    assert learning_summary(ForgettingMatrix(["a"], [])) == []
    plot_learning({"run": learning_summary(MATRIX)}, tmp_path / "learning.png")
    assert (tmp_path / "learning.png").stat().st_size > 1000
