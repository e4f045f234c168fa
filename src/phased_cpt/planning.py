"""`phased-cpt plan`: what a run will cost before GPUs are rented. The phase table and its
warnings come from `data/plan.py`; this module adds, for `--gpus` x `--nodes` GPUs of
`--gpu-model`, the DeepSpeed config that will run, the memory per GPU (`memory.py`, from the
model's config.json only) and the time per phase as a range (`flops.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from phased_cpt.config import ContextConfig, RunConfig, TrainingConfig
from phased_cpt.data.eval_sets import ContaminationTable, contamination_line, contamination_table
from phased_cpt.data.plan import (
    BYTES_PER_TOKEN,
    PhasePlan,
    PhaseRows,
    format_plan,
    longest_row_tokens,
    micro_batches_per_epoch,
    plan_json,
    plan_phases,
    plan_warnings,
    prepare_plan_rows,
)
from phased_cpt.errors import UserError
from phased_cpt.flops import Workload, estimate_seconds, format_duration
from phased_cpt.gpus import GpuSpec, gpu_by_name, gpu_spec, known_gpu_names
from phased_cpt.memory import GiB, Parallelism, estimate_run, gib
from phased_cpt.model_shape import locate_model_config, read_config_json, shape_or_none
from phased_cpt.plans.deepspeed import plan_deepspeed
from phased_cpt.plans.kernels import plan_attention
from phased_cpt.plans.target import target_gpus


@dataclass(frozen=True)
class RunPlan:
    phases: list[PhasePlan]
    world_size: int
    nodes: int
    gpu: str
    """The GPU model the memory and time are for."""
    utilisation: str
    """The MFU the time assumes, and whether it was measured on that GPU."""
    deepspeed: str
    memory: dict | None
    """Per GPU, for the longest row ('row_tokens'): 'gpu_bytes', 'peak_bytes', 'describe' without Liger
    ('no_liger') and with it ('liger'), as the config may run; the GPU's memory ('gpu_memory_bytes').
    None when the model's config.json is not found."""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    contamination: ContaminationTable | None = None
    """Each evaluation set's lines seen verbatim in the training text (`data/eval_sets.py`)."""
    checkpointing: str | None = None
    """What training.gradient_checkpointing resolves to on this GPU, and why; None when the
    model's config.json is not found."""
    attention: str | None = None
    """What model.attn_implementation resolves to on the GPU and on a CPU, and why
    (`training/attention.py`); None when the model's config.json is not found."""

    @property
    def seconds(self) -> tuple[float, float, float] | None:
        """(low, estimate, high) for the whole run; None when the time is unknown."""
        if any(p.seconds is None for p in self.phases):
            return None
        return (
            sum(p.seconds_low for p in self.phases),
            sum(p.seconds for p in self.phases),
            sum(p.seconds_high for p in self.phases),
        )


def plan_run(
    cfg: RunConfig,
    world_size: int | None = None,
    nodes: int = 1,
    gpu_model: str | None = None,
    model_config: Path | None = None,
    bytes_per_token: float = BYTES_PER_TOKEN,
) -> RunPlan:
    """Prepare (or load from the cache, or estimate) every phase's rows and plan the run on
    `world_size` GPUs (default: WORLD_SIZE under a launcher, else 1), without the model's weights."""
    from phased_cpt.distributed import world_size as launched_world_size

    world_size = world_size or launched_world_size()
    gpu, notes = choose_gpu(gpu_model)
    phase_rows, data_notes = prepare_plan_rows(cfg, bytes_per_token)
    plans = plan_phases(cfg.phases, cfg.training, cfg.context, phase_rows, world_size, cfg.evaluation)
    run = cost_run(cfg, plans, phase_rows, Cluster(world_size, nodes, gpu), model_config, data_notes + notes)
    contamination = contamination_table(cfg)
    return replace(run, contamination=contamination, warnings=run.warnings + contamination.warnings())


def choose_gpu(gpu_model: str | None) -> tuple[GpuSpec, list[str]]:
    """`--gpu-model`, else the GPU here, else the H100 the estimates were calibrated on (said so)."""
    import torch

    if gpu_model is not None:
        gpu = gpu_by_name(gpu_model)
        if gpu is None:
            raise UserError(f"--gpu-model {gpu_model!r}: unknown GPU; known: {known_gpu_names()}")
        return gpu, []
    if torch.cuda.is_available() and gpu_spec(torch.cuda.get_device_name(0)):
        return gpu_spec(torch.cuda.get_device_name(0)), []
    gpu = gpu_spec("h100")
    return gpu, [
        f"memory and time are for {gpu.name} GPUs, the ones the estimates were calibrated on "
        "(--gpu-model to choose another)"
    ]


@dataclass(frozen=True)
class Cluster:
    """The GPUs a run is planned for."""

    world_size: int
    nodes: int
    gpu: GpuSpec


def cost_run(
    cfg: RunConfig,
    plans: list[PhasePlan],
    phase_rows: dict[str, PhaseRows],
    cluster: Cluster,
    model_config: Path | None,
    notes: list[str],
) -> RunPlan:
    """The DeepSpeed plan, memory per GPU and time per phase on `cluster`."""
    from phased_cpt.config.schema import liger_installed

    world_size, nodes, gpu = cluster.world_size, cluster.nodes, cluster.gpu
    gpu_bytes = int(gpu.memory_gib * GiB)
    deepspeed = plan_deepspeed(cfg, world_size, gpu_bytes, model_config)
    described = (
        f"{deepspeed.source} ({deepspeed.reason})" if deepspeed else "none (one process per GPU, DDP across them)"
    )
    parallel = Parallelism(
        deepspeed.zero_stage if deepspeed else 0, world_size, cfg.deepspeed_offload if deepspeed else "none"
    )
    warnings = plan_warnings(plans, cfg.training, cfg.evaluation)
    path = locate_model_config(cfg.model.name, model_config)
    config_json = read_config_json(path) if path is not None else None
    shape = shape_or_none(config_json)
    if shape is None:
        notes.append(
            f"memory and time unknown: no config.json for {cfg.model.name} on this machine; pass "
            "--model-config PATH (the model's config.json, no weights needed)"
        )
        return RunPlan(plans, world_size, nodes, gpu.name, utilisation_of(gpu), described, None, notes, warnings)
    setting = cfg.training.performance.liger_kernel
    longest_row = longest_row_tokens(cfg.context, phase_rows.values())
    memory: dict = {"row_tokens": longest_row, "gpu_memory_bytes": gpu_bytes}
    runs = {gpu.liger: estimate_run(cfg, shape, gpu, parallel, longest_row) for gpu in target_gpus(setting, gpu_bytes)}
    for liger, run in runs.items():
        memory["liger" if liger else "no_liger"] = {
            "gpu_bytes": run.memory.gpu_bytes,
            "peak_bytes": run.memory.peak_bytes,
            "describe": run.memory.describe(),
            "checkpointing": run.checkpointing.describe(),
        }
    if all(run.memory.gpu_bytes > gpu_bytes for run in runs.values()):
        warnings.append(
            f"memory: the estimate exceeds the {gpu.memory_gib:g} GiB of an {gpu.name}; "
            "`phased-cpt doctor --gpu-memory` says what to change"
        )
    # the time assumes Liger where the config requires it, or asks for it and it is installed here
    timed_run = runs[setting is True or (setting == "auto" and liger_installed())]
    timed = []
    for plan, target in zip(plans, timed_run.targets):
        rows = phase_rows[plan.phase]
        global_micro_batches = max(micro_batches_per_epoch(plan.rows, target.training, 1), 1)
        epochs = plan.micro_batches * world_size / global_micro_batches  # what max_steps leaves of the epochs
        work = Workload(
            rows.chunk_lengths,
            epochs,
            plan.micro_batches,
            int(rows.chunk_lengths.sum() / global_micro_batches),
            world_size,
            nodes,
        )
        estimate = estimate_seconds(target, work, gpu)
        timed.append(
            replace(
                plan, seconds=estimate.seconds, seconds_low=estimate.low_seconds, seconds_high=estimate.high_seconds
            )
        )
    return RunPlan(
        timed,
        world_size,
        nodes,
        gpu.name,
        utilisation_of(gpu),
        described,
        memory,
        notes,
        warnings,
        checkpointing=timed_run.checkpointing.describe(),
        attention=plan_attention(cfg.model, cfg.context, config_json),
    )


def utilisation_of(gpu: GpuSpec) -> str:
    where = "measured on this GPU model" if gpu.calibrated else "measured on an H100 and assumed here"
    return f"matrix work at {gpu.utilisation:.0%} of its {gpu.peak_tflops:g} TFLOP/s, {where}"


def format_run_plan(run: RunPlan, context: ContextConfig, training: TrainingConfig) -> str:
    """The table, then processes, DeepSpeed, memory per GPU, time per phase, notes and warnings."""
    lines = [format_plan(run.phases, context)]
    per_node = run.world_size // max(run.nodes, 1)
    lines.append(
        f"processes: {run.world_size} ({per_node} GPU(s) x {run.nodes} node(s)); global batch "
        f"{training.micro_batch_size * training.gradient_accumulation_steps * run.world_size} rows "
        f"(micro-batch {training.micro_batch_size} x accumulation {training.gradient_accumulation_steps} "
        f"x {run.world_size})"
    )
    lines.append(f"deepspeed: {run.deepspeed}")
    if run.memory is not None:
        have = run.memory["gpu_memory_bytes"]
        parts = []
        for key, label in (("no_liger", "without Liger"), ("liger", "with Liger")):
            if key in run.memory:
                need = run.memory[key]["gpu_bytes"]
                verdict = "fits" if need <= have else "does NOT fit"
                parts.append(f"~{gib(need)} {label} ({verdict}; {run.memory[key]['describe']})")
        lines.append(
            f"memory per GPU ({run.gpu}, {gib(have)}; rows of {run.memory['row_tokens']:,} tokens): " + "; ".join(parts)
        )
    if run.checkpointing is not None:
        lines.append(f"gradient checkpointing: {run.checkpointing}")
    if run.attention is not None:
        lines.append(f"attention: {run.attention}")
    if run.seconds is not None:
        low, mid, high = run.seconds
        per_phase = ", ".join(f"{p.phase} ~{format_duration(p.seconds)}" for p in run.phases)
        lines.append(
            f"time on {run.world_size} x {run.gpu} ({run.utilisation}): ~{format_duration(mid)} "
            f"({format_duration(low)} to {format_duration(high)}); {per_phase}"
        )
    if run.contamination is not None:
        lines.append(contamination_line(run.contamination))
    lines += [f"note: {note}" for note in run.notes]
    lines += [f"warning: {warning}" for warning in run.warnings]
    return "\n".join(lines)


def run_plan_json(run: RunPlan, context: ContextConfig) -> dict:
    return plan_json(run.phases, context) | {
        "world_size": run.world_size,
        "nodes": run.nodes,
        "gpu": run.gpu,
        "utilisation": run.utilisation,
        "deepspeed": run.deepspeed,
        "memory": run.memory,
        "seconds": run.seconds,
        "notes": run.notes,
        "warnings": run.warnings,
        "contamination": run.contamination.to_dict() if run.contamination is not None else None,
        "checkpointing": run.checkpointing,
        "attention": run.attention,
    }
