"""Unified diffs made safe and bounded for training: per-file filtering and a size cap.

A git patch is a run of per-file sections, each opening with a `diff --git a/P b/P` line.
`filter_patch` walks them in order, as bytes, and for each file:

- lists it as a `FileChange` (status A/D/M/R/C, path, old path of a rename or copy);
- drops its section when a path rule says so (`rules.PathRules`: secret file, excluded,
  vendored, lock, generated, data), when git found it binary or it holds a NUL byte (`binary`:
  git diffs as text a file with no NUL in its first 8000 bytes), when the section is
  not UTF-8 (`undecodable`), when it holds a secret store (`secret`,
  `secrets.find_secret_store`) or, under the default rules, when the lines it adds are
  minified, a generated file, a data fixture or an LFS pointer (`quality.content_skip`),
  leaving one line `[diff of PATH omitted: REASON]` instead;
- keeps the section otherwise, its lines over `quality.MAX_LINE_CHARS` cut with a
  `[line cut: N characters]` marker (credential values in it are redacted later, with the rest
  of the document, by `output.DocumentWriter`).

A NUL byte or invalid UTF-8 inside one file's section never affects another section: sections
are split on the bytes `\ndiff --git ` and decoded one at a time.

The kept text is then capped at `max_diff_bytes`, cut at a line boundary, and a cut is marked
by a last line that names what the cut removed:

    [diff truncated: N of M bytes shown; cut: src/big.py; not shown: docs/a.md, docs/b.md]

(N: bytes of diff text shown, M: bytes of the whole diff git produced, omitted sections
included; `cut:` the file whose section was cut part-way, `not shown:` the files whose sections
fell wholly after the cut, at most `MAX_NAMED_FILES` names, then `and K more`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from phased_cpt.from_git.git import quote_path
from phased_cpt.from_git.quality import content_skip, shorten_long_lines
from phased_cpt.from_git.rules import PathRules, Skip
from phased_cpt.from_git.secrets import find_secret_store

_SECTION_START = re.compile(rb"(?m)^(?=diff --git )")
MAX_NAMED_FILES = 20
_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13, b'"': 34, b"\\": 92}


@dataclass(frozen=True)
class FileChange:
    """One file a diff touches."""

    status: str  # A added, D deleted, M modified, R renamed, C copied
    path: str
    old_path: str | None = None  # the source of a rename or copy

    def describe(self) -> str:
        """`M src/app.py`, or `R old.py -> new.py` for a rename."""
        if self.old_path is not None:
            return f"{self.status} {self.old_path} -> {self.path}"
        return f"{self.status} {self.path}"


@dataclass
class FilteredPatch:
    """A patch after `filter_patch`: the text to train on and what was left out."""

    text: str
    files: list[FileChange] = field(default_factory=list)
    dropped: list[tuple[str, Skip, int]] = field(default_factory=list)  # (path, why, bytes) per omitted section
    truncated: bool = False
    cut_bytes: int = 0  # bytes of diff text not shown because of the cap
    kept_bytes: int = 0  # bytes of the sections kept, before the cap
    shortened_lines: int = 0  # kept lines cut at `quality.MAX_LINE_CHARS`
    shortened_bytes: int = 0  # bytes those cuts removed


def filter_patch(
    patch: bytes, rules: PathRules, *, max_diff_bytes: int, total_bytes: int | None = None
) -> FilteredPatch:
    """Filter `patch` file by file and cap it (see the module docstring).

    `total_bytes` is the size of the whole patch when `patch` holds only its beginning; the
    partial last line is then discarded and the result counts as truncated.
    """
    total_bytes = len(patch) if total_bytes is None else total_bytes
    was_cut = total_bytes > len(patch)
    if was_cut:
        patch = patch[: patch.rfind(b"\n") + 1]
    result = FilteredPatch(text="")
    pieces: list[str] = []
    for section in _SECTION_START.split(patch):
        if not section:
            continue
        change = parse_file_change(section)
        result.files.append(change)
        skip = _classify_section(section, change, rules)
        if skip is None:
            kept, cut_lines = shorten_long_lines(section.decode("utf-8"))
            pieces.append(kept)
            result.kept_bytes += len(section)
            result.shortened_lines += cut_lines
            result.shortened_bytes += max(0, len(section) - len(kept.encode("utf-8"))) if cut_lines else 0
        else:
            result.dropped.append((change.path, skip, len(section)))
            pieces.append(f"[diff of {change.path} omitted: {skip.reason}]\n")
    text = "".join(pieces)
    shown = cap_text(text, max_diff_bytes)
    if was_cut or len(shown) < len(text):
        shown_bytes = len(shown.encode("utf-8"))
        names = _cut_files(pieces, [change.path for change in result.files], len(shown), was_cut)
        shown += f"[diff truncated: {shown_bytes} of {total_bytes} bytes shown{names}]\n"
        result.truncated = True
        result.cut_bytes = max(0, total_bytes - shown_bytes - sum(size for _, _, size in result.dropped))
    result.text = shown
    return result


def _cut_files(pieces: list[str], paths: list[str], shown_chars: int, read_was_cut: bool) -> str:
    """`; cut: P; not shown: Q, R` for the truncation marker: which sections the cap reached."""
    cut: list[str] = []
    hidden: list[str] = []
    start = 0
    for piece, path in zip(pieces, paths, strict=True):
        end = start + len(piece)
        if start >= shown_chars:
            hidden.append(path)
        elif end > shown_chars:
            cut.append(path)
        start = end
    if read_was_cut and paths and paths[-1] not in hidden and paths[-1] not in cut:
        cut.append(paths[-1])  # git's patch was read only in part: its last section is incomplete
    parts = []
    for label, names in (("cut", cut), ("not shown", hidden)):
        if names:
            more = f", and {len(names) - MAX_NAMED_FILES} more" if len(names) > MAX_NAMED_FILES else ""
            parts.append(f"{label}: {', '.join(names[:MAX_NAMED_FILES])}{more}")
    if read_was_cut:
        parts.append("later files not read")
    return "".join(f"; {part}" for part in parts)


def cap_text(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` within `max_bytes` UTF-8 bytes that ends at a line end."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    cut = data[:max_bytes]
    newline = cut.rfind(b"\n")
    if newline >= 0:
        cut = cut[: newline + 1]
    return cut.decode("utf-8", errors="ignore")


def parse_file_change(section: bytes) -> FileChange:
    """The file a `diff --git` section touches, from its header lines."""
    lines = section.split(b"\n")
    status, old, new = "M", None, None
    for line in lines[1:]:
        if line.startswith((b"@@", b"--- ", b"+++ ", b"Binary files ", b"GIT binary patch")):
            break
        if line.startswith(b"new file mode"):
            status = "A"
        elif line.startswith(b"deleted file mode"):
            status = "D"
        elif line.startswith((b"rename from ", b"copy from ")):
            status = "R" if line.startswith(b"rename") else "C"
            old = _unquote(line.split(b" ", 2)[2])
        elif line.startswith((b"rename to ", b"copy to ")):
            new = _unquote(line.split(b" ", 2)[2])
    if new is None:
        new = _path_from_header(lines[0][len(b"diff --git ") :])
    return FileChange(status, _decode_path(new), _decode_path(old) if old is not None else None)


def _classify_section(section: bytes, change: FileChange, rules: PathRules) -> Skip | None:
    paths = [change.path] + ([change.old_path] if change.old_path is not None else [])
    skips = [rules.classify(path) for path in paths]
    secret = next((skip for skip in skips if skip is not None and skip.reason == "secret"), None)
    if secret is not None or skips[0] is not None:
        return secret or skips[0]
    header, _, body = section.partition(b"\n@@")
    if not body and (b"\nBinary files " in header or b"\nGIT binary patch" in header):
        return Skip("binary", "git: binary files differ")
    if b"\0" in section:
        return Skip("binary", "NUL byte in the diff")
    try:
        text = section.decode("utf-8")
    except UnicodeDecodeError as err:
        return Skip("undecodable", f"not UTF-8 at byte {err.start} of the section")
    store = find_secret_store(text)
    if store is not None:
        return Skip("secret", store)
    if rules.applies_defaults(change.path):
        added = [line[1:] for line in text.split("\n") if line.startswith("+") and not line.startswith("+++ ")]
        found = content_skip("\n".join(added) + "\n", change.path, new_file=change.status == "A")
        if found is not None:
            return Skip(*found)
    return None


def _path_from_header(rest: bytes) -> bytes:
    """`a/P b/P` (or both quoted) -> P; old and new paths are equal unless renamed or copied."""
    half = (len(rest) - 1) // 2
    new = rest[half + 1 :] if len(rest) % 2 == 1 and rest[half : half + 1] == b" " else rest
    new = _unquote(new)
    return new[2:] if new.startswith((b"b/", b"a/")) else new


def _unquote(raw: bytes) -> bytes:
    """Undo git's C-style quoting of a path (`"a\\tb"` -> `a<TAB>b`); plain paths pass through."""
    raw = raw.rstrip(b"\t")
    if not (raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2):
        return raw
    out = bytearray()
    body, index = raw[1:-1], 0
    while index < len(body):
        char = body[index : index + 1]
        if char != b"\\":
            out += char
            index += 1
        elif body[index + 1 : index + 2] in _ESCAPES:
            out.append(_ESCAPES[body[index + 1 : index + 2]])
            index += 2
        else:
            out.append(int(body[index + 1 : index + 4], 8))
            index += 4
    return bytes(out)


def _decode_path(raw: bytes) -> str:
    return quote_path(raw)
