"""The phased training recipe, top to bottom: `PhasedRecipe.setup`, then `train` (each phase in
order), then `finish`.

Every phase file is read and tokenized before anything is trained, so a bad line in the last
phase stops the run before the first step rather than days into it. A resumed run skips its
finished phases and continues the current one from its latest complete checkpoint.

Everything a run wires in is in this file: the callbacks of each phase, in the order they run
(`PhasedRecipe.callbacks`), and the evaluations (`train`: the base model before the first phase,
the current phase's held-out rows every `evaluation.eval_steps` during it, the forgetting-matrix
row after it).
"""

from __future__ import annotations

import logging
import time

from peft import PeftModel
from transformers import TrainerCallback, set_seed

from phased_cpt.config import PhaseConfig, RunConfig, TrainingConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.cache import one_writer_per_cache, resolve_cache_dir
from phased_cpt.data.collate import check_packing_model, make_collator
from phased_cpt.data.phase_data import DataSettings, EvaluatedData, PhaseData, build_run_data, save_rejected
from phased_cpt.data.plan import PhaseRows, format_plan, longest_row_tokens, plan_phases, plan_warnings
from phased_cpt.distributed import is_main_process, process_identity
from phased_cpt.errors import ConfigError, storage_errors
from phased_cpt.evaluation.report import write_report
from phased_cpt.modeling import check_model_settings, load_tokenizer
from phased_cpt.plans.deepspeed import plan_deepspeed
from phased_cpt.run_dir import FinishedPhase, RunDir, adapter_file_sha256
from phased_cpt.training.attention import apply_attention
from phased_cpt.training.callbacks import ClockCallback, EvalCallback, MetricsCallback, ProgressCallback
from phased_cpt.training.checkpoints import CheckpointCallback
from phased_cpt.training.evaluate import RunEvaluator, Scoring, write_contamination
from phased_cpt.training.metrics import open_sink
from phased_cpt.training.phase import PhasePaths, PhaseResult, PhaseSettings, SeedAtTrainBegin, phase_seed, train_phase
from phased_cpt.training.processes import check_same_job, init_distributed, main_process_run_dir
from phased_cpt.training.resume import resume_point, resume_run, start_run
from phased_cpt.training.schedule import phase_lr
from phased_cpt.training.signals import GracefulStopCallback, StopRequest, TrainingInterrupted, stop_on_signals
from phased_cpt.training.throughput import resolve_checkpointing, speed_path
from phased_cpt.training.trainable import TrainableModel

logger = logging.getLogger(__name__)


def run_training(cfg: RunConfig, resume: str | None = None) -> RunDir:
    """Train every phase in order on one LoRA adapter; return the run directory.

    `resume`: a run directory or "latest" to continue instead of starting a new run.
    """
    recipe = PhasedRecipe(cfg, resume)
    recipe.setup()
    try:
        recipe.train()
    except BaseException:
        recipe.finish(failed=True)
        raise
    recipe.finish(failed=False)
    return recipe.run


class PhasedRecipe:
    """One training run (a session of it, when resumed): what `setup` builds, every phase trains
    with, and `finish` closes. The attributes are set by `setup` in the order listed there."""

    def __init__(self, cfg: RunConfig, resume: str | None = None) -> None:
        self.cfg = cfg
        self.resume = resume
        self.started = time.time()
        self.stop = StopRequest()
        """Set by SIGTERM/SIGINT during `train` (`stop_on_signals`)."""

    def setup(self) -> None:
        """Everything before the first step: the processes, the data (every phase, prepared and
        checked), the run directory, the model, the metrics and the evaluator."""
        cfg = self.cfg
        self.deepspeed = plan_deepspeed(cfg)
        refuse_model_settings(cfg)
        init_distributed(self.deepspeed)
        check_same_job(cfg)
        set_seed(cfg.training.seed)
        self.tokenizer = load_tokenizer(cfg.model)
        self.phase_data = self.prepare_data()
        self.log_plan()
        self.run = self.open_run_dir()
        if is_main_process():
            save_rejected(self.phase_data, self.run.rejected_dir)
        self.trainable = TrainableModel.build(cfg.model, cfg.training.lora, self.run.final_adapter())
        check_packing_model(self.trainable.model, cfg.context)
        self.training = self.resolve_training()
        """The global training settings, `gradient_checkpointing` resolved for this machine; a
        phase resolves its own overrides on top (`PhaseConfig.training_for`)."""
        self.pending = self.run.pending_phases(cfg.phases)
        resume_step = resume_point(self.run, self.pending[0].name)[1] if self.resume and self.pending else None
        self.sink = open_sink(self.run, cfg, resume_step)
        scoring = Scoring(
            make_collator(self.tokenizer, cfg.context), self.tokenizer, cfg.context.max_tokens, cfg.training.seed
        )
        self.evaluator = RunEvaluator(
            self.run, self.phase_data, cfg.evaluation, self.sink, scoring, [p.name for p in cfg.phases]
        )
        write_contamination(self.run, cfg)
        # the report's wall time: each session from its start, with data preparation apart; and the
        # main process, which writes the run's files this session, whatever the number of nodes
        self.sink.event(
            "session_start",
            time=self.started,
            preparation_seconds=self.preparation_seconds,
            resumed=self.resume is not None,
            **process_identity(),
        )

    def train(self) -> None:
        """Every pending phase in order: the base model's evaluation once, then each phase's
        training (with its own evaluation every `eval_steps`), its evaluation, and its record."""
        with stop_on_signals() as self.stop, storage_errors(self.run.path, self.run.path):
            self.evaluator.before_training(self.trainable.model)
            for phase in self.pending:
                result = self.run_phase(phase)
                self.evaluator.after_phase(self.trainable.model, phase.name, self.run.finished_steps() + result.steps)
                self.finish_phase(phase, result)

    def finish(self, failed: bool) -> None:
        """Close the metrics and write the report, then release the run. After a failure (a full
        disk, a signal, a bug) nothing here may hide that failure: an error of its own is a warning."""
        try:
            with storage_errors(self.run.path, self.run.path):
                self.sink.event("session_end", time=time.time())
                self.sink.close()
                write_report(self.run)
        except Exception as err:
            if not failed:
                raise
            logger.warning("warning: the report was not written: %s", err)
        finally:
            self.run.release_lock()

    # --- setup's steps --------------------------------------------------------------------------

    def prepare_data(self) -> dict[str, PhaseData]:
        """Every phase's rows (and the general and future sets), one process per cache directory
        preparing them; `preparation_seconds` is what it took."""
        cfg = self.cfg
        preparing = time.perf_counter()
        cache_dir = resolve_cache_dir(cfg.data)
        with storage_errors(cache_dir or cfg.output.dir):
            phase_data = one_writer_per_cache(
                cache_dir,
                lambda: build_run_data(
                    cfg.phases, DataSettings.of(cfg), self.tokenizer, cache_dir, EvaluatedData.of(cfg)
                ),
            )
        self.preparation_seconds = time.perf_counter() - preparing
        return phase_data

    def open_run_dir(self) -> RunDir:
        """A new run directory, or the one `--resume` names (checked to be the same run); opened
        by the main process, shared with the others."""
        with storage_errors(self.cfg.output.dir):
            if self.resume:
                run = main_process_run_dir(resume_run, self.cfg, self.resume)
            else:
                run = main_process_run_dir(start_run, self.cfg)
        logger.info("run directory: %s%s", run.path, " (resumed)" if self.resume else "")
        return run

    def log_plan(self) -> None:
        cfg = self.cfg
        plans = plan_phases(cfg.phases, cfg.training, cfg.context, self.phase_data, evaluation=cfg.evaluation)
        logger.info("%s", format_plan(plans, cfg.context))
        for warning in plan_warnings(plans, cfg.training, cfg.evaluation):
            logger.warning("warning: %s", warning)

    def resolve_training(self) -> TrainingConfig:
        """`training` with gradient checkpointing chosen for this machine and the longest row; switches the
        model to the attention `auto` chooses here; logs both and the speed path."""
        cfg, model = self.cfg, self.trainable.model
        logger.info("attention: %s", apply_attention(model, cfg.model, cfg.context).describe())
        longest_row = longest_row_tokens(cfg.context, map(PhaseRows.of, self.phase_data.values()))
        checkpointing = resolve_checkpointing(model, cfg, self.deepspeed, longest_row)
        logger.info("%s", speed_path(model, checkpointing.training, cfg.context, self.deepspeed, checkpointing))
        return checkpointing.training

    # --- one phase ------------------------------------------------------------------------------

    def run_phase(self, phase: PhaseConfig) -> PhaseResult:
        """Train one phase (from its latest complete checkpoint, if any); raise TrainingInterrupted
        when a signal stopped it early."""
        run = self.run
        model = self.trainable.next_phase()
        checkpoint, _ = resume_point(run, phase.name)
        step_offset = run.finished_steps()
        self.sink.event(
            "phase_start",
            phase=phase.name,
            step=step_offset,
            adapter_fingerprint=self.trainable.fingerprint(),
            resumed_from=str(checkpoint) if checkpoint else None,
        )
        crash_point("phase_start", phase.name)
        training = phase.training_for(self.training)
        training = training.model_copy(update={"seed": phase_seed(training.seed, phase.name)})
        lr = phase_lr(training, self.cfg.phases.index(phase), len(self.cfg.phases))
        settings = PhaseSettings(training, self.cfg.context, phase.epochs, self.deepspeed, lr)
        paths = PhasePaths(run.phase_dir(phase.name), run.adapter_dir(phase.name), resume_from=checkpoint)
        callbacks = self.callbacks(phase, model, step_offset, training)
        result = train_phase(model, self.tokenizer, self.phase_data[phase.name], settings, paths, callbacks)
        self.trainable.keep_engine(result.engine)
        if result.stopped_early:
            raise TrainingInterrupted(run.path, self.stop.signum)
        return result

    def callbacks(
        self, phase: PhaseConfig, model: PeftModel, step_offset: int, training: TrainingConfig
    ) -> list[TrainerCallback]:
        """The callbacks of a phase, in the order the Trainer calls them. Around them: first the
        Trainer's own `DefaultFlowCallback` (it decides when to log, evaluate and save), last
        `PhaseTrainer`'s `NonFiniteGuard` (it skips a step that saw a NaN/inf loss or gradient norm,
        `training.max_nonfinite_losses`). `training`: the phase's resolved settings, its seed included."""
        metrics = MetricsCallback(self.sink, phase.name, step_offset=step_offset)
        evaluation = []
        if self.phase_data[phase.name].eval is not None:
            evaluate = lambda: self.evaluator.current_phase(model, phase.name)  # noqa: E731
            evaluation = [EvalCallback(evaluate, self.cfg.evaluation.eval_steps, self.sink, phase.name, step_offset)]
        return [
            metrics,  # the Trainer's logs -> the sink on the global step; training time for tokens/s
            ProgressCallback(phase.name, metrics),  # the progress bar (or a log line per logged step)
            CheckpointCallback(self.run.phase_dir(phase.name), training.save_total_limit),  # COMPLETE, rotation
            GracefulStopCallback(self.stop),  # a signal: save and stop at this step's end, on every rank
            *evaluation,  # the phase's held-out rows every evaluation.eval_steps
            ClockCallback(metrics),  # after evaluation and the checkpoint save: they stay out of tokens/s
            SeedAtTrainBegin(training.seed),  # after every callback that may draw random numbers at train begin
        ]

    def finish_phase(self, phase: PhaseConfig, result: PhaseResult) -> None:
        """Record the finished phase: its end event and its entry in state.json."""
        run = self.run
        finished = FinishedPhase(
            name=phase.name,
            steps=result.steps,
            train_loss=result.train_loss,
            tokens=result.tokens,
            seconds=result.seconds,
            adapter_fingerprint=self.trainable.fingerprint(),  # over the tensors
            adapter_file_sha256=adapter_file_sha256(run.adapter_dir(phase.name)),  # what sha256sum prints
        )
        self.sink.event(
            "phase_end",
            phase=phase.name,
            step=run.finished_steps() + result.steps,
            steps=result.steps,
            train_loss=result.train_loss,
            time=time.time(),
            adapter_fingerprint=finished.adapter_fingerprint,
            adapter_file_sha256=finished.adapter_file_sha256,
        )
        crash_point("state_update", phase.name)
        run.mark_done(finished)
        logger.info("%s done: %d steps, adapter in %s", phase.name, result.steps, run.adapter_dir(phase.name))


def refuse_model_settings(cfg: RunConfig) -> None:
    """Model and LoRA settings that cannot work are config errors before the run directory exists."""
    problems = check_model_settings(cfg.model, cfg.training.lora)
    if problems:
        raise ConfigError(problems)
