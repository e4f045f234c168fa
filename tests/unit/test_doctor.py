"""`phased-cpt doctor` and the per-GPU memory estimate behind its recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from phased_cpt.cli import main
from phased_cpt.config import ModelConfig, TrainingConfig
from phased_cpt.doctor import FAIL, PASS, WARN, checkpoint_bytes, run_checks
from phased_cpt.memory import ModelShape, estimate_memory, model_shape, parameters_from_size, shape_from_config
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import tiny_run_config, write_yaml

FAKE_KEY = "fakekey-doctor-0123456789abcdef"

# Qwen2.5-0.5B's config.json (the fields the estimate reads).
QWEN25_05B = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
}


# --- the shape and parameter counts ----------------------------------------------------------

def test_qwen25_05b_parameters_by_hand():
    shape = shape_from_config(QWEN25_05B)
    assert shape.head_dim == 64
    # per layer: q 896*896 + k,v 896*128 each + o 896*896 + 3 MLP 896*4864 + 2 norms 896
    per_layer = 2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864 + 2 * 896
    assert per_layer == 14_911_232
    # + tied embedding 151936*896 + final norm; the real model adds 27,648 q/k/v biases (494,032,768)
    assert shape.parameters == 24 * per_layer + 151936 * 896 + 896 == 494_005_120


def test_qwen25_05b_lora_parameters_match_peft():
    # PEFT reports 4,399,104 trainable parameters for r=8 on all seven projections of Qwen2.5-0.5B.
    shape = shape_from_config(QWEN25_05B)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert shape.lora_parameters(8, targets) == 4_399_104


def test_shape_counts_equal_the_real_tiny_llama(tiny_llama_bos_dir):
    from phased_cpt.config import LoraConfig
    from phased_cpt.modeling import attach_lora

    shape = model_shape(ModelConfig(name=str(tiny_llama_bos_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_bos_dir)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    lora = attach_lora(model, LoraConfig(r=4, alpha=8))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert shape.lora_parameters(4, LoraConfig().target_modules) == trainable


def test_model_size_fallback():
    assert parameters_from_size("32B") == 32_000_000_000
    assert parameters_from_size("500M") == 500_000_000
    assert parameters_from_size("1.5b") == 1_500_000_000
    assert parameters_from_size("large") is None
    assert parameters_from_size(None) is None


def test_unknown_hub_id_has_no_shape_offline():
    assert model_shape(ModelConfig(name="no-such-org/no-such-model")) is None


# --- the memory estimate, against hand-computed numbers ---------------------------------------

SMALL = ModelShape(layers=2, hidden_size=8, intermediate_size=16, vocab_size=100, attention_heads=2, kv_heads=2, head_dim=4)


def small_training(**overrides) -> TrainingConfig:
    settings = {"micro_batch_size": 2, "gradient_checkpointing": True, "lora": {"r": 2, "target_modules": ["q_proj"]}}
    return TrainingConfig(**(settings | overrides))


def test_estimate_single_process_by_hand():
    # P = 2 layers * (4 attention 8x8 + 3 MLP 8x16 + 2 norms 8) + embeddings 2*100*8 + final norm 8
    assert SMALL.parameters == 2 * (4 * 64 + 3 * 128 + 16) + 1600 + 8 == 2920
    estimate = estimate_memory(SMALL, small_training(), max_tokens=10, zero_stage=0, world_size=1, weight_bytes=2)
    tokens = 2 * 10
    assert estimate.weights_bytes == 2920 * 2
    assert estimate.lora_parameters == 2 * 2 * (8 + 8) == 64
    assert estimate.lora_bytes == 64 * 16
    # checkpointing: every layer's input (L*T*H*a) + one layer live T*(12H + 3I)*a
    assert estimate.activations_bytes == 2 * tokens * 8 * 2 + tokens * (12 * 8 + 3 * 16) * 2
    assert estimate.logits_bytes == tokens * 100 * 4 * 2
    assert estimate.total_bytes == 5840 + 1024 + 6400 + 16000


def test_estimate_without_gradient_checkpointing_keeps_every_layer():
    estimate = estimate_memory(SMALL, small_training(gradient_checkpointing=False), 10, 0, 1, 2)
    assert estimate.activations_bytes == 2 * 20 * (12 * 8 + 3 * 16) * 2


def test_zero2_partitions_lora_gradients_and_adam_zero3_also_weights():
    zero2 = estimate_memory(SMALL, small_training(), 10, zero_stage=2, world_size=4, weight_bytes=2)
    zero3 = estimate_memory(SMALL, small_training(), 10, zero_stage=3, world_size=4, weight_bytes=2)
    assert zero2.weights_bytes == 2920 * 2
    assert zero2.lora_bytes == 64 * 4 + 64 * 12 // 4
    assert zero3.weights_bytes == 2920 * 2 // 4
    assert zero3.lora_bytes == 64 * 16 // 4


def test_offload_moves_adam_and_weights_off_the_gpu():
    optimizer = estimate_memory(SMALL, small_training(), 10, 3, 1, 2, offload="optimizer")
    both = estimate_memory(SMALL, small_training(), 10, 3, 1, 2, offload="optimizer_and_params")
    assert optimizer.lora_bytes == 64 * 8
    assert both.weights_bytes == 0


def test_32b_at_32k_tokens_needs_zero3_on_80gb_gpus():
    """KAT-Dev 32B (Qwen2.5-32B shape): bf16 weights alone are ~61 GiB; ZeRO-3 on 8 GPUs divides them."""
    shape = shape_from_config({
        "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64, "num_attention_heads": 40,
        "num_key_value_heads": 8, "vocab_size": 152064,
    })
    training = TrainingConfig(micro_batch_size=1, lora={"r": 128})
    zero2 = estimate_memory(shape, training, 32768, zero_stage=2, world_size=8, weight_bytes=2)
    zero3 = estimate_memory(shape, training, 32768, zero_stage=3, world_size=8, weight_bytes=2)
    assert 60 * 2**30 < zero2.weights_bytes < 62 * 2**30
    assert zero3.weights_bytes == zero2.weights_bytes // 8
    assert zero2.total_bytes > 80 * 2**30 > zero3.total_bytes
    assert zero2.logits_bytes == 32768 * 152064 * 8  # fp32 logits and their gradient: ~37 GiB


# --- the checks ------------------------------------------------------------------------------

@pytest.fixture
def run_config(tmp_path, tiny_model_dir) -> Path:
    p1 = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 4))
    return write_yaml(tmp_path / "run.yaml", tiny_run_config(tiny_model_dir, [("p1", p1, 1)]) | {"deepspeed": "zero3"})


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only report")
def test_cpu_machine_reports_no_gpu_and_how_to_run_on_cpu(run_config):
    checks = by_name(run_checks(run_config))
    assert checks["gpus"].status == WARN
    assert "no GPU" in checks["gpus"].detail
    assert "phased-cpt launch CONFIG --gpus N" in checks["gpus"].detail
    assert checks["nccl"].status == PASS and "gloo" in checks["nccl"].detail
    assert checks["data p1"].status == PASS and checks["data p1"].detail.startswith("4 documents")
    assert checks["tokenizer"].status == PASS
    assert checks["deepspeed plan"].detail.startswith("zero3")
    assert not [c for c in checks.values() if c.status == FAIL]


def test_missing_dataset_file_fails_clearly(run_config, tmp_path):
    checks = by_name(run_checks(run_config, [f"phases.0.file={tmp_path / 'missing.jsonl'}"]))
    assert checks["data p1"].status == FAIL
    assert checks["data p1"].detail == f"missing file: {tmp_path / 'missing.jsonl'}"


def test_bad_record_fails_with_file_and_line(run_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"training_content": "ok"}\n{not json\n')
    checks = by_name(run_checks(run_config, [f"phases.0.file={bad}"]))
    assert checks["data p1"].status == FAIL
    assert f"{bad}:2" in checks["data p1"].detail


def test_tokenizer_without_model_fails(run_config, tmp_path):
    checks = by_name(run_checks(run_config, [f"model.name={tmp_path / 'nowhere'}"]))
    assert checks["tokenizer"].status == FAIL


def test_wandb_key_is_reported_but_never_shown(run_config, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    checks = run_checks(run_config, ["wandb.enabled=true"])
    wandb = by_name(checks)["wandb"]
    assert wandb.status == PASS and "API key set" in wandb.detail
    assert FAKE_KEY not in json.dumps([c.detail for c in checks])


def test_wandb_without_key_warns_offline(run_config, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb = by_name(run_checks(run_config, ["wandb.enabled=true"]))["wandb"]
    assert wandb.status == WARN and "offline" in wandb.detail


def test_checkpoint_size_is_lora_sized(run_config):
    from phased_cpt.config import load_config

    cfg, _ = load_config(run_config)
    shape = model_shape(cfg.model)
    lora = shape.lora_parameters(8, cfg.training.lora.target_modules)
    # save_total_limit 2 (+1 being written) checkpoints of 16 bytes per LoRA parameter + the adapter
    assert checkpoint_bytes(cfg) == 1 * (3 * lora * 16 + lora * 4)


def test_doctor_cli_json_and_exit_code(run_config, tmp_path, capsys):
    assert main(["doctor", str(run_config), "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in checks} <= {PASS, WARN}
    assert main(["doctor", str(run_config), "--json", "--set", f"phases.0.file={tmp_path / 'gone.jsonl'}"]) == 2
    captured = capsys.readouterr()
    failed = [c["name"] for c in json.loads(captured.out) if c["status"] == FAIL]
    assert failed == ["data p1"]
    assert "pre-flight checks failed: data p1" in captured.err
