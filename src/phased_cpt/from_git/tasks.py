"""Completion tasks from the code added or changed after the cut: `future_tasks.jsonl`.

One JSON object per line, in kind order (next_line, scope, fim), then history order:

    {"kind": "next_line" | "scope" | "fim", "prefix": str, "suffix": str, "target": str,
     "path": str, "commit": str}

Each task is cut out of one file as it stands after a non-merge commit of the future
(`commit`), around lines that commit added:

- **next_line**: `target` is one added line of at least `MIN_LINE_CHARS` characters (stripped),
  `prefix` every line before it, `suffix` "".
- **scope**: `target` is a whole block that the commit added or mostly changed: a line that
  heads one (it ends with `:`, `{`, `(`, `[` or ` do`, or starts with `def`, `async`, `class`,
  `fn`, `pub`, `func`, `function`, `module`, `impl`, `struct`, `enum`, `trait` or `interface`)
  and the lines after it indented deeper than it (blank lines inside included), plus a closing line at
  its own indentation that starts with `}`, `)`, `]` or `end` (and, when that line opens again -
  ends with `{` or `:` - the block it opens, as in `} else {` or a Python signature's `) -> T:`).
  This catches Python `def`/`class` bodies and brace-language functions alike. At least half of
  the block's non-blank lines are added by the commit (`MIN_SCOPE_ADDED_SHARE`: the others stood
  in the file before, so the model may have read them); blocks longer than `MAX_SCOPE_LINES` and
  blocks nested in a chosen one are not taken. `prefix` is every line before it, `suffix` "".
- **fim** (fill in the middle): `target` is the first `MAX_FIM_LINES` lines of a run of
  consecutive added lines (holding one line of `MIN_LINE_CHARS`), `prefix` every line before
  it and `suffix` every line after it.

So `prefix + target + suffix` is the whole file after the change for fim, and its beginning up to
the end of the target for the others. Every task has a prefix that is not blank. Files pass the
phase-1 rules (`foundation.classify_content` and the path rules: no secret store, vendored,
generated, binary or oversized file) and credential values are redacted in the file before it is
cut (a file whose redaction would change its line count is left out).

Each kind keeps at most `MAX_TASKS_PER_KIND` tasks, drawn at random with a fixed seed
(`TASK_SEED`) from all candidates, so the same repository state gives the same file; identical
tasks are written once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.contamination import MIN_LINE_CHARS
from phased_cpt.from_git.foundation import classify_content
from phased_cpt.from_git.git import GitRepo, ObjectReader
from phased_cpt.from_git.history import read_limit
from phased_cpt.from_git.rules import PathRules
from phased_cpt.from_git.secrets import redact_secrets

TASK_KINDS = ("next_line", "scope", "fim")
MAX_TASKS_PER_KIND = 200
TASK_SEED = 0
MAX_SCOPE_LINES = 60
MAX_FIM_LINES = 8
MIN_SCOPE_ADDED_SHARE = 0.5
"""A scope's share of non-blank lines its commit added: the rest stood in the file the model read."""
_CLOSERS = ("}", ")", "]", "end")
_OPENERS = (":", "{", "(", "[", " do")
_DEFINITIONS = frozenset(
    {"def", "async", "class", "fn", "pub", "func", "function", "module", "impl", "struct", "enum", "trait", "interface"}
)
_SECTION_START = re.compile(rb"(?m)^(?=diff --git )")
_HUNK = re.compile(rb"@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class FutureLimits:
    """Sizes the future sets share with the phases (`--max-diff-bytes`, `--max-file-bytes`) and
    the task cap."""

    max_diff_bytes: int
    max_file_bytes: int
    max_tasks_per_kind: int = MAX_TASKS_PER_KIND


@dataclass(frozen=True)
class Candidate:
    """A task before it is cut: lines [start, end) of `path` after `commit`."""

    kind: str
    commit: str
    path: str
    start: int
    end: int


def write_tasks(
    git: GitRepo, revs: str, rules: PathRules, limits: FutureLimits, path: Path
) -> tuple[Path, dict[str, int]]:
    """Write the tasks of the non-merge commits of `revs` to a temporary file beside `path`;
    return it (to be renamed to `path` by the caller) and the number of tasks per kind."""
    candidates: dict[str, list[Candidate]] = {kind: [] for kind in TASK_KINDS}
    with git.open_objects() as objects:
        for item in git.iter_patches(
            revs, merges=False, since_epoch=None, max_patch_bytes=read_limit(limits.max_diff_bytes)
        ):
            if len(item.parents) > 1:
                continue
            for file_path, added in added_lines(item.patch):
                lines = _file_lines(objects, item.oid, file_path, rules, limits.max_file_bytes)
                if lines is not None:
                    for kind, start, end in find_tasks(lines, added):
                        candidates[kind].append(Candidate(kind, item.oid, file_path, start, end))
        chosen = [
            candidate
            for kind in TASK_KINDS
            for candidate in _sample(candidates[kind], limits.max_tasks_per_kind, f"{TASK_SEED}:{kind}")
        ]
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        counts = dict.fromkeys(TASK_KINDS, 0)
        written: set[bytes] = set()
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            for candidate, task in zip(chosen, _cut_tasks(objects, chosen, rules, limits.max_file_bytes), strict=True):
                line = json.dumps(task, ensure_ascii=False)
                digest = hashlib.sha256(line.encode("utf-8", "surrogatepass")).digest()
                if digest in written:
                    continue
                written.add(digest)
                counts[candidate.kind] += 1
                file.write(line + "\n")
    os.chmod(temp_name, 0o644)
    return Path(temp_name), counts


def added_lines(patch: bytes) -> Iterator[tuple[str, set[int]]]:
    """(path after the change, 0-based line numbers in it of the added lines) per file section
    of a unified diff; deleted files and sections without a plain `+++ b/PATH` line are left out."""
    for section in _SECTION_START.split(patch):
        path: str | None = None
        added: set[int] = set()
        line_number: int | None = None  # 0-based line of the new file the next hunk line is
        for raw in section.split(b"\n"):
            if (hunk := _HUNK.match(raw)) is not None:
                line_number = int(hunk[1]) - 1 if int(hunk[1]) > 0 else 0
            elif line_number is None:
                if raw.startswith(b"+++ b/"):
                    try:
                        path = raw[6:].decode("utf-8")
                    except UnicodeDecodeError:
                        break
            elif raw.startswith(b"+"):
                added.add(line_number)
                line_number += 1
            elif raw.startswith(b" "):
                line_number += 1
        if path is not None and added:
            yield path, added


def find_tasks(lines: list[str], added: set[int]) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) of every task candidate in `lines` (each ending with its newline but
    maybe the last) around the `added` line numbers (the module docstring has the rules)."""
    added = {index for index in added if index < len(lines)}
    text_lines = [index for index, line in enumerate(lines) if line.strip()]
    if not text_lines:
        return
    first_text, last_text = text_lines[0], text_lines[-1]  # a prefix [0, i) has text when i > first_text
    for index in sorted(added):
        if _counted(lines[index]) and index > first_text:
            yield "next_line", index, index + 1
    block_end = -1
    for index in sorted(added):
        if index < block_end or not _opens_block(lines[index]):
            continue
        end = _block_end(lines, index)
        if end is None or end - index > MAX_SCOPE_LINES or index <= first_text:
            continue
        body = [line for line in range(index, end) if lines[line].strip()]
        if sum(line in added for line in body) >= MIN_SCOPE_ADDED_SHARE * len(body):
            block_end = end
            yield "scope", index, end
    for start, stop in _runs(sorted(added)):
        end = min(stop, start + MAX_FIM_LINES)
        if any(_counted(line) for line in lines[start:end]) and start > first_text and end <= last_text:
            yield "fim", start, end


def _block_end(lines: list[str], start: int) -> int | None:
    """One past the last line of the block that `lines[start]` opens; None when it opens none."""
    base = _indent(lines[start])
    last = start
    index = start + 1
    while index < len(lines):
        line = lines[index]
        if not line.strip() or _indent(line) > base:
            last = last if not line.strip() else index
            index += 1
            continue
        closing = _indent(line) == base and line.lstrip().startswith(_CLOSERS) and last > start
        if not closing:
            break
        last = index
        index += 1
        if not line.rstrip().endswith(("{", ":")):
            break
    return last + 1 if last > start else None


def _opens_block(line: str) -> bool:
    """A line that may head a function or block: it ends with an opener (`:`, `{`, `(`, `[`, `do`)
    or starts with a definition keyword (`def`, `fn`, `func`, `function`, `class`, ...)."""
    text = line.strip()
    return bool(text) and (text.endswith(_OPENERS) or text.split(None, 1)[0] in _DEFINITIONS)


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def _counted(line: str) -> bool:
    return len(line.strip()) >= MIN_LINE_CHARS


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive numbers as [start, stop)."""
    start = previous = None
    for index in indices:
        if previous is None or index != previous + 1:
            if start is not None:
                yield start, previous + 1
            start = index
        previous = index
    if start is not None and previous is not None:
        yield start, previous + 1


def _sample(candidates: list[Candidate], limit: int, seed: str) -> list[Candidate]:
    if len(candidates) <= limit:
        return candidates
    return [candidates[index] for index in sorted(random.Random(seed).sample(range(len(candidates)), limit))]


def _cut_tasks(
    objects: ObjectReader, chosen: list[Candidate], rules: PathRules, max_file_bytes: int
) -> Iterator[dict[str, str]]:
    cache: tuple[tuple[str, str], list[str]] | None = None
    for candidate in chosen:
        key = (candidate.commit, candidate.path)
        if cache is None or cache[0] != key:
            lines = _file_lines(objects, candidate.commit, candidate.path, rules, max_file_bytes)
            assert lines is not None  # it passed when the candidate was found
            cache = (key, lines)
        lines = cache[1]
        start, end = candidate.start, candidate.end
        yield {
            "kind": candidate.kind,
            "prefix": "".join(lines[:start]),
            "suffix": "".join(lines[end:]) if candidate.kind == "fim" else "",
            "target": "".join(lines[start:end]),
            "path": candidate.path,
            "commit": candidate.commit,
        }


def _file_lines(
    objects: ObjectReader, commit: str, path: str, rules: PathRules, max_file_bytes: int
) -> list[str] | None:
    """The lines of `path` after `commit`, redacted; None when the file fails the phase-1 rules."""
    if "\n" in path or rules.classify(path) is not None:
        return None
    data = objects.read(f"{commit}:{path}")
    if len(data) > max_file_bytes:
        return None
    skip, text = classify_content(data, rules.applies_defaults(path))
    if skip is not None:
        return None
    redacted, _ = redact_secrets(text)
    if redacted.count("\n") != text.count("\n"):
        return None
    return split_lines(redacted)


def split_lines(text: str) -> list[str]:
    """`text` as lines that keep their `\\n` (git's idea of a line; `str.splitlines` also splits
    on form feeds and Unicode separators)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]
