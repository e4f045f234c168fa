"""Near-duplicate documents, within and across the three phases, by MinHash and LSH (rensa).

A document's *key text* (the file content in phase 1, the diff's file headers and changed lines
in phases 2 and 3, as for exact duplicates) is reduced to the set of its distinct lines, white
space collapsed, lines shorter than `MIN_LINE_CHARS` left out, at most `MAX_LINES` of them.
`NearDuplicates.find` looks for the documents kept so far whose line set is at least
`threshold` similar (estimated Jaccard similarity; default `DEFAULT_THRESHOLD` = 0.85,
`--near-duplicate-threshold`): a `rensa.RMinHashLSH` index (`NUM_PERM` permutations in
`NUM_BANDS` bands of 8) gives the candidates, and each candidate's signature is compared with
the document's, so a candidate below the threshold is never a match. At 0.85 similarity a pair is
a candidate with probability 0.92 (1 - (1 - 0.85^8)^8), at 0.90 with 0.99. Documents with fewer
than `MIN_LINES` distinct lines are too short to judge and only go through the exact duplicate
check. What a match does is the writer's choice (`screen.ScreenedWriter`): phase 1 keeps the
file and reports the match, phases 2 and 3 leave the document out.

The index is shared by the phases in the order documents are written (phase 1; then phase 2
with the squash-merge stories of phase 3; then the merge stories), so a phase-3 story that
repeats a phase-2 commit is caught. A file is compared with files and a diff with diffs: their
lines differ by the `+`/`-` prefix, so a commit that adds a file is not a near-duplicate of
that file.

Memory is bounded and small: rensa keeps one hash per band and kept document, and this module
keeps each kept document's signature (`NUM_PERM` 32-bit values), not its text. rensa's hashing
is seeded (`SEED`), so the same input always gives the same output. rensa needs no numpy or
scipy (datasketch, used before, imported both: ~56 MB).
"""

from __future__ import annotations

from rensa import RMinHash, RMinHashLSH

DEFAULT_THRESHOLD = 0.85
NUM_PERM = 64
NUM_BANDS = 8
SEED = 0
MIN_LINES = 8
MIN_LINE_CHARS = 4
MAX_LINES = 4000


class NearDuplicates:
    """The MinHash LSH index of the documents kept so far, across phases."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._lsh = RMinHashLSH(threshold=threshold, num_perm=NUM_PERM, num_bands=NUM_BANDS)
        self._signatures: list[RMinHash] = []  # per kept document, in index order
        self._names: list[str] = []

    def signature(self, key_text: str) -> RMinHash | None:
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
        minhash = RMinHash(num_perm=NUM_PERM, seed=SEED)
        minhash.update(sorted(lines))
        return minhash

    def find(self, signature: RMinHash) -> str | None:
        """The name of the earliest kept document `signature` is a near-duplicate of, or None."""
        for key in sorted(self._lsh.query(signature)):
            if signature.jaccard(self._signatures[key]) >= self.threshold:
                return self._names[key]
        return None

    def add(self, signature: RMinHash, name: str) -> None:
        """Index one kept document under `name` (how the report refers to it)."""
        key = len(self._names)
        self._lsh.insert(key, signature)
        self._signatures.append(signature)
        self._names.append(name)
