"""What shapes one cache entry's rows, as one typed value: `DataSpec`, and its cache key.

A `DataSpec` is built by one function per kind of entry, from validated config: `phase_spec`
(a phase), `general_spec` (the general source) and `held_out_spec` (documents only evaluated on).
`prepare.prepare_phase` reads nothing else, and `spec_key` is derived from every field of the spec
(files by their sha256, other entries by their key): a new field that shapes rows is in the key
without anyone remembering to add it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from phased_cpt.config import ContextConfig, DataConfig, GeneralConfig, PhaseConfig, RunConfig
from phased_cpt.config.schema import Source
from phased_cpt.data.cache import cache_key

PHASE, GENERAL, GENERAL_EVAL = "phase", "general", "general_eval"
"""What an entry is for: a phase's rows; the general source (its chunks are mixed into phases,
its held-out documents are the general eval rows; never rearranged for FIM); or evaluation
documents alone, every document held out (`evaluation.general_file` without `general.file`, and
each `evaluation.future.documents` file)."""


@dataclass(frozen=True)
class DataSettings:
    """The run-wide settings every entry of a run is prepared with."""

    data: DataConfig
    context: ContextConfig
    seed: int
    general: GeneralConfig = dataclasses.field(default_factory=GeneralConfig)
    """The general source, and the share of it phases mix in (`PhaseConfig.general_ratio_for`)."""

    @classmethod
    def of(cls, cfg: RunConfig) -> DataSettings:
        return cls(cfg.data, cfg.context, cfg.training.seed, cfg.general)


@dataclass(frozen=True)
class EntryRef:
    """Another prepared cache entry this one mixes chunks from; in a key by its own key."""

    path: Path


@dataclass(frozen=True)
class DataSpec:
    """Everything that shapes one cache entry's rows (see the module docstring)."""

    name: str
    role: str
    sources: tuple[Source, ...]
    eval_file: Path | None
    """Held-out documents; None: `eval_ratio` of the sources' documents (all of them for GENERAL_EVAL)."""
    eval_ratio: float | None
    """None when `eval_file` decides, or every document is held out."""
    text_field: str
    on_bad_record: str
    dedup: str
    context: ContextConfig
    seed: int
    encoder: str
    """The encoder's identity (`encoder.Encoder.identity`): the tokenizer's digest, or the byte estimate's rate."""
    replay_ratio: float = 0.0
    replay_from: tuple[EntryRef, ...] = ()
    general_ratio: float = 0.0
    general_from: EntryRef | None = None

    @property
    def files(self) -> list[Path]:
        """Every file the entry reads: its sources', then its eval_file."""
        found = [f for source in self.sources for f in source.files]
        return found + ([self.eval_file] if self.eval_file is not None else [])


def phase_spec(
    phase: PhaseConfig,
    settings: DataSettings,
    encoder: str,
    earlier: Sequence[EntryRef] = (),
    general: EntryRef | None = None,
) -> DataSpec:
    """A phase's entry: its sources and eval file, replay from the `earlier` phases' entries and
    general chunks from `general`'s (each only when its ratio is above 0)."""
    general_ratio = phase.general_ratio_for(settings.general) if general is not None else 0.0
    return dataclasses.replace(
        _plain(phase.name, settings, encoder),
        role=PHASE,
        sources=tuple(phase.sources),
        eval_file=phase.eval_file,
        eval_ratio=settings.data.eval_ratio if phase.eval_file is None else None,
        replay_ratio=phase.replay_ratio,
        replay_from=tuple(earlier) if phase.replay_ratio > 0 else (),
        general_ratio=general_ratio,
        general_from=general if general_ratio else None,
    )


def general_spec(eval_file: Path | None, name: str, settings: DataSettings, encoder: str) -> DataSpec | None:
    """The general source's entry (`settings.general`): its training chunks are what phases mix
    in, its eval rows the general held-out documents (`eval_file`, else data.eval_ratio of
    `general.file`). With only `eval_file`, every document of it is held out. None when there is
    neither."""
    general = settings.general
    if general.file is not None:
        return dataclasses.replace(
            _plain(name, settings, encoder),
            role=GENERAL,
            sources=(Source(str(general.file), tuple(general.files), None),),
            eval_file=eval_file,
            eval_ratio=settings.data.eval_ratio if eval_file is None else None,
        )
    if eval_file is not None:
        return held_out_spec(name, eval_file, settings, encoder)
    return None


def held_out_spec(name: str, path: Path, settings: DataSettings, encoder: str) -> DataSpec:
    """An entry of documents only evaluated on (`GENERAL_EVAL`): every document of `path` held out."""
    return dataclasses.replace(
        _plain(name, settings, encoder), role=GENERAL_EVAL, sources=(Source(str(path), (path,), None),)
    )


def _plain(name: str, settings: DataSettings, encoder: str) -> DataSpec:
    """An entry of no sources with the settings every entry takes from `data`, `context` and the seed."""
    return DataSpec(
        name=name,
        role=GENERAL_EVAL,
        sources=(),
        eval_file=None,
        eval_ratio=None,
        text_field=settings.data.text_field,
        on_bad_record=settings.data.on_bad_record,
        dedup=settings.data.dedup,
        context=settings.context,
        seed=settings.seed,
        encoder=encoder,
    )


def spec_key(spec: DataSpec, digests: Mapping[Path, str]) -> str:
    """The cache key of `spec`: every field, each file by its sha256 in `digests` (taken before
    the files are read), each other entry by its key."""
    return cache_key({f.name: key_value(getattr(spec, f.name), digests) for f in dataclasses.fields(spec)})


def key_value(value: Any, digests: Mapping[Path, str]) -> Any:
    """`value` as the key holds it (JSON-like), structurally: a new field of any of these types
    needs nothing here."""
    if isinstance(value, EntryRef):
        return value.path.name
    if isinstance(value, Path):
        return digests[value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value):
        return {f.name: key_value(getattr(value, f.name), digests) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [key_value(v, digests) for v in value]
    return value
