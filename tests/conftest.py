"""Shared fixtures: a tiny tokenizer + random model built offline once per session, and small
phase files. Models are saved with `save_pretrained` and loaded through the production code."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The data cache and the quickstart model go to a per-session directory, not the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="phased-cpt-tests-cache-")

from phased_cpt.quickstart import DATA_DIR  # noqa: E402
from phased_cpt.quickstart.tiny_model import build_tiny_model  # noqa: E402

CORPUS = sorted(DATA_DIR.glob("*.jsonl"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Qwen2-style: no BOS, pad token == EOS token."""
    out = tmp_path_factory.mktemp("tiny-qwen2")
    return build_tiny_model(out, CORPUS, architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2)


@pytest.fixture(scope="session")
def tiny_llama_bos_dir(tmp_path_factory) -> Path:
    """Llama-style: the tokenizer prepends BOS."""
    out = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_model(out, CORPUS, architecture="llama", vocab_size=512, hidden_size=32, num_layers=2, bos=True)


@pytest.fixture(scope="session")
def tiny_sentencepiece_llama_dir(tmp_path_factory) -> Path:
    """Llama-style with a SentencePiece tokenizer (`tokenizer.model`), which llama.cpp's converter reads."""
    out = tmp_path_factory.mktemp("tiny-llama-spm")
    return build_tiny_model(
        out, CORPUS, architecture="llama", vocab_size=512, hidden_size=32, num_layers=2, tokenizer_kind="sentencepiece"
    )


@pytest.fixture(scope="session")
def tiny_fim_model_dir(tmp_path_factory) -> Path:
    """Qwen2-style with Qwen2.5-Coder's fill-in-the-middle tokens in its tokenizer."""
    out = tmp_path_factory.mktemp("tiny-qwen2-fim")
    return build_tiny_model(out, CORPUS, architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2, fim=True)


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


def metrics_config(tensorboard: bool, wandb: bool):
    """A run config whose metrics sections turn TensorBoard and W&B on or off (phase files unchecked)."""
    from phased_cpt.config import RunConfig

    data = {"tensorboard": {"enabled": tensorboard}, "wandb": {"enabled": wandb, "project": "t"}}
    return RunConfig.model_validate(data, context={"check_files": False})
