"""What the memory and time estimates are checked against, shared by `tests/unit/test_memory.py`
and `benchmarks/memory_estimate.py`: the issue's measured H100 table with its settings, the
Qwen2.5 shapes, and a real training step on a tiny Qwen2 + LoRA model measured on this CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from phased_cpt.config import LoraConfig, TrainingConfig
from phased_cpt.memory import EstimateTarget, Parallelism
from phased_cpt.model_shape import ModelShape, read_model_config, shape_from_config
from phased_cpt.modeling import attach_lora
from tests.memory_tracker import LiveBytes

CONFIGS = Path(__file__).resolve().parent / "fixtures" / "model_configs"
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

H100_TABLE = [  # shape, max_tokens, Liger, tokens/s, peak GiB (torch.cuda.max_memory_allocated)
    ("0.5b", 4096, False, 8879, 8.93),
    ("0.5b", 4096, True, 9139, 2.52),
    ("0.5b", 16384, False, 21414, 30.33),
    ("0.5b", 16384, True, 24179, 4.29),
    ("7b", 4096, False, 4567, 25.71),
    ("7b", 4096, True, 4958, 20.95),
    ("7b", 16384, False, 4412, 49.06),
    ("7b", 16384, True, 4805, 28.05),
]
"""Issue 13: one H100 80GB, Qwen2.5 shapes with random bf16 weights, SDPA, a plain loop."""


def qwen25(size: str) -> ModelShape:
    return read_model_config(CONFIGS / f"qwen2.5-{size}" / "config.json")


def table_training(**overrides) -> TrainingConfig:
    """The measured runs: LoRA r=128, alpha 256, dropout 0.05 on all seven projections, micro-batch
    1, one micro-batch per step, non-reentrant checkpointing, torch AdamW (foreach)."""
    settings = {
        "micro_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": True,
        "lora": {"r": 128, "alpha": 256, "dropout": 0.05, "target_modules": ALL},
        "performance": {"optimizer": "adamw_torch"},
    }
    return TrainingConfig(**(settings | overrides))


def tiny_qwen2(
    layers=2,
    hidden=64,
    intermediate=176,
    vocab=500,
    heads=4,
    tied=False,
    dtype=torch.bfloat16,
    dropout=0.05,
    targets=ALL,
    r=16,
    embeddings="frozen",
    dora=False,
):
    """(a tiny Qwen2 model with a fresh LoRA adapter attached as training attaches it
    (`modeling.attach_lora`), its shape, the matching training settings)."""
    config = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
        use_cache=False,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**config), dtype=dtype, attn_implementation="sdpa")
    lora = LoraConfig(r=r, alpha=2 * r, dropout=dropout, target_modules=targets, embeddings=embeddings, use_dora=dora)
    model = attach_lora(model, lora)
    model.train()
    training = TrainingConfig(
        micro_batch_size=1, gradient_checkpointing=True, performance={"optimizer": "adamw_torch"}, lora=lora
    )
    return model, shape_from_config(config | {"model_type": "qwen2"}), training


def step_bytes(model, tokens: int, checkpointing: bool = True, accumulate: int = 1) -> int:
    """The bytes one real optimizer step (forward, backward, AdamW; bf16 autocast for a bf16
    model) allocates on top of the weights and Adam states, measured storage by storage."""
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    bf16 = next(model.parameters()).dtype == torch.bfloat16

    def step():
        for _ in range(accumulate):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # Adam states now exist, as in every later step
    known = list(model.parameters()) + [t for state in optimizer.state.values() for t in state.values()]
    with LiveBytes(known) as live:
        step()
    return live.peak


def target(shape: ModelShape, training: TrainingConfig, max_tokens: int, **settings) -> EstimateTarget:
    """An `EstimateTarget`; `zero_stage`, `world_size` and `offload` go into its `Parallelism`."""
    parallel = {key: settings.pop(key) for key in ("zero_stage", "world_size", "offload") if key in settings}
    return EstimateTarget(shape, training, max_tokens, parallel=Parallelism(**parallel), **settings)
