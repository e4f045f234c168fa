"""Cutting a tokenized document into training chunks of at most `max_tokens` tokens.

Worked example, `max_tokens=4`, `overlap_tokens=1`, document ids `a b c d e f` plus EOS `E`
(7 ids). Windows advance by `max_tokens - overlap_tokens = 3`:

    chunk 0  input_ids  a b c d        labels  a b c d
    chunk 1  input_ids  d e f E        labels  - e f E      (- is -100: context only)

The model shifts labels by one internally, so in chunk 0 `a` is never a target (nothing
precedes it) and in chunk 1 the overlap `d` only gives context. Every other token, EOS
included, is a target exactly once. With `overlap_loss=True` the overlap is trained again
(as the older tool did). `overlap_tokens=0` still repeats one token: otherwise the first token
of every later chunk would never be predicted. Position ids restart at 0 in every chunk. The split is on token ids,
never by decoding and re-tokenizing text.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Chunk:
    input_ids: list[int]
    labels: list[int]


def chunk_document(
    ids: list[int], max_tokens: int, overlap_tokens: int, overlap_loss: bool = False
) -> list[Chunk]:
    """Split one document's ids (EOS already appended) into overlapping windows."""
    if overlap_tokens >= max_tokens or max_tokens < 2:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be < max_tokens ({max_tokens})")
    if len(ids) <= max_tokens:
        return [Chunk(list(ids), list(ids))] if ids else []
    # A chunk's first token is never a target (nothing precedes it in the row), so chunks always
    # share at least one token: with overlap_tokens=0 the boundary token is still predicted once.
    context_tokens = max(overlap_tokens, 1)
    stride = max_tokens - context_tokens
    chunks = []
    start = 0
    while True:
        window = ids[start : start + max_tokens]
        labels = list(window)
        if start > 0 and not overlap_loss:
            labels[:context_tokens] = [IGNORE_INDEX] * context_tokens
        chunks.append(Chunk(list(window), labels))
        if start + max_tokens >= len(ids):
            return chunks
        start += stride
