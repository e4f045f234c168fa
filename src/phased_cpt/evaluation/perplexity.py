"""Token-weighted loss, perplexity and top-1 accuracy of a model on held-out rows.

Perplexity is exp(total NLL / target tokens) over all rows: long and short rows weigh by their
tokens (a per-batch mean of means would not). Top-1 accuracy is the share of target tokens that
are the model's most likely next token (teacher-forced: what a completion engine gets right one
token at a time). Under several processes each rank takes every
world_size-th batch and the sums are all-reduced; every rank runs the same number of forward
passes (a short rank repeats a batch with weight 0), as DeepSpeed ZeRO-3 requires.

An evaluation leaves every random stream as it found it (`preserved_rng`): evaluating during or
between phases never changes what training draws next.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from phased_cpt import distributed
from phased_cpt.data.chunking import IGNORE_INDEX

if TYPE_CHECKING:
    from peft import PeftModel
    from torch.utils.data import Dataset

Collator = Callable[[list[dict[str, Any]]], dict[str, Any]]
"""Rows -> a batch of tensors (`data.collate.make_collator`)."""


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    target_tokens: int
    top1_accuracy: float = math.nan

    def to_dict(self) -> dict:
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "target_tokens": self.target_tokens,
            "top1_accuracy": self.top1_accuracy,
        }


@contextmanager
def preserved_rng() -> Iterator[None]:
    """The python, numpy, torch and (this process's) CUDA RNGs are after the block as before it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def evaluate_rows(
    model: PeftModel,
    dataset: Dataset,
    collator: Collator,
    batch_size: int,
    base_model: bool = False,
    desc: str | None = None,
) -> EvalResult:
    """Mean loss per target token over `dataset`; `base_model=True` disables the LoRA adapter.
    `desc`: draw a progress bar with this label (on rank 0), so a long evaluation is never silent."""
    from tqdm.auto import tqdm

    world = distributed.world_size() if distributed.is_distributed() else 1
    rank = distributed.rank() if world > 1 else 0
    device = next(model.parameters()).device
    batches = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    rounds = math.ceil(len(batches) / world)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # summed NLL, target tokens, top-1 hits
    was_training = model.training
    model.eval()
    adapter_off = model.disable_adapter() if base_model else nullcontext()
    # disable=None: no bar when stderr is not a terminal (a log file); the result is logged either way
    bar = tqdm(
        range(rounds),
        desc=desc,
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=True if desc is None or rank != 0 else None,
    )
    try:
        with torch.no_grad(), adapter_off, bar, preserved_rng():
            for r in bar:
                index = r * world + rank
                weight = 1.0 if index < len(batches) else 0.0
                batch = collator([dataset[i] for i in batches[min(index, len(batches) - 1)]])
                batch = {k: v.to(device) for k, v in batch.items()}
                labels = batch["labels"][:, 1:]
                targets = (labels != IGNORE_INDEX).sum()
                if targets == 0:
                    continue
                output = model(**batch, use_cache=False)
                hits = ((output.logits[:, :-1].argmax(-1) == labels) & (labels != IGNORE_INDEX)).sum()
                totals += weight * torch.stack([output.loss.double() * targets, targets.double(), hits.double()])
    finally:
        model.train(was_training)
    distributed.all_reduce(totals, "sum")
    nll, tokens, hits = totals.tolist()
    mean = nll / tokens if tokens else math.nan
    return EvalResult(
        loss=mean,
        perplexity=perplexity_of(mean),
        target_tokens=int(tokens),
        top1_accuracy=hits / tokens if tokens else math.nan,
    )


def perplexity_of(loss: float) -> float:
    """exp(loss), as inf where it would overflow; NaN for a NaN loss."""
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < 80 else math.inf
