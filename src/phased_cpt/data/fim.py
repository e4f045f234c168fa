"""Fill-in-the-middle (FIM): training units rearranged so a code model learns to complete a gap.

A unit (a document or a chunk of one) chosen with probability `context.fim_rate` is cut at two
random *character* positions into prefix, middle and suffix (as Megatron-LM and StarCoder's
Megatron do: the cursor of an editor sits between characters, not between tokens), each part is
tokenized again, and the parts are laid out with the tokenizer's own FIM tokens:

    PSM  [P] prefix [S] suffix [M] middle EOS      (probability 1 - fim_spm_rate)
    SPM  [P] [S] suffix [M] prefix middle EOS      (probability fim_spm_rate; StarCoder's variant)

    document  "def f(x):\\n    return x + 1\\n" + EOS, cut at characters 9 and 22:
    prefix    "def f(x):"      middle "\\n    return x"      suffix " + 1\\n"
    PSM ids   [P] def f(x): [S]  + 1\\n [M] \\n    return x EOS
    labels    -   def f(x): -    + 1\\n -   \\n    return x EOS    (- : -100)

The FIM tokens are inputs, never targets (`rows.RowDataset` masks them wherever they occur): the user
types them, the model only has to continue after `[M]` and end the middle with EOS, which is the
document's own EOS moved behind the middle. A unit that is not a document's last chunk has no
EOS and gets none. Tokens that must stay in front (a Llama tokenizer's BOS, a chunk's overlap
context) stay in front, before `[P]`, and keep their role; a unit with overlap context is always
PSM (in SPM its context would end up after the suffix).

Applied after the eval split (eval rows are never rearranged) and before packing, to the
phase's training units (own, replayed and general alike). A unit that would come out longer than
`max_tokens` (tokenizing the three parts apart can take a few more tokens), or whose text does
not decode cleanly (a chunk that starts inside a multi-byte character), stays as it was: nothing
is truncated. Chunking leaves `FIM_HEADROOM_TOKENS` free in every window when FIM is on, so a cut
chunk fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from phased_cpt.errors import UserError
from phased_cpt.tokenizer_check import fim_family, fim_missing


@dataclass(frozen=True)
class FimTokens:
    prefix: int
    suffix: int
    middle: int
    family: str

    @property
    def ids(self) -> tuple[int, int, int]:
        return (self.prefix, self.suffix, self.middle)


def find_fim_tokens(tokenizer: PreTrainedTokenizerBase) -> FimTokens | None:
    """The tokenizer's FIM tokens, or None when its vocabulary has none of the known spellings."""
    found = fim_family(tokenizer.get_vocab())
    if found is None:
        return None
    family, prefix, suffix, middle = found
    return FimTokens(prefix, suffix, middle, family)


def require_fim_tokens(tokenizer: PreTrainedTokenizerBase, setting: str) -> FimTokens:
    """`find_fim_tokens`, or a `UserError` naming `setting` (the key that asked for FIM)."""
    found = find_fim_tokens(tokenizer)
    if found is None:
        raise UserError(fim_missing(setting, tokenizer.name_or_path))
    return found


@dataclass(frozen=True)
class FimSetup:
    """What rearranging units needs: the FIM tokens, the tokenizer that decodes a unit and
    encodes its parts again, and the longest a rearranged unit may be."""

    tokens: FimTokens
    tokenizer: PreTrainedTokenizerBase
    max_tokens: int


@dataclass(frozen=True)
class FimUnit:
    ids: np.ndarray
    context_tokens: int
    """Tokens in front that are context only (the unit's overlap context), as before the cut."""


def fim_permute(
    ids: np.ndarray,
    lead_tokens: int,
    context_tokens: int,
    setup: FimSetup,
    rng: np.random.Generator,
    spm: bool,
) -> FimUnit | None:
    """One unit in FIM layout (see the module docstring), or None when it stays as it is.

    `lead_tokens`: how many of the first ids stay in front (BOS or overlap context);
    `context_tokens`: how many of those are context only (the unit's overlap). `spm` is ignored
    for a unit with context (always PSM).
    """
    fim, tokenizer, eos_id = setup.tokens, setup.tokenizer, setup.tokenizer.eos_token_id
    ends_document = len(ids) > lead_tokens and int(ids[-1]) == eos_id
    body = ids[lead_tokens : len(ids) - 1 if ends_document else len(ids)]
    if len(body) < 2:
        return None
    text = tokenizer.decode(body.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if "\ufffd" in text:  # the unit starts or ends inside a multi-byte character
        return None
    cut_a, cut_b = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
    prefix, middle, suffix = (
        np.asarray(part, dtype=np.int64)
        for part in tokenizer([text[:cut_a], text[cut_a:cut_b], text[cut_b:]], add_special_tokens=False)["input_ids"]
    )
    lead = ids[:lead_tokens].astype(np.int64)
    end = np.array([eos_id] if ends_document else [], dtype=np.int64)
    if spm and context_tokens == 0:
        parts = [lead, [fim.prefix, fim.suffix], suffix, [fim.middle], prefix, middle, end]
    else:
        parts = [lead, [fim.prefix], prefix, [fim.suffix], suffix, [fim.middle], middle, end]
    out = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if len(out) > setup.max_tokens:
        return None
    return FimUnit(out, context_tokens)
