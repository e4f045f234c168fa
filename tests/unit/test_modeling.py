"""modeling.py: LoRA variants as PEFT builds them (rsLoRA's scale, DoRA's magnitudes, which
embedding weights train), and `trust_remote_code` pinned: a model directory's own code (its
`auto_map`) never runs unless `model.trust_remote_code: true`, even when the user types "y"."""

from __future__ import annotations

import builtins
import json
import math
import shutil
from pathlib import Path

import pytest

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.modeling import (
    attach_lora,
    embedding_module_names,
    embedding_parameter_names,
    load_base_model,
    load_tokenizer,
)
from tests.conftest import tiny_model_config


def model_with(model_dir, **lora):
    base = load_base_model(tiny_model_config(model_dir))
    return attach_lora(base, LoraConfig(r=16, alpha=32, **lora))


def scalings(model) -> set[float]:
    return {m.scaling["default"] for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)}


def test_rslora_scales_by_alpha_over_sqrt_r(tiny_model_dir):
    assert scalings(model_with(tiny_model_dir)) == {2.0}
    assert scalings(model_with(tiny_model_dir, use_rslora=True)) == {32 / math.sqrt(16)}


def test_dora_adds_a_trained_magnitude_per_layer(tiny_model_dir):
    names = [n for n, p in model_with(tiny_model_dir, use_dora=True).named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in names)
    assert not any("lora_magnitude_vector" in n for n, _ in model_with(tiny_model_dir).named_parameters())


def test_embeddings_frozen_full_or_lora(tiny_model_dir):
    assert embedding_module_names(model_with(tiny_model_dir).get_base_model()) == ("embed_tokens", "lm_head")
    assert embedding_parameter_names(model_with(tiny_model_dir)) == set()
    full = embedding_parameter_names(model_with(tiny_model_dir, embeddings="full"))
    assert full == {
        "base_model.model.model.embed_tokens.modules_to_save.default.weight",
        "base_model.model.lm_head.modules_to_save.default.weight",
    }
    lora = embedding_parameter_names(model_with(tiny_model_dir, embeddings="lora"))
    assert any("embed_tokens.lora_embedding_A" in n for n in lora) and any("lm_head.lora_B" in n for n in lora)


def test_model_settings_that_cannot_work_stop_validate_and_train_before_the_run_directory(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    """An unknown target module, or flash_attention_2 where flash-attn cannot run, is a config error
    at validate and before train creates anything (issue 19, also seen); no "check the path" hint."""
    import torch
    import yaml

    from phased_cpt.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # flash-attn cannot run without a GPU
    (tmp_path / "p.jsonl").write_text('{"training_content": "def f(): pass"}\n{"training_content": "x = 1"}\n')
    config = {
        "model": {"name": str(tiny_model_dir), "attn_implementation": "flash_attention_2"},
        "training": {"lora": {"target_modules": ["q_proj", "qkv_proj"]}},
        "phases": [{"name": "p", "file": "p.jsonl"}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    for command in ("validate", "train"):
        assert main([command, "c.yaml"]) == 2
        err = capsys.readouterr().err
        assert "model.attn_implementation: flash_attention_2 needs" in err and "a CUDA GPU" in err, err
        assert "training.lora.target_modules: ['qkv_proj'] not found in the model; its linear layers are named" in err
        assert "check the path" not in err
    assert not (tmp_path / "outputs").exists()


@pytest.fixture
def custom_model_dir(tiny_model_dir, tmp_path) -> tuple[Path, Path]:
    """The tiny model, but declared as a custom architecture whose code writes a marker file."""
    model = shutil.copytree(tiny_model_dir, tmp_path / "custom-model")
    marker = tmp_path / "RAN"
    (model / "custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((model / "config.json").read_text())
    config.update(
        model_type="phased-cpt-custom-test",
        architectures=["CustomModel"],
        auto_map={"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"},
    )
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


@pytest.fixture
def user_types_yes(monkeypatch):
    """What a user at a terminal answers when transformers asks whether to run the code."""
    asked = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "y")
    return asked


def test_the_model_directorys_code_never_runs_by_default(custom_model_dir, user_types_yes):
    model, marker = custom_model_dir
    with pytest.raises(UserError, match="model.trust_remote_code: true .*dangerous"):
        load_base_model(ModelConfig(name=str(model), dtype="float32"))
    assert not marker.exists() and user_types_yes == []  # never asked, never ran


def test_the_config_key_turns_it_on(custom_model_dir, user_types_yes):
    model, marker = custom_model_dir
    loaded = load_base_model(ModelConfig(name=str(model), dtype="float32", trust_remote_code=True))
    assert type(loaded).__name__ == "CustomModel" and marker.exists() and user_types_yes == []
    assert load_tokenizer(ModelConfig(name=str(model), trust_remote_code=True)).eos_token_id is not None


CUSTOM_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the model directory's code ran")
from transformers import Qwen2Config, Qwen2ForCausalLM


class CustomConfig(Qwen2Config):
    model_type = "phased-cpt-custom-test"


class CustomModel(Qwen2ForCausalLM):
    config_class = CustomConfig
"""
