"""One phase = one HF Trainer run over the phase's rows, on the adapter the previous phase left.

Each phase gets a fresh optimizer and LR schedule (its own warmup and decay); the LoRA weights
carry over because the same PeftModel object keeps training. Settings come from the phase's
resolved `TrainingConfig` (global values with the phase's overrides). A phase resumed from a
checkpoint continues with the checkpoint's optimizer, scheduler, RNG and data position (the HF
Trainer's own resume).

A phase starts from its own seed (`phase_seed`: `training.seed` and the phase name), never from
whatever state the process's RNGs were left in: phase 2 of an uninterrupted run and phase 2 of a
run resumed before its first checkpoint (a fresh process) start identically.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from peft import PeftModel
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_callback import ProgressCallback as HFProgressCallback

from phased_cpt.config import ContextConfig, TrainingConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import PhaseData
from phased_cpt.errors import TrainingDiverged
from phased_cpt.training.deepspeed_plan import DeepSpeedPlan
from phased_cpt.training.throughput import checkpointing_kwargs, resolve_liger, resolve_optimizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseSettings:
    """How one phase trains."""

    training: TrainingConfig
    """The phase's resolved settings: the global ones with its overrides (`PhaseConfig.training_for`),
    and its own seed (`phase_seed`)."""
    context: ContextConfig
    epochs: float
    deepspeed: DeepSpeedPlan | None = None


@dataclass(frozen=True)
class PhaseOutput:
    """Where a phase writes: its checkpoints, and its final adapter once it finishes."""

    phase_dir: Path
    adapter_dir: Path


@dataclass
class PhaseResult:
    steps: int
    train_loss: float
    tokens: int
    seconds: float
    stopped_early: bool
    """True when a stop was requested (signal) before the phase's last step."""
    engine: Any = None
    """The DeepSpeed engine the phase trained with (None without DeepSpeed); `TrainableModel`
    keeps it alive until the next phase."""


def phase_seed(seed: int, phase_name: str) -> int:
    """The seed a phase starts from: python, numpy, torch and CUDA RNGs and the data order are
    seeded with it when the phase's Trainer is built. A function of `training.seed` and the phase
    alone (like the eval split and the replay choice), 32 bits as numpy requires."""
    digest = hashlib.sha256(f"{seed}:{phase_name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def training_arguments(
    training: TrainingConfig, epochs: float, phase_dir: Path, deepspeed: DeepSpeedPlan | None = None,
    packed: bool = False,
) -> TrainingArguments:
    """`deepspeed`: its config's `"auto"` values are filled by the Trainer from these settings.
    `packed`: batches are packed rows laid end to end, with no padding at all."""
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
        activation_checkpointing_kwargs=checkpointing_kwargs(training),
        optim=resolve_optimizer(training.performance.optimizer).value,
        use_liger_kernel=resolve_liger(training.performance.liger_kernel).value,
        torch_compile=training.performance.torch_compile,
        logging_steps=training.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=None,  # CheckpointCallback rotates, only after a newer checkpoint is complete
        save_only_model=False,  # optimizer, scheduler and RNG are needed to resume exactly
        seed=training.seed,  # the Trainer seeds every RNG with it when it is built
        data_seed=training.seed,  # the data order: from the seed alone, not from the torch RNG's history
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        tf32=on_gpu and torch.cuda.get_device_capability()[0] >= 8,
        use_cpu=not on_gpu,
        report_to="none",  # metrics go through MetricsSink: one global step across phases
        disable_tqdm=True,  # our ProgressCallback draws the bar
        # Packed batches have no padding and no attention mask; "non_padding" would then count
        # tokens != pad_token_id and miss every EOS when pad == eos.
        include_num_input_tokens_seen="all" if packed else "non_padding",
        remove_unused_columns=False,
        dataloader_drop_last=False,
        deepspeed=copy.deepcopy(deepspeed.config) if deepspeed else None,  # the Trainer fills it in place
    )


class PhaseTrainer(Trainer):
    """The HF Trainer with a guard against non-finite losses.

    A micro-batch whose loss is NaN/inf contributes a zero gradient instead of poisoning the
    weights; after `max_nonfinite_losses` such micro-batches in a row the phase stops with
    `TrainingDiverged`. `compute_loss` is the Trainer's documented override point.
    """

    def __init__(self, *args, max_nonfinite_losses: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_nonfinite_losses = max_nonfinite_losses
        self.nonfinite_in_a_row = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss = result[0] if return_outputs else result
        if torch.isfinite(loss.detach()).all():
            self.nonfinite_in_a_row = 0
            return result
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= self.max_nonfinite_losses:
            raise TrainingDiverged(
                f"{self.nonfinite_in_a_row} consecutive non-finite losses at step {self.state.global_step + 1} "
                f"(training.max_nonfinite_losses={self.max_nonfinite_losses}); the phase stopped. Checkpoints "
                "written before are untouched. Lower training.learning_rate, keep training.max_grad_norm > 0, "
                "use bfloat16 rather than float16, or check the data of this phase."
            )
        logger.warning("non-finite loss at step %d: this micro-batch contributes no gradient", self.state.global_step + 1)
        zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=loss.device))
        return (zero, result[1]) if return_outputs else zero


def train_phase(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    data: PhaseData,
    settings: PhaseSettings,
    output: PhaseOutput,
    callbacks: list[TrainerCallback],
    resume_from: Path | None = None,
) -> PhaseResult:
    """Train the adapter on one phase's rows; save the final adapter to `output.adapter_dir`
    unless a stop was requested first. The previous phase's DeepSpeed engine must be released
    (`TrainableModel.next_phase`)."""
    training = settings.training
    set_seed(training.seed)  # as the Trainer does when built; here too, so nothing before it matters
    trainer = PhaseTrainer(
        model=model,
        args=training_arguments(training, settings.epochs, output.phase_dir, settings.deepspeed,
                                packed=settings.context.sample_packing),
        train_dataset=data.train.dataset,
        data_collator=make_collator(tokenizer, settings.context),
        processing_class=tokenizer,
        callbacks=callbacks,
        max_nonfinite_losses=training.max_nonfinite_losses,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgressCallback)
    if resume_from is not None:
        logger.info("resuming from %s", resume_from)
    started = time.perf_counter()
    trained = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    stopped_early = trainer.state.global_step < trainer.state.max_steps
    if not stopped_early:
        save_adapter(trainer, output.adapter_dir)
    return PhaseResult(
        steps=trainer.state.global_step,
        train_loss=float(trained.training_loss),
        tokens=int(trainer.state.num_input_tokens_seen),
        seconds=seconds,
        stopped_early=stopped_early,
        engine=trainer.deepspeed,
    )


def save_adapter(trainer: Trainer, adapter_dir: Path) -> None:
    """Write the final adapter next to its final name, then rename: never a half-written adapter."""
    partial = adapter_dir.with_name(adapter_dir.name + ".partial")
    if trainer.is_world_process_zero():
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))  # collective: gathers the full adapter under DeepSpeed ZeRO-3
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if trainer.is_world_process_zero():
        shutil.rmtree(adapter_dir, ignore_errors=True)
        partial.rename(adapter_dir)
