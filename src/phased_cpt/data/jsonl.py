"""Reading phase files: one JSON object per line, the text in `data.text_field`.

A bad line is never skipped silently: `read_documents` collects every problem as
`file:line: reason` and raises one `DataError` (the first 20 lines shown, plus the total).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.errors import DataError

MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    """`file:line` where the document was read, for error messages."""


def parse_record(raw: bytes, text_field: str) -> str:
    """The document text of one JSONL line, or ValueError saying what is wrong with it."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"invalid UTF-8 at byte {err.start}") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if text_field not in record:
        keys = ", ".join(sorted(record)) or "none"
        raise ValueError(f"missing field {text_field!r} (keys present: {keys}; see data.text_field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"field {text_field!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"field {text_field!r} is empty")
    return text


def read_documents(path: Path, text_field: str) -> list[Document]:
    """Every document of a JSONL file; blank lines are allowed, any other bad line is an error."""
    documents: list[Document] = []
    problems: list[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                documents.append(Document(parse_record(raw, text_field), f"{path}:{number}"))
            except ValueError as err:
                problems.append(f"{path}:{number}: {err}")
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        tail = [f"... and {more} more"] if more else []
        raise DataError("\n".join([f"{len(problems)} bad line(s) in {path}:", *shown, *tail]))
    if not documents:
        raise DataError(f"{path}: no documents (the file is empty); add JSONL lines with a {text_field!r} field")
    return documents
