"""training/throughput.py: device peaks and MFU, the speed path line, and the performance settings
(optimizer, Liger, checkpointing) resolved for this machine."""

import numpy as np
import pytest
import torch

from phased_cpt.config import ContextConfig, LoraConfig, ModelConfig, TrainingConfig, load_config
from phased_cpt.data.rows import RowDataset
from phased_cpt.modeling import attach_lora, load_base_model
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.training.throughput import (
    ModelShape,
    Peak,
    Throughput,
    base_parameters,
    checkpointing_kwargs,
    chunk_lengths,
    describe_checkpointing,
    device_peak,
    resolve_checkpointing,
    resolve_optimizer,
    spec_peak_tflops,
    speed_path,
)
from tests.conftest import no_liger, training_with


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


def test_fused_adamw_falls_back_where_torch_has_none():
    assert resolve_optimizer("adamw_torch_fused", "cpu").value == "adamw_torch_fused"
    fallback = resolve_optimizer("adamw_torch_fused", "meta")
    assert (fallback.value, fallback.reason) == ("adamw_torch", "no fused AdamW on meta")


def test_checkpoint_every_n_layers_and_offload_become_checkpointing_kwargs():
    training = training_with(checkpoint_every_n_layers=2, checkpoint_offload=True)
    assert checkpointing_kwargs(training, on_cuda=True) == {
        "use_reentrant": False,
        "every_n_layers": 2,
        "offload": True,
    }
    # pinned host memory needs an accelerator; on a CPU the activations are on the host already
    assert checkpointing_kwargs(training, on_cuda=False) == {"use_reentrant": False, "every_n_layers": 2}
    assert describe_checkpointing(training, on_cuda=True) == "every 2 layers + offload to CPU"
    assert describe_checkpointing(training, on_cuda=False) == "every 2 layers (offload: off, no GPU)"
    assert checkpointing_kwargs(TrainingConfig(gradient_checkpointing=False)) is None


@no_liger
def test_the_speed_path_line_says_what_is_active(tiny_model_dir):
    base = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa"))
    model = attach_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0))
    training = training_with(optimizer="adamw_torch", checkpoint_every_n_layers=2)
    line = speed_path(model, training, ContextConfig(max_tokens=64, overlap_tokens=0, sample_packing=True))
    assert line == (
        "speed path: liger=off (not installed), attention=sdpa, optimizer=adamw_torch, "
        "checkpointing=every 2 layers, compile=off, packing=on"
    )
    offloaded = DeepSpeedPlan(config={"optimizer": {"type": "AdamW"}}, source="zero3", reason="test")
    assert "optimizer=deepspeed AdamW (from the DeepSpeed config)," in speed_path(
        model, training, ContextConfig(), offloaded
    )
    plain = DeepSpeedPlan(config={"zero_optimization": {"stage": 2}}, source="zero2", reason="test")
    assert "optimizer=adamw_torch," in speed_path(model, training, ContextConfig(), plain)


def test_private_torch_and_liger_names_are_used_only_on_checked_versions(monkeypatch):
    from phased_cpt.training import throughput

    assert throughput.version_within("torch", ("2.0", "99.0"))
    assert not throughput.version_within("torch", ("99.0", "100.0"))
    assert not throughput.version_within("no-such-package-here", ("0", "99"))
    monkeypatch.setattr(throughput, "TORCH_CHECKED", ("99.0", "100.0"))  # a torch newer than checked
    assert throughput.fused_adamw_devices() == ("cuda",)
    assert resolve_optimizer("adamw_torch_fused", "cpu").value == "adamw_torch"
    monkeypatch.setattr(throughput, "LIGER_CHECKED", ("99.0", "100.0"))
    assert throughput.liger_supports("any_model_type") is True


def test_the_trainer_never_sees_auto():
    with pytest.raises(ValueError, match="resolved by resolve_checkpointing first"):
        checkpointing_kwargs(TrainingConfig())


def test_resolved_for_the_tiny_model_on_this_cpu_it_is_off(tiny_model_dir):
    """A tiny model on a CPU fits the machine's memory without recomputation."""
    cfg, _ = load_config(None, base_data={"model": {"name": str(tiny_model_dir)}}, check_files=False)
    model = attach_lora(
        load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")),
        LoraConfig(r=4, alpha=8, dropout=0.0),
    )
    chosen = resolve_checkpointing(model, cfg, None, 256)
    assert chosen.training.gradient_checkpointing is False
    assert chosen.reason.startswith("auto: needs ~") and "10% kept free" in chosen.reason
    line = speed_path(model, chosen.training, cfg.context, None, chosen)  # the training log's line
    assert f", checkpointing=off ({chosen.reason}), " in line


def test_imports_frozen_leaves_what_exists_out_of_collections_until_exit():
    import gc

    from phased_cpt.training.throughput import imports_frozen

    before = gc.get_freeze_count()
    with imports_frozen():
        assert gc.get_freeze_count() > before  # the modules imported so far, at least
    assert gc.get_freeze_count() == 0
