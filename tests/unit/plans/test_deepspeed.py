"""DeepSpeed config resolution: zero2/zero3 (packaged), auto, a user's JSON file, offload."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

from phased_cpt.config import load_config
from phased_cpt.errors import ConfigError
from phased_cpt.plans.deepspeed import (
    AUTO_ZERO3_MAX_TOKENS,
    NAMED_CONFIGS,
    apply_offload,
    choose_zero_stage,
    named_config,
    plan_deepspeed,
)
from tests.conftest import write_jsonl

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "p1.jsonl", ["def f():\n    return 1\n"])


def config(data_file: Path, *overrides: str, path: Path | None = None):
    base = {"phases": [{"name": "p1", "file": str(data_file)}]}
    cfg, _ = load_config(path, list(overrides), base_data=base)
    return cfg


# --- auto: ZeRO-2 or ZeRO-3 ------------------------------------------------------------------


def test_auto_picks_zero3_for_long_rows_whatever_the_memory():
    name, reason = choose_zero_stage(AUTO_ZERO3_MAX_TOKENS + 1, zero2_bytes_per_gpu=1, gpu_bytes=80 * GiB)
    assert name == "zero3"
    assert "16384" in reason


def test_auto_keeps_zero2_at_exactly_16384_tokens_without_a_gpu():
    name, reason = choose_zero_stage(AUTO_ZERO3_MAX_TOKENS, None, None)
    assert name == "zero2"
    assert "not checked" in reason


def test_auto_picks_zero3_when_zero2_would_not_fit_a_gpu():
    name, reason = choose_zero_stage(8192, zero2_bytes_per_gpu=90 * GiB, gpu_bytes=80 * GiB)
    assert name == "zero3"
    assert "90.0 GiB" in reason and "80.0 GiB" in reason


def test_auto_picks_zero2_when_it_fits():
    assert choose_zero_stage(8192, zero2_bytes_per_gpu=30 * GiB, gpu_bytes=80 * GiB)[0] == "zero2"


def test_plan_auto_on_cpu_follows_max_tokens(data_file):
    short = plan_deepspeed(config(data_file, "deepspeed=auto", "context.max_tokens=8192", "context.overlap_tokens=0"))
    long = plan_deepspeed(config(data_file, "deepspeed=auto", "context.max_tokens=32768"))
    assert (short.source, short.zero_stage) == ("zero2", 2)
    assert (long.source, long.zero_stage) == ("zero3", 3)
    assert "32768" in long.reason


def test_plan_auto_with_parameter_offload_is_zero3(data_file):
    plan = plan_deepspeed(
        config(
            data_file,
            "deepspeed=auto",
            "deepspeed_offload=optimizer_and_params",
            "context.max_tokens=1024",
            "context.overlap_tokens=0",
        )
    )
    assert plan.zero_stage == 3
    assert plan.config["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_plan_none_without_deepspeed(data_file):
    assert plan_deepspeed(config(data_file)) is None


# --- the config files ------------------------------------------------------------------------


@pytest.mark.parametrize("name,stage", [("zero2", 2), ("zero3", 3)])
def test_named_configs_have_their_stage_and_no_offload(data_file, name, stage):
    plan = plan_deepspeed(config(data_file, f"deepspeed={name}"))
    assert plan.zero_stage == stage
    assert plan.config == named_config(name)
    assert plan.config["zero_optimization"]["offload_optimizer"]["device"] == "none"
    assert "optimizer" not in plan.config  # the Trainer's AdamW, as without DeepSpeed


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_every_auto_value_is_filled_by_the_trainer(name):
    """HF fills "auto" from TrainingArguments; an "auto" it does not know would reach DeepSpeed."""
    config = apply_offload(named_config(name), "optimizer")
    args = SimpleNamespace(
        world_size=2,
        per_device_train_batch_size=3,
        gradient_accumulation_steps=4,
        max_grad_norm=0.5,
        learning_rate=1e-4,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        weight_decay=0.1,
        save_on_each_node=False,
        fp16=False,
        fp16_full_eval=False,
        bf16=True,
        bf16_full_eval=False,
        get_warmup_steps=lambda steps: 0,
    )
    hf = HfTrainerDeepSpeedConfig(config)
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=64)), num_training_steps=10)
    assert "auto" not in json.dumps(hf.config)
    assert hf.config["train_batch_size"] == 2 * 3 * 4
    assert hf.config["gradient_clipping"] == 0.5
    assert hf.config["bf16"]["enabled"] is True
    assert hf.config["optimizer"]["params"]["lr"] == 1e-4


def test_user_json_file_is_used_as_is_and_resolved_against_the_config_dir(tmp_path, data_file):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_batch_size": "auto"}))
    (tmp_path / "run.yaml").write_text(f"deepspeed: ds.json\nphases: [{{name: p1, file: {data_file}}}]\n")
    cfg, _ = load_config(tmp_path / "run.yaml")
    assert cfg.deepspeed == str(tmp_path / "ds.json")
    plan = plan_deepspeed(cfg)
    assert plan.zero_stage == 1
    assert plan.config["train_batch_size"] == "auto"


# --- offload ---------------------------------------------------------------------------------


def test_offload_optimizer_moves_adam_states_and_uses_deepspeed_cpu_adam():
    base = named_config("zero3")
    offloaded = apply_offload(base, "optimizer")
    assert offloaded["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offloaded["zero_optimization"]["offload_param"]["device"] == "none"
    assert offloaded["optimizer"]["type"] == "AdamW"
    assert base["zero_optimization"]["offload_optimizer"]["device"] == "none"  # the input is untouched


def test_offload_params_also_moves_the_weights():
    offloaded = apply_offload(named_config("zero3"), "optimizer_and_params")
    assert offloaded["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_offload_none_changes_nothing():
    base = named_config("zero2")
    assert apply_offload(base, "none") == base


def test_plan_applies_the_offload_key_and_says_so(data_file):
    plan = plan_deepspeed(config(data_file, "deepspeed=zero2", "deepspeed_offload=optimizer"))
    assert plan.config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload: optimizer" in plan.reason


# --- package data ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMED_CONFIGS)
def test_repository_copies_for_older_configs_equal_the_packaged_configs(name):
    """deepspeed_configs/ at the repository root serves configs written for the older tool; it
    must say exactly what the packaged file (what `deepspeed: zero3` uses) says."""
    assert json.loads((REPO / "deepspeed_configs" / f"{name}.json").read_text()) == named_config(name)


def test_unknown_packaged_config_name_is_refused():
    with pytest.raises(ValueError, match="zero2, zero3"):
        named_config("zero4")


def test_config_rejects_unknown_deepspeed_value(data_file):
    with pytest.raises(ConfigError, match="deepspeed: 'zero4' is neither null, zero2, zero3, auto nor an existing"):
        config(data_file, "deepspeed=zero4")


def test_auto_says_which_input_was_missing(tmp_path):
    """doctor's `deepspeed: auto` line with a local config.json and no GPU blames the GPU, not an
    unknown model size (issue 19, also seen)."""
    from phased_cpt.config import load_config
    from phased_cpt.plans.deepspeed import plan_deepspeed

    model = Path(__file__).resolve().parents[2] / "fixtures" / "model_configs" / "qwen2.5-0.5b"
    cfg, _ = load_config(
        None,
        base_data={
            "model": {"name": str(model), "size": None},
            "deepspeed": "auto",
            "context": {"max_tokens": 4096, "overlap_tokens": 256},
        },
        check_files=False,
    )
    reason = plan_deepspeed(cfg, 8).reason
    assert "no GPU here" in reason and "size is unknown" not in reason
    assert "ZeRO-2 needs ~" in plan_deepspeed(cfg, 8, gpu_bytes=80 * GiB).reason
    cfg.model.name = str(tmp_path)  # no config.json there, and no model.size
    assert "the model's size is unknown" in plan_deepspeed(cfg, 8, gpu_bytes=80 * GiB).reason
