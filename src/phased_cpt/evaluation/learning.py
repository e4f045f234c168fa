"""Learning vs forgetting: one line per forgetting-matrix row, what the run gained on its own
code and what it lost on general text, and a plot of the two against each other.

    domain perplexity   token-weighted over every phase's held-out documents:
                        exp(sum of NLL / sum of target tokens), so each phase weighs by its tokens
    domain change       domain perplexity / the base model's - 1   (negative: it learned)
    general change      general perplexity / the base model's - 1  (positive: it forgot)
    exact match         next-line completion, over the phases' cut points (samples-weighted) / the general ones

A good run moves down (domain perplexity falls) without moving right (general perplexity rises).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from phased_cpt.config import GENERAL_COLUMN
from phased_cpt.evaluation.forgetting import BASE_ROW, ForgettingMatrix
from phased_cpt.evaluation.perplexity import perplexity_of
from phased_cpt.run_dir import save_figure


@dataclass(frozen=True)
class LearningRow:
    after: str
    domain_perplexity: float
    domain_change: float
    general_perplexity: float | None
    general_change: float | None
    domain_exact_match: float | None
    general_exact_match: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def domain_perplexity(results: dict[str, dict], columns: list[str]) -> float:
    """Token-weighted perplexity over the phase columns (the general one left out)."""
    cells = [results[c] for c in columns if c != GENERAL_COLUMN and c in results and results[c].get("target_tokens")]
    tokens = sum(cell["target_tokens"] for cell in cells)
    if not tokens:
        return math.nan
    return perplexity_of(sum(cell["loss"] * cell["target_tokens"] for cell in cells) / tokens)


def domain_exact_match(results: dict[str, dict], columns: list[str]) -> float | None:
    cells = [results[c] for c in columns if c != GENERAL_COLUMN and results.get(c, {}).get("samples")]
    samples = sum(cell["samples"] for cell in cells)
    return sum(cell["exact_match"] * cell["samples"] for cell in cells) / samples if samples else None


def learning_summary(matrix: ForgettingMatrix) -> list[LearningRow]:
    """One `LearningRow` per matrix row, changes relative to the base row (empty without one)."""
    base = next((row["results"] for row in matrix.rows if row["after"] == BASE_ROW), None)
    if base is None:
        return []
    base_domain = domain_perplexity(base, matrix.columns)
    base_general = base.get(GENERAL_COLUMN, {}).get("perplexity")
    summary = []
    for row in matrix.rows:
        results = row["results"]
        domain = domain_perplexity(results, matrix.columns)
        general = results.get(GENERAL_COLUMN, {}).get("perplexity")
        summary.append(
            LearningRow(
                after=row["after"],
                domain_perplexity=domain,
                domain_change=domain / base_domain - 1,
                general_perplexity=general,
                general_change=general / base_general - 1 if general is not None and base_general else None,
                domain_exact_match=domain_exact_match(results, matrix.columns),
                general_exact_match=results.get(GENERAL_COLUMN, {}).get("exact_match"),
            )
        )
    return summary


def summary_markdown(summary: list[LearningRow]) -> str:
    lines = [
        "| after | domain ppl | domain change | general ppl | general change | domain exact match | general exact match |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row.after} | {row.domain_perplexity:.4g} | {_percent(row.domain_change)} | "
            f"{_num(row.general_perplexity)} | {_percent(row.general_change)} | "
            f"{_num(row.domain_exact_match)} | {_num(row.general_exact_match)} |"
        )
    return "\n".join(lines) + "\n"


def plot_learning(curves: dict[str, list[LearningRow]], path: Path, title: str = "Learning vs forgetting") -> None:
    """General perplexity change (x) against domain perplexity change (y), one line per run from
    the base model (0, 0) through each phase; runs without a general column are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for label, rows in curves.items():
        points = [
            (r.general_change * 100, r.domain_change * 100, r.after) for r in rows if r.general_change is not None
        ]
        if not points:
            continue
        xs, ys, names = zip(*points)
        (line,) = ax.plot(xs, ys, "o-", label=label, markersize=4)
        ax.annotate(
            label if len(curves) > 1 else names[-1],
            (xs[-1], ys[-1]),
            fontsize=7,
            color=line.get_color(),
            xytext=(4, 2),
            textcoords="offset points",
        )
        if len(curves) == 1:
            for x, y, name in points[1:-1]:
                ax.annotate(name, (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("general perplexity vs the base model (%)  →  forgetting")
    ax.set_ylabel("domain perplexity vs the base model (%)  ↓  learning")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)


def _percent(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"
