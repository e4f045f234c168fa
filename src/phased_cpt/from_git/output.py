"""Output files: JSONL documents written to a temporary file and published atomically.

Each line is one JSON object whose first key is `training_content` (the text training reads),
followed by metadata keys that training ignores. Keys keep the order the builder gave them,
non-ASCII text is written as UTF-8, and the file ends with a newline.

Every document goes through `DocumentWriter.write`, the one place where, for every phase:

- credential values are redacted (`secrets.redact_secrets`) in the text and in every string
  metadata field, and each redaction is recorded (rule, line, field; never the value);
- duplicates are dropped: a document whose *key text* (the file content in phase 1, the diff
  in phases 2 and 3), with white space collapsed, equals an earlier document's of the same
  phase is left out as `duplicate` and listed with the document it repeats, unless
  `keep_duplicates` (`--keep-duplicates`).

A `DocumentWriter` writes to a hidden temporary file in the output directory; `publish()`
replaces the real file with it in one `os.replace`, so a reader never sees half a file and a
failed run leaves the previous outputs untouched (`discard()` removes the temporary file).

The command never replaces a file it did not write (`claim_outputs`, `merge`'s rule): after a
run, `OUTPUT_MARKER` in the output directory lists each file written with its SHA-256. A later
run refuses an output directory that already holds one of its file names, unless `force`
(`--force`) is given *and* the marker lists that file with its current content; a hand-made or
hand-edited file is refused even with `--force`. Other files in the directory are never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phased_cpt.errors import UserError
from phased_cpt.from_git.secrets import redact_secrets
from phased_cpt.from_git.summary import OutputStats


class DocumentWriter:
    """Appends documents to `out_dir/stats.name` (via a temporary file) and counts them."""

    def __init__(self, out_dir: Path, stats: OutputStats, *, keep_duplicates: bool = False) -> None:
        self.path = out_dir / stats.name
        self.stats = stats
        self.keep_duplicates = keep_duplicates
        self._seen: dict[bytes, str] = {}
        handle, temp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{stats.name}.", suffix=".tmp")
        self._temp_path = Path(temp_name)
        self._file = os.fdopen(handle, "wb")

    def write(self, document: dict[str, Any], where: dict[str, Any], key_text: str) -> bool:
        """Write one document (its text in `document["training_content"]`), redacted; False when
        it was left out as a duplicate. `where` names it in the report (`{"file": path}`, ...)."""
        digest = duplicate_digest(key_text)
        if digest in self._seen and not self.keep_duplicates:
            self.stats.skip(
                "duplicate",
                where,
                rule=f"same text as {self._seen[digest]}",
                size=len(document["training_content"].encode("utf-8")),
            )
            return False
        self._seen.setdefault(digest, ", ".join(f"{key} {value}" for key, value in where.items()))
        self.prepare(document, where)
        line = json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n"
        self._file.write(line)
        self.stats.documents += 1
        self.stats.bytes += len(line)
        self.stats.text_bytes += len(document["training_content"].encode("utf-8"))
        return True

    def prepare(self, document: dict[str, Any], where: dict[str, Any]) -> None:
        """Redact credential values in every text field of `document`, in place."""
        for key, value in document.items():
            if isinstance(value, str):
                document[key], found = redact_secrets(value)
                self.stats.redact({**where, "field": key}, found)

    def repeats(self, key_text: str) -> bool:
        """True when a document with this key text was already written (it would be a `duplicate`)."""
        return duplicate_digest(key_text) in self._seen

    def publish(self) -> None:
        """Replace the output file with everything written so far."""
        self._file.close()
        os.chmod(self._temp_path, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(self._temp_path, self.path)

    def discard(self) -> None:
        """Drop the temporary file; the previous output file, if any, stays as it was."""
        self._file.close()
        self._temp_path.unlink(missing_ok=True)


OUTPUT_MARKER = ".phased-cpt-from-git.json"
"""Lists the files `data from-git` wrote in an output directory, with their SHA-256."""


def claim_outputs(out_dir: Path, names: Sequence[str], *, force: bool) -> None:
    """Check that writing `names` into `out_dir` replaces nothing but this command's own earlier
    output, and only with `force`; a UserError naming the files otherwise (nothing is touched)."""
    present = [name for name in names if (out_dir / name).exists() or (out_dir / name).is_symlink()]
    if not present:
        return
    written = _read_marker(out_dir)
    foreign = [name for name in present if not _is_own_output(out_dir / name, written.get(name))]
    if foreign:
        listed = ", ".join(foreign)
        raise UserError(
            f"--out {out_dir}: {listed} {'was' if len(foreign) == 1 else 'were'} not written by `data from-git` "
            f"(or changed since it wrote {'it' if len(foreign) == 1 else 'them'}; see {OUTPUT_MARKER}); "
            "move the file(s) away or choose another --out: they are never replaced"
        )
    if not force:
        raise UserError(
            f"--out {out_dir} already holds {', '.join(present)} from an earlier run; "
            "pass --force to replace them, or choose another --out"
        )


def record_outputs(out_dir: Path, names: Sequence[str]) -> None:
    """Write `OUTPUT_MARKER`: the files of `names` now in `out_dir`, with their SHA-256, added to
    those an earlier run listed (a name of `names` no longer there is dropped from the list)."""
    written = {name: digest for name, digest in _read_marker(out_dir).items() if name not in names}
    written.update({name: _sha256(out_dir / name) for name in names if (out_dir / name).is_file()})
    content = {"written_by": "phased-cpt data from-git", "files": dict(sorted(written.items()))}
    handle, temp_name = tempfile.mkstemp(dir=out_dir, prefix=f"{OUTPUT_MARKER}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(content, file, indent=1)
        file.write("\n")
    os.chmod(temp_name, 0o644)
    os.replace(temp_name, out_dir / OUTPUT_MARKER)


def _read_marker(out_dir: Path) -> dict[str, str]:
    path = out_dir / OUTPUT_MARKER
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(name): str(digest) for name, digest in files.items()} if isinstance(files, dict) else {}


def _is_own_output(path: Path, digest: str | None) -> bool:
    return digest is not None and path.is_file() and not path.is_symlink() and _sha256(path) == digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def duplicate_digest(key_text: str) -> bytes:
    """What makes two documents duplicates: their key text with white space collapsed."""
    return hashlib.sha256(" ".join(key_text.split()).encode("utf-8", "surrogatepass")).digest()


def prepare_out_dir(out_dir: Path) -> Path:
    """Create `out_dir` (and parents) if needed; a UserError when it is a file or unwritable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out_dir}: cannot create the directory ({err.strerror})") from err
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"--out {out_dir}: directory is not writable")
    return out_dir
