"""Holding out evaluation documents: split by document, before chunking, deterministic for a seed.

Splitting whole documents (not chunks) means no chunk of an eval document is ever trained on,
even though chunks of one document overlap.
"""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def eval_document_count(documents: int, eval_ratio: float) -> int:
    """round(documents * eval_ratio), but at least one when there are two or more documents."""
    if eval_ratio <= 0 or documents < 2:
        return 0
    return min(max(1, round(documents * eval_ratio)), documents - 1)


def split_documents(items: list[T], eval_ratio: float, seed: int, phase_name: str) -> tuple[list[T], list[T]]:
    """(train, eval): a seeded random choice of documents, each list in file order."""
    count = eval_document_count(len(items), eval_ratio)
    rng = random.Random(f"{seed}:{phase_name}")
    eval_indices = set(rng.sample(range(len(items)), count))
    train = [item for i, item in enumerate(items) if i not in eval_indices]
    held_out = [item for i, item in enumerate(items) if i in eval_indices]
    return train, held_out
