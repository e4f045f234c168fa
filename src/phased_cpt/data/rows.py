"""Training rows as views into one flat token array: what the Trainer iterates over.

A phase's tokens live once on disk (`tokens.bin`, int32, memory-mapped); its chunks
(`chunking.py`) are windows of it. A row is a run of consecutive chunks of the phase's row table
(`row_offsets[i]:row_offsets[i+1]`): one chunk without packing, several with it.
`RowDataset[i]` assembles row i on the fly, labels by `chunking.untrained_tokens`:

    chunks     (100, 3, 0)  (250, 4, 1)           two chunks packed into one row
    input_ids  t100 t101 t102 t250 t251 t252 t253
    labels     -100 t101 t102 -100 -100 t252 t253  a chunk's first token and its context
    position_ids  0    1    2    0    1    2    3   restart at every chunk (packed rows only)

Nor is a fill-in-the-middle token ever a target (`never_targets`, see `fim.py`): the user types those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from phased_cpt.data.chunking import IGNORE_INDEX, untrained_tokens


def open_tokens(path: Path) -> np.ndarray:
    """The token array of a cache entry, memory-mapped read-only (empty file: empty array)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.int32)
    return np.memmap(path, dtype=np.int32, mode="r")


class RowDataset(Dataset):
    """Map-style dataset of rows: dicts of `input_ids`, `labels` (+ `position_ids` when packed)."""

    def __init__(
        self,
        tokens: np.ndarray,
        chunks: np.ndarray,
        row_offsets: np.ndarray,
        packed: bool,
        never_targets: tuple[int, ...] = (),
    ) -> None:
        self.tokens = tokens
        self.chunks = chunks
        """The row table: chunks in row order."""
        self.row_offsets = row_offsets
        self.packed = packed
        self.never_targets = np.asarray(never_targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.row_offsets) - 1

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        chunks = self.chunks[self.row_offsets[index] : self.row_offsets[index + 1]]
        input_ids = np.concatenate([self.tokens[s : s + n] for s, n, _ in chunks]).astype(np.int64)
        labels = input_ids.copy()
        position_ids = np.empty_like(input_ids)
        offset = 0
        for _, length, context in chunks:
            labels[offset : offset + untrained_tokens(context)] = IGNORE_INDEX
            position_ids[offset : offset + length] = np.arange(length)
            offset += length
        if len(self.never_targets):
            labels[np.isin(input_ids, self.never_targets)] = IGNORE_INDEX
        row = {"input_ids": input_ids.tolist(), "labels": labels.tolist()}
        if self.packed:
            row["position_ids"] = position_ids.tolist()
        return row
