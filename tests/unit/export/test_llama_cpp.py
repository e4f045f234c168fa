"""Finding llama.cpp's converter and what it converts: missing, too old, and an architecture it
does not know, each one line saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.export import llama_cpp
from phased_cpt.export.llama_cpp import ENV_VAR, find_converter


def fake_checkout(root: Path, gguf_py_version: str | None) -> Path:
    """A directory laid out like a llama.cpp checkout (converter script, gguf-py/pyproject.toml)."""
    (root / "gguf-py").mkdir(parents=True)
    (root / "convert_hf_to_gguf.py").write_text('@ModelBase.register("LlamaForCausalLM", "MistralForCausalLM")\n')
    if gguf_py_version is not None:
        (root / "gguf-py" / "pyproject.toml").write_text(
            f'[tool.poetry]\nname = "gguf"\nversion = "{gguf_py_version}"\n'
        )
    return root


def test_a_missing_converter_is_one_line_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(UserError) as err:
        find_converter(tmp_path / "nowhere")
    message = str(err.value)
    assert "\n" not in message and "convert_hf_to_gguf.py not found" in message
    assert "git clone https://github.com/ggml-org/llama.cpp" in message and "--llama-cpp DIR" in message


def test_a_too_old_or_unversioned_converter_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"too old \(gguf-py 0.9.0, need 0.17.0"):
        find_converter(fake_checkout(tmp_path / "old", "0.9.0"))
    with pytest.raises(UserError, match=r"too old \(gguf-py unknown"):
        find_converter(fake_checkout(tmp_path / "bare", None))
    assert find_converter(fake_checkout(tmp_path / "new", "0.19.0")).gguf_py_version == (0, 19, 0)


def test_the_flag_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(fake_checkout(tmp_path / "env", "0.18.1")))
    assert find_converter(None).root == tmp_path / "env"
    assert find_converter(fake_checkout(tmp_path / "flag", "0.19.0")).root == tmp_path / "flag"


def test_registered_architectures_are_read_from_the_converter_source(tmp_path):
    converter = find_converter(fake_checkout(tmp_path / "c", "0.19.0"))
    assert converter.converts("LlamaForCausalLM") and converter.converts("MistralForCausalLM")
    assert not converter.converts("Llama") and not converter.converts("NotARealForCausalLM")


def test_the_installed_converter_knows_llama_and_qwen2():
    converter = find_converter(None)  # `make install` put it there (or $PHASED_CPT_LLAMA_CPP)
    assert converter.gguf_py_version >= llama_cpp.MIN_GGUF_PY
    assert converter.converts("LlamaForCausalLM") and converter.converts("Qwen2ForCausalLM")
