"""The phased training recipe, top to bottom: data, run directory, model, then each phase in order.

Every phase file is read and tokenized before anything is trained, so a bad line in the last
phase stops the run before the first step rather than days into it.
"""

from __future__ import annotations

import logging

from transformers import set_seed

from phased_cpt.config import RunConfig, dump_config
from phased_cpt.data.phase_data import PhaseData, build_phase_data
from phased_cpt.modeling import adapter_fingerprint, attach_lora, load_base_model, load_tokenizer
from phased_cpt.run_dir import RunDir
from phased_cpt.training.callbacks import MetricsCallback, ProgressCallback
from phased_cpt.training.metrics import open_sink
from phased_cpt.training.phase import optimizer_steps, train_phase

logger = logging.getLogger(__name__)


def run_training(cfg: RunConfig) -> RunDir:
    """Train every phase in order on one LoRA adapter; return the run directory."""
    set_seed(cfg.training.seed)
    tokenizer = load_tokenizer(cfg.model)
    phase_data = {
        p.name: build_phase_data(p, cfg.data, tokenizer, cfg.context, cfg.training.seed) for p in cfg.phases
    }
    log_plan(cfg, phase_data)

    run = RunDir.create(cfg.output.dir, cfg.run_name)
    run.config_file.write_text(dump_config(cfg), encoding="utf-8")
    logger.info("run directory: %s", run.path)
    model = attach_lora(load_base_model(cfg.model), cfg.training.lora)
    sink = open_sink(run, cfg.tensorboard, cfg.wandb, run_config=cfg.model_dump(mode="json", exclude={"wandb"}))

    global_step = 0
    try:
        for phase in cfg.phases:
            training = phase.training_for(cfg.training)
            sink.event("phase_start", phase=phase.name, step=global_step, adapter_sha256=adapter_fingerprint(model))
            metrics = MetricsCallback(sink, phase.name, step_offset=global_step)
            result = train_phase(
                model, tokenizer, phase_data[phase.name], training, cfg.context, phase.epochs,
                run.phase_dir(phase.name), run.adapter_dir(phase.name),
                callbacks=[metrics, ProgressCallback(phase.name, metrics)],
            )
            global_step += result.steps
            fingerprint = adapter_fingerprint(model)
            sink.event("phase_end", phase=phase.name, step=global_step, steps=result.steps,
                       train_loss=result.train_loss, adapter_sha256=fingerprint)
            run.mark_done(phase.name, steps=result.steps, train_loss=result.train_loss, adapter_sha256=fingerprint)
            logger.info("%s done: %d steps, adapter in %s", phase.name, result.steps, run.adapter_dir(phase.name))
    finally:
        sink.close()
    return run


def log_plan(cfg: RunConfig, phase_data: dict[str, PhaseData]) -> None:
    logger.info("%-24s %9s %6s %11s %11s %7s %7s", "phase", "documents", "eval", "tokens", "targets", "rows", "steps")
    for phase in cfg.phases:
        data = phase_data[phase.name]
        steps = optimizer_steps(data.rows, phase.training_for(cfg.training), phase.epochs)
        eval_documents = data.eval.documents if data.eval else 0
        train = data.train
        logger.info(
            "%-24s %9d %6d %11d %11d %7d %7d",
            phase.name, train.documents, eval_documents, train.document_tokens, train.target_tokens, len(train), steps,
        )
