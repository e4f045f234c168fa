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

`--vs-hf-trainer`: whole training loops instead, each through its Trainer, in one run on two
corpora: the quickstart (its data, model and config as shipped) and short documents (every
top-level def/class of click, itsdangerous and httpx (sources and tests) where /work/real has them, else of the
first stdlib files; rows of 2,048 tokens, LoRA r=8 on all projections, micro-batch 1):
- ours: `phased-cpt`'s PhaseTrainer, `training_arguments` and data exactly as `train` builds them,
  speed settings at their defaults (`gradient_checkpointing: auto`, resolved as training does);
- HF: the HF Trainer, PEFT, greedy packing + `DataCollatorWithFlattening`, no checkpointing.
Runs alternate (ours, HF, HF, ours, ...), each a fresh model and Trainer; the first `--warmup`
steps of each run are not timed. The load average is recorded before and after; besides tokens per
wall second, each method's tokens per CPU second of this process (which a busy machine changes far
less) and every run's rates in order.

    python benchmarks/cpu_training.py --vs-hf-trainer --steps 12 --rounds 6
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
from transformers import DataCollatorWithFlattening, TrainerCallback  # noqa: E402

from phased_cpt.config import ContextConfig, DataConfig, LoraConfig, ModelConfig, PhaseConfig  # noqa: E402
from phased_cpt.data.chunking import IGNORE_INDEX  # noqa: E402
from phased_cpt.data.collate import make_collator  # noqa: E402
from phased_cpt.data.phase_data import DataSettings, build_run_data  # noqa: E402
from phased_cpt.data.plan import PhaseRows, longest_row_tokens  # noqa: E402
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer  # noqa: E402
from phased_cpt.training.attention import apply_attention  # noqa: E402
from phased_cpt.training.phase import PhaseTrainer, training_arguments  # noqa: E402
from phased_cpt.training.throughput import resolve_checkpointing  # noqa: E402


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
        DataSettings(DataConfig(eval_ratio=0.0), context, 0),
        tokenizer,
        cache,
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


# --- whole training loops: ours (defaults) vs the HF Trainer with padding-free packing -------------


class StepClock(TrainerCallback):
    """Wall and CPU seconds of each optimizer step (one micro-batch per step here). The CPU seconds
    of this process hardly change with the machine's load, the wall seconds do."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._started = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started[0])
        self.cpu_seconds.append(time.process_time() - self._started[1])


class CountingCollator:
    """A collator that records the target tokens (labels after the first that are not -100) of
    every batch it makes, in order: batch i is step i's (one micro-batch per step)."""

    def __init__(self, collate) -> None:
        self.collate = collate
        self.targets: list[int] = []

    def __call__(self, rows):
        batch = self.collate(rows)
        self.targets.append(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()))
        return batch


def timed(clock: StepClock, counter: CountingCollator, warmup: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, target tokens) of the steps after `warmup`."""
    targets = sum(counter.targets[warmup : len(clock.seconds)])
    return sum(clock.seconds[warmup:]), sum(clock.cpu_seconds[warmup:]), targets


def ours_run(cfg, data, tokenizer, steps: int, work: Path) -> tuple[StepClock, CountingCollator, tuple[str, str]]:
    """phased-cpt as `train` runs a phase: attach_lora, attention and checkpointing resolved for
    this machine, `training_arguments`, `PhaseTrainer`, the phase's dataset and collator. Returns
    the clock, the counter and the attention and checkpointing chosen."""
    model = attach_lora(load_base_model(cfg.model), cfg.training.lora)
    attention = apply_attention(model, cfg.model, cfg.context)
    choice = resolve_checkpointing(model, cfg, None, longest_row_tokens(cfg.context, [PhaseRows.of(data)]))
    training = choice.training.model_copy(update={"max_steps": steps})
    clock, counter = StepClock(), CountingCollator(make_collator(tokenizer, cfg.context))
    trainer = PhaseTrainer(
        model=model,
        args=training_arguments(training, 1, work, packed=cfg.context.sample_packing),
        train_dataset=data.train.dataset,
        data_collator=counter,
        callbacks=[clock],
        max_nonfinite_losses=3,
    )
    trainer.train()
    return clock, counter, (attention.describe(), choice.describe())


def hf_run(model_dir: Path, lora: LoraConfig, rows: list, steps: int, work: Path) -> tuple[StepClock, CountingCollator]:
    """The HF way: from_pretrained, get_peft_model, Trainer with DataCollatorWithFlattening over
    greedily packed rows, no gradient checkpointing, the Trainer's default optimizer."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(
        base,
        PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )
    flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    counter = CountingCollator(lambda batch: flatten([{"input_ids": p} for row in batch for p in row["pieces"]]))
    clock = StepClock()
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=1,
        max_steps=steps,
        learning_rate=1e-4,
        save_strategy="no",
        logging_steps=10**6,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=rows, data_collator=counter, callbacks=[clock]).train()
    return clock, counter


def greedy_rows(texts: list[str], tokenizer, max_tokens: int) -> list[dict]:
    """HF practice: tokenize once (+EOS), cut long documents into `max_tokens` pieces, fill rows in order."""
    pieces = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids = ids + [tokenizer.eos_token_id]
        pieces.extend(ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens))
    rows, current, size = [], [], 0
    for piece in pieces:
        if size + len(piece) > max_tokens:
            rows.append({"pieces": current})
            current, size = [], 0
        current.append(piece)
        size += len(piece)
    rows.append({"pieces": current})
    return rows


def package_corpus(out: Path, tiny: bool) -> Path:
    """Short documents: every top-level def/class of click, itsdangerous and httpx, sources and tests (from /work/real
    when present), else of the first stdlib files."""
    from phased_cpt.quickstart.stdlib import STDLIB, file_documents, stdlib_files

    roots = [Path("/work/real/click"), Path("/work/real/itsdangerous"), Path("/work/real/httpx")]
    files = sorted((f, root.parent) for root in roots if root.is_dir() for f in root.rglob("*.py"))
    if tiny or not files:
        files = [(f, STDLIB) for f in stdlib_files(4 if tiny else 60)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for path, root in files:
            for text in file_documents(path, root):
                handle.write(json.dumps({"training_content": text}) + "\n")
    return out


def comparison_cases(work: Path, tiny: bool) -> dict[str, tuple[Path, dict]]:
    """name -> (model directory, config data for ours); the HF side reads the same files and settings."""
    from phased_cpt.quickstart import quickstart_config_data, quickstart_model_dir

    quick_dir = quickstart_model_dir()
    quick = quickstart_config_data(quick_dir)
    quick["phases"] = [{"name": "quickstart", "file": [p["file"] for p in quick["phases"]]}]
    corpus = package_corpus(work / "packages" / "corpus.jsonl", tiny)
    sample = work / "packages" / "sample.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    sample.write_text("\n".join(lines[::4]) + "\n", encoding="utf-8")
    model_dir = build_model(work / ("model-tiny" if tiny else "model"), sample, 1024 if tiny else 8192)
    max_tokens = 256 if tiny else 2048
    short = {
        "model": {"name": str(model_dir)},
        "training": {"micro_batch_size": 1, "gradient_accumulation_steps": 1, "lora": {"r": 8, "alpha": 16}},
        "context": {"max_tokens": max_tokens, "overlap_tokens": 256 if not tiny else 32, "sample_packing": True},
        "phases": [{"name": "packages", "file": str(corpus)}],
    }
    return {"quickstart": (quick_dir, quick), "short_documents": (model_dir, short)}


def compare_trainers(args) -> dict:
    from phased_cpt.config import load_config

    work = args.work or Path(tempfile.mkdtemp(prefix="phased-cpt-trainers-"))
    steps, warmup = args.steps or (3 if args.tiny else 20), 1 if args.tiny else 3
    results = {
        "load_average_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for name, (model_dir, data) in comparison_cases(work, args.tiny).items():
        data = {**data, "data": {"eval_ratio": 0.0, "cache_dir": str(work / "cache")}}
        data["evaluation"] = {"forgetting_matrix": False}
        cfg, _ = load_config(None, base_data=data)
        tokenizer = load_tokenizer(cfg.model)
        phase = build_run_data(cfg.phases, DataSettings.of(cfg), tokenizer, work / "cache")
        phase_data = phase[cfg.phases[0].name]
        texts = [text for f in cfg.phases[0].files for text in read_texts(f)]
        rows = greedy_rows(texts, tokenizer, cfg.context.max_tokens)
        totals = {"ours": [0.0, 0.0, 0], "hf": [0.0, 0.0, 0]}
        per_run = []
        chosen = ("", "")
        for round_ in range(args.rounds):
            order = ["ours", "hf"] if round_ % 2 == 0 else ["hf", "ours"]
            for method in order:
                run_dir = work / "runs" / f"{name}-{method}-{round_}"
                if method == "ours":
                    clock, counter, chosen = ours_run(cfg, phase_data, tokenizer, warmup + steps, run_dir)
                else:
                    clock, counter = hf_run(model_dir, cfg.training.lora, rows, warmup + steps, run_dir)
                seconds, cpu_seconds, targets = timed(clock, counter, warmup)
                for i, value in enumerate((seconds, cpu_seconds, targets)):
                    totals[method][i] += value
                per_run.append(f"{method} {targets / seconds:.1f} tok/s ({targets / cpu_seconds:.1f} per CPU s)")
        rate = {m: t / s for m, (s, _, t) in totals.items()}
        cpu_rate = {m: t / c for m, (_, c, t) in totals.items()}
        results[name] = {
            "ours_attention": chosen[0],
            "ours_checkpointing": chosen[1],
            "max_tokens": cfg.context.max_tokens,
            "micro_batch_size": cfg.training.micro_batch_size,
            "sample_packing": cfg.context.sample_packing,
            "timed_steps_per_method": steps * args.rounds,
            # 4 decimals: a tiny (CI) run's timed steps take a tenth of a second, and 2 decimals
            # moved the rate recomputed from them by over 1%
            **{f"{m}_seconds": round(s, 4) for m, (s, _, _) in totals.items()},
            **{f"{m}_cpu_seconds": round(c, 4) for m, (_, c, _) in totals.items()},
            **{f"{m}_target_tokens": t for m, (_, _, t) in totals.items()},
            **{f"{m}_target_tokens_per_second": round(r, 1) for m, r in rate.items()},
            **{f"{m}_target_tokens_per_cpu_second": round(r, 1) for m, r in cpu_rate.items()},
            "ratio_ours_vs_hf": round(rate["ours"] / rate["hf"], 3),
            "ratio_per_cpu_second": round(cpu_rate["ours"] / cpu_rate["hf"], 3),
            "runs_in_order": per_run,
        }
    results["load_average_after"] = os.getloadavg()
    return results


def read_texts(path: Path) -> list[str]:
    return [
        json.loads(line)["training_content"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def main() -> None:
    with contextlib.redirect_stdout(sys.stderr):  # libraries print notices; stdout is the result only
        result = run()
    print(json.dumps(result, indent=2))


def run() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 30, tiny 3)")
    parser.add_argument("--vs-hf-trainer", action="store_true", help="whole Trainer runs: ours (defaults) vs HF")
    parser.add_argument("--rounds", type=int, default=2, help="--vs-hf-trainer: alternating runs of each method")
    args = parser.parse_args()
    if args.vs_hf_trainer:
        return compare_trainers(args)
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
