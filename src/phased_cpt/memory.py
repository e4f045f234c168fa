"""The GPU memory one training process needs: the single estimator used by `plan`, `doctor`,
`deepspeed: auto` and training's `gradient_checkpointing: auto`. Pure functions of the model's
shape (`model_shape.py`, from its `config.json`) and the settings; no weights, no tokenizer, no torch.

`estimate_memory` returns the peak of `torch.cuda.max_memory_allocated` over a training step
(what PyTorch allocates; `MemoryEstimate.gpu_bytes` adds what the CUDA context and the
allocator's fragmentation take on top). Notation: P base parameters, p LoRA parameters, L layers,
H hidden size, I MLP width, q and k the query and key/value widths (heads x head_dim), V
vocabulary, T = micro_batch_size x max_tokens tokens per forward pass, a bytes per activation
(2 for bf16/fp16, 4 for fp32), N processes.

What lives for the whole run:
    weights      P * a                         (ZeRO-3: / N, plus the layer being gathered)
    LoRA         fp32 weight 4p + Adam m, v 8p (peft keeps the adapter in fp32 under autocast);
                 under DeepSpeed the adapter is bf16 (a*p) with an fp32 master 4p and Adam 8p
                 partitioned (/ N); offload moves master and Adam to CPU memory
    gradients    4p, freed after each optimizer step (DeepSpeed: a*p / N)
    DoRA         p counts its magnitudes too: one fp32 parameter per output feature of each module
    embeddings   `embeddings: full` trains copies of the embedding and the LM head (e = V*H, or
                 2*V*H untied; 1.6 G at Qwen2.5-32B shapes) in the model's dtype beside the frozen
                 originals: weights a*e, Adam m, v 2a*e, gradients a*e (the LM head's first: alive
                 through the whole backward); under DeepSpeed they train like the adapter
What one step adds, and when it peaks (the largest of three moments):
    1. the loss, without Liger: the fp32 log-softmax of the logits, its gradient and the
       gradient of the logits are alive together: 12 * T * V bytes (at 0.5B and 4K tokens,
       6.9 GiB of 8.9). Liger's fused linear cross-entropy never materialises them. Alive too:
       every layer's checkpointed input T*H*a (or its activations without checkpointing).
    2. the backward of one decoder layer, recomputed under gradient checkpointing: what autograd
       saves for it (per token, HF modules under bf16 autocast, LoRA with dropout on the seven
       projections, SDPA):
           RMSNorm x2       fp32 copy of the input: 2 * 4H       (Liger: the bf16 input, 2 * aH)
           each LoRA module dropout mask m*in (bool on CUDA: m=1; a float on CPU: m=4), the
                            dropped input in the compute dtype a*in, lora_A's output a*r; the
                            frozen base weight saves nothing (its input is only needed for a
                            weight gradient nobody asks for)
           attention        q and k after RoPE, v, the output: a(2q + 2k); log-sum-exp 4 * heads
           MLP              gate and up outputs 2aI, SiLU output aI (Liger's SwiGLU recomputes it)
           DoRA             (peft's forward) the base and LoRA results it scales by the magnitude,
                            2a * out; per module, its fp32 norms 12 * out and, for an fp32
                            adapter, the base weight cast to fp32 and back that F.linear saves,
                            a * in * out. While a module recomputes forward, the identity matrix
                            it builds the update's weight from, 4 * in**2 + a * in * (out + r),
                            and its fp32 output, 4 * out per token, come on top
       plus the gradients in flight at the largest LoRA input (down_proj: its base-path gradient
       a*I, and the fp32 cast and dropout gradients 8I of an fp32 adapter) and the residual
       stream's gradient 2aH. Alive too: the checkpoints of the layers not yet reached and the
       gradients of those already done.
    3. the optimizer step: gradients, plus one fp32 temporary per trainable parameter for
       torch's non-fused (foreach) AdamW.
Checked against the issue's H100 measurements (Qwen2.5 0.5B/7B shapes, LoRA r=128 on all seven
projections, plain loop with torch AdamW): every row within 5%, with no term fitted to them
(tests/unit/test_memory.py). The per-layer saved bytes equal what autograd saves for a Qwen2 layer
on CPU, byte for byte, and whole training steps on CPU land within 10% (same test file;
benchmarks/RESULTS.md), `embeddings: full` and DoRA included; the weights and Adam states equal
what a real step holds, to the byte, for every LoRA variant. DeepSpeed's terms follow the ZeRO
paper's accounting and were not measured.

What an estimate is for is one `EstimateTarget` per phase, built from a run's config by
`run_targets` on a `TargetGpu` (chosen by `plans/target.target_gpus` for every caller);
`estimate_run` gives a run's need, its most demanding phase.

`training.gradient_checkpointing: auto` is resolved here too, once per run (`estimate_run`,
`choose_checkpointing`), since the choice is the estimate's: the least recomputation whose
`gpu_bytes` fits the device with `CHECKPOINTING_MARGIN` to spare. `plan` resolves it for the GPU it plans for, training for the GPU
(or the CPU's memory) it runs on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from phased_cpt.config import RunConfig, TrainingConfig, training_dtype
from phased_cpt.model_shape import ModelShape, adapter_parameters

GiB = 2**30
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
CUDA_CONTEXT_BYTES = GiB
"""CUDA context, cuBLAS workspaces and NCCL buffers: memory a process uses outside PyTorch's
allocator, so `max_memory_allocated` never shows it."""
FRAGMENTATION = 0.05
"""What the caching allocator reserves beyond what it hands out, as a share of the peak."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per process. The parts add up to `peak_bytes` at the moment named by `peak_at`."""

    weights_bytes: int
    """Frozen base weights held on this GPU (ZeRO-3: its shard plus the layer being gathered)."""
    lora_bytes: int
    """Adapter weights, optimizer states and DeepSpeed's buffers: alive the whole run."""
    activations_bytes: int
    """At the peak: checkpointed layer inputs (or every layer's activations), the layer being
    recomputed and the gradients in flight."""
    logits_bytes: int
    """At the peak: the fp32 logits, their log-softmax and gradients (0 with Liger, or when the
    peak is elsewhere)."""
    gradients_bytes: int
    """At the peak: LoRA gradients (and the optimizer's temporaries at the optimizer step)."""
    peak_at: str
    """'loss', 'backward' or 'optimizer step'."""
    lora_parameters: int

    @property
    def peak_bytes(self) -> int:
        """What `torch.cuda.max_memory_allocated` would report."""
        return self.weights_bytes + self.lora_bytes + self.activations_bytes + self.logits_bytes + self.gradients_bytes

    @property
    def gpu_bytes(self) -> int:
        """What the GPU must have: the peak, fragmentation, and the CUDA context outside PyTorch."""
        return int(self.peak_bytes * (1 + FRAGMENTATION)) + CUDA_CONTEXT_BYTES

    def describe(self) -> str:
        parts = [
            ("weights", self.weights_bytes),
            ("LoRA+optimizer", self.lora_bytes),
            ("activations", self.activations_bytes),
            ("logits", self.logits_bytes),
            ("gradients", self.gradients_bytes),
        ]
        shown = ", ".join(f"{name} {gib(value)}" for name, value in parts if value)
        return f"peak at the {self.peak_at}: {shown}"


def gib(n_bytes: float) -> str:
    """1.5 GiB, 12.0 MiB: readable at every scale, from a tiny test model to a 32B one."""
    return f"{n_bytes / GiB:.1f} GiB" if n_bytes >= GiB / 10 else f"{n_bytes / 2**20:.1f} MiB"


@dataclass(frozen=True)
class Parallelism:
    """How the run's processes share the model."""

    zero_stage: int = 0
    """0 (one process, or DDP), 2 or 3 (DeepSpeed ZeRO)."""
    world_size: int = 1
    offload: str = "none"
    """DeepSpeed's `deepspeed_offload`: none | optimizer | optimizer_and_params."""


@dataclass(frozen=True)
class TargetGpu:
    """The device a run's estimate is for (built by `plans/target.target_gpus`)."""

    memory_bytes: int | None = None
    """None: unknown."""
    bf16: bool = True
    """Whether it computes in bf16 (`config.training_dtype` turns model.dtype auto into bf16)."""
    liger: bool = False
    """Whether Liger kernels run on it."""
    cuda: bool = True
    """A GPU; False: training on this machine's CPU (no pinned-memory checkpoint offload)."""


@dataclass(frozen=True)
class EstimateTarget:
    """Everything one memory estimate depends on: one phase's settings on one device. Built from a
    run's config by `run_targets`; tests and benchmarks build their own."""

    shape: ModelShape
    training: TrainingConfig
    """micro-batch, accumulation, LoRA, checkpointing (resolved: never auto), optimizer."""
    max_tokens: int
    dtype: str = "bfloat16"
    """What `training_dtype` resolves model.dtype to."""
    liger: bool = False
    parallel: Parallelism = Parallelism()
    device: str = "cuda"
    """'cuda' or 'cpu': dropout masks are bool on CUDA, floats on CPU."""
    attention: str = "sdpa"
    """'eager' keeps each layer's T x T attention probabilities."""

    @property
    def tokens(self) -> int:
        """T: tokens per forward pass."""
        return self.training.micro_batch_size * self.max_tokens

    @property
    def activation_bytes(self) -> int:
        """a: bytes per activation."""
        return DTYPE_BYTES[self.dtype]

    @property
    def deepspeed(self) -> bool:
        return self.parallel.zero_stage in (2, 3)

    @property
    def fp32_adapter(self) -> bool:
        """peft keeps the adapter in fp32; DeepSpeed casts the model to bf16."""
        return not self.deepspeed


def run_targets(
    cfg: RunConfig,
    shape: ModelShape,
    gpu: TargetGpu,
    parallel: Parallelism = Parallelism(),
    max_tokens: int | None = None,
) -> list[EstimateTarget]:
    """The estimate's targets of a run, one per phase (a phase may set its own micro-batch), for
    rows of `max_tokens` (default `context.max_tokens`): the dtype from `model.dtype` by
    `training_dtype` (the rule training uses), eager attention when the config asks for it.
    `gradient_checkpointing` as the config sets it (`estimate_run` resolves auto)."""
    dtype = training_dtype(cfg.model.dtype, gpu.bf16)
    attention = "eager" if cfg.model.attn_implementation == "eager" else "sdpa"
    return [
        EstimateTarget(
            shape,
            phase.training_for(cfg.training),
            max_tokens or cfg.context.max_tokens,
            dtype,
            gpu.liger,
            parallel,
            attention=attention,
        )
        for phase in cfg.phases
    ]


def estimate_memory(target: EstimateTarget) -> MemoryEstimate:
    """Peak bytes of one training process (the module docstring derives each term)."""
    shape, training, parallel = target.shape, target.training, target.parallel
    a = target.activation_bytes
    n = max(parallel.world_size, 1)
    zero_stage, offload = parallel.zero_stage, parallel.offload
    trained = adapter_parameters(shape, training.lora)
    p, e = trained.adapter, trained.embeddings
    head = shape.embedding_parameters if e else 0  # the LM head's matrix, whose gradient comes first
    tokens = target.tokens

    # -- what lives the whole run --
    weights = (shape.parameters + e) * a  # embeddings: full keeps the frozen originals beside the copies
    if zero_stage == 3:
        weights = math.ceil(weights / n) * (offload != "optimizer_and_params")
        # the layer (or the embedding / LM head) being computed, plus the prefetched next bucket
        prefetch = int(0.9 * shape.hidden_size**2)
        weights += a * (max(shape.layer_parameters, shape.embedding_parameters) + prefetch)
    if target.deepspeed:  # every trained parameter in bf16, with an fp32 master and Adam partitioned
        offloaded = offload != "none"
        t = p + e
        adapter = a * p // (n if zero_stage == 3 else 1)  # the embeddings' copies are in `weights`
        states = 0 if offloaded else 12 * t // n  # fp32 master, Adam m and v
        buckets = 2 * a * shape.hidden_size**2  # reduce_bucket_size "auto" = H*H, double-buffered
        resident = adapter + states + buckets
        gradients = 0 if offloaded else a * t // n
        head_gradient = 0 if offloaded else a * head // n
        step_temporary = 0 if offloaded else 4 * t // n  # the fp32 copy of the gradient partition
    else:  # the fp32 adapter and its Adam m, v; the embeddings' copies and their Adam m, v in their dtype
        gradients = 4 * p + a * e
        ddp_buckets = gradients if n > 1 else 0  # DDP's gradient buckets (not views of the gradients)
        resident = 12 * p + 2 * a * e + ddp_buckets
        head_gradient = a * head
        step_temporary = 0 if training.performance.optimizer == "adamw_torch_fused" else gradients

    # -- activations --
    saved = layer_activation_bytes(target)
    in_flight = gradients_in_flight(target)
    checkpointed = checkpointed_layers(shape.layers, training)
    checkpoint = 0 if training.performance.checkpoint_offload else tokens * shape.hidden_size * a

    def kept(first_layers: int) -> int:
        """Activations held for layers 0..first_layers-1 while the rest of the model runs."""
        ckpt = sum(1 for i in range(first_layers) if i in checkpointed)
        return ckpt * checkpoint + (first_layers - ckpt) * saved

    liger = target.liger
    accumulating = training.gradient_accumulation_steps > 1  # gradients survive between micro-batches
    final_norm = tokens * shape.hidden_size * (a if liger else 4)
    logits = tokens * shape.hidden_size * a if liger else 12 * tokens * shape.vocab_size
    moments = [("loss", kept(shape.layers) + final_norm, logits, gradients if accumulating else 0)]
    transient = dora_forward_bytes(target)
    layer_gradients = gradients - head_gradient
    for i in range(shape.layers):  # backward reaches layer i: layers above it have their gradients
        recomputed = saved if i in checkpointed else 0
        # a recomputed forward's DoRA temporaries, while the gradient from the layer above is alive
        busy = in_flight + (transient if i in checkpointed else 0)
        done = gradients if accumulating else head_gradient + layer_gradients * (shape.layers - 1 - i) // shape.layers
        moments.append(("backward", kept(i + 1) + recomputed + busy, 0, done))
    moments.append(("optimizer step", 0, 0, gradients + step_temporary))
    peak_at, activations, logits_bytes, gradient_bytes = max(moments, key=lambda m: m[1] + m[2] + m[3])
    return MemoryEstimate(weights, resident, activations, logits_bytes, gradient_bytes, peak_at, trained.total)


def checkpointed_layers(layers: int, training: TrainingConfig) -> set[int]:
    """Indices of the layers whose activations are recomputed (transformers checkpoints layer i
    when i % every_n_layers == 0). `gradient_checkpointing: auto` must be resolved first
    (`choose_checkpointing`)."""
    if training.gradient_checkpointing == "auto":
        raise ValueError("training.gradient_checkpointing: auto is resolved by choose_checkpointing first")
    if not training.gradient_checkpointing:
        return set()
    every = training.performance.checkpoint_every_n_layers
    return {i for i in range(layers) if i % every == 0}


def layer_activation_bytes(target: EstimateTarget) -> int:
    """What autograd saves for one decoder layer's backward (module docstring, moment 2)."""
    shape, lora, a, tokens = target.shape, target.training.lora, target.activation_bytes, target.tokens
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.attention_width, shape.kv_width
    liger = target.liger
    mask = 1 if target.device == "cuda" else (4 if target.fp32_adapter or a == 4 else a)
    shapes = shape.module_shapes
    per_token = 2 * (a if liger else 4) * h + 2 * 4  # two RMSNorms (+ their fp32 rstd)
    for module in lora.target_modules:
        if module in shapes:
            fan_in = shapes[module][0]
            per_token += fan_in * ((mask + a) if lora.dropout > 0 else a) + a * lora.r
    per_token += a * (2 * q + 2 * kv)  # q and k after RoPE, v, attention output
    per_token += 4 * shape.attention_heads if target.attention != "eager" else a * shape.attention_heads * tokens
    per_token += 2 * a * i + (0 if liger else a * i)  # gate and up outputs; SiLU output (HF)
    # autocast's compute-dtype copies of this layer's fp32 LoRA weights
    fp32_copies = target.fp32_adapter and a < 4
    targeted = shape.targeted(lora.target_modules)
    weight_copies = a * sum(lora.r * (i + o) for i, o in targeted) if fp32_copies else 0
    if lora.use_dora:  # peft's DoRA forward: the base and LoRA results scaled by the magnitude ...
        per_token += 2 * a * sum(o for _, o in targeted)
        # ... its norms (fp32), and the base weight cast to the fp32 adapter's dtype and back, for F.linear
        weight_copies += 12 * sum(o for _, o in targeted) + (a * sum(i * o for i, o in targeted) if fp32_copies else 0)
    return tokens * per_token + weight_copies


def dora_forward_bytes(target: EstimateTarget) -> int:
    """DoRA's temporaries while one LoRA module runs forward (peft 0.19, `DoraLinearLayer`): the
    identity matrix (fp32, in x in) it sends through lora_A and lora_B to build the update's
    weight (in x r, in x out, in the compute dtype) for the magnitude's norm, and the module's fp32
    output; the largest module's. 0 without DoRA."""
    lora, a = target.training.lora, target.activation_bytes
    if not lora.use_dora:
        return 0
    targeted = target.shape.targeted(lora.target_modules)
    weight_build = max((4 * i * i + a * i * (o + lora.r) for i, o in targeted), default=0)
    return weight_build + target.tokens * 4 * max((o for _, o in targeted), default=0)


def gradients_in_flight(target: EstimateTarget) -> int:
    """Gradients alive at once inside a layer's backward, on top of what it saved: at the
    largest LoRA input (the base path's gradient, and for an fp32 adapter the fp32 gradients of
    the cast and the dropout), or at the MLP's product (three gradients of width I); plus the
    residual stream's gradient."""
    shape, lora, a = target.shape, target.training.lora, target.activation_bytes
    largest_in = max((i for i, _ in shape.targeted(lora.target_modules)), default=0)
    if target.fp32_adapter and a < 4:
        lora_path = a + (8 if lora.dropout > 0 else 4)
    else:
        lora_path = 3 * a if lora.dropout > 0 else 2 * a
    per_token = max(lora_path * largest_in, 3 * a * shape.intermediate_size) + 2 * a * shape.hidden_size
    return target.tokens * per_token


def most_demanding(targets: list[EstimateTarget]) -> MemoryEstimate:
    """The estimate of the target that needs the most GPU memory (a run's most demanding phase)."""
    return max((estimate_memory(target) for target in targets), key=lambda estimate: estimate.gpu_bytes)


@dataclass(frozen=True)
class RunEstimate:
    """What a run needs per GPU, and how its `gradient_checkpointing` was resolved for it."""

    memory: MemoryEstimate
    """Of its most demanding phase."""
    checkpointing: CheckpointingChoice
    targets: list[EstimateTarget]
    """One per phase, checkpointing resolved."""


def estimate_run(
    cfg: RunConfig,
    shape: ModelShape,
    gpu: TargetGpu,
    parallel: Parallelism = Parallelism(),
    max_tokens: int | None = None,
) -> RunEstimate:
    """What a run needs per GPU (`run_targets`, its most demanding phase): the one answer `plan`,
    `doctor`, `deepspeed: auto` and training give. `gradient_checkpointing: auto` is resolved
    once, here, for `gpu` (`choose_checkpointing`; full checkpointing where its memory is unknown)."""
    targets = run_targets(cfg, shape, gpu, parallel, max_tokens)

    def estimate(training: TrainingConfig) -> MemoryEstimate:
        return most_demanding(with_checkpointing_of(targets, training))

    choice = choose_checkpointing(cfg.training, estimate, gpu.memory_bytes, gpu.cuda)
    resolved = with_checkpointing_of(targets, choice.training)
    return RunEstimate(most_demanding(resolved), choice, resolved)


def with_checkpointing_of(targets: list[EstimateTarget], training: TrainingConfig) -> list[EstimateTarget]:
    """`targets` with the checkpointing settings of `training` (no phase overrides them)."""
    update = {"gradient_checkpointing": training.gradient_checkpointing, "performance": training.performance}
    return [replace(t, training=t.training.model_copy(update=update)) for t in targets]


# --- gradient_checkpointing: auto ------------------------------------------------------------


CHECKPOINTING_MARGIN = 0.10
"""The share of the device's memory `gradient_checkpointing: auto` leaves free on top of the
estimate's `gpu_bytes` (which already adds the allocator's fragmentation and the CUDA context):
twice the 5% by which the estimate missed measured H100 peaks (tests/unit/test_memory.py)."""
CHECKPOINTING_CANDIDATES = ((False, 1, False), (True, 4, False), (True, 2, False), (True, 1, False), (True, 1, True))
"""(checkpointing, every_n_layers, offload) from the least recomputation to the least memory:
off; every 4th layer; every 2nd layer; all layers; all layers with their inputs in pinned CPU
memory (GPU only: on a CPU the activations are in host memory already)."""


@dataclass(frozen=True)
class CheckpointingChoice:
    """The training settings with `gradient_checkpointing` resolved, and why."""

    training: TrainingConfig
    reason: str

    def describe(self) -> str:
        return f"{describe_checkpointing_setting(self.training)} ({self.reason})"


def describe_checkpointing_setting(training: TrainingConfig, offload_possible: bool = True) -> str:
    """'off', 'full', 'every 2 layers', '+ offload to CPU' of resolved training settings."""
    if training.gradient_checkpointing == "auto":
        return "auto"
    if not training.gradient_checkpointing:
        return "off"
    every = training.performance.checkpoint_every_n_layers
    text = "full" if every == 1 else f"every {every} layers"
    if training.performance.checkpoint_offload:
        text += " + offload to CPU" if offload_possible else " (offload: off, no GPU)"
    return text


def with_checkpointing(training: TrainingConfig, on: bool, every_n_layers: int, offload: bool) -> TrainingConfig:
    performance = training.performance.model_copy(
        update={"checkpoint_every_n_layers": every_n_layers, "checkpoint_offload": offload}
    )
    return training.model_copy(update={"gradient_checkpointing": on, "performance": performance})


def choose_checkpointing(
    training: TrainingConfig,
    estimate: Callable[[TrainingConfig], MemoryEstimate],
    device_bytes: int | None,
    on_cuda: bool,
) -> CheckpointingChoice:
    """Resolve `gradient_checkpointing: auto`: the first of `CHECKPOINTING_CANDIDATES` whose
    `estimate(training).gpu_bytes` fits `device_bytes` with `CHECKPOINTING_MARGIN` to spare. Where
    none fits, the one needing least memory (the run then needs what `doctor` recommends); full
    checkpointing where the device's memory is unknown. true / false are kept as set."""
    if training.gradient_checkpointing != "auto":
        setting = str(training.gradient_checkpointing).lower()
        return CheckpointingChoice(training, f"training.gradient_checkpointing: {setting}")
    if device_bytes is None:
        return CheckpointingChoice(with_checkpointing(training, True, 1, False), "auto: the device's memory is unknown")
    budget = int(device_bytes * (1 - CHECKPOINTING_MARGIN))
    needs: list[tuple[TrainingConfig, int]] = []
    for on, every, offload in CHECKPOINTING_CANDIDATES:
        if offload and not on_cuda:
            continue
        candidate = with_checkpointing(training, on, every, offload)
        need = estimate(candidate).gpu_bytes
        if need <= budget:
            cheaper = f"; {describe_need(*needs[-1])}" if needs else ""
            return CheckpointingChoice(
                candidate,
                f"auto: needs ~{gib(need)} of {gib(device_bytes)}, {CHECKPOINTING_MARGIN:.0%} kept free{cheaper}",
            )
        needs.append((candidate, need))
    least, need = min(needs, key=lambda pair: pair[1])
    return CheckpointingChoice(
        least,
        f"auto: nothing fits {gib(budget)} ({gib(device_bytes)} less {CHECKPOINTING_MARGIN:.0%}); the least memory, "
        f"~{gib(need)}; `phased-cpt doctor` says what to change",
    )


def describe_need(training: TrainingConfig, need: int) -> str:
    return f"{describe_checkpointing_setting(training)} would need ~{gib(need)}"


def host_memory_bytes() -> int | None:
    """This machine's physical memory (the device's memory when training on the CPU); None where
    the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
