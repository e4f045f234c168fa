"""Chunks: the windows of a tokenized document that rows are built from, and which of their
tokens are training targets.

A *chunk* is `(start, length, context_tokens)`: the ids `document[start : start + length]`, the
first `context_tokens` of which are context only. A document of at most `max_tokens` ids (EOS
included) is one chunk; a longer one is cut into overlapping windows (`chunk_document`). The split
is on token ids, never by decoding and re-tokenizing text. In the cache, a chunk's `start` is an
offset into the phase's flat token array, and a table of chunks is an `(n, 3)` int64 array with
columns `START, LENGTH, CONTEXT`.

Worked example, `max_tokens=4`, `overlap_tokens=1`, document ids `a b c d e f` plus EOS `E`
(7 ids). Windows advance by `max_tokens - overlap_tokens = 3`:

    chunk 0  (0, 4, 0)  input_ids  a b c d    labels  - b c d      (- is -100)
    chunk 1  (3, 4, 1)  input_ids  d e f E    labels  - e f E
    position_ids        0 1 2 3 in each chunk

The label rule (`untrained_tokens`, the one place it is written): a chunk's first token is never a
target, because nothing of its own document precedes it in a row (after the model's causal shift
it would be predicted from the previous document's EOS, or from nothing); nor is its context,
which the previous chunk already trained. So every token of a document except its first, EOS
included, is a target exactly once. With `overlap_loss=True` the overlap is trained again (as the
older tool did: context 0). `overlap_tokens=0` still repeats one token: otherwise the first token
of every later chunk would never be predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100
"""The label of a token that is not a target (the loss ignores it)."""
START, LENGTH, CONTEXT = 0, 1, 2
"""Columns of a chunk table."""


@dataclass(frozen=True)
class Chunk:
    """`ids[start : start + length]` of a document, the first `context_tokens` of which are context only."""

    start: int
    length: int
    context_tokens: int


def chunk_document(
    document_tokens: int, max_tokens: int, overlap_tokens: int, overlap_loss: bool = False
) -> list[Chunk]:
    """The chunks of a document of `document_tokens` ids (EOS included); none for an empty one."""
    if overlap_tokens >= max_tokens or max_tokens < 2:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be < max_tokens ({max_tokens})")
    if document_tokens <= max_tokens:
        return [Chunk(0, document_tokens, 0)] if document_tokens else []
    # Chunks always share at least one token: with overlap_tokens=0 the boundary token is still
    # predicted once (a chunk's first token never is, see `untrained_tokens`).
    context_tokens = max(overlap_tokens, 1)
    stride = max_tokens - context_tokens
    chunks = []
    start = 0
    while True:
        length = min(max_tokens, document_tokens - start)
        chunks.append(Chunk(start, length, context_tokens if start > 0 and not overlap_loss else 0))
        if start + max_tokens >= document_tokens:
            return chunks
        start += stride


def untrained_tokens(context_tokens):
    """How many tokens at the start of a chunk are not targets: its context, and at least its
    first token (see the module docstring). Takes an int or an array of them."""
    return np.maximum(context_tokens, 1)


def target_tokens(chunks: np.ndarray) -> int:
    """Labels that are not -100 over all chunks of a table."""
    if not len(chunks):
        return 0
    return int((chunks[:, LENGTH] - untrained_tokens(chunks[:, CONTEXT])).sum())


def last_token_is_target(chunks: np.ndarray) -> np.ndarray:
    """Per chunk of a table: whether its last token is a target."""
    return chunks[:, LENGTH] > untrained_tokens(chunks[:, CONTEXT])
