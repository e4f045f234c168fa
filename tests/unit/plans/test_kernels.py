"""plans/kernels.py: whether Liger runs, and which attention `model.attn_implementation: auto` is."""

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, MistralConfig

from phased_cpt.config import ContextConfig, ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.plans.kernels import PACKED_SDPA, choose_attention, has_sliding_window, plan_attention, resolve_liger

REPO = Path(__file__).resolve().parents[3]
PACKED = ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=True)
PADDED = ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=False)


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


def test_auto_chooses_per_document_attention_on_a_cpu_for_packed_rows_only(tiny_model_dir):
    config = AutoConfig.from_pretrained(tiny_model_dir).to_dict()
    auto = ModelConfig(name=str(tiny_model_dir))
    assert choose_attention(auto, PACKED, config, on_gpu=False).implementation == PACKED_SDPA
    assert choose_attention(auto, PADDED, config, on_gpu=False).describe() == "sdpa (auto: rows are not packed)"
    assert choose_attention(auto, PACKED, config, on_gpu=True).describe() == (
        "flash_attention_2 where flash-attn is installed, else sdpa (auto: GPU)"  # this test machine has no GPU
    )
    asked = ModelConfig(name=str(tiny_model_dir), attn_implementation="sdpa")
    assert choose_attention(asked, PACKED, config, on_gpu=False).describe() == "sdpa"
    sliding = MistralConfig(sliding_window=4096).to_dict()
    assert choose_attention(auto, PACKED, sliding, on_gpu=False).describe() == (
        "sdpa (auto: no per-document attention for mistral here)"
    )


def test_a_sliding_window_counts_only_where_it_is_used():
    """Qwen2.5's config.json names a window of 131,072 with use_sliding_window: false."""
    qwen25 = json.loads((REPO / "tests/fixtures/model_configs/qwen2.5-0.5b/config.json").read_text())
    assert qwen25["sliding_window"] and qwen25["use_sliding_window"] is False
    assert not has_sliding_window(qwen25)
    auto = ModelConfig(name="Qwen/Qwen2.5-0.5B")
    assert choose_attention(auto, PACKED, qwen25, on_gpu=False).implementation == PACKED_SDPA
    assert has_sliding_window({"sliding_window": 4096})  # Mistral 7B v0.1: no use_sliding_window key
    assert has_sliding_window({"layer_types": ["full_attention", "sliding_attention"]})


def test_plan_says_the_gpus_and_the_cpus_choice(tiny_model_dir):
    config = AutoConfig.from_pretrained(tiny_model_dir).to_dict()
    auto = ModelConfig(name=str(tiny_model_dir))
    assert plan_attention(auto, PACKED, config) == (
        "flash_attention_2 where flash-attn is installed, else sdpa (auto: GPU) on a GPU; "
        "sdpa_packed (auto: CPU, packed rows: causal sdpa per document, not one T^2 mask) on a CPU"
    )
    assert plan_attention(ModelConfig(name="x", attn_implementation="eager"), PACKED, config) == "eager"
