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
    closed_at        string | null              no        when it was closed (merged or not)
    created_at       string | null              no        when it was opened
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
line `Outcome: merged | closed unmerged | open`. Credential values in the text are redacted when
the document is written (`output.DocumentWriter`). The export is checked by pydantic models
(`PullExport`: strict types, unknown keys ignored); every problem of a bad export is reported
at once, naming the file, the item and the key; JSON nested deeper than the parser's limit is
one clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, ValidationError

from phased_cpt.errors import UserError
from phased_cpt.from_git.diffs import FilteredPatch, filter_patch
from phased_cpt.from_git.history import diff_key
from phased_cpt.from_git.merges import BOT
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules

_REVIEW_STATES = {
    "APPROVED": "approved",
    "CHANGES_REQUESTED": "changes requested",
    "COMMENTED": "commented",
    "DISMISSED": "dismissed",
}
_MAX_PROBLEMS_SHOWN = 20


def _check_time(stamp: str) -> str:
    parse_time(stamp)
    return stamp


def parse_time(stamp: str) -> datetime:
    """An ISO 8601 time (GitHub's `...Z` form included) as an aware datetime, UTC when naive."""
    try:
        at = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {stamp!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


Time = Annotated[str, AfterValidator(_check_time)]


class _Strict(BaseModel):
    """Strict types (a string is not a number, a number not a string); unknown keys ignored,
    since a GitHub object has many keys this export does not use."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _User(_Strict):
    login: str | None = None


User = str | _User | None


class _Branch(_Strict):
    ref: str | None = None


class _IssueComment(_Strict):
    user: User = None
    body: str | None = None
    created_at: Time


class _ReviewComment(_Strict):
    user: User = None
    path: str | None = None
    line: int | None = None
    original_line: int | None = None
    diff_hunk: str | None = None
    body: str | None = None
    created_at: Time


class _Review(_Strict):
    user: User = None
    state: str
    body: str | None = None
    submitted_at: Time | None = None  # None: a pending review


class PullExport(_Strict):
    """One pull-request object of the export (the table in the module docstring)."""

    number: int
    title: str
    state: Literal["open", "closed"]
    body: str | None = None
    merged_at: Time | None = None
    closed_at: Time | None = None
    created_at: Time | None = None
    merged: bool | None = None
    user: User = None
    base: _Branch | None = None
    head: _Branch | None = None
    diff: str | None = None
    reviews: list[_Review] | None = None
    review_comments: list[_ReviewComment] | None = None
    issue_comments: list[_IssueComment] | None = None


_JSON = TypeAdapter(Any)


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
    at: datetime | None = None  # when it was merged, else closed, else opened: its side of a time split


def load_pull_requests(path: Path) -> list[PullRequest]:
    """Read and check the export at `path` (a file or a directory); PRs sorted by number.

    Every problem of every file is reported at once, as `FILE: item N (#NUMBER): KEY: reason`.
    """
    problems: list[str] = []
    pulls: dict[int, PullRequest] = {}
    origin: dict[int, str] = {}
    for file in _export_files(path):
        data = _read_json(file)
        items = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
        if items is None:
            problems.append(f"{file}: expected a list of pull-request objects (or one object), got {_type_name(data)}")
            continue
        for index, item in enumerate(items):
            where = f"{file}: item {index}"
            if isinstance(item, dict) and type(item.get("number")) is int:
                where += f" (#{item['number']})"
            if not isinstance(item, dict):
                problems.append(f"{where}: expected a pull-request object, got {_type_name(item)}")
                continue
            try:
                pull = _pull_request(PullExport.model_validate(item))
            except ValidationError as err:
                problems += [f"{where}: {_describe(error)}" for error in err.errors()]
                continue
            if pull.number in pulls:
                problems.append(f"{where}: pull request #{pull.number} appears twice (also {origin[pull.number]})")
                continue
            pulls[pull.number], origin[pull.number] = pull, where
    if problems:
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        lines = [
            f"--prs {path}: bad pull-request export ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
        ] + [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        lines.append("  (the expected shape is described in docs/from-git.md)")
        raise UserError("\n".join(lines))
    return [pulls[number] for number in sorted(pulls)]


def write_pull_requests(
    pulls: list[PullRequest], rules: PathRules, *, max_diff_bytes: int, writer: DocumentWriter, keep_bots: bool = False
) -> None:
    """Write one phase-3 document per pull request, in number order; a bot's pull request
    (author matching `merges.BOT`) is left out as `bot` unless `keep_bots`."""
    for pull in pulls:
        if not keep_bots and BOT.search(pull.author):
            writer.stats.skip("bot", {"pull_request": pull.number}, rule=f"by a bot: {pull.author}")
            continue
        patch = filter_patch(pull.diff.encode("utf-8"), rules, max_diff_bytes=max_diff_bytes) if pull.diff else None
        where = {"pull_request": pull.number}
        if patch is not None:
            for path, skip, size in patch.dropped:
                writer.stats.drop_diff(skip.reason, {**where, "path": path}, rule=skip.rule, size=size)
            if patch.truncated:
                writer.stats.cut(patch.cut_bytes)
            if patch.shortened_lines:
                writer.stats.shorten(where, patch.shortened_lines, patch.shortened_bytes)
        text = format_pull_document(pull, patch)
        key = diff_key(patch.text) if patch is not None and patch.kept_bytes else text
        writer.write(
            {
                "training_content": text,
                "number": pull.number,
                "title": pull.title,
                "state": pull.state,
                "outcome": pull.outcome,
                "source": "pull_request",
            },
            where,
            key_text=key,
        )


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
    """The parsed JSON of `file`; nesting deeper than the parser's limit is an error, not a
    RecursionError."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"--prs {file}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    try:
        return _JSON.validate_json(data)
    except ValidationError as err:
        message = err.errors()[0]["msg"].removeprefix("Invalid JSON: ")
        raise UserError(f"--prs {file}: not valid JSON ({message})") from None


def _pull_request(raw: PullExport) -> PullRequest:
    outcome = "merged" if raw.merged_at or raw.merged else "closed unmerged" if raw.state == "closed" else "open"
    entries: list[DiscussionEntry] = []
    for rank, values in enumerate((raw.issue_comments, raw.review_comments, raw.reviews)):
        for index, value in enumerate(values or []):
            entry = _discussion_text(value)
            if entry is not None:
                entries.append(DiscussionEntry(entry[0], rank, index, entry[1]))
    return PullRequest(
        raw.number,
        raw.title,
        _normalize(raw.body or ""),
        raw.state,
        outcome,
        _login(raw.user),
        (raw.base.ref or "") if raw.base else "",
        (raw.head.ref or "") if raw.head else "",
        raw.diff,
        tuple(sorted(entries, key=lambda e: (e.at, e.rank, e.index))),
        next((parse_time(stamp) for stamp in (raw.merged_at, raw.closed_at, raw.created_at) if stamp), None),
    )


def _discussion_text(value: _IssueComment | _ReviewComment | _Review) -> tuple[datetime, str] | None:
    """(time, text) of one comment or review; None when it has no place in the discussion."""
    who = _login(value.user)
    body = _normalize(value.body or "")
    if isinstance(value, _Review):
        if value.submitted_at is None or (value.state == "COMMENTED" and not body):
            return None
        verdict = _REVIEW_STATES.get(value.state, value.state.lower())
        text = f"[{value.submitted_at}] review by {who}: {verdict}" + (f"\n{body}" if body else "") + "\n"
        return parse_time(value.submitted_at), text
    if isinstance(value, _IssueComment):
        return parse_time(value.created_at), f"[{value.created_at}] comment by {who}\n{body}\n"
    line = value.line or value.original_line
    place = f"{value.path or '?'} line {line}" if line else (value.path or "?")
    hunk = _normalize(value.diff_hunk or "").rstrip("\n")
    code = f"Code:\n{hunk}\n" if hunk else ""
    return (
        parse_time(value.created_at),
        f"[{value.created_at}] review comment by {who} on {place}\n{code}Comment:\n{body}\n",
    )


def _describe(error: Any) -> str:
    """One pydantic error as `key.path: reason`, in this export's words."""
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    location = location.lstrip(".")
    if error["type"] == "missing":
        key = location.rsplit(".", 1)
        return f"{key[0] + ': ' if len(key) == 2 else ''}missing required key '{key[-1]}'"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] not in ("value_error", "literal_error"):
        message += f", got {_type_name(error['input'])}"
    elif error["type"] == "literal_error":
        message += f", got {error['input']!r}"
    return f"{location}: {message}"


def _login(user: str | _User | None) -> str:
    if isinstance(user, str):
        return user
    if user is None:
        return "ghost"
    return user.login if user.login is not None else "unknown"


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
