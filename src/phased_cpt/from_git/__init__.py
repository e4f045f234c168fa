"""Turn a git repository (and optionally a pull-request export) into three phase datasets.

`build_datasets` is the whole flow, top to bottom; each phase lives in its own module:

    phase1_foundation.jsonl   foundation.py  one document per tracked text file at the revision
    phase2_evolution.jsonl    history.py     one document per non-merge commit, oldest first
    phase3_pr_mastery.jsonl   pulls.py       one document per pull request of `prs`, or
                              merges.py      without `prs`: one per pull-request or branch
                                             merge commit (branch syncs left out)

Every line is a JSON object with the text in `training_content` plus metadata training ignores.
What is left out and why - path rules (`rules.py`, `vendored.py`), content quality
(`quality.py`), secrets (`secrets.py`), diff sections (`diffs.py`), duplicates (`output.py`) -
is counted in the returned `Summary` and listed in `<out>/from-git-report.json`. When `out_dir`
is inside the repository, earlier outputs that were committed there are left out too
(`excluded`), so a dataset is never built from a previous one. Git is only used through its
command line, hardened against the repository's own config (`git.py`), streamed one commit at
a time. Output is deterministic for the same repository state, and the three files and the
report are replaced atomically at the end, so a failed run leaves the previous outputs as they
were.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from phased_cpt.errors import UserError
from phased_cpt.from_git.foundation import write_foundation
from phased_cpt.from_git.git import GitRepo
from phased_cpt.from_git.history import parse_since, write_evolution
from phased_cpt.from_git.holdout import (
    FUTURE_FILES,
    FutureSets,
    HoldoutOptions,
    choose_cut,
    refuse_foreign_future,
    remove_stale_future,
    split_pulls,
)
from phased_cpt.from_git.merges import write_merges
from phased_cpt.from_git.output import DocumentWriter, prepare_out_dir
from phased_cpt.from_git.pulls import load_pull_requests, write_pull_requests
from phased_cpt.from_git.rules import DEFAULT_EXCLUDES, repository_rules
from phased_cpt.from_git.summary import REPORT_FILE, OutputStats, Summary
from phased_cpt.from_git.tasks import FutureLimits

__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_MAX_DIFF_BYTES",
    "DEFAULT_MAX_FILE_BYTES",
    "FUTURE_FILES",
    "HoldoutOptions",
    "PHASE1_FILE",
    "PHASE2_FILE",
    "PHASE3_FILE",
    "REPORT_FILE",
    "OutputStats",
    "Summary",
    "build_datasets",
]

PHASE1_FILE = "phase1_foundation.jsonl"
PHASE2_FILE = "phase2_evolution.jsonl"
PHASE3_FILE = "phase3_pr_mastery.jsonl"
DEFAULT_MAX_FILE_BYTES = 1 << 20  # 1 MiB: larger tracked files are data, not code
DEFAULT_MAX_DIFF_BYTES = 64 << 10  # 64 KiB of diff text per commit or pull request


def build_datasets(
    repo: Path,
    out_dir: Path,
    *,
    rev: str = "HEAD",
    since: str | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    excludes: Sequence[str] = (),
    includes: Sequence[str] = (),
    use_default_excludes: bool = True,
    prs: Path | None = None,
    max_diff_bytes: int = DEFAULT_MAX_DIFF_BYTES,
    keep_duplicates: bool = False,
    allow_other_owner: bool = False,
    holdout: HoldoutOptions | None = None,
) -> Summary:
    """Write the three phase files and the report for `repo` at `rev` into `out_dir`.

    `since` (ISO 8601 date or time) limits phases 2 and 3-from-merges to commits committed at or
    after it. `prs` is a pull-request export (file or directory, shape in `pulls.py`); without
    it phase 3 falls back to merge commits, and the summary says so. `includes` lifts the
    default rules (never the secret rules) from matching paths. Raises `UserError` for a
    missing or non-git `repo`, an unknown `rev`, a bad `since` or a bad export - before any
    output file is touched.
    """
    _check_limits(max_file_bytes, max_diff_bytes)
    since_epoch = parse_since(since)
    git = GitRepo.open(Path(repo), allow_other_owner=allow_other_owner)
    head = git.resolve_commit(rev)
    cut, cut_notes = choose_cut(
        git, head, holdout or HoldoutOptions()
    )  # holdout.py: training as of the cut, the rest held out
    commit = head if cut is None else cut.commit
    pulls, future_pulls = split_pulls(load_pull_requests(Path(prs)) if prs is not None else None, cut)
    out = prepare_out_dir(Path(out_dir))
    if cut is not None:
        refuse_foreign_future(out)
    entries = git.list_tree(commit)
    rules = repository_rules(
        git,
        commit,
        entries,
        excludes=[*excludes, *_committed_outputs(out, git.root)],
        includes=includes,
        use_default_excludes=use_default_excludes,
    )
    summary = Summary(
        repo=str(git.root),
        rev=rev,
        commit=commit,
        out_dir=str(out_dir),
        phase3_source="merge_commits" if pulls is None else "pull_requests",
        outputs=[OutputStats(PHASE1_FILE), OutputStats(PHASE2_FILE), OutputStats(PHASE3_FILE)],
        vendored_dirs={path: found.why for path, found in rules.vendored_dirs.items()},
        notes=cut_notes,
    )
    phase1, phase2, phase3 = writers = [
        DocumentWriter(out, stats, keep_duplicates=keep_duplicates) for stats in summary.outputs
    ]
    future = None if cut is None else FutureSets(out, cut, keep_duplicates=keep_duplicates)
    summary.outputs += [] if future is None else future.stats
    try:
        write_foundation(git, commit, entries, rules, max_file_bytes=max_file_bytes, writer=phase1)
        write_evolution(git, commit, rules, since_epoch=since_epoch, max_diff_bytes=max_diff_bytes, writer=phase2)
        if pulls is None:
            write_merges(git, commit, rules, since_epoch=since_epoch, max_diff_bytes=max_diff_bytes, writer=phase3)
            summary.notes.append(_fallback_note(phase3.stats.documents))
        else:
            write_pull_requests(pulls, rules, max_diff_bytes=max_diff_bytes, writer=phase3)
        if future is not None:
            head_rules = repository_rules(
                git,
                head,
                git.list_tree(head),
                excludes=[*excludes, *_committed_outputs(out, git.root)],
                includes=includes,
                use_default_excludes=use_default_excludes,
            )
            future.write(git, head_rules, future_pulls, FutureLimits(max_diff_bytes, max_file_bytes))
    except BaseException:
        for writer in writers:
            writer.discard()
        if future is not None:
            future.discard()
        raise
    for writer in writers:
        writer.publish()
    if future is None:
        summary.notes += [
            f"removed {name} of an earlier run: these phases hold its future" for name in remove_stale_future(out)
        ]
    else:
        future.publish()
        summary.holdout = future.measure(summary.outputs[:3])
        summary.notes += summary.holdout.warnings()
    summary.write_report(out)
    return summary


def _committed_outputs(out: Path, root: Path) -> list[str]:
    """Globs for our own output files when `out` is inside the repository: never train on them."""
    try:
        relative = out.resolve().relative_to(root.resolve())
    except ValueError:
        return []
    outputs = (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, *FUTURE_FILES)
    return [glob.escape((relative / name).as_posix()) for name in outputs]


def _check_limits(max_file_bytes: int, max_diff_bytes: int) -> None:
    problems = [
        f"{flag} must be a positive number of bytes, got {value}"
        for flag, value in (("--max-file-bytes", max_file_bytes), ("--max-diff-bytes", max_diff_bytes))
        if value <= 0
    ]
    if problems:
        raise UserError("; ".join(problems))


def _fallback_note(merge_documents: int) -> str:
    if merge_documents == 0:
        return (
            f"no --prs export given and no pull-request or branch merge commits found: {PHASE3_FILE} "
            "is empty (see docs/from-git.md for how to export pull requests)"
        )
    return (
        f"no --prs export given: {PHASE3_FILE} was built from {merge_documents} merge "
        "commit(s) (message and diff against the first parent) instead of pull requests"
    )
