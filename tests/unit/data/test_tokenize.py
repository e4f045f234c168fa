"""data/tokenize.py: the fast encoding gives the tokenizer's own ids; very long documents are
tokenized in slices with exactly the ids of the whole text, and with memory bounded by a small multiple of the document (a 61 MB one-line document took 15 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from phased_cpt.config import ModelConfig
from phased_cpt.data import tokenize
from phased_cpt.data.tokenize import encode_long_text, encode_plain, slice_bounds, slicing_is_exact
from phased_cpt.modeling import load_tokenizer
from tests.conftest import bundled_texts

MEMORY_MULTIPLE = 10
"""The documented bound (`tokenize.LONG_DOCUMENT_CHARS`): peak memory above the baseline of
preparing a phase, per byte of its longest document, plus `SLICE_ALLOWANCE_BYTES`."""
SLICE_ALLOWANCE_BYTES = 64 << 20


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request, tiny_model_dir, tiny_llama_bos_dir):
    return load_tokenizer(ModelConfig(name=str(tiny_model_dir if request.param == "qwen2" else tiny_llama_bos_dir)))


def long_text(chars: int) -> str:
    code = "\n".join(bundled_texts("phase1_foundation"))
    return (code * (chars // len(code) + 1))[:chars]


def test_slices_cover_the_text_and_end_at_cut_positions():
    text = long_text(1_000_000)
    bounds = list(slice_bounds(text, 100_000))
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(end - start <= 100_000 for start, end in bounds)
    assert all(text[end - 1] == "\n" or text[end] == " " for _, end in bounds[:-1])
    assert list(slice_bounds("x" * 500, 100)) == [(0, 500)]  # no cut position: one slice


def test_sliced_ids_equal_the_whole_texts_ids(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenize, "LONG_DOCUMENT_CHARS", 4096)
    assert slicing_is_exact(tokenizer)
    for text in (long_text(60_000), "word " * 5000 + "x" * 9000 + " tail", "a\n\n\n b;\n\n" * 3000):
        whole = encode_plain([text], tokenizer, special_tokens=True)[0]
        sliced = encode_long_text(text, tokenizer)
        assert sliced.dtype == np.int32 and sliced.tolist() == whole


def test_a_tokenizer_that_cannot_be_sliced_gets_the_whole_text(tokenizer, monkeypatch):
    from tokenizers import normalizers

    monkeypatch.setattr(tokenize, "LONG_DOCUMENT_CHARS", 4096)
    monkeypatch.setattr(tokenize, "_slicing_exact", {})
    backend = tokenizer.backend_tokenizer
    saved = backend.normalizer
    backend.normalizer = normalizers.Prepend("a")  # like SentencePiece's "▁": every slice would get one
    try:
        assert not slicing_is_exact(tokenizer)
        text = long_text(20_000)
        assert encode_long_text(text, tokenizer).tolist() == encode_plain([text], tokenizer, special_tokens=True)[0]
    finally:
        backend.normalizer = saved
        tokenize._slicing_exact.clear()


MEASURE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from transformers import AutoTokenizer
    from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
    from phased_cpt.data.phase_data import build_phase_data

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    model_dir, data_file, cache_dir = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    phase = PhaseConfig(name="p", file=Path(data_file))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # restart the peak (VmHWM) from the current resident size
    before = status("VmRSS")
    data = build_phase_data(phase, DataConfig(eval_ratio=0.0), tokenizer, ContextConfig(max_tokens=512, overlap_tokens=32),
                            seed=0, cache_dir=Path(cache_dir))
    print(status("VmHWM") - before, data.train.stats["longest_document_tokens"])
""")


def can_reset_peak_memory() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not can_reset_peak_memory(), reason="needs Linux's /proc/self/clear_refs to measure a peak")
def test_preparing_a_long_document_needs_a_bounded_multiple_of_its_size(tiny_model_dir, tmp_path):
    text = long_text(3_000_000)
    data_file = tmp_path / "long.jsonl"
    data_file.write_text(json.dumps({"training_content": text}) + "\n")
    document_bytes = len(text.encode("utf-8"))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tiny_model_dir), str(data_file), str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grown, longest = map(int, result.stdout.split())
    assert longest > 500_000  # the document really was tokenized, as one document
    assert grown < MEMORY_MULTIPLE * document_bytes + SLICE_ALLOWANCE_BYTES, (
        f"{grown / 2**20:.0f} MiB for a {document_bytes / 2**20:.1f} MB document"
    )


def test_fast_encoding_gives_the_ids_of_the_tokenizers_own_call(tokenizer):
    from phased_cpt.data.tokenize import encode_texts

    tok = tokenizer  # this module's: the Qwen2-style one and the Llama-style one with BOS
    texts = bundled_texts("phase3_pr_mastery", 20) + ["héllo wörld\r\n\ttabs", "x"]
    assert encode_texts(texts, tok) == tok(texts, add_special_tokens=True)["input_ids"]
    tok.backend_tokenizer.enable_truncation(8)  # a backend that would truncate is never used directly
    try:
        assert encode_texts(texts, tok) == tok(texts, add_special_tokens=True)["input_ids"]
        assert max(len(ids) for ids in encode_texts(texts, tok)) > 8
    finally:
        tok.backend_tokenizer.no_truncation()
