"""A phase's training and eval rows, prepared once and cached: `build_run_data` for all phases.

`build_phase_data` looks the phase up in the cache (`cache.py`) by a key over its files,
tokenizer and settings; on a miss it prepares the entry (`prepare.py`), on a hit it only
memory-maps it (and logs that it did). The returned `PhaseData` reads rows lazily from disk.
The key holds the files' sha256 taken before reading; the entry is committed only if the bytes
then read have the same sha256 (a file rewritten meanwhile is an error, never a stale entry).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import GENERAL_COLUMN, ContextConfig, DataConfig, FutureConfig, GeneralConfig, PhaseConfig
from phased_cpt.data.cache import cache_key, cached_entry, file_digest, read_meta, tokenizer_digest
from phased_cpt.data.jsonl import Rejected, check_general_content
from phased_cpt.data.mixing import ChunkSource
from phased_cpt.data.prepare import GENERAL, GENERAL_EVAL, PHASE, prepare_phase
from phased_cpt.data.rows import RowDataset, open_tokens
from phased_cpt.data.tokenize import tokenize_documents

logger = logging.getLogger(__name__)

__all__ = [
    "GENERAL_COLUMN",
    "PhaseData",
    "Rows",
    "build_phase_data",
    "build_run_data",
    "save_rejected",
    "tokenize_documents",
]


class Stat:
    """One entry of `Rows.stats`, read as an attribute: `rows.documents`."""

    def __init__(self, doc: str = "") -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, rows: Rows, owner: type | None = None) -> int:
        return rows.stats[self.key]


@dataclass
class Rows:
    """Training rows of a set of documents, with their statistics (see `prepare.split_statistics`)."""

    dataset: RowDataset
    """Rows with `input_ids`, `labels` (-100 where a token is not a target) and, packed,
    `position_ids`."""
    stats: dict[str, Any]

    documents = Stat()
    document_tokens = Stat("Tokens of all documents, EOS included, before chunking (replay excluded).")
    target_tokens = Stat("Labels that are not -100: each a training target once per epoch (replay included).")
    longest_document_tokens = Stat()

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class PhaseData:
    name: str
    train: Rows
    eval: Rows | None
    """Held-out documents (phase `eval_file`, or `data.eval_ratio` of the phase file); None if none."""
    entry: Path
    """The cache entry the rows are read from."""
    meta: dict[str, Any]
    cache_hit: bool
    own_chunks: np.ndarray
    """This phase's own training chunks (no replay, no general): what later phases replay from;
    the general source's are what phases mix in."""

    @property
    def rows(self) -> int:
        return len(self.train)

    @property
    def rejected_file(self) -> Path:
        return self.entry / "rejected.jsonl"

    def rejected(self) -> list[Rejected]:
        """The lines left out (bad lines under `skip`, and duplicates), from the cache entry."""
        with open(self.rejected_file, encoding="utf-8") as f:
            return [Rejected(**json.loads(line)) for line in f]


def phase_input_digests(phase: PhaseConfig) -> dict[Path, str]:
    """sha256 of the phase's files, taken before they are read for the cache entry."""
    return {path: file_digest(path) for path in phase.files}


def phase_cache_key(
    phase: PhaseConfig,
    data: DataConfig,
    tokenizer_id: str,
    context: ContextConfig,
    seed: int,
    earlier: Sequence[PhaseData],
    digests: dict[Path, str],
    general: PhaseData | None = None,
    role: str = PHASE,
) -> str:
    settings: dict[str, Any] = {
        "phase": phase.name,
        "role": role,
        "sources": [{"files": [digests[f] for f in s.files], "weight": s.weight} for s in phase.sources],
        "eval_file": digests[phase.eval_file] if phase.eval_file is not None else None,
        "eval_ratio": data.eval_ratio if phase.eval_file is None else None,
        "tokenizer": tokenizer_id,
        "text_field": data.text_field,
        "on_bad_record": data.on_bad_record,
        "dedup": data.dedup,
        "context": context.model_dump(mode="json"),
        "seed": seed,
        "replay_ratio": phase.replay_ratio,
        "replay_from": [p.entry.name for p in earlier] if phase.replay_ratio > 0 else [],
        "general_ratio": phase.general_ratio or 0.0,
        "general_from": general.entry.name if general is not None and phase.general_ratio else None,
    }
    return cache_key(settings)


def build_phase_data(
    phase: PhaseConfig,
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    context: ContextConfig,
    seed: int,
    cache_dir: Path | None = None,
    earlier: Sequence[PhaseData] = (),
    tokenizer_id: str | None = None,
    general: PhaseData | None = None,
    role: str = PHASE,
    may_build: bool = True,
) -> PhaseData:
    """Read, validate, split (by document, before chunking), tokenize, chunk, mix (weights,
    replay from `earlier`, general chunks from `general`), rearrange (FIM) and pack one phase's
    data, or load it from `cache_dir`. Without `cache_dir`, a temporary directory holds it for as
    long as the returned object lives. `role`: see `prepare.PHASE`. `may_build=False`: only load,
    waiting for the process that prepares `cache_dir` (see `cache.cached_entry`)."""
    temporary = None
    if cache_dir is None:
        temporary = tempfile.mkdtemp(prefix="phased-cpt-data-")
        cache_dir = Path(temporary)
    tokenizer_id = tokenizer_id or tokenizer_digest(tokenizer)
    digests = phase_input_digests(phase)
    key = phase_cache_key(phase, data, tokenizer_id, context, seed, earlier, digests, general, role)
    sources = [ChunkSource(p.train.dataset.tokens, p.own_chunks) for p in earlier]
    general_source = ChunkSource(general.train.dataset.tokens, general.own_chunks) if general is not None else None
    started = time.perf_counter()
    entry, hit = cached_entry(
        cache_dir,
        key,
        lambda out: prepare_phase(out, phase, data, tokenizer, context, seed, sources, general_source, role, digests),
        may_build,
    )
    if hit:
        logger.info("%s: reusing prepared data from the cache (%s)", phase.name, entry)
    else:
        logger.info(
            "%s: data prepared in %.1f s (read, tokenized, chunked, packed; cached in %s)",
            phase.name,
            time.perf_counter() - started,
            entry,
        )
    phase_data = load_phase_data(entry, phase.name, context.sample_packing, hit)
    if temporary is not None:
        weakref.finalize(phase_data, shutil.rmtree, temporary, True)
    return phase_data


def load_phase_data(entry: Path, name: str, packed: bool, cache_hit: bool) -> PhaseData:
    meta = read_meta(entry)
    tokens = open_tokens(entry / "tokens.bin")
    never_targets = tuple(meta.get("fim_tokens") or ())

    def rows(split: str) -> Rows:
        chunks = np.load(entry / f"{split}_chunks.npy", mmap_mode="r")
        offsets = np.load(entry / f"{split}_row_offsets.npy")
        return Rows(RowDataset(tokens, np.asarray(chunks), offsets, packed, never_targets), meta[split])

    eval_rows = rows("eval") if meta["eval"]["documents"] else None  # a general-eval entry has no train rows
    return PhaseData(name, rows("train"), eval_rows, entry, meta, cache_hit, np.load(entry / "train_own_chunks.npy"))


def build_run_data(
    phases: Sequence[PhaseConfig],
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    context: ContextConfig,
    seed: int,
    cache_dir: Path | None = None,
    general: GeneralConfig | None = None,
    general_eval_file: Path | None = None,
    may_build: bool = True,
    future: FutureConfig | None = None,
) -> dict[str, PhaseData]:
    """Every phase's data, in order (a phase replays from the phases before it), and after them,
    under `GENERAL_COLUMN`, the general source when there is one (`general_data`), then each
    future document file under its column name, every document held out (never trained on)."""
    general_files = (general.files if general else []) + ([general_eval_file] if general_eval_file else [])
    check_general_content(
        [(f, file_digest(f)) for phase in phases for f in phase.files], [(f, file_digest(f)) for f in general_files]
    )
    tokenizer_id = tokenizer_digest(tokenizer)
    general_entry = general_data(
        general or GeneralConfig(),
        general_eval_file,
        data,
        tokenizer,
        context,
        seed,
        cache_dir,
        tokenizer_id,
        may_build,
    )
    built: dict[str, PhaseData] = {}
    for phase in phases:
        built[phase.name] = build_phase_data(
            phase,
            data,
            tokenizer,
            context,
            seed,
            cache_dir,
            list(built.values()),
            tokenizer_id,
            general_entry,
            may_build=may_build,
        )
    if general_entry is not None:
        built[GENERAL_COLUMN] = general_entry
    for column, path in (future.document_columns() if future is not None else {}).items():
        held_out = PhaseConfig.model_construct(
            name=column, file=path, eval_file=None, replay_ratio=0.0, general_ratio=0.0
        )
        built[column] = build_phase_data(
            held_out,
            data,
            tokenizer,
            context,
            seed,
            cache_dir,
            tokenizer_id=tokenizer_id,
            role=GENERAL_EVAL,
            may_build=may_build,
        )
    return built


def general_data(
    general: GeneralConfig,
    eval_file: Path | None,
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    context: ContextConfig,
    seed: int,
    cache_dir: Path | None,
    tokenizer_id: str,
    may_build: bool = True,
) -> PhaseData | None:
    """The general source as a cache entry: its training chunks are what phases mix in, its eval
    rows the general held-out documents (`eval_file`, else data.eval_ratio of `general.file`).
    With only `eval_file`, every document of it is held out. None when there is neither."""
    if general.file is not None:
        source, held_out, role = general.file, eval_file, GENERAL
    elif eval_file is not None:
        source, held_out, role = eval_file, None, GENERAL_EVAL
    else:
        return None
    phase = PhaseConfig.model_construct(
        name=GENERAL_COLUMN, file=source, eval_file=held_out, replay_ratio=0.0, general_ratio=0.0
    )
    return build_phase_data(
        phase, data, tokenizer, context, seed, cache_dir, tokenizer_id=tokenizer_id, role=role, may_build=may_build
    )


def save_rejected(phase_data: dict[str, PhaseData], rejected_dir: Path) -> None:
    """Copy each phase's rejected lines to `<rejected_dir>/<phase>.jsonl` (phases with any)."""
    for name, data in phase_data.items():
        if data.meta["rejected"]:
            rejected_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data.rejected_file, rejected_dir / f"{name}.jsonl")
            logger.warning(
                "%s: %d line(s) left out (%d duplicate(s)); see %s",
                name,
                data.meta["rejected"],
                data.meta["duplicates"],
                rejected_dir / f"{name}.jsonl",
            )
