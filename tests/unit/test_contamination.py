"""The contamination rule: which lines count, and the share equals an independent count."""

from __future__ import annotations

import random

from phased_cpt.contamination import MIN_LINE_CHARS, Contamination, TrainingLines, scored_lines, training_lines

DIFF = """Commit: Add a parser

diff --git a/src/parse.py b/src/parse.py
index 0123456..89abcde 100644
--- a/src/parse.py
+++ b/src/parse.py
@@ -1,3 +1,4 @@
 def parse_header(value: str) -> dict:
-    return dict(item.split("=") for item in value)
+    return dict(item.split("=", 1) for item in value.split(";"))
+x = 1
\\ No newline at end of file
[diff cut: 1 more file not shown]
"""


def test_diff_hunks_count_added_lines_only_and_never_headers():
    # the message and the cut marker around the diff are not scored: only what the change adds
    assert list(scored_lines(DIFF)) == ['return dict(item.split("=", 1) for item in value.split(";"))']
    assert list(scored_lines("A document without a diff hunk in it\n")) == ["A document without a diff hunk in it"]


def test_training_side_strips_markers_and_keeps_removed_and_context_lines():
    lines = list(training_lines(DIFF))
    assert "def parse_header(value: str) -> dict:" in lines
    assert 'return dict(item.split("=") for item in value)' in lines
    assert not any(line.startswith(("diff --git", "index ", "--- a/", "+++ b/", "@@")) for line in lines)
    assert "x = 1" not in lines  # shorter than MIN_LINE_CHARS


def test_short_lines_are_not_counted():
    assert list(training_lines("x" * (MIN_LINE_CHARS - 1) + "\n" + "y" * MIN_LINE_CHARS)) == ["y" * MIN_LINE_CHARS]


def test_share_and_recall_threshold():
    assert Contamination(0, 0).share == 0.0
    assert Contamination(10, 2).share == 0.2 and not Contamination(10, 2).recall
    assert Contamination(10, 3).recall
    assert Contamination(4, 1) + Contamination(6, 2) == Contamination(10, 3)


def test_a_line_added_in_the_future_is_seen_when_phase_one_holds_the_file():
    seen = TrainingLines(["File: src/parse.py\n\n    return dict(item.split('=') for item in value)\n"])
    future = (
        "@@ -1 +1 @@\n-    old_line_that_is_long_enough_to_count\n+    return dict(item.split('=') for item in value)\n"
    )
    assert seen.measure([future]) == Contamination(lines=1, seen=1)
    assert seen.measure_tasks(
        ["    return dict(item.split('=') for item in value)\n    new_line_never_seen_before()"]
    ) == (Contamination(lines=2, seen=1))


def test_share_equals_an_independent_count():
    rng = random.Random(0)
    vocab = [f"identifier_number_{i:04d} = compute({i})" for i in range(300)]
    train_docs = ["\n".join(rng.sample(vocab, 40)) for _ in range(5)]
    eval_docs = ["\n".join(rng.sample(vocab, 30)) for _ in range(4)]
    trained = {line for doc in train_docs for line in doc.splitlines()}
    expected = sum(line in trained for doc in eval_docs for line in doc.splitlines())
    result = TrainingLines(train_docs).measure(eval_docs)
    assert result == Contamination(lines=120, seen=expected)
