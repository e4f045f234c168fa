"""How much of an evaluation set the model already read: the share of its lines found verbatim in
the training text of the phases trained before it is scored.

A score on text the model trained on measures recall, not learning. This module owns the one rule
that says how contaminated an evaluation set is, used by `data from-git` (its held-out future),
`plan`, the run's `eval/` files and the report.

The rule, on lines:

- A line is compared after stripping surrounding whitespace; lines shorter than `MIN_LINE_CHARS`
  (25) characters are not counted: short lines (`return x`, `}`, `else:`) are common idioms that
  every codebase repeats and say nothing about what the model saw.
- Inside a unified diff hunk (the lines after an `@@ -a,b +c,d @@` header, until the next
  `diff --git` or a line that is not in diff form), a line's leading `+`, `-` or space marker is
  removed before it is compared; diff headers (`diff --git` up to the first `@@`) are never counted.
- **Training side**: every counted line of the training text (diff lines with their marker
  removed).
- **Evaluation side**: the lines a document asks the model to produce. A document that holds a
  diff (a commit, a merge, a pull request) is scored on its diff's added lines only: removed and
  context lines are the past the change is read against, present in any honest training set by
  construction, and its message, `Files changed:` listing and discussion repeat the format and
  file names of every other commit. A completion task (`{"prefix", "target"}`) is scored on its
  `target`. Everything else is scored on all its counted lines.

>>> seen = TrainingLines()
>>> seen.add("def parse_header(value: str) -> dict:\\n    return {}\\n")
>>> seen.measure(["@@ -1 +1 @@\\n+def parse_header(value: str) -> dict:\\n+def another_function_name(x):\\n"])
Contamination(lines=2, seen=1)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MIN_LINE_CHARS = 25
"""Lines shorter than this (after stripping whitespace) are not counted on either side."""

WARN_SHARE = 0.20
"""An evaluation set with a larger share of seen lines measures recall rather than learning."""


@dataclass(frozen=True)
class Contamination:
    """`seen` of an evaluation set's `lines` stand verbatim in the training text."""

    lines: int
    seen: int

    @property
    def share(self) -> float:
        """Seen lines / counted lines; 0.0 for a set with no counted line."""
        return self.seen / self.lines if self.lines else 0.0

    @property
    def recall(self) -> bool:
        """True when the share passes `WARN_SHARE`: a score on this set is mostly recall."""
        return self.share > WARN_SHARE

    def __add__(self, other: Contamination) -> Contamination:
        return Contamination(self.lines + other.lines, self.seen + other.seen)


_HUNK = re.compile(r"^@@ -", re.MULTILINE)


def _lines(text: str, added_only: bool, diff_only: bool = False) -> Iterator[str]:
    """The counted lines of `text`: in diff hunks with their marker removed (with `added_only`,
    only the added ones), diff headers left out; with `diff_only`, nothing outside the hunks."""
    state = "text"  # "text", "header" (after `diff --git`, before the first `@@`), "hunk"
    for raw in text.splitlines():
        if raw.startswith("diff --git "):
            state = "header"
            continue
        if raw.startswith("@@ -"):
            state = "hunk"
            continue
        if state == "header":
            continue  # index, ---, +++, mode and rename lines
        if state == "hunk":
            marker = raw[:1]
            if marker == "\\" or (marker == "" and added_only):
                continue  # "\ No newline at end of file"; an empty context line
            if marker in ("+", "-", " ", ""):
                if added_only and marker != "+":
                    continue
                raw = raw[1:]
            else:
                state = "text"  # text after the diff (a cut marker, the next section)
        if diff_only and state == "text":
            continue
        line = raw.strip()
        if len(line) >= MIN_LINE_CHARS:
            yield line


def training_lines(text: str) -> Iterator[str]:
    """Every counted line of a training document."""
    return _lines(text, added_only=False)


def scored_lines(text: str) -> Iterator[str]:
    """The counted lines an evaluation document asks the model to produce: a document with a diff
    hunk, its added lines only; any other, all its counted lines."""
    return _lines(text, added_only=True, diff_only=_HUNK.search(text) is not None)


def _digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class TrainingLines:
    """The set of counted training lines seen so far (8-byte digests: ~100 bytes a line in memory)."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._seen: set[bytes] = set()
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        self._seen.update(_digest(line) for line in training_lines(text))

    def __len__(self) -> int:
        return len(self._seen)

    def measure(self, texts: Iterable[str]) -> Contamination:
        """Contamination of evaluation documents against the lines added so far."""
        return self._count(line for text in texts for line in scored_lines(text))

    def measure_tasks(self, targets: Iterable[str]) -> Contamination:
        """Contamination of completion tasks: each task's `target` (every counted line of it)."""
        return self._count(line for target in targets for line in training_lines(target))

    def _count(self, lines: Iterable[str]) -> Contamination:
        total = seen = 0
        for line in lines:
            total += 1
            seen += _digest(line) in self._seen
        return Contamination(total, seen)
