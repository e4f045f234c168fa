"""The forgetting matrix: perplexity on every phase's held-out documents, before training (the
base model) and after each phase. Rows: base, after phase 1, ...; columns (`groups`): each
phase's data; `general` (general held-out documents: what the base knew before) when the run has
them; each future document file and each kind of future completion task
(`evaluation.future`: the repository after the cut, never trained on); `humaneval` (pass@1).

Reading down a column shows what later phases did to what an earlier phase taught. Each cell
also holds the token top-1 accuracy and, with completion evaluation, next-line exact match and
edit similarity (`values(metric)`). Saved as `eval/forgetting.json` (the source of truth, also
read on resume), `.md` and a PNG heatmap of perplexity.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from phased_cpt.config import GENERAL_COLUMN
from phased_cpt.distributed import is_main_process
from phased_cpt.evaluation.perplexity import Collator, evaluate_rows
from phased_cpt.evaluation.plots import text_colour
from phased_cpt.run_dir import save_figure, write_atomic

if TYPE_CHECKING:
    from peft import PeftModel

    from phased_cpt.data.phase_data import Rows

logger = logging.getLogger(__name__)

BASE_ROW = "base"


GROUPS = ("phases", "general", "future", "tasks", "humaneval")
"""What a column measures: a phase's held-out documents, the general ones, a future document
file, a kind of future completion task, HumanEval. Task and HumanEval columns have no perplexity."""
SCORE_ONLY_GROUPS = ("tasks", "humaneval")


class ForgettingMatrix:
    def __init__(
        self, columns: list[str], rows: list[dict] | None = None, groups: dict[str, list[str]] | None = None
    ) -> None:
        self.columns = columns
        self.rows = rows or []  # [{"after": "base" | phase, "results": {column: {loss, perplexity, target_tokens}}}]
        self.groups = groups or {"phases": [c for c in columns if c != GENERAL_COLUMN]} | (
            {"general": [GENERAL_COLUMN]} if GENERAL_COLUMN in columns else {}
        )
        """{group (`GROUPS`): its columns}; a file written before groups: phases and general."""

    @classmethod
    def load(
        cls, path: Path, columns: list[str] | None = None, groups: dict[str, list[str]] | None = None
    ) -> ForgettingMatrix:
        """The saved matrix (columns and groups from the file unless given), or an empty one."""
        if not path.is_file():
            return cls(columns or [], groups=groups)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(columns or data["columns"], data["rows"], groups or data.get("groups"))

    def group(self, name: str) -> list[str]:
        return [c for c in self.groups.get(name, []) if c in self.columns]

    def columns_for(self, metric: str) -> list[str]:
        """The columns a table of `metric` shows: every column, but task and HumanEval columns
        only where they hold that metric."""
        score_only = {c for g in SCORE_ONLY_GROUPS for c in self.group(g)}
        return [
            c
            for c in self.columns
            if c not in score_only or any(row["results"].get(c, {}).get(metric) is not None for row in self.rows)
        ]

    def has_row(self, after: str) -> bool:
        return any(row["after"] == after for row in self.rows)

    def add_row(self, after: str, results: dict[str, dict]) -> None:
        self.rows = [row for row in self.rows if row["after"] != after] + [{"after": after, "results": results}]

    def values(self, metric: str = "perplexity", columns: list[str] | None = None) -> list[list[float | None]]:
        """`metric` of every cell, rows by `columns` (all by default; None where it was not measured)."""
        return [
            [row["results"].get(c, {}).get(metric) for c in (self.columns if columns is None else columns)]
            for row in self.rows
        ]

    def perplexities(self) -> list[list[float | None]]:
        return self.values("perplexity")

    def has(self, metric: str) -> bool:
        return any(v is not None for row in self.values(metric) for v in row)

    def save(self, path: Path) -> None:
        """The matrix to `path` (JSON), its table (`.md`) and plot (`.png`) beside it; the main process writes."""
        if not is_main_process():  # every rank evaluates; rank 0 writes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"columns": self.columns, "groups": self.groups, "rows": self.rows, "perplexity": self.perplexities()}
        write_atomic(path, json.dumps(data, indent=2) + "\n")
        write_atomic(path.with_suffix(".md"), self.to_markdown())
        self.plot(path.with_suffix(".png"))

    def to_markdown(self, metric: str = "perplexity") -> str:
        columns = self.columns_for(metric)
        header = f"| {metric.replace('_', ' ')} after \\ on | " + " | ".join(columns) + " |"
        lines = [header, "|---" * (len(columns) + 1) + "|"]
        for row, values in zip(self.rows, self.values(metric, columns)):
            cells = [_format(v) for v in values]
            lines.append(f"| {row['after']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        columns = self.columns_for("perplexity")
        values = np.array(
            [[math.nan if v is None else v for v in r] for r in self.values("perplexity", columns)], dtype=float
        ).reshape(len(self.rows), len(columns))
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(columns), 1.2 + 0.6 * max(len(self.rows), 1)))
        shown = np.log(values) if np.isfinite(values).any() else values
        image = ax.imshow(shown, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
        ax.set_yticks(
            range(len(self.rows)),
            [f"after {r['after']}" if r["after"] != BASE_ROW else "base model" for r in self.rows],
        )
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                colour = text_colour(image.cmap(image.norm(shown[i, j])))
                ax.text(j, i, _format(values[i, j]), ha="center", va="center", color=colour, fontsize=9)
        ax.set_title("Perplexity on each held-out set")
        fig.colorbar(image, ax=ax, label="log perplexity")
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


def _format(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3g}" if value < 1e4 else f"{value:.2e}"


COMPLETION_METRICS = ("top1_accuracy", "exact_match", "edit_similarity", "infill_exact_match", "infill_edit_similarity")
"""Cell metrics beside perplexity, in the order the report shows them."""


def evaluate_phases(
    model: PeftModel,
    eval_sets: dict[str, Rows | None],
    collator: Collator,
    batch_size: int,
    base_model: bool = False,
    after: str = BASE_ROW,
) -> dict[str, dict]:
    """{held-out set: {loss, perplexity, target_tokens, top1_accuracy}} on every held-out set's rows (None: no rows):
    one row of the matrix, `after` the base model or a phase. Each cell draws a progress bar and
    logs a line when done, so the minutes it takes are never silent."""
    cells = [(name, rows) for name, rows in eval_sets.items() if rows is not None]
    results = {}
    for index, (name, rows) in enumerate(cells, start=1):
        label = f"forgetting matrix {index}/{len(cells)}: {'base model' if after == BASE_ROW else 'after ' + after} on {name}"
        started = time.perf_counter()
        result = evaluate_rows(model, rows.dataset, collator, batch_size, base_model=base_model, desc=label)
        results[name] = result.to_dict()
        logger.info(
            "%s: perplexity %.4g over %s target tokens (%.1f s)",
            label,
            result.perplexity,
            f"{result.target_tokens:,}",
            time.perf_counter() - started,
        )
    return results
