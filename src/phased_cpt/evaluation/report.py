"""`phased-cpt report RUN_DIR`: a summary of a run — phases, steps, wall time, tokens, final and
best perplexities, the forgetting matrix — printed and written to `eval/report.md` next to the
plots (which it redraws from metrics.jsonl)."""

from __future__ import annotations

import math
from pathlib import Path

from phased_cpt.crash_points import crash_point
from phased_cpt.errors import UserError
from phased_cpt.evaluation.forgetting import ForgettingMatrix
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
        lines += ["", "## Forgetting matrix (perplexity on each phase's held-out documents)", "", matrix.to_markdown().rstrip(),
                  "", "![forgetting](forgetting.png)"]
    lines += ["", "## Curves", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


def write_report(run: RunDir) -> Path:
    if not run.writer:  # ranks other than 0 of a multi-process run write no report
        return run.eval_dir / "report.md"
    text = build_report(run)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(run.metrics_file, run.eval_dir / "curves.png")
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
