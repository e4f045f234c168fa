"""Phase 1 (foundation): one document per tracked text file of the repository at one commit.

Document text:

    File: src/app/server.py
    <blank line>
    <the file's content, credential values redacted>

Metadata: `path`, `commit` (the full id the revision resolved to), `bytes` (file size).

Only files tracked at the commit are read (from git's object store, not the working tree), so
untracked and git-ignored files never appear. Files are taken in sorted path order and each is
skipped with the first reason that applies: `submodule`, `symlink`, `undecodable` (a path that
is not UTF-8), the path rules of `rules.PathRules` (`secret`, `excluded`, `vendored`, `lock`,
`generated`, `data`), `too-large` (over `max_file_bytes`, decided from the size git reports,
before reading), then the content rules of `classify_content` (`data` there is a large JSON,
YAML, XML or literal-table file, `quality.data_kind`). A kept file's lines longer than
`quality.MAX_LINE_CHARS` are cut, each with a `[line cut: N characters]` marker, and counted
as `long-line` in the report.
"""

from __future__ import annotations

from phased_cpt.from_git.git import GitRepo, ObjectReader, TreeEntry, quote_path
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.quality import content_skip, shorten_long_lines
from phased_cpt.from_git.rules import PathRules, Skip
from phased_cpt.from_git.secrets import find_secret_store

_SYMLINK_MODE = "120000"
BINARY_SNIFF_BYTES = 8000


def write_foundation(
    git: GitRepo,
    commit: str,
    entries: list[TreeEntry],
    rules: PathRules,
    *,
    max_file_bytes: int,
    writer: DocumentWriter,
) -> None:
    """Write the phase-1 document of every file of `entries` (the tree of `commit`) that passes."""
    with git.open_objects() as objects:
        for entry in entries:
            path, skip, text = _classify_entry(entry, rules, max_file_bytes, objects)
            where = {"file": path or entry.path_bytes.decode("utf-8", "backslashreplace")}
            if skip is not None:
                writer.stats.skip(skip.reason, where, rule=skip.rule, size=entry.size_bytes)
                continue
            text, cut = shorten_long_lines(text)
            if cut:
                writer.stats.shorten(where, cut, entry.size_bytes - len(text.encode("utf-8")))
            writer.write(
                {
                    "training_content": format_file_document(path, text),
                    "path": path,
                    "commit": commit,
                    "bytes": entry.size_bytes,
                },
                where,
                key_text=text,
            )


def format_file_document(path: str, content: str) -> str:
    """The training text of one file: a `File: PATH` header, a blank line, the content."""
    return f"File: {path}\n\n{content}"


def classify_content(data: bytes, applies_defaults: bool = True, path: str = "") -> tuple[Skip | None, str]:
    """Decode a file's bytes: `(None, text)` to keep it, or `(skip, "")` to leave it out.

    In order: `binary` (a NUL byte in the first 8000 bytes, git's own test, or anywhere: a NUL
    can't be in training text), `undecodable` (not valid UTF-8), `empty` (nothing but white
    space), `secret` (a secret store by content, `secrets.find_secret_store`), then, when the
    default rules apply, the content rules (`quality.content_skip`: `lfs-pointer`, `generated`,
    `minified`, `data`; `path` tells the data test the file's format).
    """
    if b"\0" in data:
        why = "NUL byte in the first 8000 bytes" if b"\0" in data[:BINARY_SNIFF_BYTES] else "NUL byte"
        return Skip("binary", why), ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return Skip("undecodable", f"not UTF-8 at byte {err.start}"), ""
    if not text.strip():
        return Skip("empty", "white space only"), ""
    store = find_secret_store(text)
    if store is not None:
        return Skip("secret", store), ""
    found = content_skip(text, path)
    if found is not None and (found[0] == "lfs-pointer" or applies_defaults):
        return Skip(*found), ""
    return None, text


def _classify_entry(
    entry: TreeEntry, rules: PathRules, max_file_bytes: int, objects: ObjectReader
) -> tuple[str, Skip | None, str]:
    """The decoded path, why the entry is left out (None: keep it) and its text when kept."""
    if entry.kind == "commit":
        return "", Skip("submodule", "submodule"), ""
    if entry.mode == _SYMLINK_MODE:
        return "", Skip("symlink", "symbolic link"), ""
    path = quote_path(entry.path_bytes)
    skip = rules.classify(path)
    if skip is None and entry.size_bytes > max_file_bytes:
        skip = Skip("too-large", f"over --max-file-bytes {max_file_bytes}")
    if skip is not None:
        return path, skip, ""
    skip, text = classify_content(objects.read(entry.oid), rules.applies_defaults(path), path)
    return path, skip, text
