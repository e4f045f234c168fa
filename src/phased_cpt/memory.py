"""Estimated GPU memory per process for LoRA training, from the model's shape alone.

Used by `phased-cpt doctor` (its recommendation) and by `deepspeed: auto` (ZeRO-2 or ZeRO-3).
It is an estimate to catch the runs that cannot fit before they start, not a promise; it leaves
out the CUDA context and allocator fragmentation (keep ~10% headroom). The formula, with
P base parameters, p LoRA parameters, L layers, H hidden size, I MLP size, V vocabulary,
T = micro_batch_size x max_tokens tokens per forward pass, w bytes per weight (2 for bf16, 4 for
fp32), a = w bytes per activation, N processes:

    weights      = P * w                      / N under ZeRO-3
    lora         = p * 16                     fp32 weight 4 + gradient 4 + Adam m and v 8;
                                              under ZeRO-2 the 12 bytes of gradient and Adam are / N,
                                              under ZeRO-3 all 16; optimizer offload moves the 8 to CPU
    activations  = L * T * H * a + T * (12H + 3I) * a      with gradient checkpointing
                                                             (each layer's input kept, one layer live)
                 = L * T * (12H + 3I) * a                   without
    logits       = T * V * 4 * 2              fp32 logits and their gradient in the loss

12H covers the attention inputs/outputs, norms and residuals of a layer, 3I the SwiGLU MLP's
gate, up and product.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.config import ModelConfig, TrainingConfig

GiB = 2**30
LORA_BYTES_PER_PARAM = 16
LORA_PARTITIONED_BYTES = 12  # gradient + Adam m and v: partitioned from ZeRO-2 on
ADAM_BYTES = 8


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool = False

    @property
    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer LoRA may target, per decoder layer."""
        h, q, kv, i = self.hidden_size, self.attention_heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate_size
        return {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    @property
    def parameters(self) -> int:
        per_layer = sum(i * o for i, o in self.module_shapes.values()) + 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + embeddings + self.hidden_size

    def lora_parameters(self, r: int, target_modules: list[str]) -> int:
        shapes = self.module_shapes
        return self.layers * sum(r * (shapes[m][0] + shapes[m][1]) for m in target_modules if m in shapes)


def shape_from_config(config: dict) -> ModelShape:
    """A transformers `config.json` (decoder-only; a nested `text_config` is used when present)."""
    config = config.get("text_config", config)
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    return ModelShape(
        layers=config["num_hidden_layers"],
        hidden_size=hidden,
        intermediate_size=config.get("intermediate_size", 4 * hidden),
        vocab_size=config["vocab_size"],
        attention_heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or hidden // heads,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def model_shape(model: ModelConfig) -> ModelShape | None:
    """The shape from `config.json` in a local model directory or the local HF cache (never the
    network); None when neither has it."""
    path = Path(model.name).expanduser() / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model.name, "config.json")
        except Exception:  # an id the hub client rejects is simply not in the cache
            cached = None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return shape_from_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parameters_from_size(size: str | None) -> int | None:
    """`model.size` as a parameter count: '32B' -> 32e9, '500M' -> 5e8; None if unreadable."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([BbMm])\s*", size or "")
    if not match:
        return None
    return int(float(match.group(1)) * (1e9 if match.group(2) in "Bb" else 1e6))


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    lora_bytes: int
    activations_bytes: int
    logits_bytes: int
    lora_parameters: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.lora_bytes + self.activations_bytes + self.logits_bytes


def estimate_memory(
    shape: ModelShape,
    training: TrainingConfig,
    max_tokens: int,
    zero_stage: int,
    world_size: int,
    weight_bytes: int,
    offload: str = "none",
) -> MemoryEstimate:
    """Bytes one process needs (see the module docstring for the formula)."""
    tokens = training.micro_batch_size * max_tokens
    h, i, n = shape.hidden_size, shape.intermediate_size, max(world_size, 1)
    weights = shape.parameters * weight_bytes
    if zero_stage == 3:
        weights //= n
    if offload == "optimizer_and_params":
        weights = 0
    lora_params = shape.lora_parameters(training.lora.r, training.lora.target_modules)
    kept = LORA_BYTES_PER_PARAM - (ADAM_BYTES if offload != "none" else 0)
    if zero_stage == 3:
        lora = lora_params * kept // n
    elif zero_stage == 2:
        lora = lora_params * (LORA_BYTES_PER_PARAM - LORA_PARTITIONED_BYTES) + lora_params * (kept - 4) // n
    else:
        lora = lora_params * kept
    one_layer = tokens * (12 * h + 3 * i) * weight_bytes
    if training.gradient_checkpointing:
        activations = shape.layers * tokens * h * weight_bytes + one_layer
    else:
        activations = shape.layers * one_layer
    logits = tokens * shape.vocab_size * 4 * 2
    return MemoryEstimate(weights, lora, activations, logits, lora_params)
