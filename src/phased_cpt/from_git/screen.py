"""What every document goes through besides the path and content rules: bots, personal data and
near-duplicates, as one typed group of options (`ScreenOptions`) and one writer
(`ScreenedWriter`).

`ScreenedWriter.write` adds two steps in front of `output.DocumentWriter.write` (which redacts
credentials and drops exact duplicates):

1. e-mail addresses in the text and in every string metadata field are replaced by
   `personal.EMAIL_PLACEHOLDER` (`personal.mask_emails`; counted as `masked_emails`), unless
   `keep_emails`;
2. a document that is a near-duplicate of one already written in any phase
   (`neardup.NearDuplicates`, shared by the three writers) is left out as `near-duplicate`,
   unless `near_duplicate_threshold` is None or `keep_duplicates` (`--keep-duplicates`). The
   phase-1 writer (`report_near_duplicates=True`) keeps it: every hand-written file at the
   revision is trained, and the match is only listed in the report (`similar`) and counted
   (`near_duplicates_kept`); generated and vendored files are left out by their own rules. An
   exact duplicate within the phase is left to the exact check, so it keeps its `duplicate`
   reason.

`keep_bots` is read by the history planner (`merges.plan_history`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phased_cpt.from_git.neardup import DEFAULT_THRESHOLD, NearDuplicates
from phased_cpt.from_git.output import DocumentWriter
from phased_cpt.from_git.personal import mask_emails
from phased_cpt.from_git.summary import OutputStats


@dataclass(frozen=True)
class ScreenOptions:
    """Bots, e-mail addresses and near-duplicates: what is kept (the defaults leave them out)."""

    keep_bots: bool = False  # --keep-bots
    keep_emails: bool = False  # --keep-emails
    near_duplicate_threshold: float | None = DEFAULT_THRESHOLD  # --near-duplicate-threshold; None: off
    keep_duplicates: bool = False  # --keep-duplicates: exact and near-duplicates kept


class ScreenedWriter(DocumentWriter):
    """A `DocumentWriter` that masks e-mail addresses and leaves near-duplicates out first."""

    def __init__(
        self,
        out_dir: Path,
        stats: OutputStats,
        *,
        options: ScreenOptions,
        index: NearDuplicates | None,
        report_near_duplicates: bool = False,
    ) -> None:
        super().__init__(out_dir, stats, keep_duplicates=options.keep_duplicates)
        self.options = options
        self._index = None if options.keep_duplicates else index
        self._report_only = report_near_duplicates

    def prepare(self, document: dict[str, Any], where: dict[str, Any]) -> None:
        """Redact credentials first (a URL's `user:password@host` looks like an e-mail address),
        then mask e-mail addresses."""
        super().prepare(document, where)
        if not self.options.keep_emails:
            for key, value in document.items():
                if isinstance(value, str):
                    document[key], count = mask_emails(value)
                    self.stats.masked_emails += count

    def write(self, document: dict[str, Any], where: dict[str, Any], key_text: str) -> bool:
        """Check for a near-duplicate, then write as `DocumentWriter.write` does (`prepare`:
        credentials redacted, then e-mail addresses masked)."""
        signature = match = None
        if self._index is not None and not self.repeats(key_text):
            signature = self._index.signature(key_text)
            match = self._index.find(signature) if signature is not None else None
            if match is not None and not self._report_only:
                size = len(document["training_content"].encode("utf-8"))
                self.stats.skip("near-duplicate", where, rule=f"similar to {match}", size=size)
                return False
        written = super().write(document, where, key_text)
        if written and match is not None:
            self.stats.keep_similar(where, match)
        if written and signature is not None and self._index is not None:
            name = ", ".join(f"{key} {value}" for key, value in where.items())
            self._index.add(signature, f"{self.stats.name}: {name}")
        return written
