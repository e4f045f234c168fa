"""`training.performance`: each key reaches the HF Trainer (or is refused with a clear message),
and the one-line speed path says what is active."""

import pytest
import torch

from phased_cpt.config import ContextConfig, LoraConfig, ModelConfig, PerformanceConfig, TrainingConfig, load_config
from phased_cpt.errors import ConfigError, UserError
from phased_cpt.modeling import attach_lora, load_base_model
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.plans.kernels import resolve_liger
from phased_cpt.training.phase import PhaseTrainer, training_arguments
from phased_cpt.training.throughput import (
    checkpointing_kwargs,
    describe_checkpointing,
    liger_installed,
    resolve_optimizer,
    speed_path,
)
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import assert_user_error, run_cli, tiny_run_config, write_yaml

no_liger = pytest.mark.skipif(liger_installed(), reason="checks the behaviour without liger-kernel")


def training_with(**performance) -> TrainingConfig:
    """Checkpointing on (`auto` is resolved before the Trainer is built: test_checkpointing_auto.py)."""
    return TrainingConfig(gradient_checkpointing=True, performance=PerformanceConfig(**performance))


def test_defaults_reach_the_trainer(tmp_path):
    args = training_arguments(training_with(), epochs=1, phase_dir=tmp_path)
    assert args.optim == "adamw_torch_fused"
    assert args.torch_compile is False
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.use_liger_kernel is (liger_installed() and torch.cuda.is_available())


def test_optimizer_reaches_the_trainer(tmp_path):
    args = training_arguments(training_with(optimizer="adamw_torch"), epochs=1, phase_dir=tmp_path)
    assert args.optim == "adamw_torch"


def test_fused_adamw_falls_back_where_torch_has_none():
    assert resolve_optimizer("adamw_torch_fused", "cpu").value == "adamw_torch_fused"
    fallback = resolve_optimizer("adamw_torch_fused", "meta")
    assert (fallback.value, fallback.reason) == ("adamw_torch", "no fused AdamW on meta")


def test_torch_compile_reaches_the_trainer(tmp_path):
    args = training_arguments(training_with(torch_compile=True), epochs=1, phase_dir=tmp_path)
    assert args.torch_compile is True


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


def test_checkpointing_options_need_checkpointing():
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            ["training.gradient_checkpointing=false", "training.performance.checkpoint_every_n_layers=2"],
            check_files=False,
        )
    assert (
        "training.performance.checkpoint_every_n_layers / checkpoint_offload need training.gradient_checkpointing: true"
        in str(err.value)
    )


@no_liger
def test_liger_true_without_liger_kernel_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.performance.liger_kernel=true"], check_files=False)
    assert err.value.problems == [
        "training.performance.liger_kernel: true needs liger-kernel, which is not installed; "
        "pip install 'phased-cpt[gpu]' (on a CUDA machine) or set it to auto"
    ]


def test_liger_settings_resolve_by_what_the_machine_has():
    assert resolve_liger("auto", on_cuda=True, installed=True).value is True
    assert resolve_liger("auto", on_cuda=False, installed=True).reason == "no CUDA GPU"
    assert resolve_liger("auto", on_cuda=True, installed=False).reason == "not installed"
    assert resolve_liger(False, on_cuda=True, installed=True).value is False
    assert resolve_liger(True, on_cuda=True, installed=True).value is True
    with pytest.raises(UserError, match=r"liger_kernel: true needs a CUDA GPU"):
        resolve_liger(True, on_cuda=False, installed=True)
    with pytest.raises(UserError, match=r"pip install 'phased-cpt\[gpu\]'"):
        resolve_liger(True, on_cuda=True, installed=False)


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


@no_liger
@pytest.mark.e2e
def test_validate_refuses_liger_true_without_liger_kernel(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 4))
    config = tiny_run_config(tiny_model_dir, [("p1", data, 1)])
    config["training"]["performance"] = {"liger_kernel": True}
    result = run_cli(["validate", str(write_yaml(tmp_path / "config.yaml", config))], cwd=tmp_path)
    assert_user_error(
        result, "training.performance.liger_kernel: true needs liger-kernel", "pip install 'phased-cpt[gpu]'"
    )


def test_token_count_includes_eos_in_packed_batches(tmp_path):
    # packed rows carry no padding, so every token counts (pad == eos would hide each EOS otherwise)
    assert (
        training_arguments(training_with(), epochs=1, phase_dir=tmp_path, packed=True).include_num_input_tokens_seen
        == "all"
    )
    assert (
        training_arguments(training_with(), epochs=1, phase_dir=tmp_path).include_num_input_tokens_seen == "non_padding"
    )


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
