"""Learning vs forgetting: one line per forgetting-matrix row, what the run gained on its own
code and what it lost on general text, and a plot of the two against each other.

    domain perplexity   token-weighted over every phase's held-out documents:
                        exp(sum of NLL / sum of target tokens), so each phase weighs by its tokens
    domain change       domain perplexity / the base model's - 1   (negative: it learned)
    general change      general perplexity / the base model's - 1  (positive: it forgot)
    exact match         next-line completion, over the phases' cut points (samples-weighted) / the general ones
    future ppl, change  the same over the future document columns (the repository after the cut)
    future tasks        exact match over the future completion tasks (samples-weighted)
    HumanEval           pass@1, and its change in points against the base on the same problems

`learning_headline` names the sets whose score is learning rather than recall (contamination).

A good run moves down (domain perplexity falls) without moving right (general perplexity rises).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from phased_cpt.config import GENERAL_COLUMN, HUMANEVAL_COLUMN
from phased_cpt.contamination import WARN_SHARE
from phased_cpt.data.eval_sets import ContaminationTable
from phased_cpt.evaluation.forgetting import BASE_ROW, ForgettingMatrix
from phased_cpt.evaluation.humaneval import pass_at_1_on
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
    future_perplexity: float | None = None
    """Token-weighted over the future document columns (the repository after the cut)."""
    future_change: float | None = None
    future_exact_match: float | None = None
    """Samples-weighted over the future task columns that were scored."""
    humaneval_pass_at_1: float | None = None
    humaneval_change: float | None = None
    """pass@1 minus the base model's on the same problems (points as a fraction: -0.05 = 5 points lost)."""

    def to_dict(self) -> dict:
        return asdict(self)


def domain_perplexity(results: dict[str, dict], columns: list[str]) -> float:
    """Token-weighted perplexity over `columns` (the general one left out)."""
    cells = [results[c] for c in columns if c != GENERAL_COLUMN and c in results and results[c].get("target_tokens")]
    tokens = sum(cell["target_tokens"] for cell in cells)
    if not tokens:
        return math.nan
    return perplexity_of(sum(cell["loss"] * cell["target_tokens"] for cell in cells) / tokens)


def domain_exact_match(results: dict[str, dict], columns: list[str]) -> float | None:
    cells = [results[c] for c in columns if c != GENERAL_COLUMN and results.get(c, {}).get("samples")]
    samples = sum(cell["samples"] for cell in cells)
    return sum(cell["exact_match"] * cell["samples"] for cell in cells) / samples if samples else None


def _change(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not math.isfinite(value) or not math.isfinite(base) or not base:
        return None
    return value / base - 1


def learning_summary(matrix: ForgettingMatrix) -> list[LearningRow]:
    """One `LearningRow` per matrix row, changes relative to the base row (empty without one)."""
    base = next((row["results"] for row in matrix.rows if row["after"] == BASE_ROW), None)
    if base is None:
        return []
    phases, future, tasks = matrix.group("phases"), matrix.group("future"), matrix.group("tasks")
    base_domain = domain_perplexity(base, phases)
    base_future = domain_perplexity(base, future) if future else None
    base_general = base.get(GENERAL_COLUMN, {}).get("perplexity")
    base_humaneval = base.get(HUMANEVAL_COLUMN, {})
    summary = []
    for row in matrix.rows:
        results = row["results"]
        domain = domain_perplexity(results, phases)
        general = results.get(GENERAL_COLUMN, {}).get("perplexity")
        future_ppl = domain_perplexity(results, future) if future else None
        humaneval = results.get(HUMANEVAL_COLUMN, {})
        pass_now = humaneval.get("pass_at_1")
        pass_base = pass_at_1_on(base_humaneval, humaneval.get("problems", 0))
        summary.append(
            LearningRow(
                after=row["after"],
                domain_perplexity=domain,
                domain_change=domain / base_domain - 1,
                general_perplexity=general,
                general_change=general / base_general - 1 if general is not None and base_general else None,
                domain_exact_match=domain_exact_match(results, phases),
                general_exact_match=results.get(GENERAL_COLUMN, {}).get("exact_match"),
                future_perplexity=future_ppl,
                future_change=_change(future_ppl, base_future),
                future_exact_match=domain_exact_match(results, tasks) if tasks else None,
                humaneval_pass_at_1=pass_now,
                humaneval_change=pass_now - pass_base if pass_now is not None and pass_base is not None else None,
            )
        )
    return summary


def summary_markdown(summary: list[LearningRow]) -> str:
    """The table; the future and HumanEval columns only when a row has them."""
    extra = [
        (title, key, kind)
        for title, key, kind in (
            ("future ppl", "future_perplexity", "num"),
            ("future change", "future_change", "percent"),
            ("future tasks exact match", "future_exact_match", "num"),
            ("HumanEval pass@1", "humaneval_pass_at_1", "num"),
            ("pass@1 change (points)", "humaneval_change", "points"),
        )
        if any(getattr(row, key) is not None for row in summary)
    ]
    titles = [
        "after",
        "domain ppl",
        "domain change",
        "general ppl",
        "general change",
        "domain exact match",
        "general exact match",
        *(title for title, _, _ in extra),
    ]
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    format_of = {"num": _num, "percent": _percent, "points": _points}
    for row in summary:
        cells = [format_of[kind](getattr(row, key)) for _, key, kind in extra]
        lines.append(
            f"| {row.after} | {row.domain_perplexity:.4g} | {_percent(row.domain_change)} | "
            f"{_num(row.general_perplexity)} | {_percent(row.general_change)} | "
            f"{_num(row.domain_exact_match)} | {_num(row.general_exact_match)} |"
            + "".join(f" {cell} |" for cell in cells)
        )
    return "\n".join(lines) + "\n"


def learning_headline(matrix: ForgettingMatrix, contamination: ContaminationTable | None) -> str | None:
    """One sentence: the perplexity change after the last row against the base model on the
    least contaminated domain sets (phase and future document columns), named with their share
    of seen lines: every set at or under `WARN_SHARE`, else the single least contaminated one;
    and the sets over it, named as recall. None without a base row, a later row or contamination."""
    if contamination is None or len(matrix.rows) < 2 or matrix.rows[0]["after"] != BASE_ROW:
        return None
    last = matrix.rows[-1]
    candidates = [
        c
        for c in matrix.group("phases") + matrix.group("future")
        if contamination.share(last["after"], c) is not None and last["results"].get(c, {}).get("target_tokens")
    ]
    if not candidates:
        return None
    shares = {c: contamination.share(last["after"], c) for c in candidates}
    clean = sorted((c for c in candidates if shares[c] <= WARN_SHARE), key=shares.get) or [
        min(candidates, key=shares.get)
    ]
    change = _change(domain_perplexity(last["results"], clean), domain_perplexity(matrix.rows[0]["results"], clean))
    named = ", ".join(f"{c} ({shares[c]:.1%} of lines seen in training)" for c in clean)
    sentence = (
        f"Learning on the least contaminated sets, {named}: perplexity {_percent(change)} after {last['after']} "
        "against the base model."
    )
    recall = [c for c in candidates if shares[c] > WARN_SHARE]
    if recall:
        sentence += (
            f" Over {WARN_SHARE:.0%} seen, a lower perplexity is recall rather than learning: "
            + ", ".join(f"{c} ({shares[c]:.1%})" for c in recall)
            + "."
        )
    if shares[clean[0]] > WARN_SHARE:
        sentence += f" No set is under {WARN_SHARE:.0%}: this run has no clean measure of learning."
    return sentence


def plot_learning(curves: dict[str, list[LearningRow]], path: Path, title: str = "Learning vs forgetting") -> None:
    """General perplexity change (x) against domain perplexity change (y), one line per run from
    the base model (0, 0) through each phase, and a dashed one for the future documents' change
    where the run has them; runs without a general column are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    has_future = False
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
        future = [
            (r.general_change * 100, r.future_change * 100)
            for r in rows
            if r.general_change is not None and r.future_change is not None
        ]
        if future:
            fx, fy = zip(*future)
            ax.plot(
                fx, fy, "s--", color=line.get_color(), label=f"{label}: future (held-out after the cut)", markersize=4
            )
            has_future = True
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("general perplexity vs the base model (%)  →  forgetting")
    ax.set_ylabel("domain perplexity vs the base model (%)  ↓  learning")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or has_future:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)


def _percent(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}%"


def _points(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}"


def _num(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"
