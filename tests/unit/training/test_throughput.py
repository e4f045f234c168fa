"""Useful FLOPs (`flops.py`), device peaks and MFU (`training/throughput.py`), against hand-computed numbers."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.data.rows import RowDataset
from phased_cpt.modeling import attach_lora, load_base_model
from phased_cpt.training.throughput import (
    ModelShape,
    Peak,
    Throughput,
    attention_flops,
    base_parameters,
    chunk_lengths,
    device_peak,
    flops_per_token,
    spec_peak_tflops,
    step_flops,
)

QWEN25_7B = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    tie_word_embeddings=False,
)


@pytest.fixture(scope="module")
def qwen25_7b_shape() -> ModelShape:
    with torch.device("meta"):  # real shapes, no memory: only parameter counts are read
        model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_7B))
    return ModelShape.of(model)


def test_the_qwen25_7b_shape_counts_every_base_parameter(qwen25_7b_shape):
    embed = 152064 * 3584  # input embeddings; the LM head is untied and as large
    layer = (3584 * 3584 + 3584) + 2 * (3584 * 512 + 512) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
    assert qwen25_7b_shape.parameters == 2 * embed + 28 * layer + 3584 == 7_615_616_512
    assert (qwen25_7b_shape.layers, qwen25_7b_shape.attention_width) == (28, 3584)


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


def test_lora_weights_are_not_counted_as_base_parameters(tiny_model_dir):
    base = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa"))
    count = sum(p.numel() for p in base.parameters())
    model = attach_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0))
    assert sum(p.numel() for p in model.parameters()) > count
    assert base_parameters(model) == count == ModelShape.of(model).parameters
    assert ModelShape.of(model).counted_parameters() == count  # the config.json count agrees


def test_chunk_lengths_of_a_packed_row_dataset():
    chunks = np.array([[0, 5, 0], [5, 3, 0], [8, 4, 1]])
    dataset = RowDataset(np.arange(12, dtype=np.int32), chunks, np.array([0, 2, 3]), packed=True)
    assert chunk_lengths(dataset).tolist() == [5, 3, 4]
    assert chunk_lengths([{"input_ids": [1]}]) is None


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA GeForce GTX 1080", None),
    ],
)
def test_spec_peaks_of_known_gpus(name, tflops):
    assert spec_peak_tflops(name) == tflops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_cpu_has_no_peak_so_no_mfu(dtype):
    """A matmul measured on a CPU is not a peak (it gave mfu=248%): no MFU there, only TFLOP/s."""
    assert device_peak(torch.device("cpu"), dtype) is None
    values = Throughput(flops_per_token=6e9, peak=None).values(tokens_per_second_per_device=50_000)
    assert values == {"model_tflops_per_second": pytest.approx(300.0)}


def test_mfu_is_useful_flops_over_the_peak():
    throughput = Throughput(flops_per_token=6e9, peak=Peak(989e12, "spec"))
    values = throughput.values(tokens_per_second_per_device=50_000)
    assert values["model_tflops_per_second"] == pytest.approx(300.0)
    assert values["mfu"] == pytest.approx(300e12 / 989e12)


def test_imports_frozen_leaves_what_exists_out_of_collections_until_exit():
    import gc

    from phased_cpt.training.throughput import imports_frozen

    before = gc.get_freeze_count()
    with imports_frozen():
        assert gc.get_freeze_count() > before  # the modules imported so far, at least
    assert gc.get_freeze_count() == 0
