"""Packed documents do not see each other: a document's logits inside a packed row equal its
logits alone, for every attention implementation we support (flash_attention_2 on a GPU)."""

import importlib.util

import pytest
import torch

from phased_cpt.config import ContextConfig, ModelConfig
from phased_cpt.data.collate import check_packing_model, make_collator
from phased_cpt.modeling import load_base_model, load_tokenizer
from tests.conftest import bundled_texts

PACKED = ContextConfig(max_tokens=512, overlap_tokens=0, sample_packing=True)
IMPLEMENTATIONS = ["sdpa", "eager"]
if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
    IMPLEMENTATIONS.append("flash_attention_2")


def row_of(documents: list[list[int]]) -> dict:
    ids = [t for doc in documents for t in doc]
    positions = [p for doc in documents for p in range(len(doc))]
    return {"input_ids": ids, "labels": ids, "position_ids": positions}


@pytest.fixture(scope="module")
def documents(tiny_model_dir):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    texts = bundled_texts("phase1_foundation", 3)
    return [tokenizer(t)["input_ids"][:n] + [tokenizer.eos_token_id] for t, n in zip(texts, (40, 7, 25))]


@pytest.mark.parametrize("attn", IMPLEMENTATIONS)
def test_a_document_in_a_packed_row_has_the_logits_it_has_alone(tiny_model_dir, documents, attn):
    device = "cuda" if attn == "flash_attention_2" else "cpu"
    dtype = "bfloat16" if attn == "flash_attention_2" else "float32"
    model = (
        load_base_model(ModelConfig(name=str(tiny_model_dir), dtype=dtype, attn_implementation=attn)).to(device).eval()
    )
    check_packing_model(model, PACKED)
    collator = make_collator(None, PACKED)
    with torch.no_grad():
        batch = {k: v.to(device) for k, v in collator([row_of(documents[:2]), row_of(documents[2:])]).items()}
        packed = model(**batch).logits[0].float()
        offset = 0
        for doc in documents:
            alone = model(input_ids=torch.tensor([doc], device=device)).logits[0].float()
            difference = (packed[offset : offset + len(doc)] - alone).abs().max().item()
            assert difference < (1e-4 if device == "cpu" else 2e-2), (attn, difference)
            offset += len(doc)
        # the check can fail: the same tokens as one sequence (positions not restarting) differ
        plain = model(input_ids=batch["input_ids"]).logits[0].float()
        assert (plain[len(documents[0]) :] - packed[len(documents[0]) :]).abs().max().item() > 1e-2


def test_an_attention_mask_or_a_kv_cache_would_break_isolation(tiny_model_dir, documents):
    model = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")).eval()
    batch = make_collator(None, PACKED)([row_of(documents)])
    second = slice(len(documents[0]), len(documents[0]) + len(documents[1]))
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([documents[1]])).logits[0]
        masked = model(**batch, attention_mask=torch.ones_like(batch["input_ids"])).logits[0]
        cached = model(**batch, use_cache=True).logits[0]
    assert (masked[second] - alone).abs().max().item() > 1e-2
    assert (cached[second] - alone).abs().max().item() > 1e-2
    model.config.use_cache = True
    with pytest.raises(ValueError, match="use_cache"):
        check_packing_model(model, PACKED)
    check_packing_model(model, PACKED.model_copy(update={"sample_packing": False}))
