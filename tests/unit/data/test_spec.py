"""`DataSpec`: what shapes a cache entry's rows, and a key derived from all of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phased_cpt.config import ContextConfig, DataConfig, GeneralConfig, PhaseConfig
from phased_cpt.config.schema import Source
from phased_cpt.data.spec import (
    GENERAL,
    GENERAL_EVAL,
    PHASE,
    DataSettings,
    DataSpec,
    EntryRef,
    general_spec,
    held_out_spec,
    phase_spec,
    spec_key,
)
from tests.conftest import write_jsonl

SETTINGS = DataSettings(DataConfig(eval_ratio=0.1), ContextConfig(max_tokens=64, overlap_tokens=8), 3)


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {name: write_jsonl(tmp_path / f"{name}.jsonl", [name]) for name in ("a", "b", "held")}


def digests(files: dict[str, Path]) -> dict[Path, str]:
    return {path: f"sha256-of-{name}" for name, path in files.items()}


def base(files) -> DataSpec:
    return phase_spec(
        PhaseConfig(name="p", file=files["a"], replay_ratio=0.1, general_ratio=0.1),
        SETTINGS,
        "tokenizer-1",
        [EntryRef(Path("/cache/earlier"))],
        EntryRef(Path("/cache/general")),
    )


def alternatives(files) -> dict[str, object]:
    """A different value for every field of `DataSpec`: a field added there must get one here."""
    return {
        "name": "q",
        "role": GENERAL,
        "sources": (Source(str(files["a"]), (files["a"],), 2.0),),
        "eval_file": files["held"],
        "eval_ratio": 0.2,
        "text_field": "text",
        "on_bad_record": "skip",
        "dedup": "exact",
        "context": ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=True),
        "seed": 4,
        "encoder": "tokenizer-2",
        "replay_ratio": 0.2,
        "replay_from": (EntryRef(Path("/cache/other")),),
        "general_ratio": 0.2,
        "general_from": EntryRef(Path("/cache/other-general")),
    }


def test_every_field_of_a_data_spec_is_in_its_cache_key(files):
    spec = base(files)
    changed = alternatives(files)
    assert set(changed) == {f.name for f in dataclasses.fields(DataSpec)}, "give a new DataSpec field a value here"
    keys = {spec_key(spec, digests(files))}
    for name, value in changed.items():
        assert getattr(spec, name) != value, name
        keys.add(spec_key(dataclasses.replace(spec, **{name: value}), digests(files)))
    assert len(keys) == len(changed) + 1  # each field, changed alone, gives a key of its own


def test_every_context_setting_and_every_file_byte_is_in_the_key(files):
    spec = base(files)
    key = spec_key(spec, digests(files))
    for name, value in SETTINGS.context.model_dump().items():
        other = (not value) if isinstance(value, bool) else value + 1 if isinstance(value, int) else value / 2 + 0.01
        context = SETTINGS.context.model_copy(update={name: other})
        assert spec_key(dataclasses.replace(spec, context=context), digests(files)) != key, name
    rewritten = digests(files) | {files["a"]: "another sha256"}
    assert spec_key(spec, rewritten) != key
    # entries are keyed by what they hold, not where: the same bytes elsewhere, the same key
    moved = dataclasses.replace(spec, replay_from=(EntryRef(Path("/elsewhere/earlier")),))
    assert spec_key(moved, digests(files)) == key


def test_a_phase_mixes_in_only_what_its_ratios_ask_for(files):
    spec = phase_spec(
        PhaseConfig(name="p", file=files["a"], eval_file=files["held"]),
        SETTINGS,
        "t",
        [EntryRef(Path("/c/e"))],
        EntryRef(Path("/c/g")),
    )
    assert (spec.role, spec.replay_from, spec.general_from, spec.general_ratio) == (PHASE, (), None, 0.0)
    assert spec.eval_ratio is None and spec.files == [files["a"], files["held"]]  # the eval file decides


def test_the_general_source_and_held_out_documents_are_specs_of_their_own(files):
    general = general_spec(GeneralConfig(file=[files["a"], files["b"]]), None, "general", SETTINGS, "t")
    assert (general.role, general.files, general.eval_ratio) == (GENERAL, [files["a"], files["b"]], 0.1)
    with_eval = general_spec(GeneralConfig(file=files["a"]), files["held"], "general", SETTINGS, "t")
    assert (with_eval.eval_file, with_eval.eval_ratio) == (files["held"], None)
    only_eval = general_spec(GeneralConfig(), files["held"], "general", SETTINGS, "t")
    assert only_eval == held_out_spec("general", files["held"], SETTINGS, "t")
    assert (only_eval.role, only_eval.files) == (GENERAL_EVAL, [files["held"]])
    assert general_spec(GeneralConfig(), None, "general", SETTINGS, "t") is None
