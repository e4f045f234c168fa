"""export/hf.py: the adapter merged into a plain transformers model that carries its tokenizer and
answers as the adapter does (exact parity in float32), and a `--check` that fails once the weights
are not the merged ones (moved down from tests/e2e/test_export.py, which ran it through the CLI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from phased_cpt.errors import UserError
from phased_cpt.export.flow import check_export, export_adapter
from phased_cpt.export.target import EXPORT_MARKER, ExportOptions, Source
from tests.conftest import tiny_model_config


@pytest.fixture(scope="module")
def source(tiny_model_dir, random_adapters) -> Source:
    return Source(model=tiny_model_config(tiny_model_dir), adapter_dir=random_adapters["phase1"], label="phase1")


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "hf"
    result = export_adapter(source, "hf", out, ExportOptions())
    assert result.out_dir == out and result.kind == "hf"
    assert result.usage == [
        f"load it: AutoModelForCausalLM.from_pretrained({str(out)!r})",
        f"serve it: vllm serve {out}",
    ]
    assert result.parity.greedy_agreement == 1.0
    return out


def test_the_merged_model_carries_its_tokenizer_and_passes_parity_exactly(exported, tokenizer):
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", EXPORT_MARKER} <= {
        p.name for p in exported.iterdir()
    }
    assert AutoTokenizer.from_pretrained(exported).get_vocab() == tokenizer.get_vocab()


def test_check_alone_passes_on_the_export_and_fails_once_the_weights_are_the_base_models(
    exported, source, tiny_model_dir, tmp_path
):
    report = check_export(source, "hf", exported, ExportOptions()).parity
    assert report.precision == "float32" and report.greedy_agreement == 1.0 and report.relative_error <= 1e-4
    replaced = shutil.copytree(exported, tmp_path / "hf")
    shutil.copyfile(tiny_model_dir / "model.safetensors", replaced / "model.safetensors")
    with pytest.raises(UserError, match=r"\(float32\): prompt 1 \("):
        check_export(source, "hf", replaced, ExportOptions())
