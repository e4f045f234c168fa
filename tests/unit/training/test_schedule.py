"""The learning rate across phases: each phase's part of rewarm, wsd and wsd_each_phase."""

from __future__ import annotations

import math

import pytest
import torch

from phased_cpt.config import PhaseConfig, TrainingConfig
from phased_cpt.training.schedule import phase_lr

PEAK = 1e-3


def lrs(training: TrainingConfig, index: int, phases: int, steps: int, warmup_steps: int) -> list[float]:
    """The LR of each optimizer step of one phase (what the step uses), and after its last step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = phase_lr(training, index, phases).scheduler(optimizer, steps, warmup_steps)
    values = []
    for _ in range(steps):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values + [scheduler.get_last_lr()[0]]


def test_rewarm_leaves_each_phase_to_the_trainers_own_schedule():
    assert phase_lr(TrainingConfig(), 1, 3) is None


def test_wsd_warms_up_once_holds_the_peak_across_phases_and_anneals_at_the_end_of_the_last():
    training = TrainingConfig(lr_across_phases="wsd", decay_ratio=0.25, lr_scheduler="linear")
    first, middle, last = (lrs(training, i, 3, steps=8, warmup_steps=2) for i in range(3))
    assert first[:3] == pytest.approx([0.0, PEAK / 2, PEAK]) and first[2:] == pytest.approx([PEAK] * 7)
    assert middle == pytest.approx([PEAK] * 9)  # phase 2 starts at the peak: no re-warming
    assert last[:6] == pytest.approx([PEAK] * 6)  # the last 25% of the last phase (2 steps) anneal
    assert last[6:] == pytest.approx([PEAK, PEAK / 2, 0.0])


def test_wsd_each_phase_warms_up_holds_and_anneals_within_every_phase():
    training = TrainingConfig(lr_across_phases="wsd_each_phase", decay_ratio=0.5, lr_scheduler="cosine")
    for index in range(3):
        values = lrs(training, index, 3, steps=8, warmup_steps=2)
        assert values[:3] == pytest.approx([0.0, PEAK / 2, PEAK])
        assert values[3:5] == pytest.approx([PEAK, PEAK])  # stable: 8 - 2 warmup - 4 decay = 2 steps
        assert values[5:] == pytest.approx([PEAK * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)])
        assert values[-1] == pytest.approx(0.0)


def test_a_single_phase_wsd_both_warms_up_and_anneals():
    values = lrs(TrainingConfig(lr_across_phases="wsd", decay_ratio=0.5, lr_scheduler="linear"), 0, 1, 4, 1)
    assert values == pytest.approx([0.0, PEAK, PEAK, PEAK / 2, 0.0])  # an anneal step starts from where it is


def test_lr_scale_multiplies_the_phases_learning_rate(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"training_content": "x"}\n')
    training = TrainingConfig(learning_rate=2e-4)
    assert PhaseConfig(name="p", file=data, lr_scale=0.5).training_for(training).learning_rate == pytest.approx(1e-4)
    assert PhaseConfig(name="p", file=data, learning_rate=1e-3, lr_scale=0.1).training_for(
        training
    ).learning_rate == pytest.approx(1e-4)
    assert PhaseConfig(name="p", file=data).training_for(training).learning_rate == 2e-4


def test_wsd_needs_a_cosine_or_linear_anneal():
    with pytest.raises(ValueError, match="anneals with a cosine or linear shape"):
        TrainingConfig(lr_across_phases="wsd", lr_scheduler="constant")
