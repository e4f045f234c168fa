"""Training curves of a whole run: train/eval loss and perplexity on the global step, with the
phase boundaries marked. Drawn from metrics.jsonl, so it works for finished, interrupted and
resumed runs alike."""

from __future__ import annotations

import math
from pathlib import Path

from phased_cpt.run_dir import read_metrics, save_figure


def text_colour(rgba: tuple[float, float, float, float]) -> str:
    """'black' or 'white', whichever contrasts more with a cell drawn in `rgba` (matplotlib's 0-1
    floats), by WCAG relative luminance; a transparent cell (a missing value) shows the white
    figure behind it. Yellow cells get black text, dark violet ones white."""
    *rgb, alpha = rgba
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = alpha * (0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]) + (1 - alpha)
    # contrast with black (L + 0.05) / 0.05 equals contrast with white 1.05 / (L + 0.05) at L = 0.179
    return "black" if luminance > 0.179 else "white"


def phase_starts(records: list[dict]) -> list[tuple[str, int]]:
    """(phase, first global step) in run order; a resumed phase keeps its first start."""
    starts: dict[str, int] = {}
    for r in records:
        if r.get("event") == "phase_start":
            starts.setdefault(r["phase"], r["step"])
    return list(starts.items())


def plot_curves(metrics_file: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_file)
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    series = [("train", None, "-")] + [("eval", name, "o-") for name, _ in phase_starts(records)]
    for kind, phase, style in series:
        points = [
            (r["step"], r["loss"])
            for r in records
            if r.get("kind") == kind and r.get("loss") is not None and phase in (None, r["phase"])
        ]
        if points:
            steps, losses = zip(*points)
            label = kind if phase is None else f"eval on {phase}"
            axes[0].plot(steps, losses, style, label=label, markersize=4)
            axes[1].plot(steps, [math.exp(min(v, 80)) for v in losses], style, label=label, markersize=4)
    for name, step in phase_starts(records):
        for ax in axes:
            ax.axvline(step, color="gray", linestyle="--", linewidth=0.8)
        axes[1].annotate(
            name, (step, 0.02), xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="right", fontsize=8
        )
    axes[0].set_ylabel("loss (nats / token)")
    axes[0].set_title("eval: each phase's held-out documents, during and at the end of that phase", fontsize=9)
    axes[1].set_ylabel("perplexity")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("global optimizer step")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Training across phases")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
