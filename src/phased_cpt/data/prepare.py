"""Preparing one phase's data into a cache entry: stream, tokenize, split, chunk, replay, pack.

1. The phase file (and its `eval_file`) is read as a stream (`jsonl.scan_documents`) and
   tokenized in batches (`tokenize.py`; a very long document in slices); ids go straight to
   `tokens.bin`, so memory holds one batch of text plus a few integers per document.
2. Eval documents are chosen by document, before chunking (`split.py`): no chunk of an eval
   document is ever trained on.
3. Each document becomes its chunks (`chunking.py`): itself, or overlapping windows when it is
   longer than `max_tokens`; with `chunk_long_samples: false` a long one is an error listing each.
4. Mixing (`mixing.py`): sources weighted by tokens, then replay of earlier phases' training
   chunks and the general source's training chunks, each a share of the phase's training tokens.
5. Fill-in-the-middle (`context.fim_rate`, `fim.py`) rearranges a seeded choice of the training
   chunks (own, replayed and general; never eval ones) and appends them to `tokens.bin`.
6. Rows: one chunk each, or chunks packed best-fit decreasing (`packing.py`).

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
from typing import Any

import numpy as np

from phased_cpt.config import ContextConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.cache import write_meta
from phased_cpt.data.chunking import (
    LENGTH,
    START,
    chunk_document,
    last_token_is_target,
    target_tokens,
    untrained_tokens,
)
from phased_cpt.data.encoder import Encoder
from phased_cpt.data.fim import FimSetup, fim_permute
from phased_cpt.data.jsonl import Document, RecordScan, check_eval_file, scan_documents, write_rejected
from phased_cpt.data.mixing import (
    NO_CHUNKS,
    ChunkSource,
    TokenWriter,
    chunk_tokens,
    general_chunks,
    mixed_tokens,
    replay_chunks,
    weight_sources,
)
from phased_cpt.data.packing import pack_best_fit_decreasing, packing_efficiency
from phased_cpt.data.rows import open_tokens
from phased_cpt.data.spec import GENERAL_EVAL, PHASE, DataSpec, EntryRef
from phased_cpt.data.split import split_documents
from phased_cpt.errors import DataError

logger = logging.getLogger(__name__)

TOKENIZE_BATCH_DOCUMENTS = 1000
PARALLEL_MIN_BYTES = 8 << 20
"""Files smaller than this are tokenized in this process: starting workers would cost more."""
MAX_TOKENIZER_PROCESSES = 8
MAX_REPORTED_PROBLEMS = 20


@dataclass
class TokenizedDocuments:
    """Where each document's ids are in `tokens.bin`, and the documents that are too long."""

    starts: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    longest: int = 0
    longest_source: str = ""
    too_long: list[str] = field(default_factory=list)
    too_long_count: int = 0


def encode_batch(texts: list[str], encoder: Encoder) -> tuple[np.ndarray, list[int]]:
    """The ids of `texts` (EOS appended to each) laid end to end, and each one's length."""
    ids = encoder.encode(texts)
    return (np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)), [len(x) for x in ids]


_worker_encoder: Encoder | None = None  # set before forking the pool


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, list[int]]:
    return encode_batch(texts, _worker_encoder)


def tokenizer_processes(path: Path) -> int:
    """Processes that tokenize: one per usable core for a large file, else just this one."""
    if path.stat().st_size < PARALLEL_MIN_BYTES or sys.platform != "linux":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_TOKENIZER_PROCESSES))


def tokenize_stream(
    documents: Iterable[Document],
    encoder: Encoder,
    writer: TokenWriter,
    index: TokenizedDocuments,
    max_tokens: int,
    processes: int = 1,
) -> None:
    """Tokenize `documents` batch by batch into `writer`, recording each one in `index`.

    With `processes > 1`, batches are tokenized by a pool of forked processes (the encoder is
    inherited, not pickled); at most two batches per process are in flight, so memory stays
    bounded however large the file is. Output is identical to `processes=1`.
    """
    iterator = iter(documents)
    batches = iter(lambda: list(itertools.islice(iterator, TOKENIZE_BATCH_DOCUMENTS)), [])
    if processes <= 1:
        for batch in batches:
            record_batch(batch, *encode_batch([d.text for d in batch], encoder), writer, index, max_tokens)
        return
    global _worker_encoder
    _worker_encoder = encoder
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
        _worker_encoder = None


def record_batch(
    batch: list[Document],
    ids: np.ndarray,
    lengths: list[int],
    writer: TokenWriter,
    index: TokenizedDocuments,
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
    raise DataError(
        "\n".join(
            [
                f"{index.too_long_count} document(s) longer than context.max_tokens ({max_tokens}) and "
                "context.chunk_long_samples is false (nothing is truncated silently):",
                *index.too_long,
                *([f"... and {more} more"] if more else []),
                "set context.chunk_long_samples: true to split them into overlapping chunks, or raise context.max_tokens",
            ]
        )
    )


def document_chunks(
    index: TokenizedDocuments,
    documents: Sequence[int],
    context: ContextConfig,
    window_tokens: int | None = None,
) -> np.ndarray:
    """The chunk table of `documents` (starts in the token array), in document order; chunks of
    at most `window_tokens` (default `context.max_tokens`)."""
    window = window_tokens or context.max_tokens
    chunks: list[tuple[int, int, int]] = []
    for d in documents:
        start = index.starts[d]
        for chunk in chunk_document(index.lengths[d], window, context.overlap_tokens, context.overlap_loss):
            chunks.append((start + chunk.start, chunk.length, chunk.context_tokens))
    return np.array(chunks, dtype=np.int64).reshape(-1, 3)


def fim_chunks(
    chunks: np.ndarray,
    tokens: np.ndarray,
    writer: TokenWriter,
    setup: FimSetup,
    context: ContextConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int]:
    """`chunks` with a `fim_rate` share of them rearranged (`fim.fim_permute`), their new ids
    written by `writer`; also how many were rearranged and how many FIM tokens sit where the label
    rule would make a target (`target_tokens` counts them; `RowDataset` never trains on them)."""
    out = chunks.copy()
    rearranged = sentinel_targets = 0
    bos = setup.tokenizer.bos_token_id
    for i in np.flatnonzero(rng.random(len(chunks)) < context.fim_rate):
        start, length, overlap = (int(x) for x in chunks[i])
        ids = np.asarray(tokens[start : start + length])
        lead = overlap if overlap else int(bos is not None and length > 0 and int(ids[0]) == bos)
        spm = bool(rng.random() < context.fim_spm_rate)
        permuted = fim_permute(ids, lead, overlap, setup, rng, spm)
        if permuted is None:
            continue
        out[i] = (writer.write(permuted.ids), len(permuted.ids), permuted.context_tokens)
        rearranged += 1
        # [P] sits at `lead`: a target position unless it is the chunk's first token
        sentinel_targets += 3 if lead >= untrained_tokens(permuted.context_tokens) else 2
    return out, rearranged, sentinel_targets


def check_unchanged(scan: RecordScan, expected_sha256: dict[Path, str] | None) -> None:
    expected = (expected_sha256 or {}).get(scan.path)
    if expected is not None and scan.sha256 != expected:
        raise DataError(
            f"{scan.path} changed while it was being read (is another process writing it?); nothing was cached. "
            "Run again once the file is complete."
        )


@dataclass(frozen=True)
class RowTable:
    """Chunks in row order, and where each row starts in them (`offsets[-1]`: the chunk count)."""

    chunks: np.ndarray
    offsets: np.ndarray


def build_row_table(chunks: np.ndarray, context: ContextConfig) -> RowTable:
    """One chunk per row, or chunks packed best-fit decreasing."""
    if not context.sample_packing:
        return RowTable(chunks, np.arange(len(chunks) + 1, dtype=np.int64))
    rows = pack_best_fit_decreasing(chunks[:, LENGTH].tolist(), context.max_tokens)
    order = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(chunks))
    row_offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return RowTable(chunks[order].reshape(-1, 3), row_offsets)


def split_statistics(
    tokens: np.ndarray,
    document_lengths: np.ndarray,
    chunks: np.ndarray,
    table: RowTable,
    eos: int,
    max_tokens: int,
) -> dict[str, Any]:
    """A split's counts: its documents (`document_lengths`, EOS included), chunks and rows, the
    targets and document-ending EOS targets in its rows, and how full its rows are."""
    row_chunks = table.chunks
    rows = len(table.offsets) - 1
    row_tokens = int(row_chunks[:, LENGTH].sum()) if len(row_chunks) else 0
    ends = row_chunks[:, START] + row_chunks[:, LENGTH] - 1
    ends_with_eos = tokens[ends] == eos if len(row_chunks) else np.zeros(0, dtype=bool)
    eos_targets = int((ends_with_eos & last_token_is_target(row_chunks)).sum())
    return {
        "documents": len(document_lengths),
        "document_tokens": int(document_lengths.sum()),
        "longest_document_tokens": int(document_lengths.max()) if len(document_lengths) else 0,
        "chunks": len(chunks),
        "rows": rows,
        "tokens": row_tokens,
        "target_tokens": target_tokens(row_chunks),
        "eos_tokens": eos_targets,
        "packing_efficiency": packing_efficiency(row_tokens, rows, max_tokens),
    }


def replay_statistics(replayed: np.ndarray) -> dict[str, int]:
    return {"replay_chunks": len(replayed), "replay_tokens": chunk_tokens(replayed)}


def counted(documents: Iterable[Document], phase: str) -> Iterable[Document]:
    """`documents`, drawing a progress bar of the documents read and tokenized (rank 0 only)."""
    from tqdm.auto import tqdm

    from phased_cpt.distributed import is_main_process

    return tqdm(
        documents,
        desc=f"{phase}: tokenizing",
        unit=" documents",
        leave=False,
        dynamic_ncols=True,
        disable=None if is_main_process() else True,  # None: no bar when stderr is not a terminal
        mininterval=0.5,
    )


def prepare_phase(out: Path, spec: DataSpec, encoder: Encoder, expected_sha256: dict[Path, str] | None = None) -> None:
    """Write the cache entry of `spec` into the empty directory `out` (see `cache.py`), with
    `encoder` (whose identity `spec.encoder` holds) turning text into ids.

    `expected_sha256`: the files' sha256 the entry's key was made from; a file whose bytes read
    here differ (rewritten meanwhile) is an error, so the entry never holds other data than its key.
    """
    context = spec.context
    fim = (
        encoder.fim_setup(context.max_tokens, "context.fim_rate")
        if context.fim_rate > 0 and spec.role == PHASE
        else None
    )
    seen: dict[bytes, str] | None = {} if spec.dedup == "exact" else None
    index = TokenizedDocuments()
    scans: list[RecordScan] = []
    name_seed = zlib.crc32(spec.name.encode("utf-8"))
    with open(out / "tokens.bin", "wb") as f:
        writer = TokenWriter(f)

        def tokenize_file(path: Path, held_out: bool = False) -> list[int]:
            scans.append(RecordScan(path, spec.on_bad_record))
            first = len(index.lengths)
            tokenize_stream(
                counted(scan_documents(path, spec.text_field, scans[-1], seen), spec.name),
                encoder,
                writer,
                index,
                context.max_tokens,
                tokenizer_processes(path),
            )
            check_unchanged(scans[-1], expected_sha256)
            if held_out:
                check_eval_file(scans[:-1], scans[-1])
            scans[-1].raise_if_bad(spec.text_field)
            return list(range(first, len(index.lengths)))

        sources = spec.sources
        source_docs = [[d for path in source.files for d in tokenize_file(path)] for source in sources]
        documents = [d for docs in source_docs for d in docs]
        if spec.role == GENERAL_EVAL:
            train_docs, eval_docs = [], documents
        elif spec.eval_file is not None:
            train_docs, eval_docs = documents, tokenize_file(spec.eval_file, held_out=True)
        else:
            train_docs, eval_docs = split_documents(documents, spec.eval_ratio, spec.seed, spec.name)
        if not context.chunk_long_samples:
            reject_long_documents(index, context.max_tokens)
        held_out = set(eval_docs)
        window = context.train_window_tokens() if spec.role == PHASE else context.max_tokens
        own_chunks = [
            document_chunks(index, [d for d in docs if d not in held_out], context, window) for docs in source_docs
        ]
        weighted, source_tokens = weight_sources(
            own_chunks, [s.weight for s in sources], np.random.default_rng([spec.seed, name_seed, 2])
        )
        replay_wanted, general_wanted = mixed_tokens(chunk_tokens(weighted), spec.replay_ratio, spec.general_ratio)
        replayed = replay_chunks(
            [chunk_source(e) for e in spec.replay_from],
            replay_wanted,
            np.random.default_rng([spec.seed, name_seed]),
            writer,
        )
        general = chunk_source(spec.general_from) if spec.general_from is not None else None
        mixed_in = general_chunks(general, general_wanted, np.random.default_rng([spec.seed, name_seed, 3]), writer)
    tokens = open_tokens(out / "tokens.bin")
    training_chunks = np.concatenate([weighted, replayed, mixed_in])
    rearranged = sentinel_targets = 0
    if fim is not None:
        with open(out / "tokens.bin", "ab") as f:
            training_chunks, rearranged, sentinel_targets = fim_chunks(
                training_chunks,
                tokens,
                TokenWriter(f, len(tokens)),
                fim,
                context,
                np.random.default_rng([spec.seed, name_seed, 1]),
            )
        tokens = open_tokens(out / "tokens.bin")
    meta: dict[str, Any] = {
        "phase": spec.name,
        "tokens": len(tokens),
        "longest_document": index.longest_source,
        "fim_tokens": list(fim.tokens.ids) if fim is not None else None,
    }
    lengths = np.asarray(index.lengths, dtype=np.int64)
    splits = {"train": (train_docs, training_chunks, replayed), "eval": (eval_docs, None, NO_CHUNKS)}
    for name, (split_docs, chunks, replayed_here) in splits.items():
        chunks = document_chunks(index, split_docs, context) if chunks is None else chunks
        table = build_row_table(chunks, context)
        np.save(out / f"{name}_chunks.npy", table.chunks)
        np.save(out / f"{name}_row_offsets.npy", table.offsets)
        document_lengths = lengths[np.asarray(split_docs, dtype=np.int64)]
        meta[name] = split_statistics(
            tokens, document_lengths, chunks, table, encoder.eos_token_id, context.max_tokens
        ) | replay_statistics(replayed_here)
    meta["train"] |= {
        "replay_wanted_tokens": replay_wanted,
        "fim_chunks": rearranged,
        "target_tokens": meta["train"]["target_tokens"] - sentinel_targets,
        "general_chunks": len(mixed_in),
        "general_tokens": chunk_tokens(mixed_in),
        "sources": [
            {
                "source": s.spec,
                "weight": s.weight,
                "documents": len([d for d in docs if d not in held_out]),
                "tokens": t,
            }
            for s, docs, t in zip(sources, source_docs, source_tokens)
        ],
    }
    own = np.concatenate(own_chunks) if own_chunks else NO_CHUNKS
    np.save(out / "train_own_chunks.npy", own)  # each once, no replayed or general ones: what later phases replay
    rejected = [r for scan in scans for r in scan.rejected]
    write_rejected(out / "rejected.jsonl", rejected)
    meta["rejected"] = len(rejected)
    meta["duplicates"] = sum(scan.duplicates for scan in scans)
    write_meta(out, meta)
    crash_point("data_prepared", spec.name)


def chunk_source(entry: EntryRef) -> ChunkSource:
    """The training chunks another entry offers to mix in: its own chunks, in its token array."""
    return ChunkSource(open_tokens(entry.path / "tokens.bin"), np.load(entry.path / "train_own_chunks.npy"))
