"""Useful FLOPs of LoRA training (what MFU counts) and the time estimate `plan` builds on them.

Useful FLOPs of one LoRA training step (recomputation by activation checkpointing is not useful
work and is not counted):

    4 * N * T                   forward (2NT) + gradients w.r.t. the inputs of the frozen weights (2NT);
                                the LoRA weight gradients are negligible at r << hidden size
    + sum_i 6 * t_i**2 * d * L  causal attention: QK^T and AV are 2 * t**2 * d per layer forward with
                                the causal half skipped, and the backward is twice the forward

N is the base model's parameter count (embeddings and LM head included, LoRA excluded), T the
tokens in the step, t_i the length of each attended chunk (a row without packing; each
chunk in a packed row, since attention never crosses a chunk), d the attention
width (heads x head_dim) and L the number of layers. Example, Qwen2.5-7B shape (N = 7.62e9,
d = 3584, L = 28), one 16,384-token row: 4.99e14 + 1.62e14 = 6.61e14 FLOP.

Time of one GPU's share of a phase (`estimate_seconds`), each term physical:

    useful FLOPs / (spec peak x utilisation)       matrix work at the GPU's calibrated MFU
                                                   (`gpus.py`); without checkpointing the GPU
                                                   skips the recomputed forward, so it is faster
    + micro-batches x L x operators x 18.5 us      eager PyTorch's host-side cost per operator
                                                   (dispatch, autograd, autocast, peft's Python),
                                                   which a small model cannot hide behind the GPU
    + 46 bytes x T x V / HBM bandwidth             without Liger: the fp32 logits' cross-entropy
                                                   is memory-bound (written, read and re-read in
                                                   forward and backward)
    ZeRO-3: the larger of that and the weights' all-gathers (twice per micro-batch: forward and
    the recomputation; DeepSpeed prefetches them behind the compute) over NVLink, or over the
    inter-node link with several nodes.

Calibrated on the issue's H100 table (`gpus.H100_UTILISATION`, `OPERATOR_SECONDS`: two numbers
for eight rows, none fitted per row); every row within 16% of the measured tokens/s. `plan`
prints a range of -25%/+35% around the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phased_cpt.gpus import INTER_NODE_GB_PER_SECOND, GpuSpec
from phased_cpt.memory import EstimateTarget, checkpointed_layers
from phased_cpt.model_shape import ModelShape

OPERATOR_SECONDS = 18.5e-6
"""Host-side cost of one eager PyTorch operator; chosen with `gpus.H100_UTILISATION` from the
0.5B rows of the calibration table, where it dominates (0.4 s of a 0.46 s step at 4K tokens)."""
CROSS_ENTROPY_BYTES = 46
"""HBM traffic per logit of the HF loss: bf16 logits written and read (2+2), fp32 copy written
(4), log-softmax reading it three times and writing (16), backward: gradient zero-filled (4),
log-softmax backward reading two and writing one (12), the bf16 gradient (4+2)."""
ESTIMATE_RANGE = (0.75, 1.35)
"""The range shown around a time estimate: the calibration rows fall within 16%; a GPU, model
or row length it was not measured on deserves more."""


# --- useful FLOPs ----------------------------------------------------------------------------


def attention_flops(shape: ModelShape, chunk_lengths: np.ndarray) -> float:
    """sum_i 6 * t_i**2 * d * L over the attended chunks (float64: 16K**2 * 3584 overflows int32)."""
    lengths = np.asarray(chunk_lengths, dtype=np.float64)
    return float(6.0 * shape.attention_width * shape.layers * np.square(lengths).sum())


def step_flops(shape: ModelShape, chunk_lengths: np.ndarray) -> float:
    """Useful FLOPs of training on these chunks once (see the module docstring)."""
    tokens = float(np.asarray(chunk_lengths, dtype=np.float64).sum())
    return 4.0 * shape.parameters * tokens + attention_flops(shape, chunk_lengths)


def flops_per_token(shape: ModelShape, chunk_lengths: np.ndarray) -> float:
    """Average useful FLOPs per token over a phase's chunks: exact over an epoch, an average
    within a logging window (the attention term depends on which rows the window saw)."""
    tokens = float(np.asarray(chunk_lengths, dtype=np.float64).sum())
    return step_flops(shape, chunk_lengths) / tokens if tokens else 4.0 * shape.parameters


def recomputed_flops(shape: ModelShape, chunk_lengths: np.ndarray, checkpointed_share: float) -> float:
    """The forward of the checkpointed layers, run again in the backward: 2 FLOPs per layer
    parameter per token and a third of the attention term."""
    tokens = float(np.asarray(chunk_lengths, dtype=np.float64).sum())
    layer_forward = 2.0 * shape.layers * shape.layer_parameters * tokens + attention_flops(shape, chunk_lengths) / 3
    return checkpointed_share * layer_forward


# --- time ------------------------------------------------------------------------------------


def operators_per_layer(lora_modules: int, checkpointing: bool) -> int:
    """ATen operators one decoder layer runs per training step (forward, recomputation,
    backward), counted with a TorchDispatchMode on a Qwen2 layer with LoRA (dropout on) on
    `lora_modules` projections (tests/unit/test_memory.py counts them again)."""
    return 271 + 73 * lora_modules if checkpointing else 176 + 47 * lora_modules


@dataclass(frozen=True)
class Workload:
    """One GPU's share of a phase."""

    chunk_lengths: np.ndarray
    """Attended chunks of every row the phase trains on, once (one epoch)."""
    epochs: float
    micro_batches: int
    """Forward/backward passes this GPU runs over the whole phase."""
    tokens_per_micro_batch: int
    world_size: int = 1
    nodes: int = 1


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    useful_flops: float
    """Per GPU, the whole phase."""
    utilisation: float

    @property
    def low_seconds(self) -> float:
        return self.seconds * ESTIMATE_RANGE[0]

    @property
    def high_seconds(self) -> float:
        return self.seconds * ESTIMATE_RANGE[1]


def estimate_seconds(target: EstimateTarget, work: Workload, gpu: GpuSpec) -> TimeEstimate:
    """Wall time of one GPU's share of a phase (module docstring) for the settings of `target`
    (LoRA modules, checkpointing, Liger, ZeRO stage, bytes per weight); every GPU runs in parallel."""
    shape, training = target.shape, target.training
    checkpointing = bool(training.gradient_checkpointing)
    checkpointed_share = len(checkpointed_layers(shape.layers, training)) / shape.layers
    lora_modules = len(shape.targeted(training.lora.target_modules))
    useful = step_flops(shape, work.chunk_lengths) * work.epochs / max(work.world_size, 1)
    compute = useful / (gpu.peak_tflops * 1e12 * gpu.utilisation)
    if not checkpointing or checkpointed_share < 1:
        # the utilisation was measured with every layer recomputed; fewer recomputed FLOPs run faster
        full = recomputed_flops(shape, work.chunk_lengths, 1.0)
        done = recomputed_flops(shape, work.chunk_lengths, checkpointed_share)
        base = step_flops(shape, work.chunk_lengths)
        compute *= (base + done) / (base + full)
    operators = operators_per_layer(lora_modules, checkpointing) * shape.layers * work.micro_batches
    overhead = operators * OPERATOR_SECONDS
    if not target.liger:
        traffic = CROSS_ENTROPY_BYTES * work.tokens_per_micro_batch * shape.vocab_size * work.micro_batches
        overhead += traffic / (gpu.hbm_tb_per_second * 1e12)
    if target.parallel.zero_stage == 3 and work.world_size > 1:
        link = gpu.link_gb_per_second if work.nodes <= 1 else min(gpu.link_gb_per_second, INTER_NODE_GB_PER_SECOND)
        share = (work.world_size - 1) / work.world_size
        gathered = 2 * target.activation_bytes * shape.parameters * share * work.micro_batches
        compute = max(compute, gathered / (link * 1e9))
    return TimeEstimate(compute + overhead, useful, gpu.utilisation)


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '2.1 days'."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
