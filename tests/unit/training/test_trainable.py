"""TrainableModel: built through the production loading code; fingerprint and adapter carry-over."""

from __future__ import annotations

import torch
from peft import get_peft_model_state_dict

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.modeling import adapter_fingerprint, build_trainable_model
from phased_cpt.training.trainable import TrainableModel


def tiny(tiny_model_dir) -> ModelConfig:
    return ModelConfig(name=str(tiny_model_dir), dtype="float32")


def test_fingerprint_without_deepspeed_is_the_plain_fingerprint(tiny_model_dir):
    trainable = TrainableModel.build(tiny(tiny_model_dir), LoraConfig(r=4, alpha=8))
    assert trainable.fingerprint() == adapter_fingerprint(trainable.model)


def test_without_an_engine_the_next_phase_trains_the_same_model(tiny_model_dir):
    trainable = TrainableModel.build(tiny(tiny_model_dir), LoraConfig(r=4, alpha=8))
    model = trainable.model
    trainable.keep_engine(None)
    assert trainable.next_phase() is model


def test_a_saved_adapter_is_restored_by_the_same_builder(tiny_model_dir, tmp_path):
    lora = LoraConfig(r=4, alpha=8)
    trained = build_trainable_model(tiny(tiny_model_dir), lora)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)  # a fresh adapter's B is zero: make it differ from one
    trained.save_pretrained(tmp_path / "adapter")
    restored = TrainableModel.build(tiny(tiny_model_dir), lora, tmp_path / "adapter")
    assert restored.fingerprint() == adapter_fingerprint(trained)
    carried = build_trainable_model(tiny(tiny_model_dir), lora, get_peft_model_state_dict(trained))
    assert adapter_fingerprint(carried) == adapter_fingerprint(trained)
