"""plans/target.py: the GPU(s) a memory estimate is for, one way for every caller."""

from __future__ import annotations

import pytest
import torch

from phased_cpt.memory import host_memory_bytes
from phased_cpt.plans.target import target_gpus

GIB = 1 << 30


def test_named_gpus_are_estimated_with_bf16_and_both_liger_settings_under_auto():
    auto = target_gpus("auto", planned_bytes=80 * GIB)
    assert [(t.liger, t.bf16) for t in auto] == [(False, True), (True, True)]  # without Liger first: the verdict's
    assert {t.memory_bytes for t in auto} == {80 * GIB}
    assert [t.liger for t in target_gpus(True, planned_bytes=80 * GIB)] == [True]
    assert [t.liger for t in target_gpus(False, planned_bytes=80 * GIB)] == [False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU case")
def test_training_on_a_cpu_estimates_this_machines_memory_in_float32():
    [here] = target_gpus("auto", here="train")
    assert here.memory_bytes == host_memory_bytes() and not here.bf16 and not here.cuda and not here.liger


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU case")
def test_doctor_without_a_gpu_estimates_for_a_gpu_of_unknown_memory():
    [unknown] = target_gpus(False, here="free")
    assert unknown.memory_bytes is None and unknown.bf16
