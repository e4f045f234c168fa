"""Shared fixtures and builders: a tiny tokenizer + random model built offline once per session
(and its tokenizers), small phase files, configs, LoRA adapters with random weights, and run
directories made through `RunDir`. Models are saved with `save_pretrained` and loaded through the
production code."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from phased_cpt.quickstart.tiny_model import TinyModelSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The data cache and the quickstart model go to a per-session directory, not the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="phased-cpt-tests-cache-")

from phased_cpt.config import LoraConfig, ModelConfig, PerformanceConfig, TrainingConfig, load_config  # noqa: E402
from phased_cpt.config.schema import liger_installed  # noqa: E402
from phased_cpt.errors import ConfigError  # noqa: E402
from phased_cpt.quickstart import DATA_DIR  # noqa: E402
from phased_cpt.quickstart.tiny_model import build_tiny_model  # noqa: E402
from phased_cpt.run_dir import FinishedPhase, RunDir, RunState  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
"""The repository's root: its README.md, config.yaml, docs/ and tests/fixtures/."""
CORPUS = sorted(DATA_DIR.glob("*.jsonl"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Qwen2-style: no BOS, pad token == EOS token."""
    out = tmp_path_factory.mktemp("tiny-qwen2")
    return build_tiny_model(
        out, CORPUS, TinyModelSpec(architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2)
    )


@pytest.fixture(scope="session")
def tiny_llama_bos_dir(tmp_path_factory) -> Path:
    """Llama-style: the tokenizer prepends BOS."""
    out = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_model(
        out, CORPUS, TinyModelSpec(architecture="llama", vocab_size=512, hidden_size=32, num_layers=2, bos=True)
    )


@pytest.fixture(scope="session")
def tiny_sentencepiece_llama_dir(tmp_path_factory) -> Path:
    """Llama-style with a SentencePiece tokenizer (`tokenizer.model`), which llama.cpp's converter reads."""
    out = tmp_path_factory.mktemp("tiny-llama-spm")
    return build_tiny_model(
        out,
        CORPUS,
        TinyModelSpec(
            architecture="llama", vocab_size=512, hidden_size=32, num_layers=2, tokenizer_kind="sentencepiece"
        ),
    )


@pytest.fixture(scope="session")
def tiny_fim_model_dir(tmp_path_factory) -> Path:
    """Qwen2-style with Qwen2.5-Coder's fill-in-the-middle tokens in its tokenizer."""
    out = tmp_path_factory.mktemp("tiny-qwen2-fim")
    return build_tiny_model(
        out, CORPUS, TinyModelSpec(architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2, fim=True)
    )


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    """The tiny Qwen2-style model's tokenizer, loaded as production loads it."""
    from phased_cpt.modeling import load_tokenizer

    return load_tokenizer(ModelConfig(name=str(tiny_model_dir)))


@pytest.fixture(scope="session")
def fim_tokenizer(tiny_fim_model_dir):
    """The tokenizer with Qwen2.5-Coder's fill-in-the-middle tokens."""
    from phased_cpt.modeling import load_tokenizer

    return load_tokenizer(ModelConfig(name=str(tiny_fim_model_dir)))


@pytest.fixture(scope="session")
def llama_tokenizer(tiny_llama_bos_dir):
    """The Llama-style tokenizer that prepends BOS."""
    from phased_cpt.modeling import load_tokenizer

    return load_tokenizer(ModelConfig(name=str(tiny_llama_bos_dir)))


def write_jsonl(path: Path, texts: list[str], field: str = "training_content") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({field: text}) + "\n")
    return path


def bundled_texts(name: str, limit: int | None = None) -> list[str]:
    with open(DATA_DIR / f"{name}.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["training_content"] for line in f if line.strip()]
    return texts[:limit]


no_liger = pytest.mark.skipif(liger_installed(), reason="checks the behaviour without liger-kernel")


def training_with(**performance) -> TrainingConfig:
    """Checkpointing on (`auto` is resolved before the Trainer is built: tests/unit/test_memory.py)."""
    return TrainingConfig(gradient_checkpointing=True, performance=PerformanceConfig(**performance))


def tiny_model_config(model_dir: Path) -> ModelConfig:
    return ModelConfig(name=str(model_dir), dtype="float32", attn_implementation="sdpa")


def save_random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter whose B matrices are random (a fresh adapter's are zero: a no-op)."""
    import torch

    from phased_cpt.modeling import attach_lora, load_base_model

    model = attach_lora(load_base_model(tiny_model_config(model_dir)), LoraConfig(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Two adapters of the tiny Qwen2-style model with random, different, non-zero weights."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "phase1": save_random_adapter(tiny_model_dir, root / "phase1", seed=1),
        "phase2": save_random_adapter(tiny_model_dir, root / "phase2", seed=2),
    }


def write_run(
    path: Path, model_dir: Path, phases: list[str], finished: list[str], adapters: dict[str, Path] | None = None
) -> Path:
    """A run directory as training leaves it, written through `RunDir`: the resolved config, the
    finished phases in state.json (3 steps each) and their adapter directories (a link to
    `adapters[phase]`, or a directory with only adapter_config.json)."""
    path.mkdir(parents=True)
    run = RunDir(path)
    config = {
        "model": {"name": str(model_dir), "size": None, "dtype": "float32", "attn_implementation": "sdpa"},
        "phases": [{"name": p, "file": f"{p}.jsonl", "epochs": 1} for p in phases],
    }
    run.write_config(yaml.safe_dump(config))
    run.write_state(RunState())
    for phase in finished:
        run.mark_done(FinishedPhase(name=phase, steps=3))
        target = run.adapter_dir(phase)
        target.parent.mkdir(parents=True, exist_ok=True)
        if adapters and phase in adapters:
            target.symlink_to(adapters[phase], target_is_directory=True)
        else:
            target.mkdir()
            (target / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model_dir)}))
    return path


@pytest.fixture
def finished_run(tmp_path, tiny_model_dir, random_adapters) -> Path:
    """A run of two phases, both finished, with the random adapters."""
    return write_run(tmp_path / "run", tiny_model_dir, ["phase1", "phase2"], ["phase1", "phase2"], random_adapters)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_run_config(model_dir: Path, phase_files: list[tuple[str, Path, float]], **sections) -> dict:
    data = {
        "model": {"name": str(model_dir), "dtype": "float32", "attn_implementation": "sdpa"},
        "training": {
            "micro_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "learning_rate": 3e-3,
            "warmup_ratio": 0.0,
            "weight_decay": 0.0,
            "logging_steps": 1,
            "save_steps": 5,
            "save_total_limit": 2,
            "gradient_checkpointing": True,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        },
        "context": {"max_tokens": 128, "overlap_tokens": 16},
        "phases": [{"name": name, "file": str(file), "epochs": epochs} for name, file, epochs in phase_files],
        "output": {"dir": "outputs", "run_name": "e2e"},
        "wandb": {"enabled": False},
        # generation costs seconds; the tests that need it turn it on
        "evaluation": {"completion": {"samples": 0}, "humaneval": {"problems": 0}},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


def config_problems(config: Path | dict, overrides: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The problems `load_config` reports for a config file (or config data), each one line."""
    path, data = (config, None) if isinstance(config, Path) else (None, config)
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides), base_data=data)
    assert all("\n" not in problem for problem in err.value.problems), err.value.problems
    return err.value.problems


def metrics_config(tensorboard: bool, wandb: bool):
    """A run config whose metrics sections turn TensorBoard and W&B on or off (phase files unchecked)."""
    from phased_cpt.config import RunConfig

    data = {"tensorboard": {"enabled": tensorboard}, "wandb": {"enabled": wandb, "project": "t"}}
    return RunConfig.model_validate(data, context={"check_files": False})
