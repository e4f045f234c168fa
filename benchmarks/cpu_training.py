"""End-to-end CPU training throughput on the tiny model: useful target tokens per second.

Useful target tokens are labels the model learns from, counted once: not padding, not a chunk
overlap it has already been trained on. Three ways to feed the same corpus, same model, same
LoRA, same optimizer, one row of at most `max_tokens` per step, side by side in one process
(steps of the three alternate, so machine load hits them alike):

- (a) the older tool: per document, tokenize, cut overlapping windows, decode and re-tokenize
  each window padded to `max_tokens`, train on the padded rows (overlap trained again);
- (b) modern HF practice: tokenize once, cut long documents into `max_tokens` windows, greedy
  packing into rows, `DataCollatorWithFlattening` (padding-free, position ids per document);
- phased-cpt: `build_run_data` with `context.sample_packing: true` and its collator.

    python benchmarks/cpu_training.py          # max_tokens 2048, 30 timed steps each
    python benchmarks/cpu_training.py --tiny   # seconds (CI smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from stdlib_corpus import build_model, write_corpus  # noqa: E402
from transformers import DataCollatorWithFlattening  # noqa: E402

from phased_cpt.config import ContextConfig, DataConfig, LoraConfig, ModelConfig, PhaseConfig  # noqa: E402
from phased_cpt.data.chunking import IGNORE_INDEX  # noqa: E402
from phased_cpt.data.collate import make_collator  # noqa: E402
from phased_cpt.data.phase_data import build_run_data  # noqa: E402
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer  # noqa: E402


def older_tool_batches(texts, tokenizer, max_tokens, overlap_tokens, count, rng):
    """(batch, useful target tokens) for `count` padded windows of randomly chosen documents."""
    stride = max_tokens - overlap_tokens
    batches = []
    while len(batches) < count:
        ids = tokenizer(rng.choice(texts), add_special_tokens=False)["input_ids"]
        for k, start in enumerate(range(0, max(len(ids) - overlap_tokens, 1), stride)):
            window = tokenizer.decode(ids[start : start + max_tokens])
            row = tokenizer(window, padding="max_length", truncation=True, max_length=max_tokens, return_tensors="pt")
            labels = row["input_ids"].masked_fill(row["attention_mask"] == 0, IGNORE_INDEX)
            real = int(row["attention_mask"].sum())
            useful = real - 1 - (overlap_tokens if k > 0 else 0)  # the overlap was already trained on
            batches.append(
                (
                    {"input_ids": row["input_ids"], "attention_mask": row["attention_mask"], "labels": labels},
                    max(useful, 0),
                )
            )
    return batches[:count]


def hf_flattening_batches(texts, tokenizer, max_tokens, count, rng):
    """(batch, useful target tokens): tokenize once, greedy packing, DataCollatorWithFlattening."""
    pieces = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids = ids + [tokenizer.eos_token_id]
        pieces.extend(ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens))
    rows, current, size = [], [], 0
    for piece in pieces:  # greedy: fill the current row in order, start a new one when full
        if size + len(piece) > max_tokens:
            rows.append(current)
            current, size = [], 0
        current.append({"input_ids": piece})
        size += len(piece)
    rows.append(current)
    collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    chosen = rng.sample(rows, count)
    batches = [collator(row) for row in chosen]
    efficiency = sum(len(p["input_ids"]) for row in rows for p in row) / (len(rows) * max_tokens)
    return [(b, int((b["labels"] != IGNORE_INDEX).sum())) for b in batches], efficiency


def phased_cpt_batches(corpus, tokenizer, max_tokens, overlap_tokens, count, rng, cache):
    context = ContextConfig(max_tokens=max_tokens, overlap_tokens=overlap_tokens, sample_packing=True)
    data = build_run_data(
        [PhaseConfig(name="stdlib", file=corpus)],
        DataConfig(eval_ratio=0.0),
        tokenizer,
        context,
        seed=0,
        cache_dir=cache,
    )["stdlib"]
    collator = make_collator(tokenizer, context)
    rows = rng.sample(range(len(data.train)), count)
    batches = [collator([data.train.dataset[i]]) for i in rows]
    return [(b, int((b["labels"] != IGNORE_INDEX).sum())) for b in batches], data.train.stats["packing_efficiency"]


def train_interleaved(model, optimizer, methods: dict[str, list], warmup: int) -> dict[str, tuple[float, int]]:
    """Seconds and useful target tokens per method over the steps after `warmup`. Steps of the
    methods alternate (a, b, ours, a, b, ours, ...) so that a change in machine load hits all alike."""
    model.train()
    totals = {name: [0.0, 0] for name in methods}
    for step in range(len(next(iter(methods.values())))):
        for name, batches in methods.items():
            batch, tokens = batches[step]
            start = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= warmup:
                totals[name][0] += time.perf_counter() - start
                totals[name][1] += tokens
    return {name: (seconds, useful) for name, (seconds, useful) in totals.items()}


def main() -> None:
    with contextlib.redirect_stdout(sys.stderr):  # libraries print notices; stdout is the result only
        result = run()
    print(json.dumps(result, indent=2))


def run() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 30, tiny 3)")
    args = parser.parse_args()
    tiny = args.tiny
    max_tokens, overlap_tokens = (256, 32) if tiny else (2048, 256)
    steps, warmup = args.steps or (3 if tiny else 30), 1 if tiny else 3
    work = args.work or Path(tempfile.mkdtemp(prefix="phased-cpt-bench-"))
    corpus, sample = write_corpus(work / "corpus", 12 if tiny else None)
    model_dir = build_model(work / ("model-tiny" if tiny else "model"), sample, 1024 if tiny else 8192)
    tokenizer = load_tokenizer(ModelConfig(name=str(model_dir)))
    texts = [
        json.loads(line)["training_content"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    torch.manual_seed(0)
    model = attach_lora(
        load_base_model(ModelConfig(name=str(model_dir), dtype="float32", attn_implementation="sdpa")),
        LoraConfig(r=8, alpha=16, dropout=0.0),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    count = steps + warmup
    a = older_tool_batches(texts, tokenizer, max_tokens, overlap_tokens, count, random.Random(0))
    b, b_efficiency = hf_flattening_batches(texts, tokenizer, max_tokens, count, random.Random(0))
    ours, efficiency = phased_cpt_batches(
        corpus, tokenizer, max_tokens, overlap_tokens, count, random.Random(0), work / "cache"
    )
    results = {}
    timings = train_interleaved(model, optimizer, {"baseline_a": a, "baseline_b": b, "phased_cpt": ours}, warmup)
    for name, (seconds, useful) in timings.items():
        results[name] = {
            "steps": steps,
            "seconds": round(seconds, 3),
            "useful_target_tokens": useful,
            "useful_tokens_per_second": round(useful / seconds, 1),
        }
    results["baseline_b"]["packing_efficiency"] = round(b_efficiency, 4)
    results["phased_cpt"]["packing_efficiency"] = round(efficiency, 4)
    rate = {k: v["useful_tokens_per_second"] for k, v in results.items()}
    return {
        "max_tokens": max_tokens,
        "overlap_tokens": overlap_tokens,
        "torch_threads": torch.get_num_threads(),
        **results,
        "ratios": {
            "vs_a": round(rate["phased_cpt"] / rate["baseline_a"], 2),
            "vs_b": round(rate["phased_cpt"] / rate["baseline_b"], 3),
        },
    }


if __name__ == "__main__":
    main()
