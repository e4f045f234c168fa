"""Every evaluation set of a run as text, what each phase trains on as text, and how much of each
set the model has read by the time it is scored (`contamination.py` is the rule).

The evaluation sets, in forgetting-matrix order: each phase's held-out documents (its `eval_file`,
or the `data.eval_ratio` split `prepare_phase` makes: the same `split_documents` call on the same
documents), `general` (the general held-out documents), each future document file
(`evaluation.future.documents`) and each kind of future completion task
(`evaluation.future.tasks`, tested on the tasks' targets).

The training text after phase k is the training documents of phases 1..k (replay only repeats
them); a phase that mixes general text in (`general_ratio` > 0) adds the general source's training
documents whole, although it draws a seeded sample of their chunks: an upper bound, so the
contamination shown is never less than what the model read.

A future task file holds one JSON object a line (`data from-git --holdout-*` writes it):

    {"kind": "next_line" | "scope" | "fim", "prefix": str, "suffix": str, "target": str,
     "path": str, "commit": str}

prefix + target + suffix is the file as it stands after the change; `suffix` is "" unless fim.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from phased_cpt.config import FUTURE_TASK_KINDS, GENERAL_COLUMN, DataConfig, EvaluationConfig, GeneralConfig, RunConfig
from phased_cpt.config.schema import PhaseConfig
from phased_cpt.contamination import MIN_LINE_CHARS, WARN_SHARE, Contamination, TrainingLines
from phased_cpt.data.jsonl import LONE_SURROGATE, read_documents
from phased_cpt.data.split import split_documents
from phased_cpt.errors import DataError

BASE_ROW = "base"
TASK_FIELDS = {"kind": str, "prefix": str, "suffix": str, "target": str, "path": str, "commit": str}


@dataclass(frozen=True)
class FutureTask:
    kind: str
    prefix: str
    suffix: str
    target: str
    path: str
    commit: str


def read_tasks(path: Path) -> list[FutureTask]:
    """Every task of a future task file; any bad line is a `DataError` naming `file:line: reason`
    (the first 20, all counted)."""
    tasks, problems = [], []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = list(enumerate(f, start=1))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 ({err.reason}); write the tasks file as UTF-8") from None
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problem = f"invalid JSON ({err.msg})"
        except (ValueError, RecursionError) as err:  # a 5000-digit number, arrays nested 100000 deep
            problem = f"invalid JSON ({type(err).__name__}: {str(err)[:80]})"
        else:
            problem = _task_problem(record)
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        else:
            tasks.append(FutureTask(**{key: record[key] for key in TASK_FIELDS}))
    if problems:
        shown = problems[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError("\n".join(shown))
    return tasks


def _task_problem(record) -> str | None:
    """What is wrong with one decoded task record (None: nothing)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [key for key in TASK_FIELDS if key not in record]
    if missing:
        return f"missing field(s) {missing}"
    wrong = [key for key, kind in TASK_FIELDS.items() if not isinstance(record[key], kind)]
    if wrong:
        return f"field(s) {wrong} must be strings"
    broken = [key for key in TASK_FIELDS if LONE_SURROGATE.search(record[key])]
    if broken:  # a lone surrogate (JSON "\ud800"): no tokenizer can encode it
        return f"field(s) {broken} hold a lone surrogate (not valid Unicode text)"
    if record["kind"] not in FUTURE_TASK_KINDS:
        return f"kind {record['kind']!r} is not one of {', '.join(FUTURE_TASK_KINDS)}"
    if not record["target"].strip():
        return "empty target"
    if record["kind"] == "next_line" and "\n" in record["target"].strip("\n"):
        return "a next_line task's target spans several lines (the answer is one line: use scope)"
    if record["kind"] != "fim" and record["suffix"]:
        return f"a {record['kind']} task has a suffix (only fim tasks do)"
    return None


def tasks_by_column(evaluation: EvaluationConfig) -> dict[str, list[FutureTask]]:
    """{task column: its tasks}, every kind's column (empty list when the file has none of it)."""
    future = evaluation.future
    if future.tasks is None:
        return {}
    tasks = read_tasks(future.tasks)
    return {column: [t for t in tasks if t.kind == kind] for column, kind in future.task_columns().items()}


def _documents(paths: list[Path], data: DataConfig, seen: dict[bytes, str] | None) -> list[str]:
    """The good documents' texts of `paths`, read as `prepare_phase` reads them (`seen`: across files)."""
    return [
        document.text
        for path in paths
        for document in read_documents(path, data.text_field, data.on_bad_record, seen)[0]
    ]


def phase_texts(phase: PhaseConfig, data: DataConfig, seed: int) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents) of a phase, split as `prepare_phase` splits them."""
    seen: dict[bytes, str] | None = {} if data.dedup == "exact" else None
    documents = _documents([f for source in phase.sources for f in source.files], data, seen)
    if phase.eval_file is not None:
        return documents, _documents([phase.eval_file], data, seen)
    return split_documents(documents, data.eval_ratio, seed, phase.name)


def general_texts(
    general: GeneralConfig, eval_file: Path | None, data: DataConfig, seed: int
) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents) of the general source (`spec.general_spec`'s split)."""
    if general.file is None:
        return [], _documents([eval_file], data, None) if eval_file is not None else []
    phase = PhaseConfig.model_construct(name=GENERAL_COLUMN, file=general.file, eval_file=eval_file)
    return phase_texts(phase, data, seed)


@dataclass(frozen=True)
class ContaminationTable:
    """Per forgetting-matrix row (`base`, then after each phase) and evaluation set: the counted
    lines and how many of them the phases trained so far hold verbatim."""

    columns: list[str]
    rows: list[dict]
    """[{"after": row, "results": {column: {"lines", "seen", "share"}}}]"""

    def final(self) -> dict[str, Contamination]:
        """Each set against every phase's training text (what `plan` shows)."""
        return {column: Contamination(c["lines"], c["seen"]) for column, c in self.rows[-1]["results"].items()}

    def share(self, after: str, column: str) -> float | None:
        for row in self.rows:
            if row["after"] == after and column in row["results"]:
                return row["results"][column]["share"]
        return None

    def to_dict(self) -> dict:
        return {"min_line_chars": MIN_LINE_CHARS, "warn_share": WARN_SHARE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ContaminationTable:
        return cls(data["columns"], data["rows"])

    def warnings(self) -> list[str]:
        """One line per set whose share after the last phase passes `WARN_SHARE`."""
        return [
            f"{column}: {c.share:.1%} of its lines (>= {MIN_LINE_CHARS} chars) stand verbatim in the training text: "
            f"a score on it is recall rather than learning (over {WARN_SHARE:.0%})"
            for column, c in self.final().items()
            if c.recall
        ]

    def to_markdown(self) -> str:
        lines = [
            "| seen lines after \\ in | " + " | ".join(self.columns) + " |",
            "|---" * (len(self.columns) + 1) + "|",
        ]
        for row in self.rows:
            cells = []
            for column in self.columns:
                c = row["results"].get(column)
                cells.append("—" if c is None else f"{c['share']:.1%}{' ⚠' if c['share'] > WARN_SHARE else ''}")
            lines.append(f"| {row['after']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def contamination_table(cfg: RunConfig) -> ContaminationTable:
    """Every evaluation set's contamination before training and after each phase (see the module docstring)."""
    trained: list[list[str]] = []
    held_out: dict[str, tuple[list[str], bool]] = {}  # column: (texts, tested on task targets)
    for phase in cfg.phases:
        train, evaluation = phase_texts(phase, cfg.data, cfg.training.seed)
        trained.append(train)
        held_out[phase.name] = (evaluation, False)
    general_train, general_eval = general_texts(cfg.general, cfg.evaluation.general_file, cfg.data, cfg.training.seed)
    if general_eval:
        held_out[GENERAL_COLUMN] = (general_eval, False)
    for column, path in cfg.evaluation.future.document_columns().items():
        held_out[column] = (_documents([path], cfg.data, None), False)
    for column, tasks in tasks_by_column(cfg.evaluation).items():
        held_out[column] = ([task.target for task in tasks], True)
    seen = TrainingLines()
    rows = [{"after": BASE_ROW, "results": _measure(seen, held_out)}]
    general_added = False
    for phase, texts in zip(cfg.phases, trained):
        for text in texts:
            seen.add(text)
        if phase.general_ratio_for(cfg.general) > 0 and not general_added:
            for text in general_train:
                seen.add(text)
            general_added = True
        rows.append({"after": phase.name, "results": _measure(seen, held_out)})
    return ContaminationTable(list(held_out), rows)


def _measure(seen: TrainingLines, held_out: dict[str, tuple[list[str], bool]]) -> dict[str, dict]:
    results = {}
    for column, (texts, tasks) in held_out.items():
        c = seen.measure_tasks(texts) if tasks else seen.measure(texts)
        results[column] = {"lines": c.lines, "seen": c.seen, "share": c.share}
    return results


def contamination_line(table: ContaminationTable) -> str:
    """One line: each evaluation set's share of lines seen in every phase's training text."""
    parts = [f"{column} {c.share:.1%}{' (recall)' if c.recall else ''}" for column, c in table.final().items()]
    return (
        f"contamination (lines >= {MIN_LINE_CHARS} chars of each evaluation set seen verbatim in the training "
        f"text of all phases; over {WARN_SHARE:.0%}: recall): " + ", ".join(parts)
    )
