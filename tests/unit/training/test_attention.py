"""`sdpa_packed` (training/attention.py): causal sdpa per document of a packed row gives the
logits, loss and gradients of transformers' sdpa with its block-diagonal mask; `auto` chooses it
on a CPU for packed rows only."""

from pathlib import Path

import pytest
import torch
import yaml

from phased_cpt.cli import main
from phased_cpt.config import ContextConfig, LoraConfig, ModelConfig
from phased_cpt.modeling import attach_lora, load_base_model
from phased_cpt.plans.kernels import PACKED_SDPA
from phased_cpt.quickstart import DATA_DIR
from phased_cpt.training.attention import apply_attention, document_lengths, packed_sdpa_attention

REPO = Path(__file__).resolve().parents[3]
PACKED = ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=True)
PADDED = ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=False)


def test_documents_start_where_the_position_does_not_follow_the_previous_one():
    assert document_lengths(torch.tensor([0, 1, 2, 0, 1, 0, 0, 1, 2, 3])) == [3, 2, 1, 4]
    assert document_lengths(torch.tensor([5, 6, 7])) == [3]  # a chunk's positions may start past 0
    assert document_lengths(torch.tensor([0])) == [1]


def forward_backward(model, implementation: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    model.get_base_model().set_attn_implementation(implementation)
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return out.logits.detach(), out.loss.detach(), grads


@pytest.fixture(params=["tiny_model_dir", "tiny_llama_bos_dir"])
def lora_model(request):
    """A Qwen2 (grouped-query attention: 4 heads, 2 KV heads) and a Llama, LoRA attached."""
    name = str(request.getfixturevalue(request.param))
    torch.manual_seed(0)
    model = attach_lora(
        load_base_model(ModelConfig(name=name, dtype="float32", attn_implementation="sdpa")), LoraConfig()
    )
    model.train()
    for module in model.modules():  # dropout off: both passes must see the same function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def packed_batch(lengths: list[int], vocab: int = 512) -> dict:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (1, sum(lengths)), generator=generator)
    labels = ids.clone()
    labels[0, torch.tensor(lengths).cumsum(0)[:-1]] = -100  # the first token of each document
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def assert_same(a, b):
    logits_a, loss_a, grads_a = a
    logits_b, loss_b, grads_b = b
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert len(grads_a) == len(grads_b) > 0
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)


def test_a_packed_row_gives_the_masked_paths_logits_loss_and_gradients(lora_model):
    batch = packed_batch([7, 19, 1, 33, 4])
    assert_same(forward_backward(lora_model, "sdpa", batch), forward_backward(lora_model, PACKED_SDPA, batch))


def test_the_documents_do_not_see_each_other(lora_model):
    """Changing the first document leaves the second one's logits as they were."""
    batch = packed_batch([10, 12])
    lora_model.get_base_model().set_attn_implementation(PACKED_SDPA)
    with torch.no_grad():
        before = lora_model(**batch).logits[0, 10:]
        batch["input_ids"][0, :10] = 5
        after = lora_model(**batch).logits[0, 10:]
    torch.testing.assert_close(after, before)


def test_padded_and_single_document_batches_are_sdpa_unchanged(lora_model):
    ids = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    padded = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    assert_same(forward_backward(lora_model, "sdpa", padded), forward_backward(lora_model, PACKED_SDPA, padded))
    single = {"input_ids": ids[:1], "labels": ids[:1]}
    assert_same(forward_backward(lora_model, "sdpa", single), forward_backward(lora_model, PACKED_SDPA, single))


def test_a_packed_call_without_position_ids_is_refused():
    query = torch.zeros(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="needs the position ids"):
        packed_sdpa_attention(torch.nn.Module(), query, query, query, None)


def test_apply_attention_switches_the_loaded_model(tiny_model_dir):
    model = attach_lora(load_base_model(ModelConfig(name=str(tiny_model_dir))), LoraConfig())
    assert model.config._attn_implementation == "sdpa"
    choice = apply_attention(model, ModelConfig(name=str(tiny_model_dir)), PACKED)
    assert choice.implementation == model.get_base_model().config._attn_implementation == PACKED_SDPA
    apply_attention(model, ModelConfig(name=str(tiny_model_dir)), PADDED)
    assert model.config._attn_implementation == "sdpa"


def test_plan_says_what_auto_chooses(tiny_model_dir, tmp_path, capsys):
    """(The run's own line, `attention: sdpa_packed (...)`, is checked by tests/e2e/test_gpu_check.py.)"""

    config = tmp_path / "config.yaml"
    data = {
        "model": {"name": str(tiny_model_dir)},
        "context": {"max_tokens": 64, "overlap_tokens": 8, "sample_packing": True},
        "phases": [{"name": "p1", "file": str(DATA_DIR / "phase1_foundation.jsonl")}],
        "data": {"cache_dir": str(tmp_path / "cache")},
    }
    config.write_text(yaml.safe_dump(data))
    assert main(["plan", str(config)]) == 0
    assert "\nattention: flash_attention_2 where flash-attn is installed, else sdpa (auto: GPU) on a GPU; " in (
        capsys.readouterr().out
    )
