"""Phases 2 and 3 from history: one document per commit, and one per phase-3 story.

Which commit goes where is decided once by `merges.plan_history` (each change trained once);
this module writes the documents. Phase 2 (`write_evolution`) has one document per commit the
plan gives it, oldest first (`git log --reverse`; with `since`, only commits whose committer
date is at or after it):

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

Commits the plan does not give phase 2 are counted as skipped: `merge`, `in-phase-3-story`,
`bot`. Squash-merge commits are written to phase 3 in the same pass (as pull-request stories),
and `write_merges` then writes the merge stories; both use the layout above through
`write_history_document`, framed by a `Frame` (the head, body and metadata of
`merges.story_parts`).

Diffs go through `diffs.filter_patch` (file sections cut out by the path, content and secret
rules; long lines cut; size cap with a marker naming the files it cut). A commit whose every
file diff was cut out is left out (`only-left-out-files`); a commit whose message is not valid
text in its encoding is left out (`undecodable`) and listed in the report. Credential values
and e-mail addresses in the message or the kept diff are redacted or masked when the document
is written (`screen.ScreenedWriter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from phased_cpt.errors import UserError
from phased_cpt.from_git.diffs import FilteredPatch, filter_patch
from phased_cpt.from_git.git import CommitMessage, CommitPatch, GitRepo
from phased_cpt.from_git.merges import HistoryPlan, story_parts
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
    git: GitRepo,
    plan: HistoryPlan,
    rules: PathRules,
    *,
    max_diff_bytes: int,
    writers: tuple[DocumentWriter, DocumentWriter],
) -> None:
    """Write the phase-2 document of every commit `plan` gives phase 2, and the phase-3 story
    of every squash merge, oldest first; `writers` are the phase-2 and phase-3 writers."""
    phase2, phase3 = writers
    with git.open_objects() as objects:
        for item in git.iter_patches(
            plan.revs, merges=False, since_epoch=plan.since_epoch, max_patch_bytes=read_limit(max_diff_bytes)
        ):
            where = {"commit": item.oid}
            story = plan.stories.get(item.oid)
            if story is not None and story.squash:
                write_story(item, plan, rules, max_diff_bytes, phase3)
                continue
            if len(item.parents) > 1:
                phase2.stats.skip("merge", where, rule="its changes are its branch's commits or a phase-3 story")
                continue
            if item.oid not in plan.phase2:
                reason, rule = plan.left_out[item.oid]
                phase2.stats.skip(reason, where, rule=rule, size=_lost_bytes(reason, item))
                continue
            message = objects.read_message(item.oid)
            if message is None:
                phase2.stats.skip("undecodable", where, rule="message not valid in its encoding", size=item.total_bytes)
                continue
            frame = Frame([f"Commit: {message.subject}"])
            write_history_document(frame, item, message, rules, max_diff_bytes, phase2)


def write_merges(
    git: GitRepo, plan: HistoryPlan, rules: PathRules, *, max_diff_bytes: int, writer: DocumentWriter
) -> None:
    """Write the phase-3 story of every merge `plan` tells, oldest first; count the merges left out."""
    for item in git.iter_patches(
        plan.revs, merges=True, since_epoch=plan.since_epoch, max_patch_bytes=read_limit(max_diff_bytes)
    ):
        if item.oid in plan.stories:
            write_story(item, plan, rules, max_diff_bytes, writer)
        elif item.oid in plan.left_out:
            reason, rule = plan.left_out[item.oid]
            writer.stats.skip(reason, {"commit": item.oid}, rule=rule, size=_lost_bytes(reason, item))


def _lost_bytes(reason: str, item: CommitPatch) -> int:
    """Bytes a skip removes from training: none when the change is told in a phase-3 story."""
    return 0 if reason in TOLD_ELSEWHERE else item.total_bytes


TOLD_ELSEWHERE = frozenset({"in-phase-3-story", "inside-branch"})
"""Skip reasons whose change is trained elsewhere (`removed_bytes` counts 0 for them)."""


def write_story(
    item: CommitPatch, plan: HistoryPlan, rules: PathRules, max_diff_bytes: int, writer: DocumentWriter
) -> None:
    """Write the phase-3 document of the story `plan` tells for commit `item`."""
    message = plan.commits[item.oid].message
    if message is None:
        writer.stats.skip("undecodable", {"commit": item.oid}, rule="message not valid in its encoding")
        return
    head, body, metadata = story_parts(plan.stories[item.oid], plan)
    write_history_document(Frame(head, body, metadata), item, message, rules, max_diff_bytes, writer)


@dataclass(frozen=True)
class Frame:
    """What a history document says around its commit's diff: `head`, its first lines
    (`Commit: SUBJECT`, ...); `body`, in place of the message body when given; `metadata`, added
    after the common keys (a phase-3 story's: it also ends the text with `Outcome: merged`)."""

    head: list[str]
    body: str | None = None
    metadata: dict[str, Any] | None = None


def write_history_document(
    frame: Frame,
    item: CommitPatch,
    message: CommitMessage,
    rules: PathRules,
    max_diff_bytes: int,
    writer: DocumentWriter,
) -> None:
    """Filter the commit's patch, and write its document, framed by `frame`, unless every file
    diff was cut out."""
    where = {"commit": item.oid}
    patch = filter_patch(item.patch, rules, max_diff_bytes=max_diff_bytes, total_bytes=item.total_bytes)
    for path, skip, size in patch.dropped:
        writer.stats.drop_diff(skip.reason, {**where, "path": path}, rule=skip.rule, size=size)
    if patch.files and len(patch.dropped) == len(patch.files):
        writer.stats.skip("only-left-out-files", where, rule="every file diff was cut out")
        return
    if patch.truncated:
        writer.stats.cut(patch.cut_bytes)
    if patch.shortened_lines:
        writer.stats.shorten(where, patch.shortened_lines, patch.shortened_bytes)
    metadata = frame.metadata
    text = format_history_document(
        frame.head, message, patch, body=frame.body, outcome=None if metadata is None else "merged"
    )
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
