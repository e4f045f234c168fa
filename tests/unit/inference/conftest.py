"""Fixtures for the inference tests: two saved LoRA adapters with random, non-zero weights on the
tiny Qwen2-style model, and a fake run directory layout around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.modeling import attach_lora, load_base_model


def tiny_model_config(model_dir: Path) -> ModelConfig:
    return ModelConfig(name=str(model_dir), dtype="float32", attn_implementation="sdpa")


def save_random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter whose B matrices are random (a fresh adapter's are zero: a no-op)."""
    model = attach_lora(load_base_model(tiny_model_config(model_dir)), LoraConfig(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out


def write_run(
    run: Path, model_dir: Path, phases: list[str], finished: list[str], adapters: dict[str, Path] | None = None
) -> Path:
    """A run directory as training leaves it: resolved config, state.json, adapter dirs."""
    run.mkdir(parents=True)
    config = {
        "model": {"name": str(model_dir), "size": None, "dtype": "float32", "attn_implementation": "sdpa"},
        "phases": [{"name": p, "file": f"{p}.jsonl", "epochs": 1} for p in phases],
    }
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    (run / "state.json").write_text(json.dumps({"finished_phases": [{"name": p, "steps": 3} for p in finished]}))
    for phase in finished:
        target = run / phase / "adapter"
        if adapters and phase in adapters:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(adapters[phase], target_is_directory=True)
        else:
            target.mkdir(parents=True)
            (target / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model_dir)}))
    return run


@pytest.fixture(scope="session")
def random_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "phase1": save_random_adapter(tiny_model_dir, root / "phase1", seed=1),
        "phase2": save_random_adapter(tiny_model_dir, root / "phase2", seed=2),
    }
