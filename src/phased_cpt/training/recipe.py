"""The phased training recipe, top to bottom: data, run directory, model, then each phase in order.

Every phase file is read and tokenized before anything is trained, so a bad line in the last
phase stops the run before the first step rather than days into it. A resumed run skips its
finished phases and continues the current one from its latest complete checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase, set_seed

from phased_cpt.config import (
    ContextConfig,
    EvaluationConfig,
    PhaseConfig,
    RunConfig,
    TrainingConfig,
    public_config,
)
from phased_cpt.crash_points import crash_point
from phased_cpt.data.cache import one_writer_per_cache, resolve_cache_dir
from phased_cpt.data.collate import check_packing_model, make_collator
from phased_cpt.data.phase_data import DataSettings, EvaluatedData, PhaseData, build_run_data, save_rejected
from phased_cpt.data.plan import PhaseRows, format_plan, longest_row_tokens, plan_phases, plan_warnings
from phased_cpt.errors import ConfigError, storage_errors
from phased_cpt.evaluation.report import write_report
from phased_cpt.modeling import check_model_settings, load_tokenizer
from phased_cpt.plans.deepspeed import DeepSpeedPlan, plan_deepspeed
from phased_cpt.run_dir import RunDir, adapter_file_sha256
from phased_cpt.training.attention import apply_attention
from phased_cpt.training.callbacks import ClockCallback, EvalCallback, MetricsCallback, ProgressCallback
from phased_cpt.training.checkpoints import CheckpointCallback
from phased_cpt.training.evaluate import RunEvaluator, write_contamination
from phased_cpt.training.metrics import MetricsSink, open_sink
from phased_cpt.training.phase import PhaseOutput, PhaseResult, PhaseSettings, phase_seed, train_phase
from phased_cpt.training.processes import (
    check_same_job,
    init_distributed,
    rank_zero_run_dir,
    writer_identity,
)
from phased_cpt.training.resume import resume_point, resume_run, start_run
from phased_cpt.training.schedule import phase_lr
from phased_cpt.training.signals import GracefulStopCallback, StopRequest, TrainingInterrupted, stop_on_signals
from phased_cpt.training.throughput import resolve_checkpointing, speed_path
from phased_cpt.training.trainable import TrainableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What every phase of a run shares: where it writes, what it reports to, and its settings."""

    run: RunDir
    tokenizer: PreTrainedTokenizerBase
    sink: MetricsSink
    evaluator: RunEvaluator
    stop: StopRequest
    training: TrainingConfig
    """The global training settings, `gradient_checkpointing` resolved for this machine
    (`resolve_checkpointing`); a phase resolves its own overrides on top."""
    context: ContextConfig
    evaluation: EvaluationConfig
    deepspeed: DeepSpeedPlan | None
    phases: list[PhaseConfig]
    """Every phase of the run, in order: where a phase stands decides its part of the LR schedule."""


def run_training(cfg: RunConfig, resume: str | None = None) -> RunDir:
    """Train every phase in order on one LoRA adapter; return the run directory.

    `resume`: a run directory or "latest" to continue instead of starting a new run.
    """
    started = time.time()
    deepspeed = plan_deepspeed(cfg)
    refuse_model_settings(cfg)
    init_distributed(deepspeed)
    check_same_job(cfg)
    set_seed(cfg.training.seed)
    tokenizer = load_tokenizer(cfg.model)
    preparing = time.perf_counter()
    cache_dir = resolve_cache_dir(cfg.data)
    with storage_errors(cache_dir or cfg.output.dir):
        phase_data = one_writer_per_cache(
            cache_dir,
            lambda: build_run_data(cfg.phases, DataSettings.of(cfg), tokenizer, cache_dir, EvaluatedData.of(cfg)),
        )
    preparation_seconds = time.perf_counter() - preparing
    plans = plan_phases(cfg.phases, cfg.training, cfg.context, phase_data, evaluation=cfg.evaluation)
    logger.info("%s", format_plan(plans, cfg.context))
    for warning in plan_warnings(plans, cfg.training, cfg.evaluation):
        logger.warning("warning: %s", warning)

    with storage_errors(cfg.output.dir):
        run = rank_zero_run_dir(resume_run, cfg, resume) if resume else rank_zero_run_dir(start_run, cfg)
    logger.info("run directory: %s%s", run.path, " (resumed)" if resume else "")
    if run.writer:
        save_rejected(phase_data, run.rejected_dir)
    trainable = TrainableModel.build(cfg.model, cfg.training.lora, run.final_adapter())
    check_packing_model(trainable.model, cfg.context)
    logger.info("attention: %s", apply_attention(trainable.model, cfg.model, cfg.context).describe())
    longest_row = longest_row_tokens(cfg.context, map(PhaseRows.of, phase_data.values()))
    checkpointing = resolve_checkpointing(trainable.model, cfg, deepspeed, longest_row)
    logger.info("%s", speed_path(trainable.model, checkpointing.training, cfg.context, deepspeed, checkpointing))
    pending = run.pending_phases(cfg.phases)
    sink = open_sink(
        run,
        cfg.tensorboard,
        cfg.wandb,
        {k: v for k, v in public_config(cfg).items() if k != "wandb"},
        resume_point(run, pending[0].name)[1] if resume and pending else None,
    )
    evaluator = RunEvaluator(
        run,
        phase_data,
        make_collator(tokenizer, cfg.context),
        cfg.evaluation,
        sink,
        tokenizer,
        cfg.context.max_tokens,
        cfg.training.seed,
        [phase.name for phase in cfg.phases],
    )
    write_contamination(run, cfg)
    # the report's wall time: each session from its start, with data preparation apart; and the
    # one process that writes the run's files this session, whatever the number of nodes
    sink.event(
        "session_start",
        time=started,
        preparation_seconds=preparation_seconds,
        resumed=resume is not None,
        **writer_identity(),
    )
    try:
        with stop_on_signals() as stop, storage_errors(run.path, run.path):
            shared = RunContext(
                run,
                tokenizer,
                sink,
                evaluator,
                stop,
                checkpointing.training,
                cfg.context,
                cfg.evaluation,
                deepspeed,
                cfg.phases,
            )
            evaluator.before_training(trainable.model)
            for phase in pending:
                result = run_phase(trainable, phase, phase_data[phase.name], shared)
                evaluator.after_phase(trainable.model, phase.name, run.finished_steps() + result.steps)
                finish_phase(trainable, phase, result, shared)
    except BaseException:
        end_session(run, sink, failed=True)
        raise
    end_session(run, sink, failed=False)
    return run


def refuse_model_settings(cfg: RunConfig) -> None:
    """Model and LoRA settings that cannot work are config errors before the run directory exists."""
    problems = check_model_settings(cfg.model, cfg.training.lora)
    if problems:
        raise ConfigError(problems)


def end_session(run: RunDir, sink: MetricsSink, failed: bool) -> None:
    """Close the metrics and write the report, then release the run. After a failure (a full
    disk, a signal, a bug) nothing here may hide that failure: an error of its own is a warning."""
    try:
        with storage_errors(run.path, run.path):
            sink.event("session_end", time=time.time())
            sink.close()
            write_report(run)
    except Exception as err:
        if not failed:
            raise
        logger.warning("warning: the report was not written: %s", err)
    finally:
        run.release_lock()


def run_phase(trainable: TrainableModel, phase: PhaseConfig, data: PhaseData, shared: RunContext) -> PhaseResult:
    """Train one phase (from its latest complete checkpoint, if any); raise TrainingInterrupted
    when a signal stopped it early."""
    run, sink = shared.run, shared.sink
    model = trainable.next_phase()
    checkpoint, _ = resume_point(run, phase.name)
    step_offset = run.finished_steps()
    sink.event(
        "phase_start",
        phase=phase.name,
        step=step_offset,
        adapter_fingerprint=trainable.fingerprint(),
        resumed_from=str(checkpoint) if checkpoint else None,
    )
    crash_point("phase_start", phase.name)
    metrics = MetricsCallback(sink, phase.name, step_offset=step_offset)
    callbacks = [
        metrics,
        ProgressCallback(phase.name, metrics),
        CheckpointCallback(run.phase_dir(phase.name), shared.training.save_total_limit),
        GracefulStopCallback(shared.stop),
    ]
    if data.eval is not None:
        evaluate = lambda: shared.evaluator.current_phase(model, phase.name)  # noqa: E731
        callbacks.append(EvalCallback(evaluate, shared.evaluation.eval_steps, sink, phase.name, step_offset))
    callbacks.append(ClockCallback(metrics))  # last: eval and saves stay out of tokens/s
    training = phase.training_for(shared.training)
    training = training.model_copy(update={"seed": phase_seed(training.seed, phase.name)})
    lr = phase_lr(training, shared.phases.index(phase), len(shared.phases))
    settings = PhaseSettings(training, shared.context, phase.epochs, shared.deepspeed, lr)
    output = PhaseOutput(run.phase_dir(phase.name), run.adapter_dir(phase.name))
    result = train_phase(model, shared.tokenizer, data, settings, output, callbacks, resume_from=checkpoint)
    trainable.keep_engine(result.engine)
    if result.stopped_early:
        raise TrainingInterrupted(run.path, shared.stop.signum)
    return result


def finish_phase(trainable: TrainableModel, phase: PhaseConfig, result: PhaseResult, shared: RunContext) -> None:
    """Record the finished phase: its end event and its entry in state.json."""
    run = shared.run
    end_step = run.finished_steps() + result.steps
    adapter = {
        "adapter_fingerprint": trainable.fingerprint(),  # over the tensors (older runs: adapter_sha256)
        "adapter_file_sha256": adapter_file_sha256(run.adapter_dir(phase.name)),
    }  # what sha256sum prints
    shared.sink.event(
        "phase_end",
        phase=phase.name,
        step=end_step,
        steps=result.steps,
        train_loss=result.train_loss,
        time=time.time(),
        **adapter,
    )
    crash_point("state_update", phase.name)
    run.mark_done(
        phase.name,
        steps=result.steps,
        train_loss=result.train_loss,
        tokens=result.tokens,
        seconds=result.seconds,
        **adapter,
    )
    logger.info("%s done: %d steps, adapter in %s", phase.name, result.steps, run.adapter_dir(phase.name))
