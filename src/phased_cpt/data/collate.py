"""Turning rows into batches for the Trainer: padded, or flattened packed rows.

Without packing, a batch is padded to its longest row (not to `max_tokens`), with an
attention mask. With packing, the batch's rows are laid end to end in one sequence of batch
size 1 (like transformers' `DataCollatorWithFlattening`), with `position_ids` restarting at
every document and chunk and NO `attention_mask`. That is how transformers 5 recognises packed
sequences: sdpa and eager build a block-diagonal causal mask from the position ids
(`masking_utils.find_packed_sequence_indices`), flash_attention_2 derives `cu_seqlens` from them
(which needs batch size 1). Both only happen when there is no attention mask and no KV cache:
the collator never emits a mask, and `check_packing_model` refuses a model whose config would
build a KV cache during training (`use_cache=True` silently turns the isolation off).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from phased_cpt.config import ContextConfig
from phased_cpt.data.chunking import IGNORE_INDEX


class PackedCollator:
    """Flattens packed rows into one `[1, total tokens]` sequence; see the module docstring."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if any("position_ids" not in row for row in rows):
            raise ValueError("packed batches need rows with position_ids (context.sample_packing: true)")
        return {
            key: torch.tensor([[t for row in rows for t in row[key]]], dtype=torch.long)
            for key in ("input_ids", "labels", "position_ids")
        }


def check_packing_model(model: Any, context: ContextConfig) -> None:
    """With packing, the model must not build a KV cache in its forward: transformers only
    isolates packed documents when there is none (and no attention mask)."""
    config = getattr(model, "config", None)
    if context.sample_packing and getattr(config, "use_cache", False):
        raise ValueError(
            "context.sample_packing needs model.config.use_cache = False: with a KV cache, "
            "transformers lets packed documents attend to each other"
        )


def make_collator(tokenizer: PreTrainedTokenizerBase, context: ContextConfig):
    """The collator for `context`: `PackedCollator` when packing, else padding to the longest row.

    Padding fills input_ids with pad_token_id and labels with -100: an EOS label is never masked,
    even when pad_token == eos_token (DataCollatorForLanguageModeling would mask every EOS).
    """
    if context.sample_packing:
        return PackedCollator()
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
