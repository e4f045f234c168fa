"""`phased-cpt export` end to end on the quickstart run itself (`phased-cpt train` with no config:
its config, its bundled data, its tiny Llama with a SentencePiece tokenizer, which llama.cpp's
converter reads): exported to every target through the command line, each with its parity check;
`--check` alone; what is refused. A check that fails on replaced weights is
tests/unit/export/test_hf.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from phased_cpt.export.target import EXPORT_MARKER
from tests.e2e.cli import assert_user_error, run_cli
from tests.unit.export.modelfile_grammar import parse_modelfile

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def work(quickstart_work) -> Path:
    """The quickstart's working directory (tests/e2e/conftest.py); the exports go to `exports/` in it."""
    return quickstart_work


@pytest.fixture(scope="module")
def run(work) -> Path:
    (run_dir,) = (work / "outputs").iterdir()
    return run_dir


def export(work: Path, run: Path, *args: str):
    return run_cli(["export", str(run), *args], cwd=work)


def marker(out: Path) -> dict:
    return json.loads((out / EXPORT_MARKER).read_text())


def test_hf_export_carries_its_tokenizer_and_passes_parity_exactly(work, run):
    result = export(work, run, "--to", "hf", "--out", "exports/hf")
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "exports" / "hf"
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert len(AutoTokenizer.from_pretrained(out)) == 1024  # not the empty tokenizer of a directory without files
    parity = marker(out)["parity"]
    assert parity["precision"] == "float32" and parity["greedy_agreement"] == 1.0
    assert parity["relative_error"] <= 1e-4 and parity["prompts"] == 5


def test_gguf_f16_greedy_tokens_equal_and_check_alone_passes(work, run):
    result = export(work, run, "--to", "gguf", "--out", "exports/gguf")
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "exports" / "gguf"
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_MARKER, "model-f16.gguf"]
    assert (out / "model-f16.gguf").read_bytes()[:4] == b"GGUF"
    parity = marker(out)["parity"]
    assert parity["precision"] == "gguf-f16" and parity["greedy_agreement"] == 1.0 and parity["relative_error"] <= 2e-2
    assert "llama-cli -m" in result.stdout

    check = export(work, run, "--to", "gguf", "--out", "exports/gguf", "--check")
    assert check.returncode == 0, check.stderr[-3000:]
    assert "checked the gguf export" in check.stdout and "greedy tokens 100% equal" in check.stdout


def test_ollama_q8_0_meets_its_tolerance_and_the_modelfile_parses(work, run):
    result = export(work, run, "--to", "ollama", "--gguf-type", "q8_0", "--out", "exports/ollama")
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "exports" / "ollama"
    parity = marker(out)["parity"]
    assert parity["precision"] == "gguf-q8_0"
    assert parity["relative_error"] <= 0.1 and parity["greedy_agreement"] >= 0.75
    commands = parse_modelfile((out / "Modelfile").read_text())
    assert commands[0] == ("FROM", "./model-q8_0.gguf") and (out / "model-q8_0.gguf").is_file()
    assert ("TEMPLATE", "{{ .Prompt }}") in commands and ("PARAMETER", "stop </s>") in commands
    assert "ollama create phase3_pr_mastery -f" in result.stdout


def test_vllm_refuses_rank_32_without_the_flag_then_exports_the_adapter(work, run):
    refused = export(work, run, "--to", "vllm", "--out", "exports/vllm")
    assert_user_error(refused, "its rank r=32 is above --max-lora-rank 16")
    assert "pass --max-lora-rank 32" in refused.stderr and not (work / "exports" / "vllm").exists()
    result = export(work, run, "--to", "vllm", "--max-lora-rank", "32", "--out", "exports/vllm")
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "exports" / "vllm"
    adapter = run / "phase3_pr_mastery" / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (out / name).read_bytes() == (adapter / name).read_bytes()
    assert marker(out)["parity"]["relative_error"] == 0.0
    assert f"--enable-lora --lora-modules phase3_pr_mastery={out.relative_to(work)} --max-lora-rank 32" in result.stdout


def test_out_must_be_new_or_an_earlier_export(work, run, tmp_path):
    """Through the command line; the kind rules (an hf export is not a gguf one) are
    tests/unit/export/test_target.py."""
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert_user_error(export(work, run, "--to", "gguf", "--out", str(other)), "is not empty")
    assert_user_error(export(work, run, "--to", "gguf", "--out", str(other), "--force"), "no .phased-cpt-export")
    assert (other / "mine.txt").read_text() == "keep me"
    assert_user_error(export(work, run, "--to", "gguf", "--out", str(run.parent), "--force"), "contains the source run")
