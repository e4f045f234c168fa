"""Generation parameters: one table (`GenerationParams`' fields) of their defaults, limits, and
where each goes (transformers' generation config, Ollama's Modelfile); `/set NAME VALUE` parsing.

Kept apart from generation (no torch import) so the CLI can build its arguments quickly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ParamError(ValueError):
    """A bad generation parameter name or value; the message is one line for the user."""


MAX_INT_PARAM = 2**31 - 1
SEED_LIMIT = 2**32
"""Seeds are 0 <= seed < 2**32, as `training.seed` (what numpy's and torch's seeding accept)."""

MIN_TEMPERATURE = 1e-3
"""The smallest sampling temperature: below it sampling picks the greedy token anyway, and a tiny
enough one (1e-40) turns logits / temperature into inf, which the sampler cannot draw from."""
REPETITION_PENALTY_RANGE = (1e-2, 1e2)
"""Logits are divided or multiplied by the penalty: outside this range (1e-320) they overflow to
inf, which the sampler cannot draw from; usual values are 1.0 to 1.5."""


@dataclass(frozen=True)
class Param:
    """What every place that uses a generation parameter needs to know about it."""

    ok: Callable[[Any], bool]
    """Whether a value (already of the field's type, finite) is allowed."""
    allowed: str
    """What is allowed, for the error message and `--help`: "a number in (0, 1]"."""
    generation_config: str | None
    """Its name in transformers' `GenerationConfig`, which `generation.generation_config` sets;
    None for one applied otherwise (`seed`: torch is seeded before every answer)."""
    ollama: str | None
    """Its `PARAMETER` name in Ollama's Modelfile (`export --to ollama`); None: Ollama has none."""
    sampling_only: bool = False
    """Passed to generation only when sampling (temperature > 0); greedy decoding ignores it."""


def param(default: float | int, spec: Param) -> Any:
    """A `GenerationParams` field: its default and its `Param`."""
    return dataclasses.field(default=default, metadata={"param": spec})


@dataclass(frozen=True)
class GenerationParams:
    """The generation parameters of `phased-cpt chat`. A new one is one field here: it becomes
    `/set NAME` in the REPL, `--name` of `phased-cpt chat`, a key of the results' `params`, a
    setting of every answer and a line of Ollama's Modelfile, without further code
    (tests/unit/inference/test_params.py fails when one of those misses it)."""

    temperature: float = param(
        0.0,
        Param(
            lambda v: v == 0 or v >= MIN_TEMPERATURE,
            f"0 (greedy) or a finite number >= {MIN_TEMPERATURE:g}",
            "temperature",
            "temperature",
            sampling_only=True,
        ),
    )
    """0: greedy decoding (deterministic); above 0: sampling."""
    top_p: float = param(1.0, Param(lambda v: 0 < v <= 1, "a number in (0, 1]", "top_p", "top_p", sampling_only=True))
    top_k: int = param(
        50,
        Param(
            lambda v: 0 <= v <= MAX_INT_PARAM,
            f"an integer from 0 to {MAX_INT_PARAM} (0: off)",
            "top_k",
            "top_k",
            sampling_only=True,
        ),
    )
    """0: no top-k filtering."""
    max_tokens: int = param(
        128,
        Param(
            lambda v: 1 <= v <= MAX_INT_PARAM, f"an integer from 1 to {MAX_INT_PARAM}", "max_new_tokens", "num_predict"
        ),
    )
    """Most new tokens per answer."""
    repetition_penalty: float = param(
        1.0,
        Param(
            lambda v: REPETITION_PENALTY_RANGE[0] <= v <= REPETITION_PENALTY_RANGE[1],
            f"a number from {REPETITION_PENALTY_RANGE[0]:g} to {REPETITION_PENALTY_RANGE[1]:g} (1: off)",
            "repetition_penalty",
            "repeat_penalty",
        ),
    )
    seed: int = param(0, Param(lambda v: 0 <= v < SEED_LIMIT, f"an integer from 0 to {SEED_LIMIT - 1}", None, "seed"))
    """Seeds the sampler before every answer, base and fine-tuned alike, so a comparison is
    reproducible."""

    def describe(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


PARAMS: dict[str, Param] = {f.name: f.metadata["param"] for f in dataclasses.fields(GenerationParams)}
"""{name: its `Param`}, in `GenerationParams`' order: what the REPL, the command line, generation
and the Modelfile go through."""
PARAM_TYPES: dict[str, type] = {
    f.name: {"float": float, "int": int}[f.type if isinstance(f.type, str) else f.type.__name__]
    for f in dataclasses.fields(GenerationParams)
}
"""{name: int or float}: how a value typed by the user is read."""


def flag(name: str) -> str:
    """The command-line flag of a parameter: max_tokens -> --max-tokens."""
    return f"--{name.replace('_', '-')}"


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
    if name not in PARAMS:
        raise ParamError(f"unknown parameter {name!r}; one of: {', '.join(PARAMS)}")
    kind, spec = PARAM_TYPES[name], PARAMS[name]
    try:
        value = kind(text)
    except ValueError:
        raise ParamError(f"{name} must be {spec.allowed}, got {text!r}") from None
    if (kind is float and not math.isfinite(value)) or not spec.ok(value):
        raise ParamError(f"{name} must be {spec.allowed}, got {text!r}")
    return dataclasses.replace(params, **{name: value})
