"""training/phase.py: one phase as one HF Trainer run.

- A phase's start state is a function of the config and the phase alone (issue 18): whatever the
  process's RNGs went through before, the phase trains the same adapter, LoRA dropout on.
- PhaseTrainer's optimizer and scheduler: the embeddings' own learning rate, the phase's part of
  the run's LR schedule, the DeepSpeed case where an own learning rate cannot be kept.
- Every training key reaches the HF Trainer (`training_arguments`).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from peft import get_peft_model_state_dict
from transformers import TrainerCallback, set_seed

from phased_cpt.config import (
    ContextConfig,
    DataConfig,
    LoraConfig,
    ModelConfig,
    PerformanceConfig,
    PhaseConfig,
    TrainingConfig,
)
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.errors import UserError
from phased_cpt.evaluation.perplexity import evaluate_rows, preserved_rng
from phased_cpt.modeling import attach_lora, embedding_parameter_names, load_base_model, load_tokenizer
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.training.phase import (
    PhasePaths,
    PhaseSettings,
    PhaseTrainer,
    SeedAtTrainBegin,
    check_embedding_lr,
    phase_seed,
    train_phase,
    training_arguments,
)
from phased_cpt.training.schedule import phase_lr
from phased_cpt.training.throughput import (
    liger_installed,
)
from tests.conftest import bundled_texts, training_with, write_jsonl

LORA = LoraConfig(r=4, alpha=8, dropout=0.1)
CONTEXT = ContextConfig(max_tokens=64, overlap_tokens=8)


class DrawsOnTrainBegin(TrainerCallback):
    """Stands for a callback that draws random numbers once per process when training begins
    (the first-use matmul measurement that broke issue 18's phase-start window)."""

    def on_train_begin(self, args, state, control, **kwargs):
        torch.randn(64)


@pytest.fixture(scope="module")
def phase_setup(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("seed")
    model_config = ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")
    tokenizer = load_tokenizer(model_config)
    phase = PhaseConfig(
        name="phase2_evolution", file=write_jsonl(work / "p.jsonl", bundled_texts("phase2_evolution", 8))
    )
    data = build_phase_data(phase, DataConfig(eval_ratio=0.25), tokenizer, CONTEXT, seed=0)
    return model_config, tokenizer, phase, data


def train_after(phase_setup, tmp_path, disturb: bool) -> dict[str, torch.Tensor]:
    model_config, tokenizer, phase, data = phase_setup
    set_seed(0)  # the same LoRA initialisation in both runs: the adapter a phase starts from
    model = attach_lora(load_base_model(model_config), LORA)
    callbacks = []
    if disturb:  # what an earlier phase and its evaluation leave in the RNGs, and a drawing callback
        torch.randn(1000), random.random(), np.random.rand(7)
        evaluate_rows(model, data.eval.dataset, make_collator(tokenizer, CONTEXT), batch_size=2)
        callbacks.append(DrawsOnTrainBegin())
    training = TrainingConfig(
        learning_rate=3e-3,
        max_steps=3,
        save_steps=100,
        lora=LORA,
        seed=phase_seed(0, phase.name),
        gradient_checkpointing=True,  # train_phase takes a resolved choice, never auto
    )
    out = tmp_path / ("disturbed" if disturb else "clean")
    callbacks.append(SeedAtTrainBegin(training.seed))  # last, as in the recipe's list
    train_phase(
        model, tokenizer, data, PhaseSettings(training, CONTEXT, 1.0), PhasePaths(out, out / "adapter"), callbacks
    )
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def test_a_phase_trains_the_same_adapter_whatever_ran_before_it(phase_setup, tmp_path):
    clean = train_after(phase_setup, tmp_path, disturb=False)
    disturbed = train_after(phase_setup, tmp_path, disturb=True)
    diff = max((clean[k] - disturbed[k]).abs().max().item() for k in clean)
    assert diff == 0.0


def test_an_evaluation_leaves_every_rng_as_it_found_it():
    """`preserved_rng` wraps every evaluation: what it draws (sampling, dropout left on) is undone."""
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    expected = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    with preserved_rng():
        torch.randn(10), random.random(), np.random.rand(3)
    assert torch.equal(torch.get_rng_state(), expected[0])
    assert random.getstate() == expected[1]
    assert np.array_equal(np.random.get_state()[1], expected[2])


def test_each_phase_has_its_own_seed_from_the_run_seed_and_the_phase():
    assert phase_seed(0, "a") == phase_seed(0, "a")
    assert len({phase_seed(0, "a"), phase_seed(0, "b"), phase_seed(1, "a")}) == 3
    assert 0 <= phase_seed(2**40, "a") < 2**32


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


def test_each_training_key_is_passed_to_the_trainer(tmp_path):
    training = TrainingConfig(
        micro_batch_size=3,
        gradient_accumulation_steps=5,
        learning_rate=7e-5,
        lr_scheduler="linear",
        warmup_ratio=0.2,
        weight_decay=0.01,
        max_grad_norm=0.5,
        gradient_checkpointing=False,
        seed=123,
        logging_steps=4,
        save_steps=9,
        max_steps=17,
        lora=LoraConfig(r=4),
    )
    args = training_arguments(training, epochs=2.5, phase_dir=tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 5)
    assert args.learning_rate == 7e-5 and args.lr_scheduler_type.value == "linear"
    assert args.warmup_steps == 0.2 and args.get_warmup_steps(100) == 20  # a ratio of the phase's steps
    assert (args.weight_decay, args.max_grad_norm, args.seed) == (0.01, 0.5, 123)
    assert (args.logging_steps, args.save_steps, args.max_steps, args.num_train_epochs) == (4, 9, 17, 2.5)
    assert not args.activation_checkpointing
    assert args.save_total_limit is None  # rotation is CheckpointCallback's, after a newer checkpoint is complete
    assert not args.save_only_model and args.output_dir == str(tmp_path)
    checkpointed = training_arguments(TrainingConfig(gradient_checkpointing=True), epochs=1, phase_dir=tmp_path)
    assert checkpointed.activation_checkpointing and checkpointed.max_steps == -1


def test_model_dtype_and_attention_are_applied(tiny_model_dir):
    model = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16", attn_implementation="eager"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"
    assert model.config.use_cache is False


def test_defaults_reach_the_trainer(tmp_path):
    args = training_arguments(training_with(), epochs=1, phase_dir=tmp_path)
    assert args.optim == "adamw_torch_fused"
    assert args.torch_compile is False
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.use_liger_kernel is (liger_installed() and torch.cuda.is_available())


def test_optimizer_reaches_the_trainer(tmp_path):
    args = training_arguments(training_with(optimizer="adamw_torch"), epochs=1, phase_dir=tmp_path)
    assert args.optim == "adamw_torch"


def test_torch_compile_reaches_the_trainer(tmp_path):
    args = training_arguments(training_with(torch_compile=True), epochs=1, phase_dir=tmp_path)
    assert args.torch_compile is True


@pytest.mark.parametrize("every, expected", [(1, [True, True]), (2, [True, False])])
def test_checkpoint_every_n_layers_checkpoints_only_those_layers(tiny_model_dir, tmp_path, every, expected):
    base = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa"))
    model = attach_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0))
    training = TrainingConfig(
        max_steps=1,
        gradient_accumulation_steps=1,
        save_steps=100,
        logging_steps=100,
        gradient_checkpointing=True,
        performance=PerformanceConfig(checkpoint_every_n_layers=every),
    )
    row = {"input_ids": list(range(3, 19)), "labels": list(range(3, 19))}
    trainer = PhaseTrainer(
        model=model,
        args=training_arguments(training, epochs=1, phase_dir=tmp_path),
        train_dataset=[row],
        data_collator=lambda rows: {k: torch.tensor([r[k] for r in rows]) for k in rows[0]},
        max_nonfinite_losses=3,
    )
    trainer.train()
    assert [layer.gradient_checkpointing for layer in base.model.layers] == expected


def test_token_count_includes_eos_in_packed_batches(tmp_path):
    # packed rows carry no padding, so every token counts (pad == eos would hide each EOS otherwise)
    assert (
        training_arguments(training_with(), epochs=1, phase_dir=tmp_path, packed=True).include_num_input_tokens_seen
        == "all"
    )
    assert (
        training_arguments(training_with(), epochs=1, phase_dir=tmp_path).include_num_input_tokens_seen == "non_padding"
    )
