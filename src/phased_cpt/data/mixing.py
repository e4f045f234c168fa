"""What a phase trains on, by tokens: weighted sources, replay of earlier phases, general data.

All of it happens after the eval split, on training chunks only: a phase's held-out documents,
earlier phases' held-out documents and the general source's held-out documents are never drawn.

- **Sources with weights** (`phases[].file: [{path, weight}, ...]`): the phase's own tokens O
  (the sum over its sources, each chunk once) are shared out by weight: source i gets
  `w_i / sum(w) * O` tokens, as whole passes over its chunks and then a seeded random choice of
  them, so a small source is repeated and a large one subsampled. Without weights every chunk
  counts once.
- **Replay** (`replay_ratio` r) and **general** (the phase's general ratio g) come on top:

      total T = O / (1 - r - g);   replayed tokens = r * T;   general tokens = g * T

  Replay draws earlier phases' own chunks, each at most once (there may be too few: a warning of
  `plan.plan_warnings`, from the entry's `replay_wanted_tokens`, on every run and plan);
  general draws the general source's training chunks, in whole passes when it is small.

A draw stops at the chunk that brings it nearest to the tokens asked for, so a share is exact
up to half a chunk. Drawn chunks of another cache entry are copied into this phase's
`tokens.bin` (once each, however often they are drawn).

    source a: 3 chunks of 100 tokens, weight 3     O = 300 + 100 = 400, r = 0, g = 0.2
    source b: 1 chunk  of 100 tokens, weight 1     a: 300 tokens (a0 a1 a2), b: 100 (b0)
    general:  5 chunks of  50 tokens               T = 500: general 100 tokens (2 chunks)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from phased_cpt.data.chunking import LENGTH

NO_CHUNKS = np.zeros((0, 3), dtype=np.int64)


class TokenWriter:
    """Appends int32 ids to `tokens.bin` (holding `tokens` ids already); returns where each piece starts."""

    def __init__(self, file: BinaryIO, tokens: int = 0) -> None:
        self.file = file
        self.tokens = tokens

    def write(self, ids: np.ndarray) -> int:
        start = self.tokens
        ids.astype(np.int32, copy=False).tofile(self.file)
        self.tokens += len(ids)
        return start


@dataclass
class ChunkSource:
    """Another cache entry's training chunks: its token array and its own chunks (start, length, context)."""

    tokens: np.ndarray
    chunks: np.ndarray


def chunk_tokens(chunks: np.ndarray) -> int:
    return int(chunks[:, LENGTH].sum()) if len(chunks) else 0


def draw_chunks(lengths: np.ndarray, wanted_tokens: int, rng: np.random.Generator, repeat: bool) -> np.ndarray:
    """Indices of chunks whose lengths add up to about `wanted_tokens`.

    With `repeat`, whole passes over every chunk while another pass fits; then a seeded random
    choice, each chunk at most once, stopping at the count whose total is nearest to what is left.
    Without `repeat`, at most one pass (every chunk, when they hold fewer tokens than asked)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if wanted_tokens <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64)
    passes = wanted_tokens // total if repeat else 0
    left = wanted_tokens - passes * total
    order = rng.permutation(len(lengths))
    cumulative = np.cumsum(lengths[order])
    take = int(np.searchsorted(cumulative, left))  # chunks before the one that reaches `left`
    if take < len(order) and cumulative[take] - left <= left - (cumulative[take - 1] if take else 0):
        take += 1
    return np.concatenate([np.tile(np.arange(len(lengths)), passes), order[:take]]).astype(np.int64)


def weight_sources(
    source_chunks: Sequence[np.ndarray],
    weights: Sequence[float | None],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[int]]:
    """The phase's own training chunks with its sources weighted (see the module docstring), and
    each source's tokens in them. Chunks of a repeated chunk point at the same tokens."""
    if not source_chunks:
        return NO_CHUNKS, []
    if any(w is None for w in weights):
        return np.concatenate(source_chunks), [chunk_tokens(c) for c in source_chunks]
    own = sum(chunk_tokens(c) for c in source_chunks)
    largest = max(weights)
    shares = [w / largest for w in weights]  # in (0, 1]: any finite weights (1e308) keep every product finite
    chosen = [
        chunks[draw_chunks(chunks[:, LENGTH], round(own * share / sum(shares)), rng, repeat=True)]
        for chunks, share in zip(source_chunks, shares)
    ]
    return np.concatenate(chosen), [chunk_tokens(c) for c in chosen]


def mixed_tokens(own_tokens: int, replay_ratio: float, general_ratio: float) -> tuple[int, int]:
    """(replay tokens, general tokens) that make them `replay_ratio` and `general_ratio` of the
    phase's training tokens."""
    total = own_tokens / (1 - replay_ratio - general_ratio)
    return round(total * replay_ratio), round(total * general_ratio)


def copy_chunks(sources: Sequence[ChunkSource], picks: Sequence[tuple[int, int]], writer: TokenWriter) -> np.ndarray:
    """Copy the picked (source, chunk) pairs into `writer`; their chunks in this entry. A chunk
    picked several times is written once."""
    written: dict[tuple[int, int], int] = {}
    chunks = []
    for s, c in picks:
        start, length, context = (int(x) for x in sources[s].chunks[c])
        if (s, c) not in written:
            written[(s, c)] = writer.write(np.asarray(sources[s].tokens[start : start + length]))
        chunks.append((written[(s, c)], length, context))
    return np.array(chunks, dtype=np.int64).reshape(-1, 3)


def replay_chunks(
    sources: Sequence[ChunkSource],
    wanted_tokens: int,
    rng: np.random.Generator,
    writer: TokenWriter,
) -> np.ndarray:
    """Earlier phases' chunks copied into `writer`, about `wanted_tokens` of them, each at most once."""
    if wanted_tokens <= 0 or not sources:
        return NO_CHUNKS
    pool = [(s, c) for s, source in enumerate(sources) for c in range(len(source.chunks))]
    lengths = np.array([sources[s].chunks[c][LENGTH] for s, c in pool], dtype=np.int64)
    chosen = draw_chunks(lengths, wanted_tokens, rng, repeat=False)
    return copy_chunks(sources, [pool[i] for i in chosen], writer)


def general_chunks(
    source: ChunkSource | None,
    wanted_tokens: int,
    rng: np.random.Generator,
    writer: TokenWriter,
) -> np.ndarray:
    """The general source's training chunks copied into `writer`, about `wanted_tokens` of them
    (whole passes first when it holds fewer)."""
    if wanted_tokens <= 0 or source is None or not len(source.chunks):
        return NO_CHUNKS
    chosen = draw_chunks(source.chunks[:, LENGTH], wanted_tokens, rng, repeat=True)
    return copy_chunks([source], [(0, int(c)) for c in chosen], writer)
