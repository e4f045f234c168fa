"""Turn a git repository (and optionally a pull-request export) into three phase datasets.

`build_datasets` is the whole flow, top to bottom; each phase lives in its own module:

    phase1_foundation.jsonl   foundation.py  one document per tracked text file at the revision
    phase2_evolution.jsonl    history.py     one document per commit not told in phase 3
    phase3_pr_mastery.jsonl   pulls.py       one document per pull request of `prs`, or
                              history.py     without `prs`: one story per merged branch, pull
                                             request, review or squash merge

`merges.plan_history` decides once where each commit's change is trained, so no change is in
both phases 2 and 3 (see `merges.py`). Every document goes through `screen.ScreenedWriter`:
e-mail addresses masked (`personal.py`), near-duplicates across all phases left out
(`neardup.py`), credentials redacted and exact duplicates left out (`output.py`).

The builders are parameterised by what they read, never by HEAD: `write_foundation(git,
commit, entries, ...)` takes a commit and its tree, and `plan_history(git, revs, ...)` a
revision or a range (`CUT..HEAD`) whose commits `write_evolution` and `write_merges` write.

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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from phased_cpt.errors import UserError
from phased_cpt.from_git.foundation import write_foundation
from phased_cpt.from_git.git import GitRepo, TreeEntry
from phased_cpt.from_git.history import parse_since, write_evolution, write_merges
from phased_cpt.from_git.holdout import (
    FUTURE_FILES,
    FutureSets,
    HoldoutOptions,
    choose_cut,
    remove_stale_future,
    split_pulls,
)
from phased_cpt.from_git.merges import HistoryPlan, plan_history
from phased_cpt.from_git.neardup import NearDuplicates
from phased_cpt.from_git.output import claim_outputs, prepare_out_dir, record_outputs
from phased_cpt.from_git.pulls import load_pull_requests, write_pull_requests
from phased_cpt.from_git.rules import DEFAULT_EXCLUDES, PathRules, repository_rules
from phased_cpt.from_git.screen import ScreenedWriter, ScreenOptions
from phased_cpt.from_git.summary import REPORT_FILE, OutputStats, Summary
from phased_cpt.from_git.tasks import FutureLimits

__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_MAX_DIFF_BYTES",
    "DEFAULT_MAX_FILE_BYTES",
    "FUTURE_FILES",
    "FromGitSettings",
    "HoldoutOptions",
    "PHASE1_FILE",
    "PHASE2_FILE",
    "PHASE3_FILE",
    "REPORT_FILE",
    "OutputStats",
    "ScreenOptions",
    "Summary",
    "build_datasets",
]

PHASE1_FILE = "phase1_foundation.jsonl"
PHASE2_FILE = "phase2_evolution.jsonl"
PHASE3_FILE = "phase3_pr_mastery.jsonl"
OUTPUT_FILES = (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, *FUTURE_FILES)
DEFAULT_MAX_FILE_BYTES = 1 << 20  # 1 MiB: larger tracked files are data, not code
DEFAULT_MAX_DIFF_BYTES = 64 << 10  # 64 KiB of diff text per commit or pull request


@dataclass(frozen=True)
class FromGitSettings:
    """Every option of `data from-git`, one group built once from the command line.

    `since` (ISO 8601 date or time) limits phases 2 and 3-from-merges to commits committed at or
    after it. `prs` is a pull-request export (file or directory, shape in `pulls.py`); without
    it phase 3 is built from the history, and the summary says so. `includes` lifts the
    default rules (never the secret rules) from matching paths. `force` lets a run replace the
    outputs of an earlier run (`output.claim_outputs`). `holdout` is the time split
    (`holdout.py`); `screen` says whether bots, e-mail addresses and duplicates are kept.
    """

    rev: str = "HEAD"  # --rev
    since: str | None = None  # --since
    prs: Path | None = None  # --prs
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # --max-file-bytes
    max_diff_bytes: int = DEFAULT_MAX_DIFF_BYTES  # --max-diff-bytes
    excludes: tuple[str, ...] = ()  # --exclude
    includes: tuple[str, ...] = ()  # --include
    use_default_excludes: bool = True  # --no-default-excludes
    allow_other_owner: bool = False  # --allow-other-owner
    force: bool = False  # --force
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions)  # --holdout-commits, --holdout-after
    screen: ScreenOptions = field(default_factory=ScreenOptions)  # --keep-bots, --keep-emails, ...


def build_datasets(repo: Path, out_dir: Path, settings: FromGitSettings | None = None) -> Summary:
    """Write the three phase files and the report for `repo` at `settings.rev` into `out_dir`.

    An existing output file is replaced only with `settings.force` and only when an earlier run
    wrote it (`output.claim_outputs`). Raises `UserError` for a missing or non-git `repo`, an
    unknown `rev`, a bad `since` or a bad export - before any output file is touched.
    """
    settings = settings or FromGitSettings()
    _check_limits(settings.max_file_bytes, settings.max_diff_bytes)
    since_epoch = parse_since(settings.since)
    git = GitRepo.open(Path(repo), allow_other_owner=settings.allow_other_owner)
    head = git.resolve_commit(settings.rev)
    cut, cut_notes = choose_cut(git, head, settings.holdout)  # holdout.py: training as of the cut, the rest held out
    commit = head if cut is None else cut.commit
    pulls, future_pulls = split_pulls(load_pull_requests(Path(settings.prs)) if settings.prs is not None else None, cut)
    out = prepare_out_dir(Path(out_dir))
    claim_outputs(out, OUTPUT_FILES, force=settings.force)
    entries = git.list_tree(commit)
    rules = _rules(git, commit, entries, settings, out)
    summary = Summary(
        repo=str(git.root),
        rev=settings.rev,
        commit=commit,
        out_dir=str(out_dir),
        phase3_source="merge_commits" if pulls is None else "pull_requests",
        outputs=[OutputStats(PHASE1_FILE), OutputStats(PHASE2_FILE), OutputStats(PHASE3_FILE)],
        vendored_dirs={path: found.why for path, found in rules.vendored_dirs.items()},
        notes=cut_notes,
    )
    threshold = settings.screen.near_duplicate_threshold
    index = NearDuplicates(threshold) if threshold is not None else None
    phase1, phase2, phase3 = writers = [
        ScreenedWriter(
            out, stats, options=settings.screen, index=index, report_near_duplicates=stats.name == PHASE1_FILE
        )
        for stats in summary.outputs
    ]
    future = None if cut is None else FutureSets(out, cut, settings.screen, index)
    summary.outputs += [] if future is None else future.stats
    note_shallow_boundary(git, phase2.stats, summary.notes)
    try:
        write_foundation(git, commit, entries, rules, max_file_bytes=settings.max_file_bytes, writer=phase1)
        merged = None if pulls is None else {pull.number for pull in pulls if pull.outcome == "merged"}
        plan = plan_history(
            git, commit, since_epoch=since_epoch, keep_bots=settings.screen.keep_bots, pull_numbers=merged
        )
        summary.merge_styles = dict(plan.styles)
        write_evolution(git, plan, rules, max_diff_bytes=settings.max_diff_bytes, writers=(phase2, phase3))
        if pulls is None:
            write_merges(git, plan, rules, max_diff_bytes=settings.max_diff_bytes, writer=phase3)
            summary.notes += phase3_notes(plan, phase3.stats.documents)
        else:
            write_pull_requests(
                pulls, rules, max_diff_bytes=settings.max_diff_bytes, writer=phase3, keep_bots=settings.screen.keep_bots
            )
        if future is not None:
            head_rules = _rules(git, head, git.list_tree(head), settings, out)
            future.write(git, head_rules, future_pulls, FutureLimits(settings.max_diff_bytes, settings.max_file_bytes))
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
    record_outputs(out, OUTPUT_FILES)
    return summary


def _rules(git: GitRepo, commit: str, entries: list[TreeEntry], settings: FromGitSettings, out: Path) -> PathRules:
    """The path rules at `commit`: the repository's own, the command line's, and our outputs."""
    return repository_rules(
        git,
        commit,
        entries,
        excludes=[*settings.excludes, *_committed_outputs(out, git.root)],
        includes=settings.includes,
        use_default_excludes=settings.use_default_excludes,
    )


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


STALE_STORY_DAYS = 365
"""Phase 3 is *stale* when its newest story is older than this, counted back from the newest commit."""
THIN_STORY_SHARE = 0.1
"""Phase 3 is *thin* when it holds fewer stories than this share of the history's documents."""
PRS_RECIPE = (
    "export the pull requests with the `gh api` loop of docs/from-git.md ('Exporting with the GitHub CLI') "
    "and pass --prs prs/"
)


def note_shallow_boundary(git: GitRepo, stats: OutputStats, notes: list[str]) -> None:
    """Count and list a shallow clone's boundary commits as left out of phase 2 (`shallow`), and
    say in the summary how to get the whole history."""
    boundary = git.shallow_boundary()
    for oid in boundary:
        stats.skip("shallow", {"commit": oid}, rule="shallow clone: parents not fetched, its diff would add every file")
    if boundary:
        notes.append(
            f"{git.root} is a shallow clone: {len(boundary)} commit(s) at its boundary were left out of "
            "phases 2 and 3 (without their parents every file would look added); run "
            "`git fetch --unshallow` in the repository for the whole history"
        )


def phase3_notes(plan: HistoryPlan, stories: int) -> list[str]:
    """What the summary says about phase 3 built without `--prs`: its source, and why it is thin
    or stale (with the `--prs` recipe) when it is."""
    styles = ", ".join(f"{count} {name}" for name, count in sorted(plan.styles.items(), key=lambda kv: -kv[1]))
    notes = [
        f"no --prs export given: {PHASE3_FILE} was built from {stories} merge and squash-merge stories "
        f"of the history; how it merges: {styles or 'no commits'}"
    ]
    commits = len(plan.phase2) + stories
    newest_commit = plan.newest_date
    newest_story = plan.newest_story_date()
    problems = []
    if stories == 0:
        problems.append("is empty")
    elif stories < THIN_STORY_SHARE * commits:
        problems.append(f"is thin ({stories} stories for {commits} changes)")
    if newest_story and newest_commit and _days_between(newest_story, newest_commit) > STALE_STORY_DAYS:
        problems.append(f"is stale (newest story {newest_story[:10]}, newest commit {newest_commit[:10]})")
    if problems:
        why = []
        if plan.styles.get("rebase-merged commits"):
            why.append("pull requests were rebase-merged, which leaves no merge or number in the history")
        if plan.styles.get("direct commits", 0) > stories:
            why.append("most changes were committed directly to the mainline")
        because = f" because {' and '.join(why)}" if why else ""
        notes.append(f"phase 3 {' and '.join(problems)}{because}; for review text and every pull request: {PRS_RECIPE}")
    return notes


def _days_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() / 86400
