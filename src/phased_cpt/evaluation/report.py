"""`phased-cpt report RUN_DIR`: a summary of a run — phases, steps, wall time, tokens, final and
best perplexities, learning vs forgetting, the forgetting matrix and the completion scores —
printed and written to `eval/report.md` next to the plots (which it redraws)."""

from __future__ import annotations

import math
from pathlib import Path

from phased_cpt.errors import UserError
from phased_cpt.evaluation.forgetting import COMPLETION_METRICS, ForgettingMatrix
from phased_cpt.evaluation.learning import learning_summary, plot_learning, summary_markdown
from phased_cpt.evaluation.plots import plot_curves, read_metrics
from phased_cpt.run_dir import RunDir, write_atomic


def build_report(run: RunDir) -> str:
    if not RunDir.is_run_dir(run.path):
        raise UserError(f"{run.path} is not a phased-cpt run directory (no {run.config_file.name} in it)")
    state = run.read_state()
    records = read_metrics(run.metrics_file)
    lines = [f"# Run report: {run.name}", ""]
    lines += ["| phase | steps | wall time | tokens | final train loss | final eval ppl | best eval ppl |",
              "|---|---|---|---|---|---|---|"]
    total_seconds, total_tokens = 0.0, 0
    for phase in state["finished_phases"]:
        name = phase["name"]
        evals = [r["perplexity"] for r in records if r.get("kind") == "eval" and r["phase"] == name and r.get("perplexity")]
        seconds = phase.get("seconds", 0.0)
        tokens = phase.get("tokens", 0)
        total_seconds += seconds
        total_tokens += tokens
        lines.append(
            f"| {name} | {phase.get('steps', 0)} | {_duration(seconds)} | {tokens:,} | "
            f"{_num(phase.get('train_loss'))} | {_num(evals[-1] if evals else None)} | {_num(min(evals) if evals else None)} |"
        )
    lines += ["", f"Total: {len(state['finished_phases'])} phase(s), {_duration(total_seconds)}, {total_tokens:,} tokens."]
    forgetting_file = run.eval_dir / "forgetting.json"
    if forgetting_file.is_file():
        matrix = ForgettingMatrix.load(forgetting_file)
        summary = learning_summary(matrix)
        if summary:
            lines += ["", "## Learning vs forgetting", "",
                      "Domain: token-weighted over every phase's held-out documents; general: the general held-out "
                      "documents (what the base model knew). Changes are against the base model.", "",
                      summary_markdown(summary).rstrip()]
            if any(row.general_change is not None for row in summary):
                lines += ["", "![learning vs forgetting](learning.png)"]
        lines += ["", "## Forgetting matrix (perplexity on each held-out set)", "", matrix.to_markdown().rstrip(),
                  "", "![forgetting](forgetting.png)"]
        for metric in COMPLETION_METRICS:
            if matrix.has(metric):
                lines += ["", f"## {COMPLETION_TITLES[metric]}", "", matrix.to_markdown(metric).rstrip()]
    lines += ["", "## Curves", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


COMPLETION_TITLES = {
    "top1_accuracy": "Token top-1 accuracy (share of target tokens that are the most likely next token)",
    "exact_match": "Next-line completion: exact match",
    "edit_similarity": "Next-line completion: edit similarity",
    "infill_exact_match": "Fill-in-the-middle line completion: exact match",
    "infill_edit_similarity": "Fill-in-the-middle line completion: edit similarity",
}


def write_report(run: RunDir) -> Path:
    if not run.writer:  # ranks other than 0 of a multi-process run write no report
        return run.eval_dir / "report.md"
    text = build_report(run)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(run.metrics_file, run.eval_dir / "curves.png")
    forgetting_file = run.eval_dir / "forgetting.json"
    summary = learning_summary(ForgettingMatrix.load(forgetting_file)) if forgetting_file.is_file() else []
    if any(row.general_change is not None for row in summary):
        plot_learning({run.name: summary}, run.eval_dir / "learning.png")
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
