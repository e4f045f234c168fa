"""The older tool's config, translated so that training does what the older code did: every key of
its layout accounted for, each change of meaning noted with the old and the new meaning."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from phased_cpt.cli import main
from phased_cpt.config import load_config
from phased_cpt.config.legacy import LEGACY_KEYS, OLDER_ZERO3, TRANSLATED, translate_legacy_config
from phased_cpt.errors import ConfigError
from tests.conftest import write_jsonl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# The older tool's published config.yaml: every key and value (its comments left out).
OLDER = {
    "wandb": {"api_key": "", "project": "phased-cpt-finetuning", "entity": "", "enabled": True},
    "model": {"name": "Kwaipilot/KAT-Dev", "size": "32B", "type": "instruct"},
    "training": {
        "lora": {
            "r": 128,
            "alpha": 256,
            "dropout": 0.05,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        },
        "micro_batch_size": 1,
        "gradient_accumulation_steps": 6,
        "eval_batch_size": 1,
        "learning_rate": 0.0001,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "weight_decay": 0.1,
        "max_grad_norm": 1.0,
        "bf16": True,
        "fp16": False,
        "tf32": True,
        "logging_steps": 10,
        "save_steps": 50,
        "save_total_limit": 3,
        "eval_steps": 50,
        "gradient_checkpointing": True,
        "sample_packing": True,
    },
    "phased_training": {
        "phases": [
            {
                "name": "Foundation",
                "dataset_file": "phase1_foundation.jsonl",
                "epochs": 3,
                "description": "Core codebase understanding",
            },
            {
                "name": "Evolution",
                "dataset_file": "phase2_evolution.jsonl",
                "epochs": 2,
                "description": "Code evolution patterns",
            },
            {
                "name": "PR Mastery",
                "dataset_file": "phase3_pr_mastery.jsonl",
                "epochs": 2,
                "description": "Pull request and review patterns",
            },
        ]
    },
    "dataset": {
        "output_dir": "./dataset",
        "train_split": 0.95,
        "val_split": 0.05,
        "random_seed": 42,
        "max_tokens": 32768,
        "overlap_tokens": 2048,
        "chunk_long_samples": True,
    },
}


def leaf_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            keys |= leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def get(data: dict, path: str):
    for key in path.split("."):
        data = data[key]
    return data


def translated(old: dict = OLDER, config_dir: Path | None = None) -> tuple[dict, str]:
    new, notes = translate_legacy_config(copy.deepcopy(old), config_dir)
    return new, "\n".join(notes)


# key of the older layout -> (path in the new layout or None when dropped, expected value, a fragment of its note)
EXPECTED = {
    "wandb.api_key": ("wandb.api_key", None, 'wandb.api_key: "" (not set) -> null'),
    "wandb.project": ("wandb.project", "phased-cpt-finetuning", None),
    "wandb.entity": ("wandb.entity", None, "W&B uses your default entity"),
    "wandb.enabled": ("wandb.enabled", True, None),
    "model.name": ("model.name", "Kwaipilot/KAT-Dev", None),
    "model.size": ("model.size", "32B", None),
    "model.type": (None, None, "model.type ('instruct') dropped: informational"),
    "training.lora.r": ("training.lora.r", 128, None),
    "training.lora.alpha": ("training.lora.alpha", 256, None),
    "training.lora.dropout": ("training.lora.dropout", 0.05, None),
    "training.lora.target_modules": ("training.lora.target_modules", OLDER["training"]["lora"]["target_modules"], None),
    "training.micro_batch_size": ("training.micro_batch_size", 1, None),
    "training.gradient_accumulation_steps": ("training.gradient_accumulation_steps", 6, None),
    "training.eval_batch_size": ("evaluation.batch_size", 1, "training.eval_batch_size -> evaluation.batch_size"),
    "training.learning_rate": ("training.learning_rate", 0.0001, None),
    "training.lr_scheduler": ("training.lr_scheduler", "cosine", None),
    "training.warmup_ratio": ("training.warmup_ratio", 0.03, None),
    "training.weight_decay": ("training.weight_decay", 0.1, None),
    "training.max_grad_norm": ("training.max_grad_norm", 1.0, None),
    "training.bf16": ("model.dtype", "bfloat16", "training.bf16: true (bf16 mixed precision) -> model.dtype: bfloat16"),
    "training.fp16": (None, None, "training.fp16: false: nothing to translate (float16 was off, and stays off)"),
    "training.tf32": (None, None, "training.tf32: true dropped: phased-cpt enables TF32"),
    "training.logging_steps": ("training.logging_steps", 10, None),
    "training.save_steps": ("training.save_steps", 50, None),
    "training.save_total_limit": ("training.save_total_limit", 3, None),
    "training.eval_steps": ("evaluation.eval_steps", 50, "training.eval_steps -> evaluation.eval_steps"),
    "training.gradient_checkpointing": ("training.gradient_checkpointing", True, None),
    "training.sample_packing": ("context.sample_packing", False, "the older tool read this key but never packed"),
    "phased_training.phases": ("phases", None, "phased_training.phases[].dataset_file -> phases[].file"),
    "dataset.output_dir": (None, None, "under dataset.output_dir (./dataset)"),
    "dataset.train_split": (None, None, "dataset.train_split (0.95) dropped"),
    "dataset.val_split": ("data.eval_ratio", 0.05, "dataset.val_split -> data.eval_ratio"),
    "dataset.random_seed": ("training.seed", 42, "dataset.random_seed -> training.seed"),
    "dataset.max_tokens": ("context.max_tokens", 32768, "dataset.max_tokens -> context.max_tokens"),
    "dataset.overlap_tokens": ("context.overlap_tokens", 2048, "dataset.overlap_tokens -> context.overlap_tokens"),
    "dataset.chunk_long_samples": ("context.chunk_long_samples", True, "dataset.chunk_long_samples -> context."),
}


def test_every_key_of_the_older_layout_is_accounted_for():
    """A key added to the older layout without a place in the translation fails here."""
    assert set(LEGACY_KEYS) == set(EXPECTED) == leaf_keys(OLDER)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_each_older_key(key):
    new, notes = translated()
    path, value, note = EXPECTED[key]
    if path is not None and value is not None or key in ("wandb.api_key", "wandb.entity"):
        assert get(new, path) == value
    if note is not None:
        assert note in notes
    if path is None:  # dropped: no trace of it in the new layout
        section, name = key.split(".", 1)
        assert name not in (new.get(section) or {})


def test_new_layout_sections_next_to_older_ones_are_kept_for_validation():
    new, _ = translated(copy.deepcopy(OLDER) | {"tensorboard": {"enabled": False}, "output": {"dir": "runs"}})
    assert new["tensorboard"] == {"enabled": False} and new["output"] == {"dir": "runs"}


def test_the_translation_validates_and_keeps_what_the_older_code_did(tmp_path):
    for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery"):
        write_jsonl(tmp_path / "dataset" / f"{name}.jsonl", ["def f():\n    return 1\n"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(OLDER))
    cfg, warnings = load_config(config)
    assert warnings[0] == TRANSLATED
    assert cfg.deepspeed == "zero3"  # hard-coded in the older code, not in its config.yaml
    assert cfg.context.overlap_loss is True  # labels = input_ids on every chunk, overlap included
    assert cfg.context.sample_packing is False  # its sample_packing never packed
    assert [p.name for p in cfg.phases] == ["phase1_foundation", "phase2_evolution", "phase3_pr_mastery"]
    assert cfg.phases[2].file == (tmp_path / "dataset" / "phase3_pr_mastery.jsonl").resolve()
    assert [p.epochs for p in cfg.phases] == [3, 2, 2]
    assert cfg.phases[0].description == "Core codebase understanding"
    assert (cfg.model.dtype, cfg.data.eval_ratio, cfg.training.seed) == ("bfloat16", 0.05, 42)
    assert (cfg.evaluation.eval_steps, cfg.evaluation.batch_size) == (50, 1)
    assert cfg.wandb.api_key is None and cfg.wandb.entity is None


def test_the_older_zero3_json_next_to_the_config_is_used_as_it_is(tmp_path):
    (tmp_path / OLDER_ZERO3).parent.mkdir()
    (tmp_path / OLDER_ZERO3).write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    new, notes = translated(config_dir=tmp_path)
    assert new["deepspeed"] == str(OLDER_ZERO3)
    assert "always trained with this file" in notes
    new, notes = translated(config_dir=tmp_path / "elsewhere")
    assert new["deepspeed"] == "zero3" and "the packaged zero3 is used" in notes


def test_the_packing_note_says_what_packing_would_change_and_is_absent_when_it_was_off():
    _, notes = translated()
    assert "Packing works in phased-cpt: context.sample_packing: true" in notes
    assert "optimizer steps" in notes
    old = copy.deepcopy(OLDER)
    old["training"]["sample_packing"] = False
    new, notes = translated(old)
    assert new["context"]["sample_packing"] is False and "never packed" not in notes


def test_precision_notes_never_read_as_if_fp16_became_bf16():
    _, notes = translated()
    assert "training.fp16 -> model.dtype" not in notes
    fp16_note = next(line for line in notes.splitlines() if line.startswith("training.fp16"))
    assert "bfloat16" not in fp16_note
    old = copy.deepcopy(OLDER)
    old["training"].update(bf16=False, fp16=True)
    new, notes = translated(old)
    assert new["model"]["dtype"] == "float16"
    assert "training.fp16: true (fp16 mixed precision) -> model.dtype: float16" in notes
    old["training"].update(bf16=False, fp16=False)
    new, notes = translated(old)
    assert "dtype" not in new.get("model", {}) and "(the older tool trained in float32 there)" in notes


def test_bf16_and_fp16_both_true_is_an_error():
    old = copy.deepcopy(OLDER)
    old["training"].update(bf16=True, fp16=True)
    with pytest.raises(ConfigError, match="training.bf16 and training.fp16 are both true"):
        translated(old)


def test_an_unknown_key_of_an_older_only_section_is_an_error_with_a_suggestion():
    old = copy.deepcopy(OLDER)
    old["dataset"]["overlap_token"] = 10
    old["phased_training"]["zero_stage"] = 3
    with pytest.raises(ConfigError) as err:
        translated(old)
    problems = "\n".join(err.value.problems)
    assert "dataset.overlap_token: not a key of the older tool's layout (did you mean 'overlap_tokens'?)" in problems
    assert "phased_training.zero_stage: not a key of the older tool's layout" in problems


def test_splits_that_do_not_add_up_say_what_is_trained():
    old = copy.deepcopy(OLDER)
    old["dataset"].update(train_split=0.8, val_split=0.05)
    _, notes = translated(old)
    assert "(0.95 of them, not 0.8" in notes


def test_print_translated_prints_the_translation_before_missing_data_files(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(OLDER))
    assert main(["validate", str(config), "--print-translated"]) == 2
    captured = capsys.readouterr()
    printed = yaml.safe_load(captured.out)  # the notes are comments: the output is a config as it is
    assert printed["deepspeed"] == "zero3" and printed["context"]["overlap_loss"] is True
    assert printed["context"]["sample_packing"] is False
    for fragment in (
        "# note: deepspeed: zero3",
        "# note: context.overlap_loss: true",
        "# note: training.sample_packing: true -> context.sample_packing: false",
    ):
        assert fragment in captured.out
    assert "phase1_foundation.jsonl' does not exist" in captured.err
