"""Workloads of the GPU benchmark: model shapes, random-init models, full rows and the
mixed-length corpus packed two ways (HF in-order flattening; phased-cpt best-fit decreasing).

Nothing comes from the hub: the Qwen2.5 shapes are read from the config.json copies under
tests/fixtures/model_configs (`SHAPES`), weights are random
(seeded) and built directly on the device, tokens are random ids (seeded).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening, Qwen2Config

from phased_cpt.data.chunking import IGNORE_INDEX
from phased_cpt.data.packing import pack_best_fit_decreasing
from phased_cpt.data.rows import RowDataset
from phased_cpt.modeling import resolve_dtype

CONFIGS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "model_configs"
SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
)


def qwen25_shape(size: str) -> dict[str, Any]:
    """The shape keys of Qwen2.5-`size`'s config.json as shipped (the copy under tests/fixtures)."""
    config = json.loads((CONFIGS / f"qwen2.5-{size}" / "config.json").read_text())
    return {key: config[key] for key in SHAPE_KEYS}


SHAPES: dict[str, dict[str, Any]] = {
    **{size: qwen25_shape(size) for size in ("0.5b", "7b", "32b")},
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}
LORA = dict(r=128, alpha=256, dropout=0.05)
TINY_LORA = dict(r=8, alpha=16, dropout=0.05)


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, resolve_dtype("auto")


def build_base(shape: str, attn: str, device: torch.device, dtype: torch.dtype):
    """Random-init weights of the shape, directly on the device (same seed for every variant)."""
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=131072, rope_theta=1_000_000.0, use_cache=False)
    torch.manual_seed(0)
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    model.config.use_cache = False
    return model


def lora_settings(shape: str, dropout: float | None = None) -> dict[str, float]:
    settings = dict(TINY_LORA if shape == "tiny" else LORA)
    if dropout is not None:
        settings["dropout"] = dropout
    return settings


def full_rows(count: int, tokens: int, vocab: int) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (tokens,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": ids})
    return rows


def corpus_lengths(total_tokens: int, max_tokens: int, seed: int = 2) -> list[int]:
    """Document lengths of a code corpus: log-normal, median 150 tokens, long tail, capped."""
    rng = random.Random(seed)
    lengths, total = [], 0
    while total < total_tokens:
        length = max(2, min(max_tokens, int(rng.lognormvariate(math.log(150), 1.3))))
        lengths.append(length)
        total += length
    return lengths


def corpus_documents(lengths: list[int], vocab: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]


def hf_packed_batches(documents: list[list[int]], max_tokens: int) -> list[dict[str, torch.Tensor]]:
    """Modern HF practice: fill each row in document order, DataCollatorWithFlattening."""
    collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    rows, current, size = [], [], 0
    for ids in documents:
        if size + len(ids) > max_tokens:
            rows.append(current)
            current, size = [], 0
        current.append({"input_ids": ids})
        size += len(ids)
    rows.append(current)
    return [collator(row) for row in rows]


def ours_packed_dataset(documents: list[list[int]], max_tokens: int) -> RowDataset:
    """phased-cpt's packing: best-fit decreasing into a `RowDataset` (chunks in row order)."""
    rows = pack_best_fit_decreasing([len(d) for d in documents], max_tokens)
    tokens, chunks, offsets, start = [], [], [0], 0
    for row in rows:
        for index in row:
            tokens.extend(documents[index])
            chunks.append((start, len(documents[index]), 0))
            start += len(documents[index])
        offsets.append(len(chunks))
    return RowDataset(
        np.asarray(tokens, dtype=np.int32),
        np.asarray(chunks, dtype=np.int64),
        np.asarray(offsets, dtype=np.int64),
        packed=True,
    )


def stack_rows(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    return {key: torch.tensor([row[key] for row in rows]) for key in rows[0]}


def attended_lengths_of(batch: dict[str, torch.Tensor]) -> list[int]:
    """Attended segment lengths of a batch: documents where position ids restart, else rows."""
    if "position_ids" not in batch:
        return [batch["input_ids"].shape[1]] * batch["input_ids"].shape[0]
    positions = batch["position_ids"].flatten().tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [b - a for a, b in zip(starts, starts[1:])]
