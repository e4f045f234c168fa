"""Phase 1 (foundation): one document per tracked text file of the repository at one commit.

Document text:

    File: src/app/server.py
    <blank line>
    <the file's content, unchanged>

Metadata: `path`, `commit` (the full id the revision resolved to), `bytes` (file size).

Only files tracked at the commit are read (from git's object store, not the working tree), so
untracked and git-ignored files never appear. Files are taken in sorted path order and each is
skipped with the first reason that applies: `submodule`, `symlink`, `undecodable` (a path that
is not UTF-8), the path rules of `rules.PathRules` (`secret`, `vendored`, `lock`, `generated`,
`excluded`), `too-large` (over `max_file_bytes`, decided from the size git reports, before
reading), then the content rules of `rules.classify_content` (`binary`, `undecodable`, `empty`,
`secret`).
"""

from __future__ import annotations

from phased_cpt.from_git.git import GitRepo, TreeEntry
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules, classify_content

_SYMLINK_MODE = "120000"


def write_foundation(git: GitRepo, commit: str, rules: PathRules, *, max_file_bytes: int,
                     writer: DocumentWriter) -> None:
    """Write the phase-1 document of every tracked text file of `commit` that passes the rules."""
    stats = writer.stats
    with git.open_objects() as objects:
        for entry in git.list_tree(commit):
            path, reason = _classify_entry(entry, rules, max_file_bytes)
            if reason is None:
                reason, text = classify_content(objects.read(entry.oid))
            if reason is not None:
                stats.skip(reason)
                continue
            writer.write({
                "training_content": format_file_document(path, text),
                "path": path,
                "commit": commit,
                "bytes": entry.size_bytes,
            })


def format_file_document(path: str, content: str) -> str:
    """The training text of one file: a `File: PATH` header, a blank line, the content."""
    return f"File: {path}\n\n{content}"


def _classify_entry(entry: TreeEntry, rules: PathRules, max_file_bytes: int) -> tuple[str, str | None]:
    """The decoded path and the reason to skip the entry before reading it (None: read it)."""
    if entry.kind == "commit":
        return "", "submodule"
    if entry.mode == _SYMLINK_MODE:
        return "", "symlink"
    try:
        path = entry.path_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return "", "undecodable"
    reason = rules.classify(path)
    if reason is None and entry.size_bytes > max_file_bytes:
        reason = "too-large"
    return path, reason
