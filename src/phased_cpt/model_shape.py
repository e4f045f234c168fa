"""The model's shape: what the memory and FLOP estimates need from a decoder-only model's
`config.json` (no weights, no torch), found locally (`locate_model_config`), never downloaded;
and what an adapter trains on it (`adapter_parameters`, one count for every `LoraConfig`
variant).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from phased_cpt.config import LoraConfig, ModelConfig


@dataclass(frozen=True)
class ModelShape:
    """What memory and FLOP counts need from a decoder-only model."""

    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool = False
    attention_bias: bool = False
    """q, k and v projections with a bias (Qwen2)."""
    parameters: int = field(default=0)
    """Base parameters, embeddings and LM head included, LoRA excluded; counted from the other
    fields when not given (0)."""

    def __post_init__(self) -> None:
        if not self.parameters:
            object.__setattr__(self, "parameters", self.counted_parameters())

    @property
    def attention_width(self) -> int:
        """d: query heads x head_dim (the hidden size for most models)."""
        return self.attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer LoRA may target, per decoder layer."""
        h, q, kv, i = self.hidden_size, self.attention_width, self.kv_width, self.intermediate_size
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: its linear layers, q/k/v biases and two norms."""
        bias = self.attention_width + 2 * self.kv_width if self.attention_bias else 0
        return sum(i * o for i, o in self.module_shapes.values()) + bias + 2 * self.hidden_size

    @property
    def embedding_parameters(self) -> int:
        """The input embedding matrix (also the LM head when tied)."""
        return self.vocab_size * self.hidden_size

    def counted_parameters(self) -> int:
        embeddings = self.embedding_parameters * (1 if self.tied_embeddings else 2)
        return self.layers * self.layer_parameters + embeddings + self.hidden_size

    def targeted(self, target_modules: list[str]) -> list[tuple[int, int]]:
        """(in, out) of each of `target_modules` in one decoder layer (names it lacks left out)."""
        return [self.module_shapes[m] for m in target_modules if m in self.module_shapes]

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        """From a live PeftModel or transformers model: the shape from its config, the parameter
        count from its weights (LoRA excluded; DeepSpeed ZeRO-3 partitions report `ds_numel`)."""
        config = model.config.get_text_config()
        # attributes, not to_dict(): transformers maps each architecture's own names onto these
        fields = {key: getattr(config, key, None) for key in CONFIG_FIELDS}
        return replace(shape_from_config(fields), parameters=base_parameters(model))


@dataclass(frozen=True)
class AdapterParameters:
    """What peft trains for a `training.lora` (`adapter_parameters`), by where it lives."""

    lora: int
    """LoRA's A and B on each target module (and on the embedding and LM head with `embeddings: lora`)."""
    magnitudes: int = 0
    """DoRA (`use_dora`): one magnitude per output feature of each LoRA module."""
    embeddings: int = 0
    """`embeddings: full`: trained copies of the embedding and the LM head (one matrix when tied),
    in the model's dtype; the frozen originals stay."""

    @property
    def adapter(self) -> int:
        """The fp32 parameters peft adds (LoRA and DoRA): what DeepSpeed's bf16 copy also holds."""
        return self.lora + self.magnitudes

    @property
    def total(self) -> int:
        return self.adapter + self.embeddings


LORA_FIELDS_COUNTED = ("r", "dropout", "target_modules", "use_dora", "embeddings")
"""`LoraConfig` fields the estimate counts: parameters (`adapter_parameters`) or activations."""
LORA_FIELDS_WITHOUT_MEMORY = ("alpha", "use_rslora", "embedding_lr_ratio")
"""`LoraConfig` fields that change no tensor's size: a scale of the update, a learning rate.
`tests/unit/test_memory.py` fails for a field in neither tuple."""


def adapter_parameters(shape: ModelShape, lora: LoraConfig) -> AdapterParameters:
    """The parameters `modeling.attach_lora` trains on a model of `shape` (the test compares them
    with peft's on a real model for every variant)."""
    targeted = shape.targeted(lora.target_modules)
    low_rank = shape.layers * sum(lora.r * (i + o) for i, o in targeted)
    magnitudes = shape.layers * sum(o for _, o in targeted) if lora.use_dora else 0
    v, h = shape.vocab_size, shape.hidden_size
    if lora.embeddings == "lora":  # the embedding and the LM head each get their own A and B, tied or not
        low_rank += 2 * lora.r * (v + h)
        magnitudes += (h + v) if lora.use_dora else 0  # per output feature: the embedding's H, the head's V
    copies = shape.embedding_parameters * (1 if shape.tied_embeddings else 2) if lora.embeddings == "full" else 0
    return AdapterParameters(low_rank, magnitudes, copies)


def base_parameters(model: Any) -> int:
    """Parameters of the frozen base model of a live model."""
    return sum(getattr(p, "ds_numel", p.numel()) for name, p in model.named_parameters() if "lora_" not in name)


CONFIG_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
    "attention_bias",
    "model_type",
)


def shape_from_config(config: dict) -> ModelShape:
    """A transformers `config.json` (decoder-only; a nested `text_config` is used when present).
    Raises KeyError or TypeError when a field it needs is missing or not a number."""
    config = config.get("text_config") or config
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return ModelShape(
        layers=int(config["num_hidden_layers"]),
        hidden_size=hidden,
        intermediate_size=int(config.get("intermediate_size") or 4 * hidden),
        vocab_size=int(config["vocab_size"]),
        attention_heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=bool(config.get("attention_bias") or config.get("model_type") == "qwen2"),
    )


def locate_model_config(name: str, override: Path | None = None) -> Path | None:
    """The `config.json` that describes `model.name`: `override` (a file or a directory holding
    one), else the model's local directory, else the local Hugging Face cache; never the network."""
    candidates = [override] if override is not None else [Path(name).expanduser()]
    for candidate in candidates:
        path = candidate / "config.json" if candidate.is_dir() else candidate
        if path.is_file():
            return path
    if override is not None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # an id the hub client rejects is simply not in the cache
        cached = None
    return Path(cached) if isinstance(cached, str) else None


DECODER_MODULE_NAMES = frozenset(
    {"embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}
)
"""The module names of a Llama-style decoder (Llama, Mistral, Qwen2, Qwen3): every LoRA target a
config for one of them can name (`tests/unit/test_memory.py` checks them on the real classes)."""
MODULE_NAMES_BY_MODEL_TYPE = dict.fromkeys(("llama", "mistral", "qwen2", "qwen3"), DECODER_MODULE_NAMES)


def known_module_names(path: Path) -> frozenset[str] | None:
    """The module names of the architecture a `config.json` describes, when its `model_type` is
    one of `MODULE_NAMES_BY_MODEL_TYPE`; None otherwise (the model must be built to know them)."""
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return MODULE_NAMES_BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None


def read_config_json(path: Path) -> dict | None:
    """A `config.json`'s object; None when it cannot be read or is not a JSON object."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def shape_or_none(config: dict | None) -> ModelShape | None:
    """`shape_from_config`, or None when there is no config or it lacks a field."""
    try:
        return shape_from_config(config) if config is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_model_config(path: Path) -> ModelShape | None:
    """The shape in a `config.json`; None when it cannot be read or lacks a field."""
    return shape_or_none(read_config_json(path))


MAX_CONFIG_BYTES = 16 << 20
"""A model's config.json is a few KiB; anything past 16 MiB is not one (and is not read whole)."""


def model_config_problem(path: Path) -> str | None:
    """What is wrong with `path` as `--model-config` (a config.json, or a directory holding
    one, that `read_model_config` reads a decoder's shape from); None when it is usable."""
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        return f"{file} does not exist; give the model's config.json or its directory"
    if not file.is_file():
        return f"{file} is not a regular file; give the model's config.json or its directory"
    if file.stat().st_size > MAX_CONFIG_BYTES:
        return f"{file} is {file.stat().st_size:,} bytes, not a model's config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        return f"{file}: cannot read it ({err.strerror or err})"
    except ValueError as err:  # not UTF-8, or not JSON
        return f"{file} is not a JSON config.json ({str(err).splitlines()[0]})"
    try:
        shape = shape_from_config(data)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        shape = None
    if shape is None or min(shape.layers, shape.hidden_size, shape.vocab_size, shape.attention_heads) < 1:
        needed = "num_hidden_layers, hidden_size, num_attention_heads and vocab_size (positive whole numbers)"
        return f"{file} does not describe a decoder's shape: a transformers config.json has {needed}"
    return None


def model_shape(model: ModelConfig, override: Path | None = None) -> ModelShape | None:
    """The shape of `model.name` from its config.json (see `locate_model_config`), or None."""
    path = locate_model_config(model.name, override)
    return read_model_config(path) if path is not None else None


def parameters_from_size(size: str | None) -> int | None:
    """`model.size` as a parameter count: '32B' -> 32e9, '500M' -> 5e8; None if unreadable."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([BbMm])\s*", size or "")
    if not match:
        return None
    return int(float(match.group(1)) * (1e9 if match.group(2) in "Bb" else 1e6))
