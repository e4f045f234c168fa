"""A base that knows something, offline: the tiny model pretrained (full weights) on general code.

A random-weight base knows nothing, so continual pre-training on it can only show learning,
never forgetting. This pretrains the tiny Qwen2-architecture model on the running interpreter's
standard library (`quickstart/stdlib.py`: on every machine, no download) with the same data pipeline and HF
Trainer as phased training, but every weight trainable: packed rows of `max_tokens`, and
fill-in-the-middle on `fim_rate` of them (its tokenizer has Qwen2.5-Coder's FIM tokens), so the
base can complete and infill code. The result is a model directory like any other, plus the
general corpus it came from:

    <cache>/phased-cpt/pretrained-tiny-<key>/
      config.json  model.safetensors  tokenizer.json ...   (from_pretrained loads it)
      general/train.jsonl   the documents it was trained on: the `general` source to mix into CPT
      general/eval.jsonl    held-out files (one in 20): `evaluation.general_file`
      pretrain.json         settings, steps, tokens, seconds, final loss, general eval perplexity

Built once and cached (`pretrained_model_dir`), keyed by the settings, the interpreter's version
and stdlib path, and `PRETRAIN_VERSION`. Deterministic: the same settings on the same interpreter
give the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from phased_cpt.config import ContextConfig, DataConfig, ModelConfig, PhaseConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.evaluation.perplexity import evaluate_rows
from phased_cpt.modeling import load_tokenizer
from phased_cpt.quickstart import build_cached, cache_root
from phased_cpt.quickstart.stdlib import STDLIB, write_general_corpus
from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

logger = logging.getLogger(__name__)

PRETRAIN_VERSION = "1"
GENERAL_DIR = "general"
TOKENIZER_SAMPLE_EVERY = 8
"""The tokenizer is trained on every 8th general training document."""


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 600
    rows_per_step: int = 8
    max_tokens: int = 256
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.05
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    fim_rate: float = 0.5
    seed: int = 0
    limit_files: int | None = None
    """Only the first N stdlib files (tests); None: all of them."""


def pretrained_model_dir(settings: PretrainSettings = PretrainSettings()) -> Path:
    """The pretrained tiny model for `settings`, built on first use and cached."""
    return build_cached(pretrained_model_path(settings), lambda tmp: pretrain_tiny_model(tmp, settings))


def pretrained_model_path(settings: PretrainSettings) -> Path:
    """Where `pretrained_model_dir` caches the model for `settings` (built or not)."""
    key = json.dumps(
        {"version": PRETRAIN_VERSION, "python": sys.version, "stdlib": str(STDLIB), **asdict(settings)}, sort_keys=True
    )
    return cache_root() / f"pretrained-tiny-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def general_files(model_dir: Path) -> tuple[Path, Path]:
    """(general training documents, general held-out documents) of a pretrained tiny model."""
    return model_dir / GENERAL_DIR / "train.jsonl", model_dir / GENERAL_DIR / "eval.jsonl"


def pretrain_tiny_model(out_dir: Path, settings: PretrainSettings) -> Path:
    """Build the tokenizer and random model in `out_dir`, pretrain every weight on the general
    corpus, and save the trained model over the random one."""
    started = time.perf_counter()
    train_file, eval_file = write_general_corpus(out_dir / GENERAL_DIR, settings.limit_files)
    sample = out_dir / "tokenizer_sample.jsonl"
    with open(train_file, encoding="utf-8") as f, open(sample, "w", encoding="utf-8") as g:
        g.writelines(line for i, line in enumerate(f) if i % TOKENIZER_SAMPLE_EVERY == 0)
    build_tiny_model(
        out_dir,
        [sample],
        TinyModelSpec(
            architecture="qwen2",
            vocab_size=settings.vocab_size,
            hidden_size=settings.hidden_size,
            num_layers=settings.num_layers,
            fim=True,
            seed=settings.seed,
            initializer_range=0.02,
        ),
    )
    sample.unlink()
    tokenizer = load_tokenizer(ModelConfig(name=str(out_dir)))
    context = ContextConfig(
        max_tokens=settings.max_tokens,
        overlap_tokens=min(32, settings.max_tokens // 8),
        sample_packing=True,
        fim_rate=settings.fim_rate,
    )
    with tempfile.TemporaryDirectory(prefix="phased-cpt-pretrain-") as work:
        train = build_phase_data(
            PhaseConfig(name="general", file=train_file),
            DataConfig(eval_ratio=0.0),
            tokenizer,
            context,
            settings.seed,
            Path(work) / "data",
        )
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="sdpa")
        trainer = Trainer(
            model=model,
            args=pretrain_arguments(settings, Path(work) / "trainer"),
            train_dataset=train.train.dataset,
            data_collator=make_collator(tokenizer, context),
            callbacks=[ProgressLog(settings.steps)],
        )
        trainer.remove_callback(PrinterCallback)
        output = trainer.train()
        tokens = int(trainer.state.num_input_tokens_seen)
        general_eval = evaluate_general(model, tokenizer, eval_file, context, settings.seed, Path(work) / "data")
    model.save_pretrained(out_dir)
    record = {
        "settings": asdict(settings),
        "steps": settings.steps,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "train_loss": output.training_loss,
        "general_train_documents": train.train.documents,
        **general_eval,
    }
    (out_dir / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "pretrained the tiny base on the standard library: %d steps, %d tokens, general eval perplexity %s, %.0f s",
        settings.steps,
        tokens,
        general_eval.get("general_eval_perplexity"),
        record["seconds"],
    )
    return out_dir


def evaluate_general(model, tokenizer, eval_file: Path, context: ContextConfig, seed: int, cache_dir: Path) -> dict:
    """Loss and perplexity on the held-out general documents (none when the slice holds no eval file)."""
    if eval_file.stat().st_size == 0:
        return {"general_eval_documents": 0}
    context = context.model_copy(update={"fim_rate": 0.0, "sample_packing": False})  # padded batches of rows
    held_out = build_phase_data(
        PhaseConfig(name="general_eval", file=eval_file),
        DataConfig(eval_ratio=0.0),
        tokenizer,
        context,
        seed,
        cache_dir,
    )
    result = evaluate_rows(model, held_out.train.dataset, make_collator(tokenizer, context), batch_size=16)
    return {
        "general_eval_documents": held_out.train.documents,
        "general_eval_loss": result.loss,
        "general_eval_perplexity": result.perplexity,
    }


def pretrain_arguments(settings: PretrainSettings, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=settings.steps,
        # One packed row per forward pass: a micro-batch of several would be flattened into one
        # sequence whose attention mask is rows x max_tokens square (2.8x slower on CPU here).
        per_device_train_batch_size=1,
        gradient_accumulation_steps=settings.rows_per_step,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio,
        weight_decay=0.1,
        max_grad_norm=1.0,
        seed=settings.seed,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        logging_steps=max(settings.steps // 10, 1),
        disable_tqdm=True,
        include_num_input_tokens_seen="all",
        remove_unused_columns=False,
    )


class ProgressLog(TrainerCallback):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            logger.info("pretraining the tiny base: step %d/%d, loss %.3f", state.global_step, self.steps, logs["loss"])
