"""How the history merges, and which phase each change is trained in: every change once.

`plan_history(git, revs, ...)` reads the commit graph of `revs` (a revision, or a range such as
`CUT..HEAD`) once and decides, for every commit, where its change is trained:

- **Mainline**: the first-parent chain of `revs`. Walking it oldest first, each merge brings in
  its *branch commits*: the commits reachable from its other parents and not from the mainline
  before it.
- **Phase 3 stories** (without `--prs`): each merge on the mainline that brought in work, told
  once - the title, the messages of its branch commits in order, one combined diff (the merge
  against its first parent) and `Outcome: merged`. Its branch commits are *not* phase-2
  documents (`in-phase-3-story`). And each squash merge: a non-merge mainline commit whose
  subject is `TITLE (#N)` (GitHub's squash and merge) is pull request #N, told in phase 3 and
  not in phase 2.
- **Phase 2**: every other non-merge commit - direct commits on the mainline, and the commits
  of branches merged by a merge whose diff repeats them (a branch sync, below).

So no diff is in both phases. Merges are classified by `classify_merge`:

- **pull request** - GitHub's `Merge pull request #N from OWNER/BRANCH` (title in the body),
  `TITLE (#N)`, Bitbucket's `Merged in BRANCH (pull request #N)`, GitLab's `See merge request
  GROUP!N` in the body, a merged pull-request ref (`Merge remote-tracking branch 'origin/pr/N'`).
  Story head `Pull request #N: TITLE` and `Branch: OWNER/BRANCH`.
- **review** - Gerrit's `Merge "TITLE" into BRANCH` (or `Merge "TITLE"`): the change (its
  commits carry a `Change-Id:` trailer) told as `Review: TITLE`.
- **branch sync** - left out (`branch-sync`), and its branch commits stay phase-2 documents,
  because the merge's diff repeats commits trained as such: the merged-in parent is on the
  mainline, or the message merges a mainline branch (`MAINLINE_BRANCHES` and the branch HEAD is
  on), a release or maintenance branch (`LONG_LIVED_BRANCH`: `1.0-maintenance`, `release/2.3`,
  `2.x`, `rel_1_4`, `stable`), a branch into itself, or has no title of its own (`merge tip`,
  `merge default`, `- merge`: Mercurial-era head merges and forward-ports).
- **bot** - a merge authored by a bot, or of a bot's branch (`dependabot/...`), or whose branch
  commits are all a bot's: left out with its commits (`bot`) unless `keep_bots`. A non-merge
  commit by a bot is left out of phase 2 the same way. A bot is an author or committer whose
  name or address matches `BOT` (`[bot]`, dependabot, renovate, pre-commit-ci, github-actions).
- **branch** - any other merge: `Merge: SUBJECT`.

A rebase merge leaves no trace but GitHub as the committer of the pull request's commits; they
stay phase-2 commits, and are counted (`rebase-merged commits`) so the summary can point to
`--prs`. With `--prs`, phase 3 is the export: the merges and squash commits of the pull requests
it holds (by number) are left out of phase 2, every other story's commits are phase-2 commits.

Story text (metadata: as phase 2, plus `source` (`merge_commit` or `squash_commit`), `kind`,
`outcome` and, for a pull request, `number`; `commits` lists the story's commits):

    Pull request #12: Add retry to the client
    Branch: ada/retry
    Date: 2024-01-06T10:00:00+00:00
    <blank line>
    <the merge message's body, if any>
    <blank line>
    Commits:
    * Add retry
      <its body, indented>
    * Test retry
    <blank line>                          (at most MAX_STORY_COMMITS, then `[K more commits not listed]`)
    Files changed: ... and the diff against the first parent (everything the branch changed)
    Outcome: merged
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from phased_cpt.from_git.git import CommitMessage, GitRepo, ObjectReader, parse_commit_object

MAINLINE_BRANCHES = frozenset({"main", "master", "develop", "development", "trunk", "default", "tip"})
LONG_LIVED_BRANCH = re.compile(
    r"stable|release[-/_.].*|rel_\d+(?:_\d+)*|.*[-_]maintenance|maint(?:enance)?[-/_].*|v?\d+(?:\.\d+)*(?:\.x)?|.*\.x"
)
"""Release and maintenance lines (`1.0-maintenance`, `release/2.3`, `2.x`, `rel_1_4`, `stable`):
merging one forward brings fixes that are phase-2 commits."""
BOT = re.compile(r"(?i)\[bot\]|dependabot|renovate|pre-commit-ci|github-actions")
_BOT_BRANCH = re.compile(r"(?i)(?:^|/)(?:dependabot|renovate|pre-commit-ci)")
_GITHUB_PR = re.compile(r"Merge pull request #(\d+) from (\S+)")
_BITBUCKET_PR = re.compile(r"Merged in (\S+) \(pull request #(\d+)\)")
_GITLAB_MR = re.compile(r"See merge request (\S+)!(\d+)")
_TITLE_PR = re.compile(r"(.+) \(#(\d+)\)")
_PR_REF = re.compile(r"Merge (?:remote-tracking )?branch '(?:[\w.-]+/)?pr/(\d+)'")
_GERRIT = re.compile(r'Merge "(.+)"(?: into (\S+))?')
_BRANCH = re.compile(r"Merge (?:remote-tracking )?branch(?:es)? '([^']+)'(?: of (\S+))?(?: into '?([^']+?)'?)?$")
_UNTITLED = re.compile(r"(?i)\W*(?:branch |then |re-?)?merged?\b.*")
_CHANGE_ID = re.compile(r"(?m)^Change-Id: I[0-9a-f]{8,}")
_GITHUB_COMMITTER = "noreply@github.com"
MAX_STORY_COMMITS = 100
"""A story lists at most this many commit messages (a merged-in foreign history can hold
thousands), then `[K more commits not listed]`."""


@dataclass(frozen=True)
class MergeKind:
    """What a merge commit is, and what its story needs."""

    kind: str  # "pull_request", "review", "branch", "branch-sync" or "bot"
    why: str = ""
    number: int | None = None
    title: str = ""
    branch: str = ""
    body: str = ""  # the message body without the title line


@dataclass(frozen=True)
class CommitInfo:
    """What the planner reads of one commit: parents, message, author and committer."""

    oid: str
    parents: tuple[str, ...]
    message: CommitMessage | None  # None: not valid text in its encoding
    author: str  # "Name <address>"
    committer: str

    @property
    def by_bot(self) -> bool:
        """Authored or committed by a bot (`BOT`)."""
        return bool(BOT.search(self.author) or BOT.search(self.committer))


@dataclass(frozen=True)
class Story:
    """One phase-3 story: a merge and its branch commits, or one squash-merge commit."""

    oid: str  # the merge commit, or the squash commit
    merge: MergeKind
    commits: tuple[str, ...]  # the branch commits, oldest first (the squash commit itself)
    squash: bool = False


@dataclass
class HistoryPlan:
    """Where each commit of `revs` is trained (see the module docstring)."""

    revs: str
    since_epoch: int | None
    commits: dict[str, CommitInfo]  # while planning every commit; then only the stories' commits
    phase2: set[str] = field(default_factory=set)
    stories: dict[str, Story] = field(default_factory=dict)  # by merge or squash commit id
    left_out: dict[str, tuple[str, str]] = field(default_factory=dict)  # commit -> (reason, rule)
    styles: Counter[str] = field(default_factory=Counter)  # how the repository merges
    newest_date: str = ""  # author date of the newest commit

    def newest_story_date(self) -> str:
        """Author date of the newest phase-3 story ("" when none)."""
        dates = [msg.author_date for story in self.stories.values() if (msg := self.commits[story.oid].message)]
        return max(dates, default="")


def plan_history(
    git: GitRepo,
    revs: str,
    *,
    since_epoch: int | None,
    keep_bots: bool,
    pull_numbers: set[int] | None = None,
) -> HistoryPlan:
    """Classify every commit of `revs` (see the module docstring). `pull_numbers`: the merged
    pull requests of a `--prs` export (phase 3 is then the export, not merge stories)."""
    graph = git.commit_graph(revs, since_epoch=since_epoch)
    mainline = _mainline(git, revs, graph)
    with git.open_objects() as objects:
        commits = {oid: read_commit(objects, oid, parents) for oid, parents in graph}
    plan = HistoryPlan(revs, since_epoch, commits)
    order = {oid: index for index, (oid, _) in enumerate(graph)}
    walk = _Walk(set(mainline), MAINLINE_BRANCHES | ({git.current_branch()} - {None}), keep_bots, pull_numbers)
    seen: set[str] = set()
    for oid in mainline:
        info = commits[oid]
        seen.add(oid)
        if len(info.parents) < 2:
            _plan_mainline_commit(plan, info, walk)
            continue
        branch = sorted(_branch_commits(info, commits, seen), key=order.__getitem__)
        seen.update(branch)
        _plan_merge(plan, info, branch, walk)
    for oid, info in commits.items():  # reachable only through merges outside the mainline walk
        if oid not in seen and len(info.parents) < 2:
            _plan_commit(plan, info, keep_bots)
    plan.newest_date = max((info.message.author_date for info in commits.values() if info.message), default="")
    told = {oid for story in plan.stories.values() for oid in (story.oid, *story.commits)}
    plan.commits = {oid: commits[oid] for oid in told}  # only stories need messages later: free the rest
    return plan


def read_commit(objects: ObjectReader, oid: str, parents: tuple[str, ...]) -> CommitInfo:
    """The `CommitInfo` of `oid` from its raw object."""
    raw = objects.read(oid)
    idents = {b"author": "", b"committer": ""}
    for line in raw.partition(b"\n\n")[0].split(b"\n"):
        name, _, value = line.partition(b" ")
        if name in idents:
            idents[name] = value.rsplit(b" ", 2)[0].decode("utf-8", "replace")
    return CommitInfo(oid, parents, parse_commit_object(raw), idents[b"author"], idents[b"committer"])


def classify_merge(
    message: CommitMessage, parents: tuple[str, ...], mainline: set[str], mainline_names: frozenset[str] | set[str]
) -> MergeKind:
    """Pull request, review, branch sync or branch merge (see the module docstring)."""
    subject, body = message.subject, message.body
    if len(parents) > 1 and parents[1] in mainline:
        return MergeKind("branch-sync", why="the merged-in parent is on the mainline")
    title, _, rest = body.partition("\n")
    if match := _GITHUB_PR.match(subject):
        return MergeKind(
            "pull_request", number=int(match[1]), title=title.strip() or match[2], branch=match[2], body=rest.strip()
        )
    if match := _BITBUCKET_PR.match(subject):
        return MergeKind(
            "pull_request", number=int(match[2]), title=title.strip() or match[1], branch=match[1], body=rest.strip()
        )
    if match := _PR_REF.match(subject):
        return MergeKind("pull_request", number=int(match[1]), title=title.strip() or subject, body=rest.strip())
    if match := _GERRIT.fullmatch(subject):
        return MergeKind("review", title=match[1], branch=match[2] or "", body=body)
    if (match := _TITLE_PR.fullmatch(subject)) and not subject.startswith("Merge branch"):
        return MergeKind("pull_request", number=int(match[2]), title=match[1].strip(), body=body)
    if match := _GITLAB_MR.search(body):
        branch = _BRANCH.match(subject)
        return MergeKind(
            "pull_request",
            number=int(match[2]),
            title=title.strip() or subject,
            branch=branch[1] if branch else "",
            body=rest.replace(match[0], "").strip(),
        )
    if match := _BRANCH.match(subject):
        merged = match[1].split("/")[-1] if match[1].startswith(("origin/", "upstream/")) else match[1]
        if merged in mainline_names:
            return MergeKind("branch-sync", why=f"merges the mainline branch '{merged}'")
        if LONG_LIVED_BRANCH.fullmatch(merged):
            return MergeKind("branch-sync", why=f"merges the long-lived branch '{merged}'")
        if match[3] is not None and match[3] == merged:
            return MergeKind("branch-sync", why=f"merges '{merged}' into itself")
        return MergeKind("branch", title=subject, branch=merged, body=body)
    if _UNTITLED.fullmatch(subject):
        return MergeKind("branch-sync", why="a merge without a title of its own (a head merge or forward-port)")
    return MergeKind("branch", title=subject, body=body)


def story_parts(story: Story, plan: HistoryPlan) -> tuple[list[str], str, dict[str, object]]:
    """The head lines, body and metadata of `story`'s document (see the module docstring)."""
    merge = story.merge
    source = "squash_commit" if story.squash else "merge_commit"
    metadata: dict[str, object] = {"source": source, "kind": merge.kind, "outcome": "merged"}
    if merge.kind == "pull_request":
        head = [f"Pull request #{merge.number}: {merge.title}"]
        metadata["number"] = merge.number
    elif merge.kind == "review":
        head = [f"Review: {merge.title}"]
    else:
        head = [f"Merge: {merge.title}"]
    if merge.branch:
        head.append(f"Branch: {merge.branch}")
    body = merge.body if story.squash else _story_body(merge.body, story, plan)
    metadata["commits"] = list(story.commits)
    return head, body, metadata


def _story_body(merge_body: str, story: Story, plan: HistoryPlan) -> str:
    """The merge message's body, then `Commits:` with each branch commit's message in order."""
    lines = []
    for oid in story.commits[:MAX_STORY_COMMITS]:
        message = plan.commits[oid].message
        if message is None:
            continue
        lines.append(f"* {message.subject}")
        lines += [f"  {line}" if line else "" for line in message.body.split("\n")] if message.body else []
    if len(story.commits) > MAX_STORY_COMMITS:
        lines.append(f"[{len(story.commits) - MAX_STORY_COMMITS} more commits not listed]")
    parts = [merge_body] if merge_body else []
    if lines:
        parts.append("Commits:\n" + "\n".join(lines))
    return "\n\n".join(parts)


def _mainline(git: GitRepo, revs: str, graph: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The first-parent chain of `revs`, oldest first (the graph's order keeps parents first)."""
    chain = git.first_parent_chain(revs)
    return [oid for oid, _ in graph if oid in chain]


def _branch_commits(info: CommitInfo, commits: dict[str, CommitInfo], seen: set[str]) -> list[str]:
    """Commits of `revs` reachable from the merge's other parents and not yet `seen`."""
    found: set[str] = set()
    stack = [parent for parent in info.parents[1:] if parent in commits and parent not in seen]
    while stack:
        oid = stack.pop()
        if oid in found:
            continue
        found.add(oid)
        stack += [parent for parent in commits[oid].parents if parent in commits and parent not in seen]
    return list(found)


@dataclass(frozen=True)
class _Walk:
    """What the planner knows while it walks the mainline."""

    mainline: set[str]
    names: frozenset[str] | set[str]  # mainline branch names
    keep_bots: bool
    pulls: set[int] | None  # merged pull requests of a --prs export


def _plan_mainline_commit(plan: HistoryPlan, info: CommitInfo, walk: _Walk) -> None:
    keep_bots, pulls = walk.keep_bots, walk.pulls
    message = info.message
    match = _TITLE_PR.fullmatch(message.subject) if message is not None else None
    if match is None or (info.by_bot and not keep_bots):
        if message is not None and _CHANGE_ID.search(message.body):
            plan.styles["review commits (Change-Id, no merge)"] += 1
        elif info.committer.endswith(f"<{_GITHUB_COMMITTER}>") and info.author != info.committer:
            plan.styles["rebase-merged commits"] += 1
        else:
            plan.styles["direct commits"] += 1
        _plan_commit(plan, info, keep_bots)
        return
    assert message is not None
    number = int(match[2])
    plan.styles["squash merges"] += 1
    if pulls is not None:
        if number in pulls:
            plan.left_out[info.oid] = ("in-phase-3-story", f"pull request #{number} of the --prs export")
        else:
            plan.phase2.add(info.oid)
        return
    merge = MergeKind("pull_request", number=number, title=match[1].strip(), body=message.body)
    plan.stories[info.oid] = Story(info.oid, merge, (info.oid,), squash=True)


def _plan_commit(plan: HistoryPlan, info: CommitInfo, keep_bots: bool) -> None:
    if info.by_bot and not keep_bots:
        plan.left_out[info.oid] = ("bot", f"by a bot: {_name(info)}")
    else:
        plan.phase2.add(info.oid)


def _plan_merge(
    plan: HistoryPlan,
    info: CommitInfo,
    branch: list[str],
    walk: _Walk,
) -> None:
    keep_bots, pulls = walk.keep_bots, walk.pulls
    if info.message is None:
        plan.left_out[info.oid] = ("undecodable", "message not valid in its encoding")
        for oid in branch:
            if len(plan.commits[oid].parents) < 2:
                _plan_commit(plan, plan.commits[oid], keep_bots)
        return
    merge = classify_merge(info.message, info.parents, walk.mainline, walk.names)
    own = [oid for oid in branch if len(plan.commits[oid].parents) < 2]
    for oid in branch:
        if len(plan.commits[oid].parents) > 1:  # a merge inside the branch: its changes are the branch's
            plan.left_out[oid] = ("inside-branch", f"a merge inside the branch of merge {info.oid[:12]}")
    if merge.kind != "branch-sync" and not keep_bots and _is_bot_merge(info, merge, own, plan.commits):
        merge = MergeKind("bot", why=f"a bot's merge or branch: {merge.branch or _name(info)}")
    plan.styles[_STYLE_NAMES[merge.kind]] += 1
    if merge.kind in ("branch-sync", "bot"):
        plan.left_out[info.oid] = (merge.kind, merge.why)
        for oid in own:
            if merge.kind == "bot":
                plan.left_out[oid] = ("bot", f"commit of the bot merge {info.oid[:12]}")
            else:
                _plan_commit(plan, plan.commits[oid], keep_bots)
        return
    if pulls is not None:
        if merge.number is not None and merge.number in pulls:
            plan.left_out[info.oid] = ("in-phase-3-story", f"pull request #{merge.number} of the --prs export")
            for oid in own:
                plan.left_out[oid] = ("in-phase-3-story", f"pull request #{merge.number} of the --prs export")
        else:
            plan.left_out[info.oid] = ("merge", "its changes are its branch's commits")
            for oid in own:
                _plan_commit(plan, plan.commits[oid], keep_bots)
        return
    plan.stories[info.oid] = Story(info.oid, merge, tuple(own))
    for oid in own:
        plan.left_out[oid] = ("in-phase-3-story", f"told in the phase-3 story of merge {info.oid[:12]}")


def _is_bot_merge(info: CommitInfo, merge: MergeKind, own: list[str], commits: dict[str, CommitInfo]) -> bool:
    if info.by_bot or _BOT_BRANCH.search(merge.branch):
        return True
    return bool(own) and all(commits[oid].by_bot for oid in own)


def _name(info: CommitInfo) -> str:
    """The author's name, without the address (the report keeps no personal data)."""
    return info.author.split(" <", 1)[0]


_STYLE_NAMES = {
    "pull_request": "pull-request merges",
    "review": "review merges (Gerrit)",
    "branch": "branch merges",
    "branch-sync": "branch syncs and forward-ports",
    "bot": "bot merges",
}
