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


@dataclass(frozen=True)
class Span:
    """One chunk as a window of its document: `ids[start : start + length]`, the first
    `context_tokens` of which are context only."""

    start: int
    length: int
    context_tokens: int


def chunk_spans(document_tokens: int, max_tokens: int, overlap_tokens: int, overlap_loss: bool = False) -> list[Span]:
    """The windows `chunk_document` cuts from a document of `document_tokens` ids (EOS included)."""
    if overlap_tokens >= max_tokens or max_tokens < 2:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be < max_tokens ({max_tokens})")
    if document_tokens <= max_tokens:
        return [Span(0, document_tokens, 0)] if document_tokens else []
    # A chunk's first token is never a target (nothing precedes it in the row), so chunks always
    # share at least one token: with overlap_tokens=0 the boundary token is still predicted once.
    context_tokens = max(overlap_tokens, 1)
    stride = max_tokens - context_tokens
    spans = []
    start = 0
    while True:
        length = min(max_tokens, document_tokens - start)
        spans.append(Span(start, length, context_tokens if start > 0 and not overlap_loss else 0))
        if start + max_tokens >= document_tokens:
            return spans
        start += stride


def chunk_document(
    ids: list[int], max_tokens: int, overlap_tokens: int, overlap_loss: bool = False
) -> list[Chunk]:
    """Split one document's ids (EOS already appended) into overlapping windows."""
    chunks = []
    for span in chunk_spans(len(ids), max_tokens, overlap_tokens, overlap_loss):
        window = list(ids[span.start : span.start + span.length])
        labels = [IGNORE_INDEX] * span.context_tokens + window[span.context_tokens :]
        chunks.append(Chunk(window, labels))
    return chunks
