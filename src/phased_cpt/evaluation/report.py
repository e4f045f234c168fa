"""`phased-cpt report RUN_DIR`: a summary of a run — phases, steps, wall time, tokens, final and
best perplexities, learning vs forgetting (headed by the learning on the least contaminated
sets), each evaluation set's contamination, the forgetting matrix (future columns included), the
completion scores and HumanEval pass@1 —
printed and written to `eval/report.md` next to the plots (which it redraws from metrics.jsonl).
The wall time is the whole run's (every session), split into training, evaluation, data
preparation and the rest."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.contamination import MIN_LINE_CHARS, WARN_SHARE
from phased_cpt.crash_points import crash_point
from phased_cpt.data.eval_sets import ContaminationTable
from phased_cpt.distributed import is_main_process
from phased_cpt.errors import UserError
from phased_cpt.evaluation.forgetting import COMPLETION_METRICS, ForgettingMatrix
from phased_cpt.evaluation.humaneval import humaneval_markdown
from phased_cpt.evaluation.learning import learning_headline, learning_summary, plot_learning, summary_markdown
from phased_cpt.evaluation.plots import plot_curves
from phased_cpt.run_dir import RunDir, read_metrics, write_atomic


def build_report(run: RunDir) -> str:
    if not RunDir.is_run_dir(run.path):
        raise UserError(f"{run.path} is not a phased-cpt run directory (no {run.config_file.name} in it)")
    state = run.read_state()
    records = read_metrics(run.metrics_file)
    lines = [f"# Run report: {run.name}", ""]
    lines += [
        "| phase | steps | wall time | tokens | final train loss | final eval ppl | best eval ppl |",
        "|---|---|---|---|---|---|---|",
    ]
    total_seconds, total_tokens = 0.0, 0
    for phase in state.finished_phases:
        name = phase.name
        evals = [
            r["perplexity"] for r in records if r.get("kind") == "eval" and r["phase"] == name and r.get("perplexity")
        ]
        seconds = phase.seconds
        tokens = phase.tokens
        total_seconds += seconds
        total_tokens += tokens
        lines.append(
            f"| {name} | {phase.steps} | {_duration(seconds)} | {tokens:,} | "
            f"{_num(phase.train_loss)} | {_num(evals[-1] if evals else None)} | {_num(min(evals) if evals else None)} |"
        )
    lines += [
        "",
        f"Total: {len(state.finished_phases)} phase(s), {total_tokens:,} tokens.",
        "",
        wall_time_line(records, total_seconds, run.metrics_file),
    ]
    forgetting_file = run.forgetting_file
    contamination = read_contamination(run)
    if forgetting_file.is_file():
        try:
            matrix = ForgettingMatrix.load(forgetting_file)
            summary = learning_summary(matrix)
            headline = learning_headline(matrix, contamination)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            lines += ["", f"(not shown: {forgetting_file} is damaged: {type(err).__name__}: {err})"]
        else:
            if summary:
                lines += ["", "## Learning vs forgetting", ""]
                lines += [f"**{headline}**", ""] if headline else []
                lines += [
                    "Domain: token-weighted over every phase's held-out documents; general: the general "
                    "held-out documents (what the base model knew); future: the repository's held-out future "
                    "(never trained on). Changes are against the base model.",
                    "",
                    summary_markdown(summary).rstrip(),
                ]
                if any(row.general_change is not None for row in summary):
                    lines += ["", "![learning vs forgetting](learning.png)"]
            lines += contamination_section(contamination)
            lines += [
                "",
                "## Forgetting matrix (perplexity on each held-out set)",
                "",
                matrix.to_markdown().rstrip(),
                "",
                "![forgetting](forgetting.png)",
            ]
            for metric in COMPLETION_METRICS:
                if matrix.has(metric):
                    lines += ["", f"## {COMPLETION_TITLES[metric]}", "", matrix.to_markdown(metric).rstrip()]
            notes = [
                f"{c}: {cell['note']}"
                for c in matrix.columns
                for cell in [matrix.rows[-1]["results"].get(c, {})]
                if matrix.rows and "note" in cell
            ]
            if notes:
                lines += [""] + [f"Note: {note}." for note in notes]
            if matrix.group("humaneval"):
                lines += [
                    "",
                    "## HumanEval pass@1 (greedy, run in the sandbox)",
                    "",
                    humaneval_markdown(matrix).rstrip(),
                ]
    elif contamination is not None:
        lines += contamination_section(contamination)
    lines += ["", "## Curves", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


def read_contamination(run: RunDir) -> ContaminationTable | None:
    """eval/contamination.json (None when the run has none or it cannot be read)."""
    path = run.eval_dir / "contamination.json"
    try:
        return ContaminationTable.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
    except (ValueError, KeyError, TypeError):
        return None


def contamination_section(table: ContaminationTable | None) -> list[str]:
    """The report's contamination table and its warnings (nothing without a table)."""
    if table is None:
        return []
    lines = [
        "",
        "## Contamination (share of each evaluation set's lines seen verbatim in training)",
        "",
        f"Lines of at least {MIN_LINE_CHARS} characters (a diff's added lines; a task's target) found in the "
        "training text of the phases trained before the row was scored (base: none). Over "
        f"{WARN_SHARE:.0%} (⚠), a score on the set is recall rather than learning.",
        "",
        table.to_markdown().rstrip(),
    ]
    warnings = table.warnings()
    return lines + ([""] + [f"- warning: {w}" for w in warnings] if warnings else [])


@dataclass(frozen=True)
class WallTime:
    """Where a run's wall-clock time went, from the events in metrics.jsonl."""

    total: float
    training: float
    evaluation: float
    preparation: float

    @property
    def other(self) -> float:
        """Loading the model, saving checkpoints and adapters, writing reports."""
        return max(self.total - self.training - self.evaluation - self.preparation, 0.0)


def wall_time(records: list[dict], phase_seconds: float) -> WallTime | None:
    """Each session (a `train` or `train --resume` process) runs from its `session_start` to its
    `session_end`, or to its last timed event when it was killed; training is the phases' time
    without the evaluations inside them. None for a run with no session records (an older version)."""
    sessions: list[list[float]] = []
    preparation = evaluation = evaluation_in_phases = 0.0
    for record in records:
        event = record.get("event")
        if event == "session_start":
            sessions.append([record["time"], record["time"]])
            preparation += record.get("preparation_seconds", 0.0)
        elif sessions and "time" in record:
            sessions[-1][1] = max(sessions[-1][1], record["time"])
        if event == "evaluation":
            evaluation += record["seconds"]
            evaluation_in_phases += record["seconds"] if record.get("during_phase") else 0.0
    if not sessions:
        return None
    total = sum(end - start for start, end in sessions)
    return WallTime(total, max(phase_seconds - evaluation_in_phases, 0.0), evaluation, preparation)


def wall_time_line(records: list[dict], phase_seconds: float, metrics_file: Path) -> str:
    spent = wall_time(records, phase_seconds)
    if spent is None:
        why = (
            f"{metrics_file} has none: the run predates them"
            if metrics_file.is_file()
            else f"{metrics_file} is missing (moved or deleted?); training time from state.json"
        )
        return f"Training time: {_duration(phase_seconds)} (no wall-time records: {why})."
    return (
        f"Wall time: {_duration(spent.total)}: training {_duration(spent.training)}, evaluation "
        f"{_duration(spent.evaluation)}, data preparation {_duration(spent.preparation)}, other "
        f"{_duration(spent.other)} (loading the model, checkpoints, reports)."
    )


COMPLETION_TITLES = {
    "top1_accuracy": "Token top-1 accuracy (share of target tokens that are the most likely next token)",
    "exact_match": "Next-line completion: exact match",
    "edit_similarity": "Next-line completion: edit similarity",
    "infill_exact_match": "Fill-in-the-middle line completion: exact match",
    "infill_edit_similarity": "Fill-in-the-middle line completion: edit similarity",
}


def write_report(run: RunDir) -> Path:
    if not is_main_process():  # the other ranks of a multi-process run write no report
        return run.eval_dir / "report.md"
    text = build_report(run)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(run.metrics_file, run.eval_dir / "curves.png")
    forgetting_file = run.forgetting_file
    try:  # every plot report.md links is redrawn; a damaged matrix is named in report.md instead
        matrix = ForgettingMatrix.load(forgetting_file) if forgetting_file.is_file() else None
        summary = learning_summary(matrix) if matrix is not None else []
    except (ValueError, KeyError, TypeError, AttributeError):
        matrix, summary = None, []
    if matrix is not None:
        matrix.plot(run.eval_dir / "forgetting.png")
    if any(row.general_change is not None for row in summary):
        plot_learning({run.name: summary}, run.eval_dir / "learning.png")
    crash_point("report")
    path = run.eval_dir / "report.md"
    write_atomic(path, text)
    return path


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _num(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.4g}"
