"""Near-duplicate documents, within and across the three phases, by MinHash and LSH (datasketch).

A document's *key text* (the file content in phase 1, the diff's file headers and changed lines
in phases 2 and 3, as for exact duplicates) is reduced to the set of its distinct lines, white
space collapsed, lines shorter than `MIN_LINE_CHARS` left out, at most `MAX_LINES` of them.
`NearDuplicates.find` estimates the Jaccard similarity of that set with every document kept so
far through a `datasketch.MinHashLSH` index (`NUM_PERM` permutations); a document whose set is
at least `threshold` similar (default `DEFAULT_THRESHOLD` = 0.85, `--near-duplicate-threshold`)
to an earlier one is left out as `near-duplicate`, and the report names the document it
repeats. Documents with fewer than `MIN_LINES` distinct lines are too short to judge and only
go through the exact duplicate check.

The index is shared by the phases in the order documents are written (phase 1; then phase 2
with the squash-merge stories of phase 3; then the merge stories), so a phase-3 story that repeats a
phase-2 commit is caught. A file is compared with files and a diff with diffs: their lines
differ by the `+`/`-` prefix, so a commit that adds a file is not a near-duplicate of that file.

Memory is bounded: the index keeps one 8-byte key per LSH band and kept document (a BLAKE2
digest of the band), not the text. Lines are hashed with CRC-32, so the same input always gives the same
output. datasketch is imported when an index is made (it takes about a second, and `--help`
does not need it).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasketch import MinHash

DEFAULT_THRESHOLD = 0.85
NUM_PERM = 64
MIN_LINES = 8
MIN_LINE_CHARS = 4
MAX_LINES = 4000


def _crc32(data: bytes) -> int:
    return zlib.crc32(data)


def _band_key(band: bytes) -> bytes:
    """An LSH band's key: 8 bytes of its BLAKE2 digest instead of its raw hash values."""
    return hashlib.blake2b(band, digest_size=8).digest()


class NearDuplicates:
    """The MinHash LSH index of the documents kept so far, across phases."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, hashfunc=_band_key)
        self._names: list[str] = []

    def signature(self, key_text: str) -> MinHash | None:
        """The MinHash of `key_text`'s line set; None when it has fewer than `MIN_LINES` lines."""
        lines: set[bytes] = set()
        for line in key_text.split("\n"):
            if len(lines) >= MAX_LINES:
                break
            collapsed = " ".join(line.split())
            if len(collapsed) >= MIN_LINE_CHARS:
                lines.add(collapsed.encode("utf-8", "surrogatepass"))
        if len(lines) < MIN_LINES:
            return None
        from datasketch import MinHash

        minhash = MinHash(num_perm=NUM_PERM, hashfunc=_crc32)
        minhash.update_batch(sorted(lines))
        return minhash

    def find(self, signature: MinHash) -> str | None:
        """The name of the earliest kept document `signature` is a near-duplicate of, or None."""
        matches = self._lsh.query(signature)
        return self._names[min(matches)] if matches else None

    def add(self, signature: MinHash, name: str) -> None:
        """Index one kept document under `name` (how the report refers to it)."""
        self._lsh.insert(len(self._names), signature, check_duplication=False)
        self._names.append(name)
