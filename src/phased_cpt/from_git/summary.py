"""The run summary: what each output file got, what was left out and why.

`Summary.to_dict()` is the `--json` output and `Summary.format_table()` the default one. Both are
deterministic for the same repository state: no run times, reasons sorted by name.

Skip reasons, in words:

- documents left out (`skipped`): `binary`, `undecodable` (not UTF-8), `empty`, `too-large`,
  `symlink`, `submodule`, `vendored`, `lock`, `generated`, `excluded` (a `--exclude` glob),
  `secret` (a secret file name, or a credential pattern in the text), and in phase 2 `merge`
  (merge commits are left to phase 3).
- file sections cut out of a diff (`dropped_file_diffs`, phases 2 and 3): the same path and
  content reasons, one count per file section; the document itself is kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OutputStats:
    """Counts for one output file."""

    name: str
    documents: int = 0
    bytes: int = 0
    truncated: int = 0  # documents whose diff was cut at the size cap
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_file_diffs: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        """Count one document left out for `reason`."""
        self.skipped[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        """Plain, key-sorted form for JSON."""
        return {
            "documents": self.documents,
            "bytes": self.bytes,
            "truncated": self.truncated,
            "skipped": dict(sorted(self.skipped.items())),
            "dropped_file_diffs": dict(sorted(self.dropped_file_diffs.items())),
        }


@dataclass
class Summary:
    """What `build_datasets` wrote, for one repository at one commit."""

    repo: str
    rev: str
    commit: str
    out_dir: str
    phase3_source: str  # "pull_requests" or "merge_commits"
    outputs: list[OutputStats]
    notes: list[str] = field(default_factory=list)

    def output(self, name: str) -> OutputStats:
        """The stats of output file `name` (e.g. `phase1_foundation.jsonl`)."""
        return next(stats for stats in self.outputs if stats.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` object."""
        return {
            "repo": self.repo,
            "rev": self.rev,
            "commit": self.commit,
            "out_dir": self.out_dir,
            "phase3_source": self.phase3_source,
            "outputs": {stats.name: stats.to_dict() for stats in self.outputs},
            "notes": list(self.notes),
        }

    def format_table(self) -> str:
        """Human-readable summary: one row per output file, then one row per skip reason."""
        width = max(len(stats.name) for stats in self.outputs)
        lines = [f"from-git: {self.repo} at {self.rev} ({self.commit[:12]}) -> {self.out_dir}", ""]
        lines.append(f"{'output':<{width}}  {'documents':>9}  {'bytes':>12}  {'truncated':>9}")
        for stats in self.outputs:
            lines.append(f"{stats.name:<{width}}  {stats.documents:>9}  {stats.bytes:>12}"
                         f"  {stats.truncated:>9}")
        rows = [(stats.name, "skipped", reason, count)
                for stats in self.outputs for reason, count in sorted(stats.skipped.items())]
        rows += [(stats.name, "diff dropped", reason, count)
                 for stats in self.outputs for reason, count in sorted(stats.dropped_file_diffs.items())]
        lines.append("")
        if rows:
            lines.append(f"{'output':<{width}}  {'left out':<12}  {'reason':<12}  {'count':>7}")
            for name, kind, reason, count in rows:
                lines.append(f"{name:<{width}}  {kind:<12}  {reason:<12}  {count:>7}")
        else:
            lines.append("nothing was left out")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)
