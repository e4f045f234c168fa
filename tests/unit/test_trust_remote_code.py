"""`trust_remote_code` is pinned: the Python code a model directory ships (its `auto_map`) never
runs unless `model.trust_remote_code: true`, even when transformers would ask on a terminal and
the user typed "y" (issue 12 item 20)."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import pytest

from phased_cpt.config import ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.modeling import load_base_model, load_tokenizer

CUSTOM_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the model directory's code ran")
from transformers import Qwen2Config, Qwen2ForCausalLM


class CustomConfig(Qwen2Config):
    model_type = "phased-cpt-custom-test"


class CustomModel(Qwen2ForCausalLM):
    config_class = CustomConfig
"""


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
