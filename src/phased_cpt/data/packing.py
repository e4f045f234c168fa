"""Sample packing: placing chunks into rows of at most `max_tokens` tokens.

Best-fit decreasing: take the chunks longest first and put each into the open row with the
least room that still fits it, opening a new row when none does. Example, `max_tokens=8`,
chunks A (5 tokens), B (4), C (3), D (2), E (2):

    row 0   A A A A A C C C      A, then C (the best fit: 3 free, C needs 3)
    row 1   B B B B D D E E      B, then D and E
    position_ids  0 1 2 3 4 0 1 2 | 0 1 2 3 0 1 0 1   restart at every chunk

Each chunk keeps its own position ids, and attention never crosses a chunk boundary (see
`collate.py` for how the batch tells the model that). A chunk is never split by packing:
only chunking (`chunking.py`) cuts documents, so packing changes no label.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def pack_best_fit_decreasing(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of the chunks in each row; every chunk is in exactly one row. Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep input order
    rows: list[list[int]] = []
    free: list[int] = []  # free room of the open rows, ascending
    row_of_free: list[int] = []  # the row each `free` entry belongs to
    for i in order:
        length = lengths[i]
        if length > max_tokens or length <= 0:
            raise ValueError(f"chunk {i} has {length} tokens; chunks must have 1..{max_tokens}")
        slot = bisect.bisect_left(free, length)
        if slot < len(free):
            room, row = free.pop(slot), row_of_free.pop(slot)
        else:
            room, row = max_tokens, len(rows)
            rows.append([])
        rows[row].append(i)
        room -= length
        if room > 0:
            slot = bisect.bisect_left(free, room)
            free.insert(slot, room)
            row_of_free.insert(slot, row)
    return rows


def packing_efficiency(tokens: int, rows: int, max_tokens: int) -> float:
    """Real tokens / row capacity (rows x max_tokens); 0 for no rows."""
    return tokens / (rows * max_tokens) if rows else 0.0
