"""One phase = one HF Trainer run over the phase's rows, on the adapter the previous phase left.

Each phase gets a fresh optimizer and LR schedule (its own warmup and decay); the LoRA weights
carry over because the same PeftModel object keeps training. Settings come from the phase's
resolved `TrainingConfig` (global values with the phase's overrides).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import (
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback as HFProgressCallback

from phased_cpt.config import ContextConfig, TrainingConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import PhaseData

logger = logging.getLogger(__name__)


@dataclass
class PhaseResult:
    steps: int
    train_loss: float


def optimizer_steps(rows: int, training: TrainingConfig, epochs: float, world_size: int = 1) -> int:
    """Optimizer steps the Trainer will take for `rows` rows (as HF computes it)."""
    if training.max_steps is not None:
        return training.max_steps
    batches_per_epoch = math.ceil(rows / (training.micro_batch_size * world_size))
    steps_per_epoch = max(batches_per_epoch // training.gradient_accumulation_steps, 1)
    return math.ceil(epochs * steps_per_epoch)


def training_arguments(training: TrainingConfig, epochs: float, phase_dir: Path) -> TrainingArguments:
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(phase_dir),
        num_train_epochs=epochs,
        max_steps=training.max_steps or -1,
        per_device_train_batch_size=training.micro_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,  # a float in [0, 1) is a ratio of the phase's steps
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        activation_checkpointing=training.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if training.gradient_checkpointing else None,
        logging_steps=training.logging_steps,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        seed=training.seed,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        tf32=on_gpu and torch.cuda.get_device_capability()[0] >= 8,
        use_cpu=not on_gpu,
        report_to="none",  # metrics go through MetricsSink: one global step across phases
        disable_tqdm=True,  # our ProgressCallback draws the bar
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_drop_last=False,
    )


def train_phase(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    data: PhaseData,
    training: TrainingConfig,
    context: ContextConfig,
    epochs: float,
    phase_dir: Path,
    adapter_dir: Path,
    callbacks: list[TrainerCallback],
) -> PhaseResult:
    """Train the adapter on one phase's rows and save the final adapter to `adapter_dir`."""
    trainer = Trainer(
        model=model,
        args=training_arguments(training, epochs, phase_dir),
        train_dataset=data.train.dataset,
        data_collator=make_collator(tokenizer, context),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgressCallback)
    output = trainer.train()
    trainer.save_model(str(adapter_dir))  # gathers the full adapter under DeepSpeed ZeRO-3 as well
    return PhaseResult(steps=trainer.state.global_step, train_loss=float(output.training_loss))
