"""Turning rows into batches for the Trainer."""

from __future__ import annotations

from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from phased_cpt.config import ContextConfig
from phased_cpt.data.chunking import IGNORE_INDEX


def make_collator(tokenizer: PreTrainedTokenizerBase, context: ContextConfig):
    """Batches padded to their longest row (not to max_tokens).

    Pads input_ids with pad_token_id and labels with -100: an EOS label is never masked, even
    when pad_token == eos_token (DataCollatorForLanguageModeling would mask every EOS).
    """
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
