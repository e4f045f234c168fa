"""The model's shape and what an adapter trains on it (`model_shape.py`): `adapter_parameters`
against peft's count on real models for every LoRA variant, and the rule that a new `LoraConfig`
field is counted by the estimate or listed as changing no memory."""

from __future__ import annotations

import pytest

from phased_cpt.model_shape import LORA_FIELDS_COUNTED, LORA_FIELDS_WITHOUT_MEMORY, adapter_parameters
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
