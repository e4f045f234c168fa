"""The plots' text: numbers on the forgetting heatmap are readable on every cell colour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phased_cpt.evaluation.forgetting import ForgettingMatrix
from phased_cpt.evaluation.plots import text_colour


@pytest.mark.parametrize(
    ("rgba", "expected"),
    [
        ((0.993, 0.906, 0.144, 1.0), "black"),  # viridis yellow
        ((0.267, 0.005, 0.329, 1.0), "white"),  # viridis dark violet
        ((1.0, 1.0, 1.0, 1.0), "black"),
        ((0.0, 0.0, 0.0, 0.0), "black"),  # transparent: a missing value on the white figure
    ],
)
def test_text_colour_contrasts_with_the_cell(rgba, expected):
    assert text_colour(rgba) == expected


def test_heatmap_numbers_on_yellow_cells_are_dark(tmp_path):
    """Before: white numbers on every cell, unreadable on viridis_r's yellow (the lowest perplexity)."""
    import matplotlib.image

    cell = lambda ppl: {"loss": math.log(ppl), "perplexity": ppl, "target_tokens": 10}  # noqa: E731
    matrix = ForgettingMatrix(["a", "b"])
    matrix.add_row("base", {"a": cell(2.22), "b": cell(900.0)})
    matrix.plot(tmp_path / "f.png")
    pixels = matplotlib.image.imread(tmp_path / "f.png")[..., :3]
    yellow = (pixels[..., 0] > 0.85) & (pixels[..., 1] > 0.8) & (pixels[..., 2] < 0.35)
    yellow[:, pixels.shape[1] // 2 :] = False  # the cell of column "a", not the colour bar's yellow end
    rows, cols = np.nonzero(yellow)
    inside = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    luminance = inside @ np.array([0.2126, 0.7152, 0.0722])
    assert (luminance < 0.4).sum() > 20  # the number "2.22" drawn dark
    assert (luminance > 0.97).sum() < 5  # and not white
