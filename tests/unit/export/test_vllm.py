"""vLLM's preflight on real saved adapters (peft `save_pretrained` of each LoRA variant): what it
refuses, with which fix, and what it passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.config import LoraConfig
from phased_cpt.errors import UserError
from phased_cpt.export.target import ExportOptions, Source
from phased_cpt.export.vllm import VllmTarget, smallest_rank_flag, vllm_problems
from phased_cpt.modeling import attach_lora, load_base_model
from tests.conftest import tiny_model_config

VARIANTS = {
    "plain": LoraConfig(r=8, alpha=16, dropout=0.0),
    "rslora": LoraConfig(r=8, alpha=16, dropout=0.0, use_rslora=True),
    "dora": LoraConfig(r=8, alpha=16, dropout=0.0, use_dora=True),
    "embeddings_full": LoraConfig(r=8, alpha=16, dropout=0.0, embeddings="full"),
    "embeddings_lora": LoraConfig(r=8, alpha=16, dropout=0.0, embeddings="lora"),
    "r128": LoraConfig(r=128, alpha=128, dropout=0.0),
}


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm-adapters")
    saved = {}
    for name, lora in VARIANTS.items():
        attach_lora(load_base_model(tiny_model_config(tiny_model_dir)), lora).save_pretrained(root / name)
        saved[name] = root / name
    return saved


def preflight(tiny_model_dir: Path, adapter: Path, max_lora_rank: int = 16) -> None:
    source = Source(model=tiny_model_config(tiny_model_dir), adapter_dir=adapter, label="phase1")
    VllmTarget(ExportOptions(max_lora_rank=max_lora_rank)).preflight(source)


@pytest.mark.parametrize("name", ["plain", "rslora"])
def test_a_plain_or_rslora_adapter_passes(tiny_model_dir, adapters, name):
    preflight(tiny_model_dir, adapters[name])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("embeddings_full", r"modules_to_save, `embeddings: full`.*export --to hf"),
        ("embeddings_lora", r"LoRA on \['embed_tokens', 'lm_head'\].*export --to hf"),
        ("dora", r"DoRA adapter.*export --to hf"),
    ],
)
def test_trained_embeddings_and_dora_are_refused_with_the_fix(tiny_model_dir, adapters, name, reason):
    with pytest.raises(UserError, match=reason):
        preflight(tiny_model_dir, adapters[name])


def test_rank_128_needs_the_flag_and_passes_with_it(tiny_model_dir, adapters):
    with pytest.raises(UserError, match=r"r=128 is above --max-lora-rank 16.*pass --max-lora-rank 128"):
        preflight(tiny_model_dir, adapters["r128"])
    preflight(tiny_model_dir, adapters["r128"], max_lora_rank=128)
    with pytest.raises(UserError, match="vLLM accepts one of"):
        preflight(tiny_model_dir, adapters["r128"], max_lora_rank=100)


def test_unsupported_modules_biases_and_dtypes_are_refused():
    base = {"r": 8, "target_modules": ["q_proj"], "bias": "none"}
    assert vllm_problems(base, ["Qwen2ForCausalLM"], 16, {"F32"}) == []
    assert (
        "no LoRA layer for ['mlp.fc1']"
        in vllm_problems({**base, "target_modules": ["q_proj", "mlp.fc1"]}, ["Qwen2ForCausalLM"], 16, {"F16"})[0]
    )
    assert "trains biases" in vllm_problems({**base, "bias": "lora_only"}, [], 16, {"F16"})[0]
    assert "['I8']" in vllm_problems(base, [], 16, {"I8", "F16"})[0]
    assert "ranks up to 512" in vllm_problems({**base, "r": 1024}, [], 16, {"F16"})[0]
    assert [smallest_rank_flag(r) for r in (1, 16, 17, 128, 300, 513)] == [1, 16, 32, 128, 320, None]


def test_a_damaged_adapter_is_one_error_line(tiny_model_dir, adapters, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot read the adapter"):
        preflight(tiny_model_dir, broken)
