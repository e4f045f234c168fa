"""Reading and validating phase files: one JSON object per line, the text in `data.text_field`.

Every line is checked (`parse_record`): invalid UTF-8, a UTF-8 byte order mark, NUL bytes,
invalid or too deeply nested JSON, not an object, a missing or non-string field, empty or
whitespace-only text, a lone surrogate escape (`"\\ud800"`: valid JSON, but no character, so it
cannot be tokenized or written as UTF-8).
Blank lines and CRLF line ends are accepted. With `data.dedup: exact`, a document whose text
equals an earlier one is a duplicate. What happens to a bad line is `data.on_bad_record`:

- `error` (default): `RecordScan.raise_if_bad` raises one `DataError` listing the first 20
  `file:line: reason` lines and the totals, before anything is trained.
- `skip`: the line is left out and kept, verbatim with its reason, in `RecordScan.rejected`; the
  recipe writes them to `<run>/rejected/<phase>.jsonl` and the plan counts them.

Duplicates (with `dedup: exact`) are removed and recorded in the rejected file under both
policies: asking for deduplication is not an error in the data. Nothing is dropped silently.
The file is read as a stream: memory grows with the number of documents (a 16-byte hash each
when deduplicating), not with the size of the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phased_cpt.config import DataConfig, PhaseConfig
from phased_cpt.errors import DataError

MAX_REPORTED_PROBLEMS = 20
UTF8_BOM = b"\xef\xbb\xbf"
DUPLICATE = "duplicate"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""A code point that is half of a UTF-16 pair: no character, and not encodable as UTF-8."""


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    """`file:line` where the document was read, for error messages."""


@dataclass(frozen=True)
class Rejected:
    """A line that did not become a document, kept verbatim with the reason."""

    source: str
    reason: str
    line: str
    """The raw line; bytes that are not UTF-8 appear as `\\xNN` escapes."""

    @property
    def is_duplicate(self) -> bool:
        return self.reason.startswith(DUPLICATE)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "reason": self.reason, "line": self.line}, ensure_ascii=False)


@dataclass
class RecordScan:
    """The outcome of reading one file: rejected lines and counts (the documents are streamed)."""

    path: Path
    on_bad_record: str = "error"
    documents: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    sha256: str | None = None
    """sha256 of the bytes read, once the whole file was read: what the documents came from."""

    @property
    def bad_lines(self) -> list[Rejected]:
        return [r for r in self.rejected if not r.is_duplicate]

    @property
    def duplicates(self) -> int:
        return sum(r.is_duplicate for r in self.rejected)

    def raise_if_bad(self, text_field: str) -> None:
        """Under `on_bad_record: error`, any bad line stops the run; so does a file with no document."""
        bad = self.bad_lines
        if bad and self.on_bad_record == "error":
            shown = [f"{r.source}: {r.reason}" for r in bad[:MAX_REPORTED_PROBLEMS]]
            more = [f"... and {len(bad) - len(shown)} more"] if len(bad) > len(shown) else []
            raise DataError(
                "\n".join(
                    [
                        f"{len(bad)} bad line(s) in {self.path} ({self.documents} good):",
                        *shown,
                        *more,
                        "fix these lines, or set data.on_bad_record: skip to leave them out "
                        "(they are then written to <run>/rejected/<phase>.jsonl)",
                    ]
                )
            )
        if not self.documents:
            why = f"all {len(self.rejected)} line(s) were rejected" if self.rejected else "the file is empty"
            raise DataError(f"{self.path}: no documents ({why}); add JSONL lines with a {text_field!r} field")


def parse_record(raw: bytes, text_field: str) -> str:
    """The document text of one JSONL line (line end removed), or ValueError saying what is wrong."""
    if raw.startswith(UTF8_BOM):
        raise ValueError("starts with a UTF-8 byte order mark (BOM); save the file as UTF-8 without BOM")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"contains a NUL byte at byte {nul} (binary data?)")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"invalid UTF-8 at byte {err.start}") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply (thousands of levels of [ or {)") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if text_field not in record:
        shown = [k if k.isprintable() and len(k) <= 40 else repr(k[:40]) for k in sorted(record)[:10]]
        keys = ", ".join(shown + (["..."] if len(record) > 10 else [])) or "none"
        raise ValueError(f"missing field {text_field!r} (keys present: {keys}; see data.text_field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"field {text_field!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"field {text_field!r} is empty or whitespace only")
    if "\x00" in text:
        raise ValueError(f"field {text_field!r} contains a NUL character (\\u0000; binary data?)")
    surrogate = LONE_SURROGATE.search(text)
    if surrogate:
        raise ValueError(
            f"field {text_field!r} contains a lone surrogate \\u{ord(surrogate.group()):04x} at character "
            f"{surrogate.start()} (a broken escape: it is no character and cannot be encoded as UTF-8)"
        )
    return text


def scan_documents(
    path: Path, text_field: str, scan: RecordScan, seen: dict[bytes, str] | None = None
) -> Iterator[Document]:
    """Yield the good documents of `path` in file order; record every other line in `scan`.

    `seen` (text hash -> source) turns on exact deduplication; pass the same dict for several
    files to deduplicate across them (a phase's eval file against its training file).
    """
    file_sha256 = hashlib.sha256()
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            file_sha256.update(raw)
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            source = f"{path}:{number}"
            try:
                text = parse_record(raw, text_field)
            except ValueError as err:
                scan.rejected.append(Rejected(source, str(err), raw.decode("utf-8", errors="backslashreplace")))
                continue
            if seen is not None:
                digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
                first = seen.setdefault(digest, source)
                if first != source:
                    scan.rejected.append(Rejected(source, f"{DUPLICATE} of {first}", raw.decode("utf-8")))
                    continue
            scan.documents += 1
            yield Document(text, source)
    scan.sha256 = file_sha256.hexdigest()


def check_eval_file(training: Sequence[RecordScan], held_out: RecordScan) -> None:
    """A phase's eval file must not be its training data again: the bytes of one of its training
    files, or (with `dedup: exact`) nothing but documents of them."""
    for train in training:
        if train.sha256 is not None and train.sha256 == held_out.sha256:
            raise DataError(
                f"{held_out.path}: the eval_file has the same content as the training file {train.path}; evaluation "
                "would measure memorization. Give held-out documents, or remove eval_file to hold out data.eval_ratio"
            )
    if not held_out.documents and held_out.rejected and held_out.duplicates == len(held_out.rejected):
        raise DataError(
            f"{held_out.path}: every document of the eval_file also appears in the training file(s) "
            f"{', '.join(str(t.path) for t in training)} (data.dedup: exact left none); give held-out documents"
        )


def check_general_content(
    phase_files: Sequence[tuple[Path, str | None]], general_files: Sequence[tuple[Path, str | None]]
) -> None:
    """The general source (and `evaluation.general_file`) must not be a phase's data again, as
    bytes: its documents would be trained twice and evaluated as general text. Each file is given
    with its sha256 (None: not read). The same file by path or link is refused by the config."""
    for general, general_sha in general_files:
        for own, own_sha in phase_files:
            if general_sha is not None and general_sha == own_sha:
                raise DataError(
                    f"{general}: the general file has the same content as the phase file {own}; its documents would "
                    "be trained twice and evaluated as general text. Give general text that is not phase data"
                )


def read_documents(
    path: Path, text_field: str, on_bad_record: str = "error", seen: dict[bytes, str] | None = None
) -> tuple[list[Document], RecordScan]:
    """Every good document of a file in memory, and the scan (small files and tests)."""
    scan = RecordScan(path, on_bad_record)
    documents = list(scan_documents(path, text_field, scan, seen))
    scan.raise_if_bad(text_field)
    return documents, scan


def write_rejected(path: Path, rejected: list[Rejected]) -> None:
    """`path` as JSONL: one `{"source", "reason", "line"}` object per rejected line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in rejected:
            f.write(record.to_json() + "\n")


def scan_phase_files(phase: PhaseConfig, data: DataConfig) -> list[RecordScan]:
    """Check every line of a phase's files (its sources' files, then its `eval_file`) without
    keeping the documents, as training will read them (duplicates count across all of them). What
    `validate` and `doctor` report; `RecordScan.raise_if_bad` says what is wrong."""
    scans = scan_files(phase.files, data)
    if phase.eval_file is not None:
        check_eval_file(scans[:-1], scans[-1])
    return scans


def scan_files(files: list[Path], data: DataConfig) -> list[RecordScan]:
    """`scan_phase_files` for any list of files (the general source's)."""
    seen: dict[bytes, str] | None = {} if data.dedup == "exact" else None
    scans = []
    for path in files:
        scan = RecordScan(path, data.on_bad_record)
        for _ in scan_documents(path, data.text_field, scan, seen):
            pass
        scans.append(scan)
    return scans
