"""Phase 3 (PR mastery) from a pull-request export: loading, checking and one document per PR.

Accepted export (`--prs FILE` or `--prs DIR`, where every `*.json` file of DIR is read in name
order): each file holds a JSON list of pull-request objects, or a single one. A pull-request
object is what the GitHub REST API returns for `GET /repos/{owner}/{repo}/pulls/{number}`, plus
the keys `diff`, `reviews`, `review_comments` and `issue_comments`. Unknown keys are ignored.

    key              type                       required  notes
    number           integer                    yes       unique across the export
    title            string                     yes
    state            "open" | "closed"          yes
    body             string | null              no        the description
    merged_at        string | null              no        non-null means merged (so does merged: true)
    merged           boolean                    no
    user             {"login": string} | null   no        the author
    base, head       {"ref": string}            no        target and source branch
    diff             string | null              no        the unified diff (`.../pulls/N` with
                                                          `Accept: application/vnd.github.diff`)
    reviews          list                       no        {user, state, body, submitted_at}
    review_comments  list                       no        {user, path, line, original_line,
                                                          diff_hunk, body, created_at}
    issue_comments   list                       no        {user, body, created_at}

`user` in any of these may also be a plain login string. Timestamps are ISO 8601 strings
(`2024-01-03T10:00:00Z`). Reviews without `submitted_at` (pending) and `COMMENTED` reviews with
an empty body (GitHub's container for review comments) are left out of the text.

Document text: `Pull request #N: TITLE`, author and branches, the description, the files changed
and the diff (filtered and capped by `diffs.filter_patch`), the discussion - issue comments,
review comments (with their diff hunk) and reviews merged in chronological order - and a last
line `Outcome: merged | closed unmerged | open`. A PR whose text contains a credential pattern
is skipped as `secret`. Every problem of a bad export is reported at once, naming the file, the
item and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from phased_cpt.errors import UserError
from phased_cpt.from_git.diffs import FilteredPatch, filter_patch
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules
from phased_cpt.from_git.secrets import find_credential

_REVIEW_STATES = {"APPROVED": "approved", "CHANGES_REQUESTED": "changes requested",
                  "COMMENTED": "commented", "DISMISSED": "dismissed"}
_MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class DiscussionEntry:
    """One comment or review, placed in time."""

    at: datetime
    rank: int  # tie-break at equal times: comments, then review comments, then reviews
    index: int  # tie-break within one list: export order
    text: str


@dataclass(frozen=True)
class PullRequest:
    """One checked pull request of the export."""

    number: int
    title: str
    body: str
    state: str
    outcome: str  # "merged", "closed unmerged" or "open"
    author: str
    base: str
    head: str
    diff: str | None
    discussion: tuple[DiscussionEntry, ...]


def load_pull_requests(path: Path) -> list[PullRequest]:
    """Read and check the export at `path` (a file or a directory); PRs sorted by number."""
    problems: list[str] = []
    pulls: dict[int, PullRequest] = {}
    origin: dict[int, str] = {}
    for file in _export_files(path):
        data = _read_json(file)
        items = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
        if items is None:
            problems.append(f"{file}: expected a list of pull-request objects (or one object), "
                            f"got {_type_name(data)}")
            continue
        for index, item in enumerate(items):
            where = f"{file}: item {index}"
            pull = _parse_pull(item, where, problems)
            if pull is None:
                continue
            if pull.number in pulls:
                problems.append(f"{where}: pull request #{pull.number} appears twice "
                                f"(also {origin[pull.number]})")
                continue
            pulls[pull.number], origin[pull.number] = pull, where
    if problems:
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        lines = [f"--prs {path}: bad pull-request export ({len(problems)} problem"
                 f"{'s' if len(problems) != 1 else ''}):"] + [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        lines.append("  (the expected shape is described in docs/from-git.md)")
        raise UserError("\n".join(lines))
    return [pulls[number] for number in sorted(pulls)]


def write_pull_requests(pulls: list[PullRequest], rules: PathRules, *, max_diff_bytes: int,
                        writer: DocumentWriter) -> None:
    """Write one phase-3 document per pull request, in number order."""
    for pull in pulls:
        patch = filter_patch(pull.diff.encode("utf-8"), rules, max_diff_bytes=max_diff_bytes) \
            if pull.diff else None
        text = format_pull_document(pull, patch)
        if find_credential(text) is not None:
            writer.stats.skip("secret")
            continue
        if patch is not None:
            writer.stats.dropped_file_diffs.update(patch.dropped)
            writer.stats.truncated += patch.truncated
        writer.write({"training_content": text, "number": pull.number, "title": pull.title,
                      "state": pull.state, "outcome": pull.outcome, "source": "pull_request"})


def format_pull_document(pull: PullRequest, patch: FilteredPatch | None) -> str:
    """The training text of one pull request (see the module docstring for the layout)."""
    head = f"Pull request #{pull.number}: {pull.title}\nAuthor: {pull.author}\n"
    if pull.head and pull.base:
        head += f"Branches: {pull.head} -> {pull.base}\n"
    parts = [head, f"Description:\n{pull.body or '(no description)'}\n"]
    if patch is None:
        parts.append("Diff: (not in the export)\n")
    else:
        listing = "\n".join(change.describe() for change in patch.files) or "(none)"
        parts.append(f"Files changed:\n{listing}\n")
        parts.append(patch.text.rstrip("\n") + "\n")
    entries = "\n\n".join(entry.text.rstrip("\n") for entry in pull.discussion)
    parts.append(f"Discussion:\n{entries or '(no reviews or comments)'}\n")
    parts.append(f"Outcome: {pull.outcome}\n")
    return "\n".join(parts)


def _export_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise UserError(f"--prs {path}: the directory holds no .json files")
        return files
    if not path.is_file():
        raise UserError(f"--prs {path}: no such file or directory")
    return [path]


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"--prs {file}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise UserError(f"--prs {file}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from err


def _parse_pull(item: Any, where: str, problems: list[str]) -> PullRequest | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a pull-request object, got {_type_name(item)}")
        return None
    start = len(problems)
    number = _get(item, "number", int, where, problems, required=True)
    if isinstance(number, int):
        where = f"{where} (#{number})"
    title = _get(item, "title", str, where, problems, required=True)
    state = _get(item, "state", str, where, problems, required=True)
    if isinstance(state, str) and state not in ("open", "closed"):
        problems.append(f"{where}: 'state' must be \"open\" or \"closed\", got {state!r}")
    body = _get(item, "body", str, where, problems) or ""
    merged_at = _get(item, "merged_at", str, where, problems)
    merged = _get(item, "merged", bool, where, problems)
    diff = _get(item, "diff", str, where, problems)
    base = _get(item, "base", dict, where, problems) or {}
    head = _get(item, "head", dict, where, problems) or {}
    discussion = _parse_discussion(item, where, problems)
    if len(problems) > start:
        return None
    outcome = "merged" if merged_at or merged else "closed unmerged" if state == "closed" else "open"
    return PullRequest(number, title, _normalize(body), state, outcome,
                       _login(item.get("user")), str(base.get("ref") or ""),
                       str(head.get("ref") or ""), diff, discussion)


def _parse_discussion(item: dict[str, Any], where: str, problems: list[str]) -> tuple[DiscussionEntry, ...]:
    entries: list[DiscussionEntry] = []
    lists = (("issue_comments", 0), ("review_comments", 1), ("reviews", 2))
    for key, rank in lists:
        values = _get(item, key, list, where, problems) or []
        for index, value in enumerate(values):
            at_where = f"{where}: {key}[{index}]"
            if not isinstance(value, dict):
                problems.append(f"{at_where}: expected an object, got {_type_name(value)}")
                continue
            entry = _parse_entry(key, value, at_where, problems)
            if entry is not None:
                at, text = entry
                entries.append(DiscussionEntry(at, rank, index, text))
    return tuple(sorted(entries, key=lambda e: (e.at, e.rank, e.index)))


def _parse_entry(key: str, value: dict[str, Any], where: str,
                 problems: list[str]) -> tuple[datetime, str] | None:
    """(time, text) of one comment or review; None when it has no place in the discussion."""
    who = _login(value.get("user"))
    body = _normalize(_get(value, "body", str, where, problems) or "")
    stamp_key = "submitted_at" if key == "reviews" else "created_at"
    stamp = _get(value, stamp_key, str, where, problems, required=key != "reviews")
    at = _parse_time(stamp, f"{where}: '{stamp_key}'", problems) if stamp else None
    if key == "reviews":
        state = _get(value, "state", str, where, problems, required=True)
        if at is None or not isinstance(state, str) or (state == "COMMENTED" and not body):
            return None
        verdict = _REVIEW_STATES.get(state, state.lower())
        return at, f"[{stamp}] review by {who}: {verdict}" + (f"\n{body}" if body else "") + "\n"
    if at is None:
        return None
    if key == "issue_comments":
        return at, f"[{stamp}] comment by {who}\n{body}\n"
    path = _get(value, "path", str, where, problems) or "?"
    line = _get(value, "line", int, where, problems) or _get(value, "original_line", int, where, problems)
    hunk = _normalize(_get(value, "diff_hunk", str, where, problems) or "").rstrip("\n")
    place = f"{path} line {line}" if line else path
    code = f"Code:\n{hunk}\n" if hunk else ""
    return at, f"[{stamp}] review comment by {who} on {place}\n{code}Comment:\n{body}\n"


def _get(obj: dict[str, Any], key: str, kind: type, where: str, problems: list[str],
         required: bool = False) -> Any:
    """`obj[key]` when it has type `kind` (None when absent or null); a problem otherwise."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.append(f"{where}: missing required key '{key}'")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        problems.append(f"{where}: '{key}' must be {_type_name(kind())}, got {_type_name(value)}")
        return None
    return value


def _parse_time(stamp: str, where: str, problems: list[str]) -> datetime | None:
    try:
        at = datetime.fromisoformat(_utc_suffix(stamp))
    except ValueError:
        problems.append(f"{where}: not an ISO 8601 time: {stamp!r}")
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _utc_suffix(stamp: str) -> str:
    """`...Z` -> `...+00:00`: GitHub's form, which `fromisoformat` only reads from Python 3.11."""
    return stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp


def _login(user: Any) -> str:
    if isinstance(user, str):
        return user
    if isinstance(user, dict) and isinstance(user.get("login"), str):
        return user["login"]
    return "ghost" if user is None else "unknown"


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
