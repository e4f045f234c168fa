"""Phase 2 (evolution): one document per non-merge commit, and the commit document layout.

Phase 2 has one document per non-merge commit reachable from the revision, oldest first
(`git log --reverse`; with `since`, only commits whose committer date is at or after it):

    Commit: Add retry to the HTTP client
    Date: 2024-01-02T10:00:00+01:00
    <blank line>
    <message body, if any>
    <blank line>
    Files changed:
    M src/client.py
    A tests/test_client.py
    <blank line>
    diff --git a/src/client.py b/src/client.py
    ...

Metadata: `commit`, `parents`, `date` (author date), `subject`, `files`.

Merge commits are *not* phase-2 documents (counted as skipped `merge`): the changes a merge
brings in are already the documents of the branch's own commits. They are the phase-3
fallback (`merges.py`), which uses the same layout through `write_history_document`.

Diffs go through `diffs.filter_patch` (file sections cut out by the path, content and secret
rules; size cap with a truncation marker). A commit whose every file diff was cut out is left
out (`only-left-out-files`); a commit whose message is not valid text in its encoding is left
out (`undecodable`) and listed in the report. Credential values in the message or the kept
diff are redacted when the document is written (`output.DocumentWriter`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from phased_cpt.errors import UserError
from phased_cpt.from_git.diffs import FilteredPatch, filter_patch
from phased_cpt.from_git.git import CommitMessage, CommitPatch, GitRepo
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules

_MIN_READ_BYTES = 8 << 20


def parse_since(since: str | None) -> int | None:
    """`--since` as a Unix time: an ISO 8601 date or time, UTC unless it names an offset.

    Only absolute dates are accepted (not git's "2 weeks ago") so the same repository state
    always gives the same output.
    """
    if since is None:
        return None
    try:
        text = since.strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise UserError(
            f"--since {since!r}: expected an ISO 8601 date or time such as 2024-01-31 or 2024-01-31T12:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def write_evolution(
    git: GitRepo, commit: str, rules: PathRules, *, since_epoch: int | None, max_diff_bytes: int, writer: DocumentWriter
) -> None:
    """Write one phase-2 document per non-merge commit reachable from `commit`, oldest first."""
    with git.open_objects() as objects:
        for item in git.iter_patches(
            commit, merges=False, since_epoch=since_epoch, max_patch_bytes=read_limit(max_diff_bytes)
        ):
            where = {"commit": item.oid}
            if len(item.parents) > 1:
                writer.stats.skip("merge", where, rule="merge commits are phase 3's")
                continue
            message = objects.read_message(item.oid)
            if message is None:
                writer.stats.skip("undecodable", where, rule="message not valid in its encoding", size=item.total_bytes)
                continue
            write_history_document([f"Commit: {message.subject}"], item, message, rules, max_diff_bytes, writer)


def write_history_document(
    head: list[str],
    item: CommitPatch,
    message: CommitMessage,
    rules: PathRules,
    max_diff_bytes: int,
    writer: DocumentWriter,
    metadata: dict[str, Any] | None = None,
    body: str | None = None,
) -> None:
    """Filter the commit's patch, and write its document unless every file diff was cut out.

    `head` are the first lines of the text (`Commit: SUBJECT`, ...); `body` replaces the
    message body when given; `metadata` is added after the common keys.
    """
    where = {"commit": item.oid}
    patch = filter_patch(item.patch, rules, max_diff_bytes=max_diff_bytes, total_bytes=item.total_bytes)
    for path, skip, size in patch.dropped:
        writer.stats.drop_diff(skip.reason, {**where, "path": path}, rule=skip.rule, size=size)
    if patch.files and len(patch.dropped) == len(patch.files):
        writer.stats.skip("only-left-out-files", where, rule="every file diff was cut out")
        return
    if patch.truncated:
        writer.stats.cut(patch.cut_bytes)
    text = format_history_document(head, message, patch, body=body, outcome=None if metadata is None else "merged")
    document: dict[str, Any] = {
        "training_content": text,
        "commit": item.oid,
        "parents": list(item.parents),
        "date": message.author_date,
        "subject": message.subject,
        "files": [change.path for change in patch.files],
        **(metadata or {}),
    }
    writer.write(document, where, key_text=diff_key(patch.text) if patch.kept_bytes else text)


def format_history_document(
    head: list[str],
    message: CommitMessage,
    patch: FilteredPatch,
    *,
    body: str | None = None,
    outcome: str | None = None,
) -> str:
    """The training text of one commit (see the module docstring for the layout)."""
    body = message.body if body is None else body
    parts = ["\n".join([*head, f"Date: {message.author_date}"]) + "\n"]
    if body:
        parts.append(f"{body}\n")
    listing = "\n".join(change.describe() for change in patch.files) or "(none)"
    parts.append(f"Files changed:\n{listing}\n")
    if patch.text:
        parts.append(patch.text.rstrip("\n") + "\n")
    if outcome is not None:
        parts.append(f"Outcome: {outcome}\n")
    return "\n".join(parts)


def diff_key(diff_text: str) -> str:
    """What makes two diffs the same change: the file headers and the lines added and removed
    (not the hunk positions or blob ids, so a cherry-pick onto another base is a duplicate)."""
    return "\n".join(
        line
        for line in diff_text.split("\n")
        if line.startswith(("diff --git ", "+", "-")) or line.startswith("[diff of ")
    )


def read_limit(max_diff_bytes: int) -> int:
    """Bytes of one patch kept in memory: room for cut-out sections, bounded for huge commits."""
    return max(8 * max_diff_bytes, _MIN_READ_BYTES)
