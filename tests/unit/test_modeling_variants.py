"""LoRA variants as PEFT builds them: rsLoRA's scale, DoRA's magnitudes, which embedding weights train."""

from __future__ import annotations

import math

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.modeling import attach_lora, embedding_module_names, embedding_parameter_names, load_base_model


def model_with(model_dir, **lora):
    base = load_base_model(ModelConfig(name=str(model_dir), dtype="float32", attn_implementation="sdpa"))
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
    assert full == {"base_model.model.model.embed_tokens.modules_to_save.default.weight",
                    "base_model.model.lm_head.modules_to_save.default.weight"}
    lora = embedding_parameter_names(model_with(tiny_model_dir, embeddings="lora"))
    assert any("embed_tokens.lora_embedding_A" in n for n in lora) and any("lm_head.lora_B" in n for n in lora)
