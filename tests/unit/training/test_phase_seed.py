"""A phase's start state is a function of the config and the phase alone (issue 18): whatever the
process's RNGs went through before (an earlier phase, an evaluation, a callback that draws once
per process when training begins), the phase trains the same adapter, LoRA dropout on."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from peft import get_peft_model_state_dict
from transformers import TrainerCallback, set_seed

from phased_cpt.config import ContextConfig, DataConfig, LoraConfig, ModelConfig, PhaseConfig, TrainingConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.evaluation.perplexity import evaluate_rows, preserved_rng
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer
from phased_cpt.training.phase import PhasePaths, PhaseSettings, SeedAtTrainBegin, phase_seed, train_phase
from tests.conftest import bundled_texts, write_jsonl

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
