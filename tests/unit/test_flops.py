"""flops.py: useful FLOPs of a step (attention within each packed document), operators per layer, and
the time estimate from a GPU's measured rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, Qwen2Config

from phased_cpt.flops import Workload, estimate_seconds, operators_per_layer
from phased_cpt.gpus import gpu_spec
from phased_cpt.training.throughput import (
    ModelShape,
    attention_flops,
    flops_per_token,
    step_flops,
)
from tests.calibration import ALL, CONFIGS, H100_TABLE, qwen25, table_training, target, tiny_qwen2


def test_step_flops_of_one_16k_row_of_the_7b_shape(qwen25_7b_shape):
    tokens = 16384
    expected = 4 * 7_615_616_512 * tokens + 6 * tokens**2 * 3584 * 28
    assert step_flops(qwen25_7b_shape, np.array([tokens])) == pytest.approx(expected, rel=1e-12)
    # Sanity (not asserted): 6.61e14 FLOP in 16384 / 4412 tok/s = 3.71 s is the issue's
    # ~178 TFLOP/s for plain HF+PEFT on an H100.
    assert expected == pytest.approx(6.607e14, rel=1e-3)


def test_packed_documents_attend_only_within_themselves(qwen25_7b_shape):
    one_row = attention_flops(qwen25_7b_shape, np.array([16384]))
    two_documents = attention_flops(qwen25_7b_shape, np.array([8192, 8192]))
    assert two_documents == pytest.approx(one_row / 2)
    # the linear part is the same for the same tokens
    assert step_flops(qwen25_7b_shape, np.array([8192, 8192])) - two_documents == pytest.approx(
        step_flops(qwen25_7b_shape, np.array([16384])) - one_row
    )


def test_flops_per_token_averages_over_the_phase_and_handles_no_tokens():
    shape = ModelShape(
        layers=2,
        hidden_size=8,
        intermediate_size=16,
        vocab_size=10,
        attention_heads=2,
        kv_heads=2,
        head_dim=4,
        parameters=1000,
    )
    lengths = np.array([10, 30])
    expected = (4 * 1000 * 40 + 6 * 8 * 2 * (10**2 + 30**2)) / 40
    assert flops_per_token(shape, lengths) == pytest.approx(expected)
    assert flops_per_token(shape, np.zeros(0)) == 4 * 1000


@pytest.mark.parametrize("size, tokens, liger, tokens_per_second, peak_gib", H100_TABLE)
def test_the_h100_table_tokens_per_second_within_16_percent(size, tokens, liger, tokens_per_second, peak_gib):
    work = Workload(chunk_lengths=np.array([tokens]), epochs=1, micro_batches=1, tokens_per_micro_batch=tokens)
    h100 = gpu_spec("NVIDIA H100 80GB HBM3")
    estimate = estimate_seconds(target(qwen25(size), table_training(), tokens, liger=liger), work, h100)
    assert tokens / estimate.seconds == pytest.approx(tokens_per_second, rel=0.16)  # the issue asks for 30%
    assert estimate.low_seconds < tokens / tokens_per_second < estimate.high_seconds


class CountOperators(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("targets", [ALL, ["q_proj"]], ids=["seven", "one"])
def test_operators_per_layer_are_what_a_training_step_runs(targets):
    """The count the time estimate charges host overhead for (within 1%: it is linear in the LoRA
    modules only roughly)."""

    def operators(layers: int) -> int:
        model, shape, _ = tiny_qwen2(layers=layers, hidden=32, intermediate=64, vocab=64, targets=targets, r=2)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
        ids = torch.randint(0, shape.vocab_size, (1, 8))

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # the first step creates Adam's states
        with CountOperators() as counter:
            step()
        return counter.count

    per_layer = operators(2) - operators(1)
    assert per_layer == pytest.approx(operators_per_layer(len(targets), checkpointing=True), rel=0.01)


@pytest.fixture(scope="module")
def qwen25_7b_shape() -> ModelShape:
    with torch.device("meta"):  # real shapes, no memory: only parameter counts are read
        model = AutoModelForCausalLM.from_config(Qwen2Config.from_json_file(CONFIGS / "qwen2.5-7b" / "config.json"))
    return ModelShape.of(model)


def test_the_qwen25_7b_shape_counts_every_base_parameter(qwen25_7b_shape):
    embed = 152064 * 3584  # input embeddings; the LM head is untied and as large
    layer = (3584 * 3584 + 3584) + 2 * (3584 * 512 + 512) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
    assert qwen25_7b_shape.parameters == 2 * embed + 28 * layer + 3584 == 7_615_616_512
    assert (qwen25_7b_shape.layers, qwen25_7b_shape.attention_width) == (28, 3584)
