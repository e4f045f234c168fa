"""The contamination of every evaluation set, per forgetting-matrix row, equals a count done by
hand on a small fixture; future task files are validated line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from phased_cpt.config import load_config
from phased_cpt.data.eval_sets import contamination_table, read_tasks
from phased_cpt.errors import DataError
from tests.conftest import write_jsonl

A = "def load_settings(path: str) -> dict:"  # every line below is >= 25 characters
B = "    return json.loads(Path(path).read_text())"
C = "def save_settings(path: str, data: dict) -> None:"
D = "    Path(path).write_text(json.dumps(data))"
E = "class SettingsError(RuntimeError): pass"
F = "def merge_settings(a: dict, b: dict) -> dict:"
G = "    return {**a, **b, 'merged': True}  # new"


def task(kind: str, target: str, suffix: str = "") -> dict:
    return {"kind": kind, "prefix": "x\n", "suffix": suffix, "target": target, "path": "a.py", "commit": "abc"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "p1.jsonl", [f"{A}\n{B}\n", f"{C}\n{D}\n"])
    write_jsonl(tmp_path / "p1_eval.jsonl", [f"{A}\n{E}\nshort line\n"])  # 2 counted lines, A seen after p1
    write_jsonl(tmp_path / "p2.jsonl", [f"{E}\n"])
    write_jsonl(tmp_path / "p2_eval.jsonl", [f"{C}\n{F}\n{G}\n"])  # C seen after p1
    diff = f"diff --git a/s.py b/s.py\n--- a/s.py\n+++ b/s.py\n@@ -1,2 +1,3 @@\n {A}\n-{D}\n+{F}\n+{B}\n"
    write_jsonl(tmp_path / "future_evolution.jsonl", [diff])  # added: F (never), B (after p1)
    tasks = [task("next_line", B), task("scope", f"{E}\n{G}\n"), task("fim", F, suffix="x\n")]
    (tmp_path / "future_tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    data = {
        "phases": [
            {"name": "p1", "file": "p1.jsonl", "eval_file": "p1_eval.jsonl"},
            {"name": "p2", "file": "p2.jsonl", "eval_file": "p2_eval.jsonl"},
        ],
        "evaluation": {"future": {"documents": ["future_evolution.jsonl"], "tasks": "future_tasks.jsonl"}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_contamination_per_row_equals_a_count_by_hand(config):
    cfg, _ = load_config(config)
    table = contamination_table(cfg)
    assert table.columns == [
        "p1",
        "p2",
        "future_evolution",
        "future_tasks.next_line",
        "future_tasks.scope",
        "future_tasks.fim",
    ]
    seen = {row["after"]: {c: (v["seen"], v["lines"]) for c, v in row["results"].items()} for row in table.rows}
    assert seen["base"] == {c: (0, n) for c, n in [("p1", 2), ("p2", 3), ("future_evolution", 2)]} | {
        "future_tasks.next_line": (0, 1),
        "future_tasks.scope": (0, 2),
        "future_tasks.fim": (0, 1),
    }
    # after p1: A, B, C, D trained
    assert seen["p1"] == {
        "p1": (1, 2),  # A
        "p2": (1, 3),  # C
        "future_evolution": (1, 2),  # B (the diff's added lines only: A is context, D removed)
        "future_tasks.next_line": (1, 1),  # B
        "future_tasks.scope": (0, 2),
        "future_tasks.fim": (0, 1),
    }
    # after p2: E trained too
    assert seen["p2"]["p1"] == (2, 2) and seen["p2"]["future_tasks.scope"] == (1, 2)
    assert table.share("p2", "p1") == 1.0
    warned = table.warnings()
    assert any(w.startswith("p1: 100.0%") and "recall rather than learning" in w for w in warned)
    assert not any(w.startswith("future_tasks.fim") for w in warned)


def test_a_bad_task_line_names_file_line_and_reason(tmp_path):
    path = tmp_path / "tasks.jsonl"
    good = task("next_line", "x = 1")
    lines = [good, {**good, "kind": "poem"}, {k: v for k, v in good.items() if k != "target"}, {**good, "suffix": "s"}]
    path.write_text("\n".join(json.dumps(t) for t in lines) + "\nnot json\n")
    with pytest.raises(DataError) as err:
        read_tasks(path)
    message = str(err.value)
    assert f"{path}:2: kind 'poem'" in message and f"{path}:3: missing field(s) ['target']" in message
    assert f"{path}:4: a next_line task has a suffix" in message and f"{path}:5: invalid JSON" in message
    path.write_text(json.dumps(good) + "\n\n")
    assert [t.target for t in read_tasks(path)] == ["x = 1"]


def test_hostile_task_lines_are_named_not_raised_or_scored_as_misses(tmp_path):
    """A 5000-digit number and arrays nested 100000 deep raised ValueError/RecursionError; a lone
    surrogate reached the tokenizer; a next_line target of two lines was always scored a miss
    (the answer is one line)."""
    path = tmp_path / "tasks.jsonl"
    good = task("next_line", "x = 1")
    lines = [
        '{"kind": ' + "9" * 5000 + "}",
        "[" * 100000 + "]" * 100000,
        json.dumps({**good, "target": "\ud800 x"}),
        json.dumps({**good, "target": "x = 1\ny = 2"}),
        json.dumps({**good, "target": "x = 1\n"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_tasks(path)
    message = str(err.value)
    assert f"{path}:1: invalid JSON (ValueError" in message and f"{path}:2: invalid JSON (RecursionError" in message
    assert f"{path}:3: field(s) ['target'] hold a lone surrogate" in message
    assert f"{path}:4: a next_line task's target spans several lines" in message and f"{path}:5" not in message


def test_validate_reads_the_future_files_without_ml_libraries(config):
    from tests.unit.cli.test_cli import imported_by

    assert imported_by("validate", str(config)) == {"code": 0, "heavy": []}
    tasks = config.parent / "future_tasks.jsonl"
    tasks.write_text(tasks.read_text() + '{"kind": "scope"}\n')
    assert imported_by("validate", str(config))["code"] == 2


def test_validate_names_the_bad_task_line(config, capsys):
    from phased_cpt.cli import main

    tasks = config.parent / "future_tasks.jsonl"
    tasks.write_text(tasks.read_text() + '{"kind": "scope"}\n')
    assert main(["validate", str(config)]) == 2
    assert f"{tasks}:4: missing field(s)" in capsys.readouterr().err
