"""`training.gradient_checkpointing: auto`: the least recomputation whose estimated peak fits the
device with `CHECKPOINTING_MARGIN` to spare; what `plan` and the training log say it chose."""

import json
import shutil
from pathlib import Path

import pytest

from phased_cpt.cli import main
from phased_cpt.config import LoraConfig, ModelConfig, TrainingConfig, load_config
from phased_cpt.memory import (
    CHECKPOINTING_MARGIN,
    GiB,
    checkpointed_layers,
    choose_checkpointing,
    estimate_memory,
)
from phased_cpt.modeling import attach_lora, load_base_model
from phased_cpt.training.throughput import checkpointing_kwargs, resolve_checkpointing, speed_path
from tests.calibration import qwen25, table_training, target

REPO = Path(__file__).resolve().parents[2]
QWEN25_32B = REPO / "tests" / "fixtures" / "model_configs" / "qwen2.5-32b"
QUICKSTART_DATA = REPO / "src" / "phased_cpt" / "quickstart" / "data"


def auto(**update) -> TrainingConfig:
    return table_training(**update).model_copy(update={"gradient_checkpointing": "auto"})


def on_h100(tokens: int, liger: bool, device_gib: float = 80, on_cuda: bool = True):
    def estimate(training):
        return estimate_memory(target(qwen25("7b"), training, tokens, liger=liger))

    return choose_checkpointing(auto(), estimate, int(device_gib * GiB), on_cuda)


def test_auto_is_the_default_and_true_false_are_kept():
    assert TrainingConfig().gradient_checkpointing == "auto"
    for setting in (True, False):
        chosen = choose_checkpointing(table_training(gradient_checkpointing=setting), estimate_memory, 10, True)
        assert chosen.training.gradient_checkpointing is setting
        assert chosen.reason == f"training.gradient_checkpointing: {str(setting).lower()}"


def test_auto_picks_the_least_recomputation_that_fits_with_the_margin():
    # 7B, LoRA r=128 on all projections: 4K rows fit without checkpointing (~59 GiB of 80)
    short = on_h100(4096, liger=False)
    assert short.training.gradient_checkpointing is False
    assert short.reason.startswith("auto: needs ~59.3 GiB of 80.0 GiB, 10% kept free")
    # 16K rows with Liger: off and every 4th/2nd layer need more than 72 GiB (80 less 10%): full
    long = on_h100(16384, liger=True)
    assert long.training.gradient_checkpointing is True
    assert long.training.performance.checkpoint_every_n_layers == 1
    assert "every 2 layers would need ~76.5 GiB" in long.reason
    # the same on a 100 GiB device: every 2nd layer (76.5 GiB) now fits 90 GiB
    roomy = on_h100(16384, liger=True, device_gib=100)
    assert roomy.describe().startswith("every 2 layers (auto: needs ~76.5 GiB of 100.0 GiB")
    assert checkpointed_layers(28, roomy.training) == set(range(0, 28, 2))
    # the chosen setting's need is within the budget, the one before it is not
    need = estimate_memory(target(qwen25("7b"), roomy.training, 16384, liger=True)).gpu_bytes
    assert need <= 100 * GiB * (1 - CHECKPOINTING_MARGIN)


def test_where_nothing_fits_auto_takes_the_least_memory_offload_only_on_a_gpu():
    gpu = on_h100(131072, liger=True)
    assert gpu.training.performance.checkpoint_offload is True
    assert gpu.reason.startswith("auto: nothing fits 72.0 GiB (80.0 GiB less 10%); the least memory, ~76.5 GiB")
    cpu = on_h100(131072, liger=True, on_cuda=False)
    assert cpu.training.gradient_checkpointing is True and cpu.training.performance.checkpoint_offload is False


def test_unknown_device_memory_means_full_checkpointing():
    chosen = choose_checkpointing(auto(), estimate_memory, None, True)
    assert chosen.describe() == "full (auto: the device's memory is unknown)"


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


def plan_json(capsys, *args: str) -> dict:
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_of_the_quickstart_says_auto_chose_off(capsys):
    plan = plan_json(capsys)
    assert plan["checkpointing"].startswith("off (auto: needs ~")
    assert plan["memory"]["no_liger"]["checkpointing"].startswith("off (auto:")


def test_plan_of_the_documented_32b_32k_config_says_auto_chose_checkpointing(tmp_path, capsys):
    """config.yaml at the repository root (32B, rows of 32K tokens), planned from the shipped
    Qwen2.5-32B config.json without weights, with a phase holding a document longer than 32K tokens."""
    config = tmp_path / "config.yaml"
    shutil.copy(REPO / "config.yaml", config)
    cfg, _ = load_config(config, check_files=False)
    assert cfg.training.gradient_checkpointing == "auto" and cfg.context.max_tokens == 32768
    (tmp_path / "dataset").mkdir()
    for phase in cfg.phases:
        shutil.copy(QUICKSTART_DATA / f"{phase.name}.jsonl", tmp_path / "dataset" / f"{phase.name}.jsonl")
    long_document = {"training_content": "def f(x):\n    return x + 1\n" * 6000}  # ~168K bytes: > 32K tokens
    with open(tmp_path / "dataset" / "phase1_foundation.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(long_document) + "\n")
    one_h100 = plan_json(capsys, str(config), "--model-config", str(QWEN25_32B))
    assert one_h100["memory"]["row_tokens"] == 32768
    assert one_h100["checkpointing"].startswith("full")  # every layer (+ offload where nothing fits)
    assert "auto: nothing fits 71.3 GiB" in one_h100["checkpointing"]
    eight_h200 = plan_json(capsys, str(config), "--gpus", "8", "--gpu-model", "h200", "--model-config", str(QWEN25_32B))
    assert eight_h200["checkpointing"].startswith("full")
