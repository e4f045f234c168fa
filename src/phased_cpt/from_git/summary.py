"""The run summary and the report: what each output file got, what was left out and why.

Two views of the same record:

- the **summary** (`Summary.to_dict()` is the `--json` output, `Summary.format_table()` the
  default one): counts per output file and reason, and the path of the report;
- the **report** (`<out>/from-git-report.json`, `Summary.report_dict()`): every file, commit,
  diff section and pull request left out, with its reason, the rule that matched and its size
  in bytes, and every credential value redacted, with its rule and line - never the value.

Both are deterministic for the same repository state: no run times, reasons sorted by name,
entries in the order the documents were built.

Reasons, in words:

- documents left out (`skipped`): `binary`, `undecodable` (not UTF-8), `empty`, `too-large`,
  `symlink`, `submodule`, `lfs-pointer`, `vendored`, `lock`, `generated`, `data`, `minified`,
  `excluded` (an `--exclude` glob), `secret` (a secret store, by name or content),
  `duplicate` (the same text as an earlier document of the phase), `near-duplicate` (phases 2
  and 3: MinHash similarity with an earlier document of any phase at or above the threshold,
  `neardup.py`),
  `only-left-out-files` (a commit whose every file diff was cut out), `bot` (a commit or merge
  authored by a bot, `merges.is_bot`), in phase 2 `merge` (a merge commit: its changes are its
  branch's commits or a phase-3 story), `in-phase-3-story` (a commit told in a phase-3
  story: a pull request, review or branch merge, or a squash merge) and in phase 3
  `branch-sync` (a merge whose diff repeats phase-2 commits: see `merges.py`) and
  `inside-branch` (a merge inside a merged branch: its changes are that branch's).
- `long-line` (a report entry of kind `line`): lines over `quality.MAX_LINE_CHARS` cut in a
  kept file or diff; the document is kept.
- file sections cut out of a diff (`dropped_file_diffs`, phases 2 and 3): the same path and
  content reasons, one count per file section; the document itself is kept.
- `near_duplicates_kept` (phase 1): files kept though a near-duplicate of an earlier file,
  each listed in the report's `similar` with the file it resembles.
- `removed_bytes`: bytes of source material (file content, diff text) removed per reason;
  `truncated` counts the bytes cut off by `--max-diff-bytes`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phased_cpt.from_git.secrets import Redaction

if TYPE_CHECKING:
    from phased_cpt.from_git.holdout import HoldoutSummary

REPORT_FILE = "from-git-report.json"
COUNT_FIELDS = (
    "documents",
    "bytes",
    "text_bytes",
    "truncated",
    "skipped",
    "dropped_file_diffs",
    "removed_bytes",
    "redactions",
    "masked_emails",
    "near_duplicates_kept",
)
"""The `OutputStats` fields of the summary; the report adds `left_out`, `redacted` and `similar`."""
NAMED_FILES_SHOWN = 10


@dataclass
class OutputStats:
    """Counts, and the left-out and redaction lists, for one output file."""

    name: str
    documents: int = 0
    bytes: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the training text written
    truncated: int = 0  # documents whose diff was cut at the size cap
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_file_diffs: Counter[str] = field(default_factory=Counter)
    removed_bytes: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    masked_emails: int = 0  # e-mail addresses replaced by `personal.EMAIL_PLACEHOLDER`
    near_duplicates_kept: int = 0  # phase-1 files kept though near-duplicates of an earlier one
    left_out: list[dict[str, Any]] = field(default_factory=list)
    redacted: list[dict[str, Any]] = field(default_factory=list)
    similar: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, reason: str, where: dict[str, Any], *, rule: str | None = None, size: int = 0) -> None:
        """Count and list one document left out for `reason` (`where` names it: file, commit, ...)."""
        self.skipped[reason] += 1
        self._list(reason, where, rule, size)

    def drop_diff(self, reason: str, where: dict[str, Any], *, rule: str | None = None, size: int = 0) -> None:
        """Count and list one file section cut out of a diff whose document is kept."""
        self.dropped_file_diffs[reason] += 1
        self._list(reason, {**where, "kind": "diff"}, rule, size)

    def cut(self, size: int) -> None:
        """Count one diff cut at the size cap, `size` bytes of it not shown."""
        self.truncated += 1
        self.removed_bytes["truncated"] += size

    def shorten(self, where: dict[str, Any], lines: int, size: int) -> None:
        """Count and list `lines` long lines cut in one kept file or diff, `size` bytes removed."""
        self.removed_bytes["long-line"] += size
        self.left_out.append({**where, "kind": "line", "reason": "long-line", "lines": lines, "bytes": size})

    def keep_similar(self, where: dict[str, Any], match: str) -> None:
        """Count and list one document kept though it is a near-duplicate of `match`."""
        self.near_duplicates_kept += 1
        self.similar.append({**where, "similar_to": match})

    def redact(self, where: dict[str, Any], found: list[Redaction]) -> None:
        """Record the credential values removed from one document (rule and line, no value)."""
        for item in found:
            self.redactions[item.rule] += 1
            self.redacted.append({**where, "rule": item.rule, "line": item.line})

    def _list(self, reason: str, where: dict[str, Any], rule: str | None, size: int) -> None:
        self.removed_bytes[reason] += size
        entry = {**where, "reason": reason}
        if rule is not None:
            entry["rule"] = rule
        entry["bytes"] = size
        self.left_out.append(entry)

    def to_dict(self) -> dict[str, Any]:
        """Counts only (`COUNT_FIELDS`), each counter key-sorted: the summary."""
        values = {name: getattr(self, name) for name in COUNT_FIELDS}
        return {
            name: dict(sorted(value.items())) if isinstance(value, dict) else value for name, value in values.items()
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
    vendored_dirs: dict[str, str] = field(default_factory=dict)  # directory -> why
    holdout: HoldoutSummary | None = None  # the time split, when one was made (holdout.py)
    merge_styles: dict[str, int] = field(default_factory=dict)  # how the history merges (`merges.MergeStyles`)

    @property
    def report_path(self) -> str:
        """Where the report is written."""
        return str(Path(self.out_dir) / REPORT_FILE)

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
            "merge_styles": dict(sorted(self.merge_styles.items())),
            "outputs": {stats.name: stats.to_dict() for stats in self.outputs},
            "report": self.report_path,
            "notes": list(self.notes),
            **({} if self.holdout is None else {"holdout": self.holdout.to_dict()}),
        }

    def report_dict(self) -> dict[str, Any]:
        """The report: the summary plus every item left out and every redaction."""
        report = self.to_dict()
        del report["report"]
        report["vendored_dirs"] = dict(sorted(self.vendored_dirs.items()))
        for stats in self.outputs:
            report["outputs"][stats.name]["left_out"] = stats.left_out
            report["outputs"][stats.name]["redacted"] = stats.redacted
            report["outputs"][stats.name]["similar"] = stats.similar
        return report

    def write_report(self, out_dir: Path) -> Path:
        """Write the report to `out_dir/from-git-report.json` atomically; return its path."""
        path = out_dir / REPORT_FILE
        handle, temp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{REPORT_FILE}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(self.report_dict(), file, indent=1, ensure_ascii=False)
            file.write("\n")
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
        return path

    def format_table(self) -> str:
        """Human-readable summary: one row per output file, then one row per skip reason."""
        width = max(len(stats.name) for stats in self.outputs)
        lines = [f"from-git: {self.repo} at {self.rev} ({self.commit[:12]}) -> {self.out_dir}", ""]
        header = (
            f"{'output':<{width}}  {'documents':>9}  {'bytes':>12}  {'truncated':>9}  {'redacted':>8}  {'e-mails':>7}"
        )
        lines.append(header)
        for stats in self.outputs:
            lines.append(
                f"{stats.name:<{width}}  {stats.documents:>9}  {stats.bytes:>12}"
                f"  {stats.truncated:>9}  {sum(stats.redactions.values()):>8}  {stats.masked_emails:>7}"
            )
        rows = [
            (stats.name, "skipped", reason, count)
            for stats in self.outputs
            for reason, count in sorted(stats.skipped.items())
        ]
        rows += [
            (stats.name, "diff dropped", reason, count)
            for stats in self.outputs
            for reason, count in sorted(stats.dropped_file_diffs.items())
        ]
        lines.append("")
        if rows:
            reason_width = max(12, *(len(row[2]) for row in rows))
            lines.append(f"{'output':<{width}}  {'left out':<12}  {'reason':<{reason_width}}  {'count':>7}")
            for name, kind, reason, count in rows:
                lines.append(f"{name:<{width}}  {kind:<12}  {reason:<{reason_width}}  {count:>7}")
        else:
            lines.append("nothing was left out")
        lines += self._named_files()
        lines.append("")
        lines.append(f"every item left out and every redaction, with its reason: {self.report_path}")
        lines += [] if self.holdout is None else self.holdout.format_lines()
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _named_files(self) -> list[str]:
        """`data files left out: a.json, b.yaml` per content rule, and the near-duplicate files kept,
        of phase 1 (the files at the revision)."""
        named: dict[str, list[str]] = {}
        for entry in self.outputs[0].left_out if self.outputs else []:
            if "file" in entry and entry.get("rule", "").startswith("content:"):  # `quality.content_skip`'s rules
                named.setdefault(entry["reason"], []).append(entry["file"])
        lines = [f"{reason} files left out: {_names(files)}" for reason, files in sorted(named.items())]
        similar = [entry["file"] for entry in self.outputs[0].similar if "file" in entry] if self.outputs else []
        if similar:
            lines.append(f"near-duplicate files kept in phase 1 (the report's `similar`): {_names(similar)}")
        return [""] + lines if lines else []


def _names(files: list[str]) -> str:
    """The first `NAMED_FILES_SHOWN` of `files`, then how many more."""
    more = f", and {len(files) - NAMED_FILES_SHOWN} more" if len(files) > NAMED_FILES_SHOWN else ""
    return ", ".join(files[:NAMED_FILES_SHOWN]) + more
