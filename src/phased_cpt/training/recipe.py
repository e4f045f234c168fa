"""The phased training recipe, top to bottom: data, run directory, model, then each phase in order.

Every phase file is read and tokenized before anything is trained, so a bad line in the last
phase stops the run before the first step rather than days into it. A resumed run skips its
finished phases and continues the current one from its latest complete checkpoint.
"""

from __future__ import annotations

import logging

from transformers import set_seed

from phased_cpt.config import PhaseConfig, RunConfig
from phased_cpt.data.cache import resolve_cache_dir
from phased_cpt.data.collate import check_packing_model, make_collator
from phased_cpt.data.phase_data import PhaseData, build_run_data, save_rejected
from phased_cpt.data.plan import format_plan, plan_phases
from phased_cpt.distributed import (
    DeepSpeedPlan, fingerprint_adapter, init_distributed, model_for_next_phase, plan_deepspeed, rank_zero_run_dir,
)
from phased_cpt.evaluation.report import write_report
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer, restore_adapter
from phased_cpt.run_dir import RunDir
from phased_cpt.training.callbacks import ClockCallback, EvalCallback, MetricsCallback, ProgressCallback
from phased_cpt.training.checkpoints import CheckpointCallback
from phased_cpt.training.evaluate import RunEvaluator
from phased_cpt.training.metrics import MetricsSink, open_sink
from phased_cpt.training.phase import PhaseResult, train_phase
from phased_cpt.training.resume import resume_point, resume_run, start_run
from phased_cpt.training.schedule import phase_lr
from phased_cpt.training.signals import GracefulStopCallback, StopRequest, TrainingInterrupted, stop_on_signals
from phased_cpt.training.throughput import speed_path

logger = logging.getLogger(__name__)


def run_training(cfg: RunConfig, resume: str | None = None) -> RunDir:
    """Train every phase in order on one LoRA adapter; return the run directory.

    `resume`: a run directory or "latest" to continue instead of starting a new run.
    """
    deepspeed = plan_deepspeed(cfg)
    init_distributed(deepspeed)
    set_seed(cfg.training.seed)
    tokenizer = load_tokenizer(cfg.model)
    phase_data = build_run_data(cfg.phases, cfg.data, tokenizer, cfg.context, cfg.training.seed, resolve_cache_dir(cfg.data),
                                cfg.general, cfg.evaluation.general_file)
    logger.info("%s", format_plan(plan_phases(cfg.phases, cfg.training, cfg.context, phase_data), cfg.context))

    run = rank_zero_run_dir(resume_run, cfg, resume) if resume else rank_zero_run_dir(start_run, cfg)
    logger.info("run directory: %s%s", run.path, " (resumed)" if resume else "")
    if run.writer:
        save_rejected(phase_data, run.rejected_dir)
    model = attach_lora(load_base_model(cfg.model), cfg.training.lora)
    check_packing_model(model, cfg.context)
    logger.info("%s", speed_path(model, cfg.training, cfg.context, deepspeed))
    restore_adapter(model, run.final_adapter())
    pending = run.pending_phases(cfg.phases)
    sink = open_sink(run, cfg.tensorboard, cfg.wandb, cfg.model_dump(mode="json", exclude={"wandb"}),
                     resume_point(run, pending[0].name)[1] if resume and pending else None)
    evaluator = RunEvaluator(run, phase_data, make_collator(tokenizer, cfg.context), cfg.evaluation, sink, tokenizer,
                             cfg.context.max_tokens, cfg.training.seed)
    try:
        with stop_on_signals() as stop:
            evaluator.before_training(model)
            for phase in pending:
                model = model_for_next_phase(model, cfg.model, cfg.training.lora)
                result = run_phase(model, tokenizer, phase, phase_data[phase.name], cfg, run, sink, evaluator, stop, deepspeed)
                evaluator.after_phase(model, phase.name, run.finished_steps() + result.steps)
                finish_phase(model, phase, result, run, sink)
    finally:
        sink.close()
        write_report(run)
    return run


def run_phase(
    model, tokenizer, phase: PhaseConfig, data: PhaseData, cfg: RunConfig, run: RunDir, sink: MetricsSink,
    evaluator: RunEvaluator, stop: StopRequest, deepspeed: DeepSpeedPlan | None,
) -> PhaseResult:
    """Train one phase (from its latest complete checkpoint, if any); raise TrainingInterrupted
    when a signal stopped it early."""
    checkpoint, _ = resume_point(run, phase.name)
    step_offset = run.finished_steps()
    sink.event("phase_start", phase=phase.name, step=step_offset, adapter_sha256=fingerprint_adapter(model),
               resumed_from=str(checkpoint) if checkpoint else None)
    metrics = MetricsCallback(sink, phase.name, step_offset=step_offset)
    callbacks = [
        metrics,
        ProgressCallback(phase.name, metrics),
        CheckpointCallback(run.phase_dir(phase.name), cfg.training.save_total_limit),
        GracefulStopCallback(stop),
    ]
    if data.eval is not None:
        evaluate = lambda: evaluator.current_phase(model, phase.name)  # noqa: E731
        callbacks.append(EvalCallback(evaluate, cfg.evaluation.eval_steps, sink, phase.name, step_offset))
    callbacks.append(ClockCallback(metrics))  # last: eval and saves stay out of tokens/s
    training = phase.training_for(cfg.training)
    result = train_phase(
        model, tokenizer, data, training, cfg.context, phase.epochs,
        run.phase_dir(phase.name), run.adapter_dir(phase.name), callbacks, resume_from=checkpoint, deepspeed=deepspeed,
        lr=phase_lr(training, cfg.phases.index(phase), len(cfg.phases)),
    )
    if result.stopped_early:
        raise TrainingInterrupted(run.path, stop.signum)
    return result


def finish_phase(model, phase: PhaseConfig, result: PhaseResult, run: RunDir, sink: MetricsSink) -> None:
    """Record the finished phase: its end event and its entry in state.json."""
    end_step = run.finished_steps() + result.steps
    fingerprint = fingerprint_adapter(model)
    sink.event("phase_end", phase=phase.name, step=end_step, steps=result.steps,
               train_loss=result.train_loss, adapter_sha256=fingerprint)
    run.mark_done(phase.name, steps=result.steps, train_loss=result.train_loss, tokens=result.tokens,
                  seconds=result.seconds, adapter_sha256=fingerprint)
    logger.info("%s done: %d steps, adapter in %s", phase.name, result.steps, run.adapter_dir(phase.name))
