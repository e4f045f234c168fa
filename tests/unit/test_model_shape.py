"""The model's shape and what an adapter trains on it (`model_shape.py`): `adapter_parameters`
against peft's count on real models for every LoRA variant, the rule that a new `LoraConfig`
field is counted by the estimate or listed as changing no memory, the parameter counts `doctor`
uses, and `model.size` when there is no config.json."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.model_shape import (
    LORA_FIELDS_COUNTED,
    LORA_FIELDS_WITHOUT_MEMORY,
    adapter_parameters,
    model_shape,
    parameters_from_size,
    shape_from_config,
)
from tests.calibration import tiny_qwen2


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize(
    "lora",
    [
        {},
        {"dora": True},
        {"embeddings": "full"},
        {"embeddings": "full", "dora": True},
        {"embeddings": "lora"},
        {"embeddings": "lora", "dora": True},
        {"targets": ["q_proj", "down_proj"], "r": 4},
    ],
)
def test_adapter_parameters_are_what_peft_trains(lora, tied):
    """`adapter_parameters`, the one count of trained parameters the estimate, `doctor`'s disk
    check and DeepSpeed's terms use, against peft's on a real model for every LoRA variant."""
    model, shape, training = tiny_qwen2(tied=tied, **lora)
    trained = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    counted = adapter_parameters(shape, training.lora)
    assert counted.total == sum(trained.values())
    assert counted.magnitudes == sum(n for name, n in trained.items() if "magnitude" in name)
    assert counted.embeddings == sum(n for name, n in trained.items() if "modules_to_save" in name)


def test_every_lora_field_is_counted_or_listed_as_changing_no_memory():
    """A new `LoraConfig` field (a LoRA variant) must be counted by the estimate
    (`adapter_parameters`, the activations) or listed as changing no tensor's size."""
    from phased_cpt.config import LoraConfig

    assert set(LORA_FIELDS_COUNTED).isdisjoint(LORA_FIELDS_WITHOUT_MEMORY)
    assert set(LoraConfig.model_fields) == set(LORA_FIELDS_COUNTED) | set(LORA_FIELDS_WITHOUT_MEMORY)


# Qwen2.5-0.5B's config.json (the fields the estimate reads).
QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}


# --- the shape and parameter counts ----------------------------------------------------------


def test_qwen25_05b_parameters_by_hand():
    shape = shape_from_config(QWEN25_05B)
    assert shape.head_dim == 64
    # per layer: q 896*896 + k,v 896*128 each + o 896*896 + 3 MLP 896*4864 + 2 norms 896
    per_layer = 2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864 + 2 * 896
    assert per_layer == 14_911_232
    # + tied embedding 151936*896 + final norm; the real model adds 27,648 q/k/v biases (494,032,768)
    assert shape.parameters == 24 * per_layer + 151936 * 896 + 896 == 494_005_120


def test_qwen25_05b_lora_parameters_match_peft():
    # PEFT reports 4,399,104 trainable parameters for r=8 on all seven projections of Qwen2.5-0.5B.
    shape = shape_from_config(QWEN25_05B)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert adapter_parameters(shape, LoraConfig(r=8, target_modules=targets)).total == 4_399_104


def test_shape_counts_equal_the_real_tiny_llama(tiny_llama_bos_dir):
    from phased_cpt.modeling import attach_lora

    shape = model_shape(ModelConfig(name=str(tiny_llama_bos_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_bos_dir)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    lora = attach_lora(model, LoraConfig(r=4, alpha=8))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert adapter_parameters(shape, LoraConfig(r=4)).total == trainable


def test_model_size_fallback():
    assert parameters_from_size("32B") == 32_000_000_000
    assert parameters_from_size("500M") == 500_000_000
    assert parameters_from_size("1.5b") == 1_500_000_000
    assert parameters_from_size("large") is None
    assert parameters_from_size(None) is None


def test_unknown_hub_id_has_no_shape_offline():
    assert model_shape(ModelConfig(name="no-such-org/no-such-model")) is None
