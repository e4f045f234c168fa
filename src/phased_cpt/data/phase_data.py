"""A phase's training and eval rows, prepared once and cached: `build_run_data` for all phases.

`build_entry` looks an entry up in the cache (`cache.py`) by the key of its `spec.DataSpec` (its
files, encoder and settings); on a miss it prepares the entry (`prepare.py`), on a hit it only
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

from phased_cpt.config import (
    GENERAL_COLUMN,
    ContextConfig,
    DataConfig,
    FutureConfig,
    PhaseConfig,
    RunConfig,
)
from phased_cpt.data.cache import cached_entry, file_digest, read_meta
from phased_cpt.data.encoder import Encoder, as_encoder
from phased_cpt.data.jsonl import Rejected, check_general_content
from phased_cpt.data.prepare import prepare_phase
from phased_cpt.data.rows import RowDataset, open_tokens
from phased_cpt.data.spec import (
    DataSettings,
    DataSpec,
    EntryRef,
    general_spec,
    held_out_spec,
    phase_spec,
    spec_key,
)
from phased_cpt.data.tokenize import tokenize_documents

logger = logging.getLogger(__name__)

__all__ = [
    "GENERAL_COLUMN",
    "DataSettings",
    "EvaluatedData",
    "PhaseData",
    "Rows",
    "build_entry",
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


def build_phase_data(
    phase: PhaseConfig,
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase | Encoder,
    context: ContextConfig,
    seed: int,
    cache_dir: Path | None = None,
) -> PhaseData:
    """One phase's data on its own (no replay, no general text): `build_entry` of its `phase_spec`."""
    encoder = as_encoder(tokenizer)
    return build_entry(phase_spec(phase, DataSettings(data, context, seed), encoder.identity), encoder, cache_dir)


def build_entry(spec: DataSpec, encoder: Encoder, cache_dir: Path | None = None) -> PhaseData:
    """Read, validate, split (by document, before chunking), tokenize, chunk, mix (weights,
    replay, general chunks), rearrange (FIM) and pack the data of `spec`, or load it from
    `cache_dir`. Without `cache_dir`, a temporary directory holds it for as long as the returned
    object lives."""
    temporary = None
    if cache_dir is None:
        temporary = tempfile.mkdtemp(prefix="phased-cpt-data-")
        cache_dir = Path(temporary)
    digests = {path: file_digest(path) for path in spec.files}
    started = time.perf_counter()
    entry, hit = cached_entry(
        cache_dir, spec_key(spec, digests), lambda out: prepare_phase(out, spec, encoder, digests)
    )
    if hit:
        logger.info("%s: reusing prepared data from the cache (%s)", spec.name, entry)
    elif temporary is None:  # a temporary directory is no cache: nothing to say where
        logger.info(
            "%s: data prepared in %.1f s (read, tokenized, chunked, packed; cached in %s)",
            spec.name,
            time.perf_counter() - started,
            entry,
        )
    phase_data = load_phase_data(entry, spec.name, spec.context.sample_packing, hit)
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


@dataclass(frozen=True)
class EvaluatedData:
    """The run's documents only evaluated on, besides its phases' and the general source's own
    held-out ones: the general eval file and the future document files."""

    general_eval_file: Path | None = None
    future: FutureConfig | None = None

    @classmethod
    def of(cls, cfg: RunConfig) -> EvaluatedData:
        return cls(cfg.evaluation.general_file, cfg.evaluation.future)


def build_run_data(
    phases: Sequence[PhaseConfig],
    settings: DataSettings,
    tokenizer: PreTrainedTokenizerBase | Encoder,
    cache_dir: Path | None = None,
    evaluated: EvaluatedData = EvaluatedData(),
) -> dict[str, PhaseData]:
    """Every phase's data, in order (a phase replays from the phases before it), and after them,
    under `GENERAL_COLUMN`, the general source when there is one (`spec.general_spec`), then each
    future document file under its column name, every document held out (never trained on)."""
    encoder = as_encoder(tokenizer)
    spec = general_spec(evaluated.general_eval_file, GENERAL_COLUMN, settings, encoder.identity)
    check_general_content(
        [(f, file_digest(f)) for phase in phases for f in phase.files],
        [(f, file_digest(f)) for f in (spec.files if spec is not None else [])],
    )
    general_entry = build_entry(spec, encoder, cache_dir) if spec is not None else None
    general_ref = EntryRef(general_entry.entry) if general_entry is not None else None
    built: dict[str, PhaseData] = {}
    for phase in phases:
        earlier = [EntryRef(p.entry) for p in built.values()]
        spec = phase_spec(phase, settings, encoder.identity, earlier, general_ref)
        built[phase.name] = build_entry(spec, encoder, cache_dir)
    if general_entry is not None:
        built[GENERAL_COLUMN] = general_entry
    future = evaluated.future.document_columns() if evaluated.future is not None else {}
    for column, path in future.items():
        built[column] = build_entry(held_out_spec(column, path, settings, encoder.identity), encoder, cache_dir)
    return built


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
