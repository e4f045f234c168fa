"""Phase 3 without a pull-request export: one document per merge that brought work in.

Every merge commit reachable from the revision is classified (`classify_merge`):

- **pull request** - GitHub's `Merge pull request #N from OWNER/BRANCH` (title in the body) or
  `TITLE (#N)` (a repository set to use the pull request's title as the merge message),
  Bitbucket's `Merged in BRANCH (pull request #N)`, or GitLab's `See merge request GROUP!N`
  in the body. Text:

      Pull request #N: TITLE
      Branch: OWNER/BRANCH
      Date: 2024-01-06T10:00:00+00:00
      <blank line>
      <the rest of the message, if any>
      <blank line>
      Files changed: ... and the diff against the first parent (everything the PR changed)
      Outcome: merged

- **branch sync** - left out (`branch-sync`), because its first-parent diff repeats phase-2
  commits: the merged-in parent is on the mainline (the first-parent chain of the revision:
  the mainline merged into a branch, or a merge of something already there), or the message
  merges a mainline branch (`Merge branch 'master' of github.com:...`, `Merge remote-tracking
  branch 'origin/main'`, `Merge branch 'main' into feature`), or a branch into itself, or a
  release or maintenance branch (`LONG_LIVED_BRANCH`: `1.0-maintenance`, `release/2.3`, `2.x`,
  `stable`). Mainline branch names: `main`, `master`, `develop`, `development`, `trunk` and the
  branch HEAD is on.
- **branch** - any other merge: `Merge: SUBJECT`, then the same layout as a commit.

Metadata: as phase 2, plus `source` (`merge_commit`), `kind` (`pull_request` or `branch`),
`outcome` (`merged`) and, for a pull request, `number`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from phased_cpt.from_git.git import CommitMessage, CommitPatch, GitRepo
from phased_cpt.from_git.history import read_limit, write_history_document
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.rules import PathRules

MAINLINE_BRANCHES = frozenset({"main", "master", "develop", "development", "trunk"})
LONG_LIVED_BRANCH = re.compile(
    r"stable|release[-/_.].*|.*[-_]maintenance|maint(?:enance)?[-/_].*|v?\d+(?:\.\d+)*(?:\.x)?|.*\.x"
)
"""Release and maintenance lines (`1.0-maintenance`, `release/2.3`, `2.x`, `stable`): merging one
forward brings fixes whose commits are already phase-2 documents."""
_GITHUB_PR = re.compile(r"Merge pull request #(\d+) from (\S+)")
_BITBUCKET_PR = re.compile(r"Merged in (\S+) \(pull request #(\d+)\)")
_GITLAB_MR = re.compile(r"See merge request (\S+)!(\d+)")
_TITLE_PR = re.compile(r"(.+) \(#(\d+)\)")
_BRANCH = re.compile(r"Merge (?:remote-tracking )?branch(?:es)? '([^']+)'(?: of (\S+))?(?: into '?([^']+?)'?)?$")


@dataclass(frozen=True)
class MergeKind:
    """What a merge commit is, and what its document needs."""

    kind: str  # "pull_request", "branch" or "branch-sync"
    why: str = ""
    number: int | None = None
    title: str = ""
    branch: str = ""
    body: str = ""  # the message body without the title line


def write_merges(
    git: GitRepo, commit: str, rules: PathRules, *, since_epoch: int | None, max_diff_bytes: int, writer: DocumentWriter
) -> None:
    """Write one phase-3 document per pull-request or branch merge reachable from `commit`."""
    mainline = git.first_parent_chain(commit)
    names = MAINLINE_BRANCHES | ({git.current_branch()} - {None})
    with git.open_objects() as objects:
        for item in git.iter_patches(
            commit, merges=True, since_epoch=since_epoch, max_patch_bytes=read_limit(max_diff_bytes)
        ):
            where = {"commit": item.oid}
            message = objects.read_message(item.oid)
            if message is None:
                writer.stats.skip("undecodable", where, rule="message not valid in its encoding", size=item.total_bytes)
                continue
            merge = classify_merge(message, item.parents, mainline, names)
            if merge.kind == "branch-sync":
                writer.stats.skip("branch-sync", where, rule=merge.why, size=item.total_bytes)
                continue
            _write_merge(item, message, merge, rules, max_diff_bytes, writer)


def classify_merge(
    message: CommitMessage, parents: tuple[str, ...], mainline: set[str], mainline_names: frozenset[str] | set[str]
) -> MergeKind:
    """Pull request, branch sync or branch merge (see the module docstring)."""
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
    return MergeKind("branch", title=subject, body=body)


def _write_merge(
    item: CommitPatch,
    message: CommitMessage,
    merge: MergeKind,
    rules: PathRules,
    max_diff_bytes: int,
    writer: DocumentWriter,
) -> None:
    metadata: dict[str, object] = {"source": "merge_commit", "kind": merge.kind, "outcome": "merged"}
    if merge.kind == "pull_request":
        head = [f"Pull request #{merge.number}: {merge.title}"]
        if merge.branch:
            head.append(f"Branch: {merge.branch}")
        metadata["number"] = merge.number
    else:
        head = [f"Merge: {merge.title}"]
    write_history_document(head, item, message, rules, max_diff_bytes, writer, metadata=metadata, body=merge.body)
