"""Text to token ids for data preparation: the tokenizer, or an estimate from the text's bytes.

`prepare.py` runs the same steps (split, chunk, mix, pack, count) with either encoder, so a plan
made without the tokenizer (`plan.prepare_plan_rows`) has the structure of the real one: the
same documents, eval split, chunk window, EOS targets and packing; only the token counts are
estimates. The byte estimate cannot rearrange text for fill-in-the-middle (that needs the real
tokens): `fim_setup` is None for it, and the plan says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from transformers import PreTrainedTokenizerBase

from phased_cpt.data.cache import tokenizer_digest
from phased_cpt.data.fim import FimSetup, require_fim_tokens
from phased_cpt.data.tokenize import document_ids


class Encoder(Protocol):
    identity: str
    """What the cache key holds for it: changes whenever it could give other ids for a text."""
    eos_token_id: int
    bos_token_id: int | None
    estimated: bool
    """True: token counts estimated, not counted."""

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids as int32, EOS once after its last token."""
        ...

    def fim_setup(self, max_tokens: int, setting: str) -> FimSetup | None:
        """What rearranging chunks for FIM needs; None when this encoder cannot."""
        ...


class TokenizerEncoder:
    """The model's tokenizer (`tokenize.document_ids`): the ids training sees."""

    estimated = False

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.identity = tokenizer_digest(tokenizer)
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return document_ids(texts, self.tokenizer)

    def fim_setup(self, max_tokens: int, setting: str) -> FimSetup:
        return FimSetup(require_fim_tokens(self.tokenizer, setting), self.tokenizer, max_tokens)


@dataclass(frozen=True)
class ByteEstimate:
    """Each text as ceil(UTF-8 bytes / `bytes_per_token`) tokens, then EOS: for planning when the
    tokenizer cannot be loaded. The ids are placeholders (`TEXT_ID` for every text token), never
    trained on; only their number and where EOS sits mean anything."""

    bytes_per_token: float
    eos_token_id: int = 1
    bos_token_id: int | None = None
    estimated = True
    TEXT_ID = 0

    @property
    def identity(self) -> str:
        return f"bytes-per-token:{self.bytes_per_token!r}"

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        ids = []
        for text in texts:
            length = math.ceil(len(text.encode("utf-8", "replace")) / self.bytes_per_token)
            document = np.full(length + 1, self.TEXT_ID, dtype=np.int32)
            document[-1] = self.eos_token_id
            ids.append(document)
        return ids

    def fim_setup(self, max_tokens: int, setting: str) -> None:
        return None


def as_encoder(tokenizer: PreTrainedTokenizerBase | Encoder) -> Encoder:
    """`tokenizer` as an `Encoder` (an encoder is returned as it is)."""
    return tokenizer if hasattr(tokenizer, "fim_setup") else TokenizerEncoder(tokenizer)
