"""Attention per document inside a packed row on the CPU: `sdpa_packed`.

A packed row (`context.sample_packing: true`) holds several documents end to end, with
`position_ids` restarting at each one and no attention mask (`data/collate.py`). transformers'
`sdpa` turns that into a block-diagonal causal mask of the whole row and computes all T^2 scores
of it; on a CPU that is about half of a tiny model's step at rows of 2,048 tokens. `sdpa_packed`
runs sdpa with `is_causal` on each document's slice instead (what flash-attention's
variable-length kernels do on a GPU): sum t_i^2 / 2 scores, the same result as the mask.

Where the row is not packed (one document, an attention mask for padding, a KV cache), it is
transformers' `sdpa` unchanged: the same mask function and the same attention call.

`model.attn_implementation: auto` chooses it on a CPU for packed rows of a model type whose
attention gets the position ids (`PACKED_MODEL_TYPES`) and has no sliding window
(`choose_attention`); a GPU keeps flash_attention_2 or sdpa.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from phased_cpt.config import ContextConfig, ModelConfig
from phased_cpt.plans.kernels import PACKED_SDPA, AttentionChoice, choose_attention


def document_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the documents of one row: a new one starts wherever the position is not the
    previous one + 1 (transformers' `find_packed_sequence_indices` rule)."""
    starts = torch.nonzero(position_ids[1:] != position_ids[:-1] + 1).flatten() + 1
    bounds = [0, *starts.tolist(), position_ids.shape[0]]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (batch, heads, T, d), key and value
    (batch, kv heads, T, d); returns (batch, T, heads, d). With no mask, no cache and position ids
    that restart inside a row, causal sdpa per document; otherwise `sdpa_attention_forward`."""
    position_ids = kwargs.pop("position_ids", None)
    length = query.shape[2]
    if attention_mask is not None or length == 1 or key.shape[2] != length:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if position_ids is None:
        raise RuntimeError(f"{PACKED_SDPA} needs the position ids in the attention call; use sdpa for this model")
    position_ids = position_ids.expand(query.shape[0], -1)
    rows = [document_lengths(ids) for ids in position_ids]
    if all(len(lengths) == 1 for lengths in rows):
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)
    kwargs["is_causal"] = True
    outputs = []
    for b, lengths in enumerate(rows):
        pieces = zip(*(t[b : b + 1].split(lengths, dim=2) for t in (query, key, value)))
        outputs.append(torch.cat([sdpa_attention_forward(module, q, k, v, None, **kwargs)[0] for q, k, v in pieces], 1))
    return torch.cat(outputs, 0), None


def packed_sdpa_mask(**kwargs: Any) -> torch.Tensor | None:
    """No mask where `packed_sdpa_attention` splits the row itself (no padding mask, no cache:
    queries and keys are the same positions); elsewhere sdpa's mask."""
    if (
        kwargs.get("attention_mask") is None
        and kwargs.get("q_offset", 0) == 0
        and kwargs["q_length"] == kwargs["kv_length"]
    ):
        return None
    return sdpa_mask(**kwargs)


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, packed_sdpa_mask)


def apply_attention(model: Any, model_config: ModelConfig, context: ContextConfig) -> AttentionChoice:
    """Choose the attention for a loaded model (a PEFT model or a plain one) on this machine and
    switch it to that choice; returns the choice for the run's first lines."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = base.config.get_text_config().to_dict()
    choice = choose_attention(model_config, context, text, torch.cuda.is_available())
    if choice.implementation != base.config._attn_implementation:
        base.set_attn_implementation(choice.implementation)
    return choice
