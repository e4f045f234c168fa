"""The time split of `data from-git`: train on the repository as of a cut, evaluate on its future.

A score on text the model trained on measures recall, not learning. Documents held out at random
from the same history share most of their lines with the training text (a later commit repeats
the file an earlier phase trained on), so `data from-git` cuts the history in time instead:

- **The cut** is a commit of the first-parent history of `--rev` (the mainline). The training
  phases are built as of the cut: phase 1 from the files at the cut, phases 2 and 3 from the
  history reachable from it. Everything reachable from `--rev` but not from the cut
  (`git log CUT..REV`) is the **future**: the commits after the cut, including branch commits
  written before it but merged after it (the model could not have seen them at the cut).
- **Where it falls** (`choose_cut`): `--holdout-commits N` holds out the last N first-parent
  commits; `--holdout-after DATE` holds out every first-parent commit committed after DATE (the
  cut is the newest first-parent commit older than all of them: with committer dates out of
  order, a commit dated before DATE that follows one dated after it is held out too); with both, the older of the
  two cuts (the larger future). Without either, the default holds out the last 10% of the
  first-parent commits, at most 100 (`DEFAULT_HOLDOUT_SHARE`, `DEFAULT_MAX_HOLDOUT_COMMITS`);
  a history whose 10% is under 2 commits (fewer than 20 first-parent commits) is too short to
  hold anything out by default, and the summary says so. `--holdout-commits 0` turns it off.
- **The future sets**, written beside the phase files (`FutureSets`):
  `future_evolution.jsonl` (the commits after the cut, in phase-2 format, by phase 2's own
  builder), `future_pr_mastery.jsonl` (the merges after the cut in phase-3 format, or with
  `--prs` the pull requests merged - else closed, else opened - after the cut) and
  `future_tasks.jsonl` (completion tasks, `tasks.py`). They pass the same path, content and
  secret rules as the phases, taken at `--rev`.
- **Contamination**: the share of each future set's lines that stand verbatim in the training
  text written (phases 1-3), by the one rule of `phased_cpt.contamination`; over `WARN_SHARE`
  the summary warns that a score on that set is recall rather than learning.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from phased_cpt.contamination import MIN_LINE_CHARS, WARN_SHARE, Contamination, TrainingLines
from phased_cpt.errors import UserError
from phased_cpt.from_git.git import GitRepo
from phased_cpt.from_git.history import parse_since, write_evolution, write_merges
from phased_cpt.from_git.merges import plan_history
from phased_cpt.from_git.neardup import NearDuplicates
from phased_cpt.from_git.pulls import PullRequest, write_pull_requests
from phased_cpt.from_git.rules import PathRules
from phased_cpt.from_git.screen import ScreenedWriter, ScreenOptions
from phased_cpt.from_git.summary import OutputStats
from phased_cpt.from_git.tasks import FutureLimits, write_tasks

FUTURE_EVOLUTION_FILE = "future_evolution.jsonl"
FUTURE_PR_FILE = "future_pr_mastery.jsonl"
FUTURE_TASKS_FILE = "future_tasks.jsonl"
FUTURE_FILES = (FUTURE_EVOLUTION_FILE, FUTURE_PR_FILE, FUTURE_TASKS_FILE)
DEFAULT_HOLDOUT_SHARE = 0.10
"""Without --holdout-commits/--holdout-after: hold out this share of the first-parent commits..."""
DEFAULT_MAX_HOLDOUT_COMMITS = 100
"""...but at most this many (a long history keeps nearly all of itself for training)."""
MIN_DEFAULT_HOLDOUT_COMMITS = 2
"""The default holds nothing out when its share is under this many commits."""


@dataclass(frozen=True)
class HoldoutOptions:
    """`--holdout-commits` and `--holdout-after`; both None: the default cut."""

    commits: int | None = None
    after: str | None = None


@dataclass(frozen=True)
class Cut:
    """Where the history is cut: training as of `commit`, the future is `commit..head`."""

    commit: str
    head: str
    epoch: int  # committer time of the cut commit
    held_out: int  # first-parent commits after the cut
    mainline: int  # first-parent commits in total
    rule: str  # which option (or the default) placed it, in words

    @property
    def range(self) -> str:
        """The future as a git revision range."""
        return f"{self.commit}..{self.head}"

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.epoch, timezone.utc).isoformat()


def choose_cut(git: GitRepo, head: str, options: HoldoutOptions) -> tuple[Cut | None, list[str]]:
    """The cut for `options` on the first-parent history of `head`, and notes for the summary (the
    default held nothing out; a shallow clone). A UserError when an option leaves nothing to train
    on or nothing held out."""
    shallow = git.is_shallow()
    cut, note = _choose_cut(git.first_parent_times(head), head, options, shallow)
    notes = [note] if note else []
    if cut is not None and shallow:
        notes.append(
            f"shallow clone: the history before its oldest commit is missing, so phases 2-3 hold only the "
            f"history present before the cut; the {cut.held_out} first-parent commits after it are complete"
        )
    return cut, notes


def _choose_cut(
    mainline_times: list[tuple[str, int]], head: str, options: HoldoutOptions, is_shallow: bool
) -> tuple[Cut | None, str | None]:
    """`mainline_times`: (id, committer time) of the first-parent commits, newest first."""
    total = len(mainline_times)
    shallow = " (this is a shallow clone: older history is missing)" if is_shallow else ""
    if options.commits is None and options.after is None:
        count = min(DEFAULT_MAX_HOLDOUT_COMMITS, int(total * DEFAULT_HOLDOUT_SHARE))
        if count < MIN_DEFAULT_HOLDOUT_COMMITS:
            return None, (
                f"no future held out: the history has only {total} first-parent commit(s){shallow}, too few for "
                "the default time split; pass --holdout-commits N to hold out the last N"
            )
        return _cut(mainline_times, head, count, f"default: the last {count} of {total} first-parent commits"), None
    if options.commits == 0 and options.after is None:
        return (
            None,
            "no future held out (--holdout-commits 0): the phases hold the whole history",
        )
    counts: list[tuple[int, str]] = []
    if options.commits:
        if options.commits >= total:
            raise UserError(
                f"--holdout-commits {options.commits}: the history of {head[:12]} has {total} first-parent "
                f"commit(s){shallow}, so at most {total - 1} can be held out (0 holds out nothing)"
            )
        counts.append((options.commits, f"--holdout-commits {options.commits}"))
    if options.after is not None:
        counts.append((_count_after(mainline_times, options.after, shallow), f"--holdout-after {options.after}"))
    count, rule = max(counts)
    return _cut(mainline_times, head, count, rule), None


def _count_after(mainline_times: list[tuple[str, int]], after: str, shallow: str) -> int:
    """First-parent commits held out so that none committed after `after` is trained on: all of
    them from the oldest committed after it. With committer dates out of order (a rebase, a
    skewed clock) this holds out some commits dated before `after` too, never one dated after."""
    try:
        epoch = parse_since(after)
    except UserError:
        raise UserError(
            f"--holdout-after {after!r}: expected an ISO 8601 date or time such as 2024-01-31 or 2024-01-31T12:00:00+01:00"
        ) from None
    assert epoch is not None
    later = [index for index, (_, stamp) in enumerate(mainline_times) if stamp > epoch]
    if not later:
        last = max(stamp for _, stamp in mainline_times)
        raise UserError(
            f"--holdout-after {after}: at or after the last commit ({_iso(last)}): nothing would be held out "
            "(--holdout-commits 0 turns the time split off)"
        )
    if later[-1] == len(mainline_times) - 1:
        raise UserError(
            f"--holdout-after {after}: before the first commit ({_iso(mainline_times[-1][1])}){shallow}: "
            "nothing would be left to train on"
        )
    return later[-1] + 1


def _cut(mainline_times: list[tuple[str, int]], head: str, count: int, rule: str) -> Cut:
    oid, epoch = mainline_times[count]
    return Cut(oid, head, epoch, count, len(mainline_times), rule)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def remove_stale_future(out_dir: Path) -> list[str]:
    """Without a cut: remove the future files an earlier run wrote to `out_dir` (these phases now
    hold that future, so scoring it would measure recall); return the names removed. Called after
    `output.claim_outputs`, which refuses a future file from-git did not write (or that changed
    since), so only its own earlier output is removed."""
    removed = [name for name in FUTURE_FILES if (out_dir / name).is_file()]
    for name in removed:
        (out_dir / name).unlink()
    return removed


def split_pulls(
    pulls: list[PullRequest] | None, cut: Cut | None
) -> tuple[list[PullRequest] | None, list[PullRequest] | None]:
    """(training, future) of a pull-request export (None, None without one): a pull request is
    future when it was merged (else closed, else opened) after the cut; one without any of these
    times stays in training."""
    if pulls is None or cut is None:
        return pulls, None if pulls is None else []
    future = [pull for pull in pulls if pull.at is not None and pull.at.timestamp() > cut.epoch]
    later = {pull.number for pull in future}
    return [pull for pull in pulls if pull.number not in later], future


FUTURE_CHANGES = "all future changes"
"""The summary's row for both future document files together: every change after the cut, once."""


@dataclass
class HoldoutSummary:
    """What the time split held out and how much of it the training text already holds."""

    cut: Cut
    future_pulls: int
    tasks: dict[str, int]
    contamination: dict[str, Contamination] = field(default_factory=dict)  # as scored: a diff's added lines
    empty_phases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut.commit,
            "cut_date": self.cut.date,
            "head": self.cut.head,
            "rule": self.cut.rule,
            "first_parent_commits": {"training": self.cut.mainline - self.cut.held_out, "held_out": self.cut.held_out},
            "future_pull_requests": self.future_pulls,
            "tasks": dict(self.tasks),
            "contamination": {name: _figures(value) for name, value in self.contamination.items()},
            "empty_phases": list(self.empty_phases),
            "min_line_chars": MIN_LINE_CHARS,
            "warn_share": WARN_SHARE,
        }

    def format_lines(self) -> list[str]:
        """The summary table's time-split section."""
        cut = self.cut
        lines = [
            f"time split ({cut.rule}): training as of {cut.commit[:12]} ({cut.date}); held out "
            f"{cut.held_out} of {cut.mainline} first-parent commits up to {cut.head[:12]}",
            f"future tasks: {', '.join(f'{count} {kind}' for kind, count in self.tasks.items())}",
            f"contamination: lines >= {MIN_LINE_CHARS} chars found verbatim in phases 1-3 (warned over {WARN_SHARE:.0%})",
        ]
        lines += [f"  {name:<24} {_cell(value):>18}" for name, value in self.contamination.items()]
        return lines

    def warnings(self) -> list[str]:
        """Notes for the summary: phases the cut left empty, future sets over `WARN_SHARE`."""
        empty = [
            f"the cut at {self.cut.commit[:12]} ({self.cut.date}) leaves {name} empty: nothing of that phase is "
            "older than the cut (a later cut: --holdout-commits with a smaller N, or --holdout-after a later date)"
            for name in self.empty_phases
        ]
        return empty + [
            f"{name}: {value.share:.1%} of its scored lines stand verbatim in the training text (over "
            f"{WARN_SHARE:.0%}): a score on it measures recall more than learning"
            for name, value in self.contamination.items()
            if value.recall
        ]


def _figures(value: Contamination) -> dict[str, float | int]:
    return {"lines": value.lines, "seen": value.seen, "share": round(value.share, 4)}


def _cell(value: Contamination) -> str:
    return f"{value.share:.1%} ({value.seen}/{value.lines})"


class FutureSets:
    """The three future files of one run: written beside the phase files, published with them."""

    def __init__(self, out_dir: Path, cut: Cut, screen: ScreenOptions, index: NearDuplicates | None) -> None:
        """`screen` and `index` are the phases' own: the future's e-mail addresses and bots are
        screened alike, and a future document that nearly repeats a training one is left out."""
        self.out_dir = out_dir
        self.cut = cut
        self.screen = screen
        self.stats = [OutputStats(FUTURE_EVOLUTION_FILE), OutputStats(FUTURE_PR_FILE)]
        self._evolution, self._pulls = (
            ScreenedWriter(out_dir, stats, options=screen, index=index) for stats in self.stats
        )
        self._future_pulls = 0
        self._tasks: dict[str, int] = {}
        self._tasks_temp: Path | None = None

    def write(
        self, git: GitRepo, rules: PathRules, future_pulls: list[PullRequest] | None, limits: FutureLimits
    ) -> None:
        """Write the future commits, merges or pull requests, and tasks (not yet published).
        `future_pulls` None: phase 3 comes from merge commits, so the future's does too."""
        merged = None if future_pulls is None else {pull.number for pull in future_pulls if pull.outcome == "merged"}
        plan = plan_history(git, self.cut.range, since_epoch=None, keep_bots=self.screen.keep_bots, pull_numbers=merged)
        writers = (self._evolution, self._pulls)
        write_evolution(git, plan, rules, max_diff_bytes=limits.max_diff_bytes, writers=writers)
        if future_pulls is None:
            write_merges(git, plan, rules, max_diff_bytes=limits.max_diff_bytes, writer=self._pulls)
        else:
            self._future_pulls = len(future_pulls)
            write_pull_requests(
                future_pulls,
                rules,
                max_diff_bytes=limits.max_diff_bytes,
                writer=self._pulls,
                keep_bots=self.screen.keep_bots,
            )
        self._tasks_temp, self._tasks = write_tasks(
            git, self.cut.range, rules, limits, self.out_dir / FUTURE_TASKS_FILE
        )

    def publish(self) -> None:
        self._evolution.publish()
        self._pulls.publish()
        if self._tasks_temp is not None:
            self._tasks_temp.replace(self.out_dir / FUTURE_TASKS_FILE)

    def discard(self) -> None:
        self._evolution.discard()
        self._pulls.discard()
        if self._tasks_temp is not None:
            self._tasks_temp.unlink(missing_ok=True)

    def measure(self, phases: Sequence[OutputStats]) -> HoldoutSummary:
        """Contamination of each published future file against the published phase files."""
        seen = TrainingLines(itertools.chain.from_iterable(_texts(self.out_dir / stats.name) for stats in phases))
        summary = HoldoutSummary(self.cut, self._future_pulls, self._tasks)
        summary.empty_phases = [stats.name for stats in phases if stats.documents == 0]
        for name in (FUTURE_EVOLUTION_FILE, FUTURE_PR_FILE):
            summary.contamination[name] = seen.measure(_texts(self.out_dir / name))
        # the two files tell each change after the cut once (a mainline commit, or a merged branch's story)
        summary.contamination[FUTURE_CHANGES] = (
            summary.contamination[FUTURE_EVOLUTION_FILE] + summary.contamination[FUTURE_PR_FILE]
        )
        summary.contamination[FUTURE_TASKS_FILE] = seen.measure_tasks(
            json.loads(line)["target"] for line in _lines(self.out_dir / FUTURE_TASKS_FILE)
        )
        return summary


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as file:
        yield from file


def _texts(path: Path) -> Iterator[str]:
    for line in _lines(path):
        yield json.loads(line)["training_content"]
