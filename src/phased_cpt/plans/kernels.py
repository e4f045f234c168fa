"""Which kernels a run trains with, decided before the model exists: Liger on or off, and why
(`Choice`: a value and the reason shown for it). Training (`training/throughput.py`), `doctor`
and the memory estimate's target GPU (`plans/target.py`) ask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from phased_cpt.config import ContextConfig, ModelConfig
from phased_cpt.config.schema import liger_installed
from phased_cpt.errors import UserError
from phased_cpt.modeling import resolve_attn_implementation


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str = ""

    def describe(self, shown: str) -> str:
        return f"{shown} ({self.reason})" if self.reason else shown


def resolve_liger(setting: str | bool, on_cuda: bool | None = None, installed: bool | None = None) -> Choice:
    """Whether the Trainer applies Liger kernels. `true` where they cannot run is a UserError."""
    on_cuda = torch.cuda.is_available() if on_cuda is None else on_cuda
    installed = liger_installed() if installed is None else installed
    if setting is False:
        return Choice(False, "training.performance.liger_kernel: false")
    if not installed:
        if setting is True:
            raise UserError(
                "training.performance.liger_kernel: true needs liger-kernel, which is not installed; "
                "pip install 'phased-cpt[gpu]' or set it to auto"
            )
        return Choice(False, "not installed")
    if not on_cuda:
        if setting is True:
            raise UserError(
                "training.performance.liger_kernel: true needs a CUDA GPU (Liger kernels are Triton "
                "GPU kernels); set it to auto or false to train on this machine"
            )
        return Choice(False, "no CUDA GPU")
    return Choice(True)


PACKED_SDPA = "sdpa_packed"
"""The per-document attention of `training/attention.py`."""

# Model types whose decoder layers pass `position_ids` on to the attention function (read in
# transformers 5.24's modeling files); another type keeps sdpa under `auto`.
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass(frozen=True)
class AttentionChoice:
    """What `model.attn_implementation` became for this run, and why."""

    implementation: str
    reason: str

    def describe(self) -> str:
        return f"{self.implementation} ({self.reason})" if self.reason else self.implementation


def choose_attention(model: ModelConfig, context: ContextConfig, text_config: dict, on_gpu: bool) -> AttentionChoice:
    """`auto` on a CPU with packed rows: `sdpa_packed` for a model type in `PACKED_MODEL_TYPES`
    without a sliding window (`text_config`: the model's config.json, or its `text_config`).
    Otherwise `auto` is `modeling.resolve_attn_implementation`'s: sdpa on a CPU; on a GPU
    flash_attention_2 where flash-attn is installed, else sdpa (`plan` may run on another machine
    than the GPU's, so it says that rule)."""
    if model.attn_implementation != "auto":
        return AttentionChoice(model.attn_implementation, "")
    if on_gpu:
        here = resolve_attn_implementation("auto") if torch.cuda.is_available() else None
        return AttentionChoice(here or "flash_attention_2 where flash-attn is installed, else sdpa", "auto: GPU")
    if not context.sample_packing:
        return AttentionChoice("sdpa", "auto: rows are not packed")
    model_type = text_config.get("model_type")
    if model_type not in PACKED_MODEL_TYPES or has_sliding_window(text_config):
        return AttentionChoice("sdpa", f"auto: no per-document attention for {model_type} here")
    return AttentionChoice(PACKED_SDPA, "auto: CPU, packed rows: causal sdpa per document, not one T^2 mask")


def has_sliding_window(text_config: dict) -> bool:
    """A config.json's sliding window is in use: Qwen2's files name a `sliding_window` size with
    `use_sliding_window: false` (not used); transformers 5 may list `sliding_attention` layers."""
    used = text_config.get("use_sliding_window", True) and text_config.get("sliding_window")
    return bool(used) or "sliding_attention" in (text_config.get("layer_types") or [])


def plan_attention(model: ModelConfig, context: ContextConfig, config_json: dict) -> str:
    """What `plan` says: the attention on the plan's GPUs and on a CPU (`choose_attention`)."""
    text = config_json.get("text_config") or config_json
    on_gpu = choose_attention(model, context, text, on_gpu=True).describe()
    on_cpu = choose_attention(model, context, text, on_gpu=False).describe()
    return on_gpu if on_gpu == on_cpu else f"{on_gpu} on a GPU; {on_cpu} on a CPU"
