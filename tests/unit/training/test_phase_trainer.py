"""PhaseTrainer's optimizer and scheduler: the embeddings' own learning rate, the phase's part of
the run's LR schedule, and the DeepSpeed case where an own learning rate cannot be kept."""

from __future__ import annotations

import pytest

from phased_cpt.config import LoraConfig, ModelConfig, TrainingConfig
from phased_cpt.errors import UserError
from phased_cpt.modeling import attach_lora, embedding_parameter_names, load_base_model
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.training.phase import PhaseTrainer, check_embedding_lr, training_arguments
from phased_cpt.training.schedule import phase_lr


def trainer(model_dir, tmp_path, lora: LoraConfig, **kwargs) -> PhaseTrainer:
    model = attach_lora(
        load_base_model(ModelConfig(name=str(model_dir), dtype="float32", attn_implementation="sdpa")), lora
    )
    training = TrainingConfig(
        learning_rate=1e-3, weight_decay=0.1, lora=lora, max_steps=10, gradient_checkpointing=True
    )
    return PhaseTrainer(model=model, args=training_arguments(training, 1, tmp_path), max_nonfinite_losses=3, **kwargs)


@pytest.mark.parametrize("embeddings", ["full", "lora"])
def test_trained_embeddings_get_their_own_learning_rate(tiny_model_dir, tmp_path, embeddings):
    phase = trainer(tiny_model_dir, tmp_path, LoraConfig(r=4, embeddings=embeddings), embedding_lr_ratio=0.1)
    optimizer = phase.create_optimizer()
    embedding = {id(p) for n, p in phase.model.named_parameters() if n in embedding_parameter_names(phase.model)}
    assert embedding
    for group in optimizer.param_groups:
        in_group = {id(p) for p in group["params"]}
        assert in_group <= embedding or not in_group & embedding  # a group is all embedding or none
        assert group["lr"] == pytest.approx(1e-3 * (0.1 if in_group <= embedding else 1.0))
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trainable = [id(p) for p in phase.model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)  # every trainable parameter once
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the logged learning rate is the LoRA one


def test_frozen_embeddings_keep_the_trainers_own_optimizer(tiny_model_dir, tmp_path):
    phase = trainer(tiny_model_dir, tmp_path, LoraConfig(r=4), embedding_lr_ratio=None)
    assert {g["lr"] for g in phase.create_optimizer().param_groups} == {1e-3}


def test_the_phase_scheduler_is_the_phases_part_of_the_run_schedule(tiny_model_dir, tmp_path):
    training = TrainingConfig(lr_across_phases="wsd", lr_scheduler="linear")
    phase = trainer(tiny_model_dir, tmp_path, LoraConfig(r=4), lr=phase_lr(training, 1, 3))
    phase.create_optimizer()
    scheduler = phase.create_scheduler(10)
    assert set(scheduler.get_last_lr()) == {1e-3}  # a middle wsd phase starts at the peak
    rewarm = trainer(tiny_model_dir, tmp_path, LoraConfig(r=4))
    rewarm.create_optimizer()
    assert set(rewarm.create_scheduler(10).get_last_lr()) == {0.0}  # the Trainer's own: warms up again


def test_an_own_embedding_learning_rate_is_refused_where_deepspeed_builds_the_optimizer():
    offload = DeepSpeedPlan({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}}, "zero2", "set")
    with pytest.raises(UserError, match="embedding_lr_ratio .0.1. needs the HF Trainer's optimizer"):
        check_embedding_lr(0.1, offload)
    check_embedding_lr(1.0, offload)
    check_embedding_lr(0.1, DeepSpeedPlan({"zero_optimization": {"stage": 3}}, "zero3", "set"))
    check_embedding_lr(None, offload)
