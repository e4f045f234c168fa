"""Preparing one phase's data into a cache entry: stream, tokenize, split, chunk, replay, pack.

1. The phase file (and its `eval_file`) is read as a stream (`jsonl.scan_documents`) and
   tokenized in batches with the fast tokenizer (its Rust core uses every core); ids go straight
   to `tokens.bin`, so memory holds one batch of text plus a few integers per document.
2. Eval documents are chosen by document, before chunking (`split.py`): no chunk of an eval
   document is ever trained on.
3. Each document becomes its chunks (`chunking.py`): itself, or overlapping windows when it is
   longer than `max_tokens`; with `chunk_long_samples: false` a long one is an error listing each.
4. Replay (`replay_ratio`) copies a seeded random choice of earlier phases' training chunks.
5. Rows: one chunk each, or chunks packed best-fit decreasing (`packing.py`).

BOS and EOS: whatever `tokenizer(text)` adds with `add_special_tokens=True` (a Llama tokenizer
prepends BOS, a Qwen2 tokenizer adds nothing), then EOS once, after the document's last token.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
import zlib
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.cache import write_meta
from phased_cpt.data.chunking import LENGTH, START, chunk_document, last_token_is_target, target_tokens
from phased_cpt.data.jsonl import Document, RecordScan, scan_documents, write_rejected
from phased_cpt.data.packing import pack_best_fit_decreasing, packing_efficiency
from phased_cpt.data.rows import open_tokens
from phased_cpt.data.split import split_documents
from phased_cpt.errors import DataError
from phased_cpt.modeling import require_eos_token

logger = logging.getLogger(__name__)

TOKENIZE_BATCH_DOCUMENTS = 1000
PARALLEL_MIN_BYTES = 8 << 20
"""Files smaller than this are tokenized in this process: starting workers would cost more."""
MAX_TOKENIZER_PROCESSES = 8
MAX_REPORTED_PROBLEMS = 20


@dataclass
class ReplaySource:
    """An earlier phase's training chunks: its token array and its own (not replayed) chunks."""

    tokens: np.ndarray
    own_chunks: np.ndarray


@dataclass
class TokenizedDocuments:
    """Where each document's ids are in `tokens.bin`, and the documents that are too long."""

    starts: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    longest: int = 0
    longest_source: str = ""
    too_long: list[str] = field(default_factory=list)
    too_long_count: int = 0


def tokenize_documents(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each text, with EOS appended after its last token."""
    eos = require_eos_token(tokenizer)
    all_ids: list[list[int]] = []
    for ids in encode_texts(texts, tokenizer):
        if not ids or ids[-1] != eos:  # some tokenizers (T5-style) already add EOS
            ids = list(ids) + [eos]
        all_ids.append(ids)
    return all_ids


def encode_texts(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """`tokenizer(texts, add_special_tokens=True)["input_ids"]`, through the Rust backend's
    `encode_batch_fast` (no character offsets: ~15% less CPU) when the backend has no truncation
    or padding configured of its own; otherwise through the tokenizer's usual call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast") or backend.truncation or backend.padding:
        return tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=True)]


class TokenWriter:
    """Appends int32 ids to `tokens.bin`; returns where each written array starts."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.tokens = 0

    def write(self, ids: np.ndarray) -> int:
        start = self.tokens
        ids.astype(np.int32, copy=False).tofile(self.file)
        self.tokens += len(ids)
        return start


def encode_batch(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> tuple[np.ndarray, list[int]]:
    """The ids of `texts` (EOS appended to each) laid end to end, and each one's length."""
    ids = tokenize_documents(texts, tokenizer)
    lengths = [len(x) for x in ids]
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=sum(lengths)), lengths


_worker_tokenizer: PreTrainedTokenizerBase | None = None  # set before forking the pool


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, list[int]]:
    return encode_batch(texts, _worker_tokenizer)


def tokenizer_processes(path: Path) -> int:
    """Processes that tokenize: one per usable core for a large file, else just this one."""
    if path.stat().st_size < PARALLEL_MIN_BYTES or sys.platform != "linux":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_TOKENIZER_PROCESSES))


def tokenize_stream(
    documents: Iterable[Document], tokenizer: PreTrainedTokenizerBase, writer: TokenWriter,
    index: TokenizedDocuments, max_tokens: int, processes: int = 1,
) -> None:
    """Tokenize `documents` batch by batch into `writer`, recording each one in `index`.

    With `processes > 1`, batches are tokenized by a pool of forked processes (the tokenizer is
    inherited, not pickled); at most two batches per process are in flight, so memory stays
    bounded however large the file is. Output is identical to `processes=1`.
    """
    iterator = iter(documents)
    batches = iter(lambda: list(itertools.islice(iterator, TOKENIZE_BATCH_DOCUMENTS)), [])
    if processes <= 1:
        for batch in batches:
            record_batch(batch, *encode_batch([d.text for d in batch], tokenizer), writer, index, max_tokens)
        return
    global _worker_tokenizer
    _worker_tokenizer = tokenizer
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append((batch, pool.apply_async(_encode_in_worker, ([d.text for d in batch],))))
                if len(pending) >= 2 * processes:
                    done, result = pending.popleft()
                    record_batch(done, *result.get(), writer, index, max_tokens)
            while pending:
                done, result = pending.popleft()
                record_batch(done, *result.get(), writer, index, max_tokens)
    finally:
        _worker_tokenizer = None


def record_batch(
    batch: list[Document], ids: np.ndarray, lengths: list[int], writer: TokenWriter, index: TokenizedDocuments,
    max_tokens: int,
) -> None:
    start = writer.write(ids)
    longest = index.longest
    for document, length in zip(batch, lengths):
        index.starts.append(start)
        index.lengths.append(length)
        start += length
        if length > longest:
            longest, index.longest_source = length, document.source
        if length > max_tokens:
            index.too_long_count += 1
            if len(index.too_long) < MAX_REPORTED_PROBLEMS:
                index.too_long.append(f"{document.source}: {length} tokens (EOS included)")
    index.longest = longest


def reject_long_documents(index: TokenizedDocuments, max_tokens: int) -> None:
    if not index.too_long_count:
        return
    more = index.too_long_count - len(index.too_long)
    raise DataError("\n".join([
        f"{index.too_long_count} document(s) longer than context.max_tokens ({max_tokens}) and "
        "context.chunk_long_samples is false (nothing is truncated silently):",
        *index.too_long, *([f"... and {more} more"] if more else []),
        "set context.chunk_long_samples: true to split them into overlapping chunks, or raise context.max_tokens",
    ]))


def document_chunks(index: TokenizedDocuments, documents: Sequence[int], context: ContextConfig) -> np.ndarray:
    """The chunk table of `documents` (starts in the token array), in document order."""
    chunks: list[tuple[int, int, int]] = []
    for d in documents:
        start = index.starts[d]
        for chunk in chunk_document(index.lengths[d], context.max_tokens, context.overlap_tokens, context.overlap_loss):
            chunks.append((start + chunk.start, chunk.length, chunk.context_tokens))
    return np.array(chunks, dtype=np.int64).reshape(-1, 3)


def replay_chunks(
    sources: Sequence[ReplaySource], own_tokens: int, replay_ratio: float, rng: np.random.Generator,
    writer: TokenWriter,
) -> np.ndarray:
    """Copy earlier phases' chunks into `writer` until they are `replay_ratio` of the phase's
    training tokens (own + replayed); a seeded random choice, each chunk at most once."""
    if replay_ratio <= 0 or not sources:
        return np.zeros((0, 3), dtype=np.int64)
    wanted = round(own_tokens * replay_ratio / (1 - replay_ratio))
    pool = [(s, c) for s, source in enumerate(sources) for c in range(len(source.own_chunks))]
    chosen: list[tuple[int, int, int]] = []
    total = 0
    for p in rng.permutation(len(pool)):
        if total >= wanted:
            break
        s, c = pool[p]
        start, length, context = (int(x) for x in sources[s].own_chunks[c])
        chosen.append((writer.write(np.asarray(sources[s].tokens[start : start + length])), length, context))
        total += length
    if total < wanted:
        logger.warning("replay: earlier phases hold only %d training tokens, fewer than the %d asked for; "
                       "all of them are replayed", total, wanted)
    return np.array(chosen, dtype=np.int64).reshape(-1, 3)


def build_row_table(chunks: np.ndarray, context: ContextConfig) -> tuple[np.ndarray, np.ndarray]:
    """(chunks in row order, row_offsets): one chunk per row, or chunks packed best-fit decreasing."""
    if not context.sample_packing:
        return chunks, np.arange(len(chunks) + 1, dtype=np.int64)
    rows = pack_best_fit_decreasing(chunks[:, LENGTH].tolist(), context.max_tokens)
    order = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(chunks))
    row_offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return chunks[order].reshape(-1, 3), row_offsets


def split_statistics(
    tokens: np.ndarray, index: TokenizedDocuments, documents: Sequence[int], chunks: np.ndarray,
    row_chunks: np.ndarray, row_offsets: np.ndarray, replayed: np.ndarray, eos: int, max_tokens: int,
) -> dict[str, Any]:
    lengths = np.asarray(index.lengths, dtype=np.int64)[np.asarray(documents, dtype=np.int64)]
    rows = len(row_offsets) - 1
    row_tokens = int(row_chunks[:, LENGTH].sum()) if len(row_chunks) else 0
    ends = row_chunks[:, START] + row_chunks[:, LENGTH] - 1
    ends_with_eos = tokens[ends] == eos if len(row_chunks) else np.zeros(0, dtype=bool)
    eos_targets = int((ends_with_eos & last_token_is_target(row_chunks)).sum())
    return {
        "documents": len(documents),
        "document_tokens": int(lengths.sum()),
        "longest_document_tokens": int(lengths.max()) if len(lengths) else 0,
        "chunks": len(chunks),
        "rows": rows,
        "tokens": row_tokens,
        "target_tokens": target_tokens(row_chunks),
        "eos_tokens": eos_targets,
        "replay_chunks": len(replayed),
        "replay_tokens": int(replayed[:, LENGTH].sum()) if len(replayed) else 0,
        "packing_efficiency": packing_efficiency(row_tokens, rows, max_tokens),
    }


def prepare_phase(
    out: Path, phase: PhaseConfig, data: DataConfig, tokenizer: PreTrainedTokenizerBase, context: ContextConfig,
    seed: int, replay_sources: Sequence[ReplaySource],
) -> None:
    """Write one phase's cache entry into the empty directory `out` (see `cache.py`)."""
    seen: dict[bytes, str] | None = {} if data.dedup == "exact" else None
    index = TokenizedDocuments()
    scans = [RecordScan(phase.file, data.on_bad_record)]
    with open(out / "tokens.bin", "wb") as f:
        writer = TokenWriter(f)
        tokenize_stream(scan_documents(phase.file, data.text_field, scans[0], seen), tokenizer, writer,
                        index, context.max_tokens, tokenizer_processes(phase.file))
        scans[0].raise_if_bad(data.text_field)
        train_count = len(index.lengths)
        if phase.eval_file is not None:
            scans.append(RecordScan(phase.eval_file, data.on_bad_record))
            tokenize_stream(scan_documents(phase.eval_file, data.text_field, scans[1], seen), tokenizer, writer,
                            index, context.max_tokens, tokenizer_processes(phase.eval_file))
            scans[1].raise_if_bad(data.text_field)
            train_docs, eval_docs = list(range(train_count)), list(range(train_count, len(index.lengths)))
        else:
            train_docs, eval_docs = split_documents(list(range(train_count)), data.eval_ratio, seed, phase.name)
        if not context.chunk_long_samples:
            reject_long_documents(index, context.max_tokens)
        own_chunks = document_chunks(index, train_docs, context)
        rng = np.random.default_rng([seed, zlib.crc32(phase.name.encode("utf-8"))])
        own_tokens = int(own_chunks[:, LENGTH].sum()) if len(own_chunks) else 0
        replayed = replay_chunks(replay_sources, own_tokens, phase.replay_ratio, rng, writer)
    tokens = open_tokens(out / "tokens.bin")
    meta: dict[str, Any] = {"phase": phase.name, "tokens": writer.tokens, "longest_document": index.longest_source}
    splits = {"train": (train_docs, np.concatenate([own_chunks, replayed])), "eval": (eval_docs, None)}
    for name, (documents, chunks) in splits.items():
        chunks = document_chunks(index, documents, context) if chunks is None else chunks
        row_chunks, row_offsets = build_row_table(chunks, context)
        np.save(out / f"{name}_chunks.npy", row_chunks)
        np.save(out / f"{name}_row_offsets.npy", row_offsets)
        meta[name] = split_statistics(tokens, index, documents, chunks, row_chunks, row_offsets,
                                      replayed if name == "train" else np.zeros((0, 3), dtype=np.int64),
                                      tokenizer.eos_token_id, context.max_tokens)
    np.save(out / "train_own_chunks.npy", own_chunks)  # no replayed ones: what later phases replay
    rejected = [r for scan in scans for r in scan.rejected]
    write_rejected(out / "rejected.jsonl", rejected)
    meta["rejected"] = len(rejected)
    meta["duplicates"] = sum(scan.duplicates for scan in scans)
    write_meta(out, meta)
    crash_point("data_prepared", phase.name)
