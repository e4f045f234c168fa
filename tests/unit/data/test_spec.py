"""`DataSpec`: what shapes a cache entry's rows, and a key derived from all of it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from phased_cpt.config import PHASE_OVERRIDE_KEYS, ContextConfig, DataConfig, GeneralConfig, PhaseConfig, TrainingConfig
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
        dataclasses.replace(SETTINGS, general=GeneralConfig(file=files["b"])),
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
    assert (spec.general_ratio, spec.general_from) == (0.1, EntryRef(Path("/cache/general")))
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
    def settings(general: GeneralConfig) -> DataSettings:
        return dataclasses.replace(SETTINGS, general=general)

    general = general_spec(None, "general", settings(GeneralConfig(file=[files["a"], files["b"]])), "t")
    assert (general.role, general.files, general.eval_ratio) == (GENERAL, [files["a"], files["b"]], 0.1)
    with_eval = general_spec(files["held"], "general", settings(GeneralConfig(file=files["a"])), "t")
    assert (with_eval.eval_file, with_eval.eval_ratio) == (files["held"], None)
    only_eval = general_spec(files["held"], "general", SETTINGS, "t")
    assert only_eval == held_out_spec("general", files["held"], SETTINGS, "t")
    assert (only_eval.role, only_eval.files) == (GENERAL_EVAL, [files["held"]])
    assert general_spec(None, "general", SETTINGS, "t") is None


# --- where a per-phase option goes: one place, and this test fails when it is not wired ----------

REACHES_NEITHER = {
    "epochs": "passes over the phase's rows: the Trainer's num_train_epochs (plan.plan_phases, training/phase.py)",
    "description": "for the reader of the config only",
}
"""Per-phase options that change neither the phase's training settings nor its data, and why."""


def another(value: object, annotation: object) -> object:
    """A valid value other than `value` for a training setting (a `TrainingConfig` default)."""
    literals = [a for a in typing.get_args(annotation) if isinstance(a, str)]
    if literals:
        return next(a for a in literals if a != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    return 7  # a count whose default is None (max_steps)


def test_every_per_phase_option_reaches_the_phase_training_settings_or_its_data_spec(files):
    """A per-phase option has an effect through `training_for` (the training overrides, made
    from `PHASE_OVERRIDE_KEYS` alone) or `phase_spec` (what shapes the rows, and so the cache
    key); an option wired to neither fails here unless `REACHES_NEITHER` says where it goes."""
    training = TrainingConfig()
    settings = dataclasses.replace(SETTINGS, general=GeneralConfig(file=files["b"]))
    phase = PhaseConfig(name="p", file=files["a"], replay_ratio=0.1)
    changes: dict[str, object] = {
        "name": "q",
        "file": files["b"],
        "epochs": 2.0,
        "eval_file": files["held"],
        "description": "about the phase",
        "replay_ratio": 0.2,
        "general_ratio": 0.2,
        "lr_scale": 0.5,
    }
    for key in PHASE_OVERRIDE_KEYS:
        changes[key] = another(getattr(training, key), TrainingConfig.model_fields[key].annotation)
    assert set(changes) == set(PhaseConfig.model_fields), "give a new phase option a changed value here"

    def effects(changed: PhaseConfig) -> set[str]:
        found = set()
        if changed.training_for(training) != phase.training_for(training):
            found.add("training")
        spec = phase_spec(changed, settings, "t", [EntryRef(Path("/c/e"))], EntryRef(Path("/c/g")))
        if spec_key(spec, digests(files)) != spec_key(
            phase_spec(phase, settings, "t", [EntryRef(Path("/c/e"))], EntryRef(Path("/c/g"))), digests(files)
        ):
            found.add("data")
        return found

    for key, value in changes.items():
        changed = PhaseConfig.model_validate(phase.model_dump() | {key: value})
        reached = effects(changed)
        if key in REACHES_NEITHER:
            assert reached == set(), f"{key} has an effect now: take it off REACHES_NEITHER"
        elif key in PHASE_OVERRIDE_KEYS or key == "lr_scale":
            assert reached == {"training"}, key
        else:
            assert reached == {"data"}, f"{key}: not in the phase's DataSpec (spec.phase_spec) nor its training"


def accepts(model, **values) -> bool:
    try:
        model(**values)
    except ValueError:
        return False
    return True


def test_a_phase_override_has_the_training_setting_s_type_and_limits():
    for key in PHASE_OVERRIDE_KEYS:
        assert PhaseConfig.model_fields[key].default is None, key  # null: the training setting
        for value in (-1, 0, 0.5, 1, 1.5, 2**40, "cosine", "x"):  # the phase accepts what training accepts
            assert accepts(TrainingConfig, **{key: value}) == accepts(
                PhaseConfig, name="p", file=__file__, **{key: value}
            )
    with pytest.raises(ValueError, match="micro_batch_size"):
        PhaseConfig(name="p", file=__file__, micro_batch_size=0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        PhaseConfig(name="p", file=__file__, warmup_ratio=1.0)
