"""Generation parameters: their defaults, limits, and `/set NAME VALUE` parsing.

Kept apart from generation (no torch import) so the CLI can build its arguments quickly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass


class ParamError(ValueError):
    """A bad generation parameter name or value; the message is one line for the user."""


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    """0: greedy decoding (deterministic); above 0: sampling."""
    top_p: float = 1.0
    top_k: int = 50
    """0: no top-k filtering."""
    max_tokens: int = 128
    """Most new tokens per answer."""
    repetition_penalty: float = 1.0
    seed: int = 0
    """Seeds the sampler before every answer, base and fine-tuned alike, so a comparison is
    reproducible."""

    def describe(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


MAX_INT_PARAM = 2**31 - 1
SEED_LIMIT = 2**32
"""Seeds are 0 <= seed < 2**32, as `training.seed` (what numpy's and torch's seeding accept)."""

MIN_TEMPERATURE = 1e-3
"""The smallest sampling temperature: below it sampling picks the greedy token anyway, and a tiny
enough one (1e-40) turns logits / temperature into inf, which the sampler cannot draw from."""
REPETITION_PENALTY_RANGE = (1e-2, 1e2)
"""Logits are divided or multiplied by the penalty: outside this range (1e-320) they overflow to
inf, which the sampler cannot draw from; usual values are 1.0 to 1.5."""

PARAM_CHECKS: dict[str, tuple[type, Callable[[float], bool], str]] = {
    "temperature": (
        float,
        lambda v: v == 0 or v >= MIN_TEMPERATURE,
        f"0 (greedy) or a finite number >= {MIN_TEMPERATURE:g}",
    ),
    "top_p": (float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "top_k": (int, lambda v: 0 <= v <= MAX_INT_PARAM, f"an integer from 0 to {MAX_INT_PARAM} (0: off)"),
    "max_tokens": (int, lambda v: 1 <= v <= MAX_INT_PARAM, f"an integer from 1 to {MAX_INT_PARAM}"),
    "repetition_penalty": (
        float,
        lambda v: REPETITION_PENALTY_RANGE[0] <= v <= REPETITION_PENALTY_RANGE[1],
        f"a number from {REPETITION_PENALTY_RANGE[0]:g} to {REPETITION_PENALTY_RANGE[1]:g} (1: off)",
    ),
    "seed": (int, lambda v: 0 <= v < SEED_LIMIT, f"an integer from 0 to {SEED_LIMIT - 1}"),
}


def text_problem(text: str, what: str = "the prompt") -> str | None:
    """Why `text` (a prompt, a REPL line) cannot be tokenized or printed, or None. Invalid UTF-8
    from the terminal or the command line reaches Python as lone surrogates (surrogateescape),
    and so does a JSON escape such as "\\ud800"; no tokenizer can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        byte = ord(text[err.start]) - 0xDC00 if 0xDC80 <= ord(text[err.start]) <= 0xDCFF else None
        bad = f"byte 0x{byte:02x}" if byte is not None else f"code point U+{ord(text[err.start]):04X}"
        return f"{what} is not valid UTF-8 text ({bad} at character {err.start + 1}); set the terminal or file to UTF-8"
    return None


def set_param(params: GenerationParams, name: str, text: str) -> GenerationParams:
    """`params` with `name` set from the user's `text`; ParamError says what is allowed."""
    if name not in PARAM_CHECKS:
        raise ParamError(f"unknown parameter {name!r}; one of: {', '.join(PARAM_CHECKS)}")
    kind, ok, allowed = PARAM_CHECKS[name]
    try:
        value = kind(text)
    except ValueError:
        raise ParamError(f"{name} must be {allowed}, got {text!r}") from None
    if (kind is float and not math.isfinite(value)) or not ok(value):
        raise ParamError(f"{name} must be {allowed}, got {text!r}")
    return dataclasses.replace(params, **{name: value})
