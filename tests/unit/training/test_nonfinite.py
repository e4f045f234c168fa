"""The non-finite guard on a real HF Trainer and the tiny model: a step that saw a NaN loss or a
NaN gradient is skipped (weights and Adam moments bit-identical), logged as non-finite (never as
a number) and counted; enough of them in a row stop the phase."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from phased_cpt.config import ContextConfig, DataConfig, LoraConfig, ModelConfig, PhaseConfig, TrainingConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.errors import TrainingDiverged
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer
from phased_cpt.training.callbacks import MetricsCallback, ProgressCallback
from phased_cpt.training.phase import PhaseTrainer, training_arguments
from tests.conftest import bundled_texts, write_jsonl


class Snapshots(TrainerCallback):
    """The trainable weights and the optimizer's Adam moments after every optimizer step."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.moments: dict[int, list[torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.weights[state.global_step] = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }
        self.moments[state.global_step] = [
            s["exp_avg"].clone() for s in optimizer.optimizer.state.values() if "exp_avg" in s
        ]


class Sink:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def log(self, step, phase, values, kind="train"):
        self.records.append({"step": step, **values})

    def event(self, *args, **kwargs):
        pass

    def sync(self):
        pass


class NaNGradient(torch.autograd.Function):
    """Identity forward (the loss stays finite), NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison(model, micro_batches: set[int], where: str = "loss"):
    """NaN into the forward pass (`loss`) or only into the backward pass (`grad`) of the given
    micro-batches (counted from 1) of a real model, through a forward hook on its final norm."""
    norm = model.get_base_model().model.norm
    calls = {"n": 0}

    def hook(module, inputs, output):
        calls["n"] += 1
        if calls["n"] not in micro_batches:
            return output
        return output * float("nan") if where == "loss" else NaNGradient.apply(output)

    return norm.register_forward_hook(hook)


@pytest.fixture
def setup(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    context = ContextConfig(max_tokens=64, overlap_tokens=8)
    phase = PhaseConfig(name="p", file=write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", 12)))
    data = build_phase_data(phase, DataConfig(eval_ratio=0.0), tokenizer, context, seed=0, cache_dir=tmp_path / "cache")
    model = attach_lora(
        load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32")), LoraConfig(r=4, alpha=8)
    )
    return tokenizer, context, data, model


def make_trainer(setup, tmp_path, callbacks, max_nonfinite=3, **training):
    tokenizer, context, data, model = setup
    cfg = TrainingConfig(
        micro_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        weight_decay=0.1,
        max_steps=5,
        logging_steps=1,
        save_steps=1000,
        gradient_checkpointing=False,
        max_nonfinite_losses=max_nonfinite,
        **training,
    )
    return PhaseTrainer(
        model=model,
        args=training_arguments(cfg, 1, tmp_path / "out"),
        train_dataset=data.train.dataset,
        data_collator=make_collator(tokenizer, context),
        processing_class=tokenizer,
        callbacks=callbacks,
        max_nonfinite_losses=max_nonfinite,
    )


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_a_skipped_step_leaves_weights_and_adam_moments_bit_identical(setup, tmp_path, where):
    snapshots, sink = Snapshots(), Sink()
    metrics = MetricsCallback(sink, "p", step_offset=0)
    trainer = make_trainer(setup, tmp_path, [metrics, snapshots])
    poison(setup[3], {4} if where == "loss" else {3, 4}, where)  # step 2 = micro-batches 3 and 4
    trainer.train()

    for name, before in snapshots.weights[1].items():
        assert torch.equal(snapshots.weights[2][name], before), f"{name} moved in the skipped step"
    assert all(torch.equal(a, b) for a, b in zip(snapshots.moments[1], snapshots.moments[2]))
    assert any(not torch.equal(snapshots.weights[3][n], w) for n, w in snapshots.weights[2].items())  # trains on
    assert all(torch.isfinite(w).all() for w in snapshots.weights[5].values())

    by_step = {r["step"]: r for r in sink.records}
    assert by_step[2]["skipped_steps"] == 1 and by_step[3]["skipped_steps"] == 0
    if where == "loss":  # the step's loss is non-finite: never logged as a number
        assert math.isnan(by_step[2]["loss"]) and math.isnan(by_step[2]["perplexity"])
    else:
        assert math.isnan(by_step[2]["grad_norm"])
    assert all(math.isfinite(by_step[s]["loss"]) for s in (1, 3, 4, 5))


def test_the_progress_bar_never_shows_a_non_finite_loss_as_a_number(caplog):
    """Nor the log line that replaces the bar when stderr is not a terminal (as under pytest)."""
    metrics = MetricsCallback(Sink(), "p", step_offset=0)
    metrics.latest = {
        "loss": math.nan,
        "perplexity": math.nan,
        "learning_rate": 1e-3,
        "tokens_per_second": 10.0,
        "skipped_steps": 1,
    }
    bar = ProgressCallback("p", metrics)

    class State:
        is_world_process_zero, max_steps, global_step = True, 3, 1

    bar.on_train_begin(None, State(), None)
    bar.on_step_end(None, State(), None)
    with caplog.at_level("INFO"):
        bar.on_log(None, State(), None, logs={"loss": math.nan})
    postfix = bar.status()  # the bar's postfix on a terminal
    bar.on_train_end(None, State(), None)
    assert "loss=non-finite" in postfix and "ppl=non-finite" in postfix and "skipped=1" in postfix
    assert "nan" not in postfix
    assert caplog.messages == [f"p: step 1/3 {postfix}"]


def test_consecutive_skipped_steps_stop_the_phase(setup, tmp_path):
    snapshots = Snapshots()
    trainer = make_trainer(setup, tmp_path, [snapshots], max_nonfinite=2)
    poison(setup[3], {2, 3, 5}, "loss")  # steps 1 and 2 each hold a NaN micro-batch
    with pytest.raises(TrainingDiverged, match="2 consecutive non-finite losses or gradient norms, the last at step 2"):
        trainer.train()
    assert set(snapshots.weights) == {1, 2}
    for name, before in snapshots.weights[1].items():
        assert torch.equal(snapshots.weights[2][name], before)
