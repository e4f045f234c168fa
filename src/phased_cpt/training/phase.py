"""One phase = one HF Trainer run over the phase's rows, on the adapter the previous phase left.

Each phase gets a fresh optimizer and its part of the run's LR schedule (`schedule.py`: by
default its own warmup and decay). The LoRA weights carry over from phase to phase: without
ZeRO-3 the same PeftModel object keeps training; after a ZeRO-3 phase the next one trains a freshly
loaded base model into which the adapter's weights were copied (`trainable.TrainableModel.next_phase`).
The callbacks come from the recipe, in the order they run (`recipe.PhasedRecipe.callbacks`).
Settings come from the phase's resolved `TrainingConfig` (global values with the phase's overrides). A phase resumed from a
checkpoint continues with the checkpoint's optimizer, scheduler, RNG and data position (the HF
Trainer's own resume).

A phase starts from its own seed (`phase_seed`: `training.seed` and the phase name), never from
whatever state the process's RNGs were left in: phase 2 of an uninterrupted run and phase 2 of a
run resumed before its first checkpoint (a fresh process) start identically. The python, numpy,
torch and CUDA RNGs are seeded with it right before the first step (`SeedAtTrainBegin`, after
everything the Trainer and the callbacks do first), and the data order comes from it alone
(`data_seed`). A phase resumed from a checkpoint then gets the checkpoint's RNG state instead.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_callback import ProgressCallback as HFProgressCallback

from phased_cpt.config import ContextConfig, TrainingConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import PhaseData
from phased_cpt.distributed import barrier, is_main_process
from phased_cpt.errors import UserError
from phased_cpt.modeling import embedding_parameter_names
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.plans.kernels import resolve_liger
from phased_cpt.training.nonfinite import NonFiniteGuard
from phased_cpt.training.schedule import PhaseLr
from phased_cpt.training.throughput import checkpointing_kwargs, resolve_optimizer

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
    lr: PhaseLr | None = None
    """The phase's part of a warmup-stable-decay run (`schedule.phase_lr`); None: the Trainer's own schedule."""


@dataclass(frozen=True)
class PhasePaths:
    """Where a phase writes (its checkpoints, and its final adapter once it finishes) and the
    checkpoint it continues from."""

    phase_dir: Path
    adapter_dir: Path
    resume_from: Path | None = None
    """A complete checkpoint of the phase (`resume.resume_point`); None: the phase starts from its first step."""


@dataclass
class PhaseResult:
    steps: int
    train_loss: float | None
    """Mean training loss of the phase; None when a step's loss was non-finite (skipped)."""
    tokens: int
    seconds: float
    stopped_early: bool
    """True when a stop was requested (signal) before the phase's last step."""
    engine: Any = None
    """The DeepSpeed engine the phase trained with (None without DeepSpeed); `TrainableModel`
    keeps it alive until the next phase."""


def phase_seed(seed: int, phase_name: str) -> int:
    """The seed a phase starts from: python, numpy, torch and CUDA RNGs and the data order are
    seeded with it when the phase begins training (`SeedAtTrainBegin`, `data_seed`). A function of
    `training.seed` and the phase alone (like the eval split and the replay choice), 32 bits as numpy requires."""
    digest = hashlib.sha256(f"{seed}:{phase_name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class SeedAtTrainBegin(TrainerCallback):
    """Seeds every RNG with the phase's seed when its training loop begins: nothing that ran
    before in the process (an earlier phase, an evaluation, a callback's first-use measurement)
    changes what the phase draws. Placed after every callback that has an `on_train_begin`, so
    none draws after it (the recipe's list). A resumed phase's checkpoint RNG state is loaded by
    the Trainer after this point."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_begin(self, args, state, control, **kwargs):
        set_seed(self.seed)


def training_arguments(
    training: TrainingConfig,
    epochs: float,
    phase_dir: Path,
    deepspeed: DeepSpeedPlan | None = None,
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
    """The HF Trainer with `NonFiniteGuard` (its last callback), the phase's part of the run's LR
    schedule, and the embeddings' own learning rate. `compute_loss`, `log`, `create_optimizer` and
    `create_scheduler` are the Trainer's documented override points. A logged loss or gradient
    norm that is non-finite reaches the metrics as NaN (null in metrics.jsonl), never as a number."""

    def __init__(
        self,
        *args,
        max_nonfinite_losses: int,
        lr: PhaseLr | None = None,
        embedding_lr_ratio: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.guard = NonFiniteGuard(max_nonfinite_losses)
        self.add_callback(self.guard)  # after the callbacks it was given: it is the last one
        self.lr = lr
        self.embedding_lr_ratio = embedding_lr_ratio

    def create_optimizer(self, model=None):
        """With trained embeddings (`lora.embeddings`), their parameters get their own param
        groups at `embedding_lr_ratio` times the learning rate (the scheduler scales every group
        alike); otherwise the Trainer's own optimizer."""
        opt_model = self.model if model is None else model
        embedding = embedding_parameter_names(opt_model) if self.embedding_lr_ratio is not None else set()
        if self.optimizer is None and embedding:
            decay = set(self.get_decay_parameter_names(opt_model))
            groups = [
                {
                    "params": [
                        p
                        for n, p in opt_model.named_parameters()
                        if p.requires_grad and n not in embedding and (n in decay) == decays
                    ],
                    "weight_decay": self.args.weight_decay if decays else 0.0,
                }
                for decays in (True, False)
            ] + [
                {
                    "params": [p for n, p in opt_model.named_parameters() if n in embedding and (n in decay) == decays],
                    "weight_decay": self.args.weight_decay if decays else 0.0,
                    "lr": self.args.learning_rate * self.embedding_lr_ratio,
                }
                for decays in (True, False)
            ]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls([g for g in groups if g["params"]], **optimizer_kwargs)
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The phase's warmup-stable-decay part (`schedule.PhaseLr`); the Trainer's own otherwise."""
        if self.lr_scheduler is None and self.lr is not None:
            self.lr_scheduler = self.lr.scheduler(
                optimizer or self.optimizer, num_training_steps, self.args.get_warmup_steps(num_training_steps)
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss = result[0] if return_outputs else result
        finite = bool(torch.isfinite(loss.detach()).all())
        self.guard.loss_seen(finite)
        if finite:
            return result
        zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=loss.device))
        return (zero, result[1]) if return_outputs else zero

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            self.guard.amend_log(logs)
        super().log(logs, start_time)


def train_phase(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    data: PhaseData,
    settings: PhaseSettings,
    paths: PhasePaths,
    callbacks: list[TrainerCallback],
) -> PhaseResult:
    """Train the adapter on one phase's rows with `callbacks` (in the order they run, between the
    Trainer's `DefaultFlowCallback` and `PhaseTrainer`'s `NonFiniteGuard`); save the final adapter to `paths.adapter_dir` unless a stop was requested
    first. The previous phase's DeepSpeed engine must be released (`TrainableModel.next_phase`)."""
    training = settings.training
    embedding_lr_ratio = None if training.lora.embeddings == "frozen" else training.lora.embedding_lr_ratio
    check_embedding_lr(embedding_lr_ratio, settings.deepspeed)
    trainer = PhaseTrainer(
        model=model,
        args=training_arguments(
            training, settings.epochs, paths.phase_dir, settings.deepspeed, packed=settings.context.sample_packing
        ),
        train_dataset=data.train.dataset,
        data_collator=make_collator(tokenizer, settings.context),
        processing_class=tokenizer,
        callbacks=callbacks,
        max_nonfinite_losses=training.max_nonfinite_losses,
        lr=settings.lr,
        embedding_lr_ratio=embedding_lr_ratio,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgressCallback)
    if paths.resume_from is not None:
        logger.info("resuming from %s", paths.resume_from)
    started = time.perf_counter()
    trained = trainer.train(resume_from_checkpoint=str(paths.resume_from) if paths.resume_from else None)
    seconds = time.perf_counter() - started
    stopped_early = trainer.state.global_step < trainer.state.max_steps
    if not stopped_early:
        save_adapter(trainer, paths.adapter_dir)
    train_loss = float(trained.training_loss)
    known = math.isfinite(train_loss) and not trainer.guard.nonfinite_loss_steps
    return PhaseResult(
        steps=trainer.state.global_step,
        train_loss=train_loss if known else None,
        tokens=int(trainer.state.num_input_tokens_seen),
        seconds=seconds,
        stopped_early=stopped_early,
        engine=trainer.deepspeed,
    )


def check_embedding_lr(embedding_lr_ratio: float | None, deepspeed: DeepSpeedPlan | None) -> None:
    """A DeepSpeed config with its own `optimizer` section (CPU offload) builds the optimizer from a
    flat parameter list, so the embeddings' own learning rate would be silently lost."""
    if embedding_lr_ratio not in (None, 1.0) and deepspeed is not None and "optimizer" in deepspeed.config:
        raise UserError(
            f"training.lora.embedding_lr_ratio ({embedding_lr_ratio}) needs the HF Trainer's optimizer, and the "
            f"DeepSpeed config ({deepspeed.source}) builds its own (offload); set embedding_lr_ratio: 1.0, "
            "deepspeed_offload: none, or remove the optimizer section from the DeepSpeed file"
        )


def save_adapter(trainer: Trainer, adapter_dir: Path) -> None:
    """Write the final adapter next to its final name, then rename: never a half-written adapter."""
    partial = adapter_dir.with_name(adapter_dir.name + ".partial")
    if is_main_process():
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))  # collective: gathers the full adapter under DeepSpeed ZeRO-3
    barrier()
    if is_main_process():
        shutil.rmtree(adapter_dir, ignore_errors=True)
        partial.rename(adapter_dir)
