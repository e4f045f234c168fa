"""The gguf target in process, with llama.cpp's real converter and runtime on the small
SentencePiece Llama: refusals before any work (an architecture the converter does not register,
a tokenizer it cannot read) and the LoRA variants that merge (DoRA, trained embeddings) exporting
with parity."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from phased_cpt.config import LoraConfig
from phased_cpt.errors import UserError
from phased_cpt.export.flow import export_adapter
from phased_cpt.export.target import EXPORT_MARKER, ExportOptions, Source
from phased_cpt.modeling import attach_lora, load_base_model
from tests.conftest import save_random_adapter, tiny_model_config


def random_adapter(model_dir: Path, out: Path, lora: LoraConfig, seed: int = 0) -> Path:
    """A saved adapter of the `lora` variant with random, non-zero weights everywhere it trains."""
    model = attach_lora(load_base_model(tiny_model_config(model_dir)), lora)
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(out)
    return out


def source(model_dir: Path, adapter: Path) -> Source:
    return Source(model=tiny_model_config(model_dir), adapter_dir=adapter, label="phase1")


@pytest.mark.parametrize(
    "lora",
    [
        LoraConfig(r=4, alpha=8, dropout=0.0, use_dora=True, use_rslora=True),
        LoraConfig(r=4, alpha=8, dropout=0.0, embeddings="full"),
        LoraConfig(r=4, alpha=8, dropout=0.0, embeddings="lora"),
    ],
    ids=["dora+rslora", "embeddings-full", "embeddings-lora"],
)
def test_variants_that_merge_export_to_gguf_with_greedy_tokens_equal(tiny_sentencepiece_llama_dir, tmp_path, lora):
    """f32: a random tiny model has near-ties that float16 may flip (f16 is checked on the trained
    quickstart model in tests/e2e/test_export.py); what is tested here is that the variant merges
    and converts into a GGUF that answers like the adapter."""
    adapter = random_adapter(tiny_sentencepiece_llama_dir, tmp_path / "adapter", lora)
    options = ExportOptions(gguf_type="f32")
    result = export_adapter(source(tiny_sentencepiece_llama_dir, adapter), "gguf", tmp_path / "out", options)
    assert result.parity.greedy_agreement == 1.0 and result.parity.relative_error <= 1e-2
    assert json.loads((tmp_path / "out" / EXPORT_MARKER).read_text())["model_file"] == "model-f32.gguf"


def test_an_architecture_the_converter_does_not_register_is_refused_before_any_work(
    tiny_sentencepiece_llama_dir, tmp_path
):
    model = Path(shutil.copytree(tiny_sentencepiece_llama_dir, tmp_path / "model"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "architectures": ["NotARealForCausalLM"]}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()  # never read: the refusal comes first
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot convert NotARealForCausalLM .*export --to hf or --to vllm"):
        export_adapter(source(model, adapter), "gguf", tmp_path / "out", ExportOptions())
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_tokenizer_the_converter_cannot_read_is_refused_before_the_merge(tiny_model_dir, tmp_path):
    """The byte-level BPE trained here: llama.cpp does not know its pre-tokenizer."""
    adapter = save_random_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    with pytest.raises(UserError, match=r"could not read the tokenizer of the model: .*pre-tokenizer"):
        export_adapter(source(tiny_model_dir, adapter), "ollama", tmp_path / "out", ExportOptions())
    assert not (tmp_path / "out").exists()
