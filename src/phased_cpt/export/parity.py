"""The parity check every export ends with: does the exported model answer like the trained one?

The reference is the trained adapter on its base model, through peft (as `chat` runs it). On each
of `PARITY_PROMPTS` it generates `GREEDY_TOKENS` tokens greedily and keeps the logits over the
whole sequence (prompt + answer). The exported model is then run on exactly those sequences (one
forward pass each, teacher-forced), and two things are compared per prompt:

- its greedy tokens: the argmax of its logits at each answer position. Until the first position
  where they differ this equals free-running greedy decoding, so "no position differs" is "the
  same greedy answer", and the first differing position is the first diverging token. A position
  where the trained model itself is tied (`TIE_LOGITS`) counts as equal whichever token it picks;
- its logits: `||exported - reference|| / ||reference||` (Frobenius over all positions).

What each precision must meet, and why, is `TOLERANCES`; a failure is a `ParityError` naming the
first prompt that fails and, for tokens, the first diverging token. The exported tokenizer is
checked too where the export carries one (hf, gguf): it must encode every prompt to the
reference's ids, so an empty or different tokenizer (transformers 5 builds an empty one from a
directory without tokenizer files) fails here, not in the user's editor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from peft import PeftModel
from transformers import GenerationConfig, PreTrainedTokenizerBase

from phased_cpt.errors import UserError

PARITY_PROMPTS = (
    "def main():\n    ",
    "import ",
    "class Item:\n",
    "# path: app/models/item.py\n",
    "The quick brown fox",
)
GREEDY_TOKENS = 16
TIE_LOGITS = 0.05
"""A position where the trained model's own top logit leads the export's pick by at most this much
is a tie, and counts as equal: its two tokens are within 5% in probability, and rounding (float16
weights, llama.cpp's kernels) breaks such a tie either way. The trained quickstart model has one at
0.003 (prompt 3, token 13), which the f16 GGUF broke the other way."""


@dataclass(frozen=True)
class Tolerance:
    relative: float
    """Largest `||exported - reference|| / ||reference||` of one prompt's logits."""
    greedy_agreement: float
    """Smallest share of answer positions whose greedy token equals the reference's (1.0: all)."""
    why: str


TOLERANCES = {
    "float32": Tolerance(1e-4, 1.0, "the same weights, merged: only float32 rounding differs (merge measured 1.6e-6)"),
    "float16": Tolerance(1e-2, 1.0, "W + BA rounded to 11 significant bits (merge measured 2.5e-3)"),
    "bfloat16": Tolerance(5e-2, 1.0, "W + BA rounded to 8 significant bits (merge measured 2.1e-2)"),
    "adapter": Tolerance(1e-6, 1.0, "the adapter's own files on the same base: identical weights, identical logits"),
    "gguf-f32": Tolerance(
        1e-2, 1.0, "llama.cpp's own kernels and its float16 KV cache (measured 8e-4 on the tiny model)"
    ),
    "gguf-f16": Tolerance(2e-2, 1.0, "float16 weights and KV cache (measured 2e-3 on the tiny model)"),
    "gguf-bf16": Tolerance(6e-2, 1.0, "bfloat16 weights (8 significant bits) and a float16 KV cache"),
    "gguf-q8_0": Tolerance(
        0.1,
        0.75,
        "8-bit weights, one scale per 32: each weight off by up to 1/254 of its block's largest, which moves "
        "logits by a few percent (measured 2.7e-2 trained, 4.5e-2 random) and flips greedy tokens where the top "
        "two are close (94% equal measured on the trained tiny model)",
    ),
}


class ParityError(UserError):
    """The exported model does not answer like the trained adapter within its tolerance."""


@dataclass
class PromptReference:
    prompt: str
    prompt_ids: list[int]
    token_ids: list[int]
    """The prompt and the reference's greedy answer."""
    logits: np.ndarray
    """float32, one row per position of `token_ids`."""


@dataclass
class ParityReport:
    precision: str
    prompts: int
    relative_error: float
    """The largest over the prompts."""
    greedy_agreement: float
    """The smallest over the prompts."""
    tolerance: Tolerance

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "prompts": self.prompts,
            "greedy_tokens": GREEDY_TOKENS,
            "relative_error": self.relative_error,
            "greedy_agreement": self.greedy_agreement,
            "allowed_relative_error": self.tolerance.relative,
            "required_greedy_agreement": self.tolerance.greedy_agreement,
        }

    def describe(self) -> str:
        return (
            f"parity on {self.prompts} prompts x {GREEDY_TOKENS} greedy tokens ({self.precision}): relative logit "
            f"error {self.relative_error:.2e} <= {self.tolerance.relative:.2g}, greedy tokens "
            f"{self.greedy_agreement:.0%} equal (>= {self.tolerance.greedy_agreement:.0%})"
        )


def reference_outputs(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> list[PromptReference]:
    """The trained adapter's greedy answers and logits on `PARITY_PROMPTS`."""
    eos = [i for i in {tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)} if i is not None]
    config = GenerationConfig(
        max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id or eos[0]
    )
    references = []
    with torch.inference_mode():
        for prompt in PARITY_PROMPTS:
            ids = tokenizer(prompt)["input_ids"]
            input_ids = torch.tensor([ids], device=model.device)
            sequence = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config
            )
            logits = model(input_ids=sequence).logits[0].float().cpu().numpy()
            references.append(PromptReference(prompt, ids, sequence[0].tolist(), logits))
    return references


def check_tokenizer(encode: Callable[[str], list[int]], references: Sequence[PromptReference], what: str) -> None:
    """`encode` (the export's tokenizer) must give every prompt the reference's token ids."""
    for index, ref in enumerate(references, 1):
        got = encode(ref.prompt)
        if got != ref.prompt_ids:
            raise ParityError(
                f"{what}: its tokenizer encodes prompt {index} ({ref.prompt!r}) as {got[:12]}, the trained model's "
                f"as {ref.prompt_ids[:12]}: the export's tokenizer differs"
            )


def agreeing_positions(reference_logits: np.ndarray, expected: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per answer position: the export picked the trained model's token, or a token the trained
    model's logits put within `TIE_LOGITS` of it (a tie)."""
    rows = np.arange(len(expected))
    lead = reference_logits[rows, expected] - reference_logits[rows, predicted]
    return (predicted == expected) | (lead <= TIE_LOGITS)


def compare_outputs(
    references: Sequence[PromptReference],
    exported: Sequence[np.ndarray],
    precision: str,
    decode: Callable[[list[int]], str],
    what: str,
) -> ParityReport:
    """Check `exported` (logits per reference sequence) against the references at `precision`'s
    tolerance; raise ParityError naming the first failing prompt (and token)."""
    tolerance = TOLERANCES[precision]
    worst_error, worst_agreement = 0.0, 1.0
    for index, (ref, got) in enumerate(zip(references, exported), 1):
        got = np.asarray(got, dtype=np.float32)
        where = f"{what} ({precision}): prompt {index} ({ref.prompt!r})"
        if got.shape != ref.logits.shape:
            raise ParityError(f"{where}: logits of shape {got.shape}, the trained model's {ref.logits.shape}")
        error = float(np.linalg.norm(got - ref.logits) / max(float(np.linalg.norm(ref.logits)), 1e-12))
        start = len(ref.prompt_ids)
        expected = np.asarray(ref.token_ids[start:])
        predicted = got.argmax(-1)[start - 1 : len(ref.token_ids) - 1]
        equal = agreeing_positions(ref.logits[start - 1 : len(ref.token_ids) - 1], expected, predicted)
        agreement = float(equal.mean()) if len(expected) else 1.0
        if agreement < tolerance.greedy_agreement:
            position = int(np.flatnonzero(~equal)[0])
            want, have = int(expected[position]), int(predicted[position])
            raise ParityError(
                f"{where}: greedy tokens diverge at answer token {position + 1}: the trained model gives "
                f"{decode([want])!r} (id {want}), the export {decode([have])!r} (id {have}); "
                f"{agreement:.0%} of the {len(expected)} tokens equal, {tolerance.greedy_agreement:.0%} required"
            )
        if not error <= tolerance.relative:  # also catches NaN
            raise ParityError(
                f"{where}: relative logit error {error:.3g} > {tolerance.relative:.3g} allowed ({tolerance.why})"
            )
        worst_error, worst_agreement = max(worst_error, error), min(worst_agreement, agreement)
    return ParityReport(precision, len(references), worst_error, worst_agreement, tolerance)
