"""Phase 2 (evolution) from commit history, and the phase-3 fallback from merge commits.

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
brings in are already the documents of the branch's own commits, and a merge's diff would
repeat them. Merges are what the phase-3 fallback uses when no pull-request export is given:
one document per merge commit, `Merge: <subject>` instead of `Commit: ...`, the diff against the
first parent (everything the merged branch changed) and a last line `Outcome: merged`.

Diffs go through `diffs.filter_patch` (secret, vendored, lock, generated and excluded files cut
out file by file; size cap with a truncation marker). A document whose text still contains a
credential pattern (e.g. in the commit message) is skipped as `secret`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from phased_cpt.errors import UserError
from phased_cpt.from_git.diffs import FilteredPatch, filter_patch
from phased_cpt.from_git.git import CommitMessage, CommitPatch, GitRepo
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules
from phased_cpt.from_git.secrets import find_credential

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
        raise UserError(f"--since {since!r}: expected an ISO 8601 date or time such as 2024-01-31 "
                        "or 2024-01-31T12:00:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def write_evolution(git: GitRepo, commit: str, rules: PathRules, *, since_epoch: int | None,
                    max_diff_bytes: int, writer: DocumentWriter) -> None:
    """Write one phase-2 document per non-merge commit reachable from `commit`, oldest first."""
    with git.open_objects() as objects:
        for item in git.iter_patches(commit, merges=False, since_epoch=since_epoch,
                                     max_patch_bytes=_read_limit(max_diff_bytes)):
            if len(item.parents) > 1:
                writer.stats.skip("merge")
                continue
            _write_history_document("Commit", item, objects.read_message(item.oid), rules,
                                    max_diff_bytes, writer)


def write_merges(git: GitRepo, commit: str, rules: PathRules, *, since_epoch: int | None,
                 max_diff_bytes: int, writer: DocumentWriter) -> None:
    """Write one phase-3 fallback document per merge commit reachable from `commit`, oldest first."""
    with git.open_objects() as objects:
        for item in git.iter_patches(commit, merges=True, since_epoch=since_epoch,
                                     max_patch_bytes=_read_limit(max_diff_bytes)):
            _write_history_document("Merge", item, objects.read_message(item.oid), rules,
                                    max_diff_bytes, writer, outcome="merged")


def format_history_document(label: str, message: CommitMessage, patch: FilteredPatch,
                            outcome: str | None = None) -> str:
    """The training text of one commit (see the module docstring for the layout)."""
    parts = [f"{label}: {message.subject}\nDate: {message.author_date}\n"]
    if message.body:
        parts.append(f"{message.body}\n")
    listing = "\n".join(change.describe() for change in patch.files) or "(none)"
    parts.append(f"Files changed:\n{listing}\n")
    if patch.text:
        parts.append(patch.text.rstrip("\n") + "\n")
    if outcome is not None:
        parts.append(f"Outcome: {outcome}\n")
    return "\n".join(parts)


def _write_history_document(label: str, item: CommitPatch, message: CommitMessage, rules: PathRules,
                            max_diff_bytes: int, writer: DocumentWriter,
                            outcome: str | None = None) -> None:
    patch = filter_patch(item.patch, rules, max_diff_bytes=max_diff_bytes, total_bytes=item.total_bytes)
    text = format_history_document(label, message, patch, outcome)
    if find_credential(text) is not None:
        writer.stats.skip("secret")
        return
    writer.stats.dropped_file_diffs.update(patch.dropped)
    writer.stats.truncated += patch.truncated
    document: dict[str, Any] = {
        "training_content": text,
        "commit": item.oid,
        "parents": list(item.parents),
        "date": message.author_date,
        "subject": message.subject,
        "files": [change.path for change in patch.files],
    }
    if outcome is not None:
        document["source"] = "merge_commit"
        document["outcome"] = outcome
    writer.write(document)


def _read_limit(max_diff_bytes: int) -> int:
    """Bytes of one patch kept in memory: room for cut-out sections, bounded for huge commits."""
    return max(8 * max_diff_bytes, _MIN_READ_BYTES)
