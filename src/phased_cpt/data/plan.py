"""The run plan: what each phase will train on, how many steps, how long, and in how much memory,
as a table (`train` logs it; `plan` prints it) or JSON (`plan --json`).

Numbers come from the prepared data (`PhaseData`), so the plan is exactly what training sees:

    phase               docs  eval  rejected     tokens    targets  chunks   rows  packing    EOS  longest  steps/ep  steps  warmup  evals  saves   replay
    phase1_foundation     31     1         0      9,214      9,183      40     40    0.72      31      740        10     30       1      1      0        0

`tokens` are the training documents' tokens (EOS included, before chunking and mixing);
`targets` the labels that are trained on once per epoch (overlap, a row's first token of each
document and FIM tokens excluded; replayed and general chunks included); `packing` is real tokens
/ (rows x max_tokens); `EOS` counts document-ending EOS targets (one per training document for a
phase with one source and nothing mixed in; weighted sources, replay and general data add the
ends of the documents they repeat or mix in); `steps` optimizer steps as the HF Trainer counts
them for this world size; `warmup` the scheduler's warm-up steps; `evals` and `saves` how often
the phase is evaluated (its end included) and checkpointed; `replay` the tokens copied from
earlier phases, `general` those drawn from the general source, `fim` the chunks rearranged for
fill-in-the-middle. Below the table, a phase whose training tokens come from more than one
place gets a line with the mix in tokens:

    phase2_evolution mix: commits.jsonl 61,200 (60.0%, weight 3), docs/*.jsonl 20,400 (20.0%, weight 1), replay 10,200 (10.0%), general 10,200 (10.0%)

`plan_warnings` names the settings that make a phase train differently than it reads. When the
tokenizer cannot be loaded here, `prepare_plan_rows` runs the same preparation with token counts
estimated from the documents' bytes (`BYTES_PER_TOKEN`, `encoder.ByteEstimate`), and says so. What a run
costs on GPUs (memory, time) is `phased_cpt/planning.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from phased_cpt.config import ContextConfig, EvaluationConfig, PhaseConfig, RunConfig, TrainingConfig
from phased_cpt.data.cache import resolve_cache_dir
from phased_cpt.data.chunking import LENGTH
from phased_cpt.data.encoder import ByteEstimate, Encoder, TokenizerEncoder
from phased_cpt.data.phase_data import DataSettings, EvaluatedData, PhaseData, build_run_data
from phased_cpt.distributed import world_size as launched_world_size

BYTES_PER_TOKEN = 3.5
"""Without the tokenizer: UTF-8 bytes per token of source code and English under the byte-level
BPE tokenizers of current code models (Qwen2.5's encodes code at about 3.3-3.8)."""
FEW_STEPS = 50
"""A phase with fewer optimizer steps leaves its LR schedule (warm-up, decay) little room."""


def optimizer_steps(rows: int, training: TrainingConfig, epochs: float, world_size: int = 1) -> int:
    """Optimizer steps the Trainer will take for `rows` rows: per epoch, every process's
    micro-batches grouped by gradient_accumulation_steps, a last partial group included (the HF
    Trainer's count)."""
    if training.max_steps is not None:
        return training.max_steps
    return math.ceil(epochs * steps_per_epoch(rows, training, world_size))


def micro_batches_per_epoch(rows: int, training: TrainingConfig, world_size: int = 1) -> int:
    """Micro-batches each process runs per epoch (the sampler evens out the processes)."""
    return math.ceil(rows / (training.micro_batch_size * world_size))


def steps_per_epoch(rows: int, training: TrainingConfig, world_size: int = 1) -> int:
    return max(math.ceil(micro_batches_per_epoch(rows, training, world_size) / training.gradient_accumulation_steps), 1)


def warmup_steps(steps: int, warmup_ratio: float) -> int:
    """The scheduler's warm-up steps for a ratio (`TrainingArguments.get_warmup_steps`)."""
    return math.ceil(steps * warmup_ratio)


def evaluation_steps(steps: int, evaluation: EvaluationConfig, has_eval: bool) -> list[int]:
    """Steps of a phase at which its held-out documents are evaluated: every eval_steps before
    the last step (`EvalCallback`), and the phase's end; none without held-out documents."""
    if not has_eval:
        return []
    every = evaluation.eval_steps
    return (list(range(every, steps, every)) if every else []) + [steps]


def checkpoint_steps(steps: int, save_steps: int) -> list[int]:
    """Steps at which the Trainer writes a checkpoint (save_strategy "steps")."""
    return list(range(save_steps, steps + 1, save_steps))


@dataclass(frozen=True)
class PhasePlan:
    phase: str
    documents: int
    eval_documents: int
    rejected: int
    duplicates: int
    tokens: int
    target_tokens: int
    chunks: int
    rows: int
    packing_efficiency: float
    eos_tokens: int
    longest_document_tokens: int
    longest_document: str
    steps_per_epoch: int
    steps: int
    epochs: float
    replay_tokens: int
    replay_wanted_tokens: int
    """What `replay_ratio` asked for; more than `replay_tokens` when earlier phases hold fewer."""
    general_tokens: int
    fim_chunks: int
    sources: list[dict]
    """Per source: its spec, weight, training documents and training tokens (after weights)."""
    eval_tokens: int
    cache_hit: bool
    micro_batches: int
    """Forward/backward passes each process runs over the phase."""
    warmup_steps: int
    evaluation_steps: list[int]
    checkpoint_steps: list[int]
    gradient_accumulation_steps: int
    estimated: bool = False
    """True: token counts from the documents' bytes, not the tokenizer."""
    seconds: float | None = None
    """Estimated wall time of the phase on the planned GPUs (None: unknown)."""
    seconds_low: float | None = None
    seconds_high: float | None = None

    def mix(self) -> list[tuple[str, int, float | None]]:
        """(where from, training tokens, weight) of every place this phase's tokens come from."""
        parts = [(Path(s["source"]).name, s["tokens"], s["weight"]) for s in self.sources]
        parts += [("replay", self.replay_tokens, None), ("general", self.general_tokens, None)]
        return [p for p in parts if p[1] > 0]


@dataclass(frozen=True)
class PhaseRows:
    """What a plan needs of a phase's prepared (or estimated) data."""

    statistics: dict
    chunk_lengths: np.ndarray
    eval_documents: int
    eval_tokens: int
    rejected: int = 0
    duplicates: int = 0
    longest_document: str = ""
    cache_hit: bool = False
    estimated: bool = False

    @classmethod
    def of(cls, data: PhaseData, estimated: bool = False) -> PhaseRows:
        chunks = data.train.dataset.chunks
        return cls(
            data.train.stats,
            np.asarray(chunks)[:, LENGTH] if len(chunks) else np.zeros(0, dtype=np.int64),
            data.eval.documents if data.eval else 0,
            data.eval.document_tokens if data.eval else 0,
            data.meta["rejected"],
            data.meta["duplicates"],
            data.meta["longest_document"],
            data.cache_hit,
            estimated,
        )


def longest_row_tokens(context: ContextConfig, phase_rows: Iterable[PhaseRows]) -> int:
    """The tokens of the run's longest row, where the memory peaks: `max_tokens` when packed, else
    the longest document or chunk of any phase (1 when there is none)."""
    if context.sample_packing:
        return context.max_tokens
    return int(max((int(rows.chunk_lengths.max()) for rows in phase_rows if len(rows.chunk_lengths)), default=1))


def plan_phases(
    phases: list[PhaseConfig],
    training: TrainingConfig,
    context: ContextConfig,
    phase_data: dict[str, PhaseData] | dict[str, PhaseRows],
    world_size: int | None = None,
    evaluation: EvaluationConfig | None = None,
) -> list[PhasePlan]:
    """One `PhasePlan` per phase. `world_size`: the processes of the run (default: this run's
    WORLD_SIZE, as set by a launcher)."""
    if world_size is None:
        world_size = launched_world_size()
    evaluation = evaluation or EvaluationConfig()
    plans = []
    for phase in phases:
        data = phase_data[phase.name]
        rows = data if isinstance(data, PhaseRows) else PhaseRows.of(data)
        phase_training = phase.training_for(training)
        train = rows.statistics
        steps = optimizer_steps(train["rows"], phase_training, phase.epochs, world_size)
        per_epoch = micro_batches_per_epoch(train["rows"], phase_training, world_size)
        if phase_training.max_steps is None:
            micro_batches = math.ceil(phase.epochs * per_epoch)
        else:
            micro_batches = steps * phase_training.gradient_accumulation_steps
        plans.append(
            PhasePlan(
                phase=phase.name,
                documents=train["documents"],
                eval_documents=rows.eval_documents,
                rejected=rows.rejected,
                duplicates=rows.duplicates,
                tokens=train["document_tokens"],
                target_tokens=train["target_tokens"],
                chunks=train["chunks"],
                rows=train["rows"],
                packing_efficiency=round(train["packing_efficiency"], 4),
                eos_tokens=train["eos_tokens"],
                longest_document_tokens=train["longest_document_tokens"],
                longest_document=rows.longest_document,
                steps_per_epoch=steps_per_epoch(train["rows"], phase_training, world_size),
                steps=steps,
                epochs=phase.epochs,
                replay_tokens=train["replay_tokens"],
                replay_wanted_tokens=train.get("replay_wanted_tokens", 0),
                eval_tokens=rows.eval_tokens,
                cache_hit=rows.cache_hit,
                micro_batches=micro_batches,
                warmup_steps=warmup_steps(steps, phase_training.warmup_ratio),
                evaluation_steps=evaluation_steps(steps, evaluation, rows.eval_documents > 0),
                checkpoint_steps=checkpoint_steps(steps, phase_training.save_steps),
                gradient_accumulation_steps=phase_training.gradient_accumulation_steps,
                estimated=rows.estimated,
                general_tokens=train.get("general_tokens", 0),
                fim_chunks=train.get("fim_chunks", 0),
                sources=train.get("sources", []),
            )
        )
    return plans


def plan_warnings(plans: list[PhasePlan], training: TrainingConfig, evaluation: EvaluationConfig) -> list[str]:
    """Settings that make a phase train differently than it reads: too few steps for a schedule,
    no warm-up, evaluation or checkpoints that never happen (no held-out document included), an
    accumulation never completed."""
    warnings = []
    for plan in plans:
        name = plan.phase
        if plan.steps < FEW_STEPS:
            warnings.append(
                f"{name}: {plan.steps} optimizer step(s), fewer than {FEW_STEPS}: its LR schedule (warm-up, "
                "decay) has little room; use fewer processes or less gradient accumulation, or more epochs"
            )
        if plan.warmup_steps == 0:
            warnings.append(f"{name}: 0 warm-up steps: the learning rate starts at its peak (training.warmup_ratio)")
        if plan.micro_batches < plan.gradient_accumulation_steps:
            warnings.append(
                f"{name}: {plan.micro_batches} micro-batch(es) per process, fewer than one accumulation "
                f"(gradient_accumulation_steps {plan.gradient_accumulation_steps}): its one optimizer "
                "step averages fewer rows than the others"
            )
        eval_every = evaluation.eval_steps
        if plan.eval_documents and eval_every and eval_every >= plan.steps:
            warnings.append(
                f"{name}: evaluation.eval_steps ({eval_every}) is never reached in {plan.steps} step(s): "
                "the phase is evaluated only at its end"
            )
        if plan.eval_documents == 0:
            warnings.append(
                f"{name}: no document held out for evaluation (data.eval_ratio, or the phase's eval_file): "
                "no eval loss is logged for it and its forgetting-matrix column stays empty"
            )
        if plan.replay_tokens < plan.replay_wanted_tokens:
            warnings.append(
                f"{name}: replay: earlier phases hold only {plan.replay_tokens} training tokens, fewer than the "
                f"{plan.replay_wanted_tokens} its replay_ratio asks for; all of them are replayed"
            )
        save_every = plan.checkpoint_steps[0] if plan.checkpoint_steps else None
        if save_every is None:
            warnings.append(
                f"{name}: no checkpoint inside the phase (training.save_steps > {plan.steps} steps): an "
                "interrupted run restarts it from its beginning"
            )
    return warnings


# --- every phase of a run --------------------------------------------------------------------


def prepare_plan_rows(
    cfg: RunConfig, bytes_per_token: float = BYTES_PER_TOKEN
) -> tuple[dict[str, PhaseRows], list[str]]:
    """Every phase's rows: prepared with the tokenizer (or loaded from the cache), or, when the
    tokenizer cannot be loaded here, prepared the same way with token counts estimated from the
    documents' bytes (`encoder.ByteEstimate`, in a temporary directory); and notes saying which."""
    from phased_cpt.errors import UserError
    from phased_cpt.modeling import TokenizerError, load_tokenizer

    notes: list[str] = []
    encoder: Encoder
    try:
        encoder, cache_dir = TokenizerEncoder(load_tokenizer(cfg.model)), resolve_cache_dir(cfg.data)
    except TokenizerError:
        raise  # here but unusable: an estimate would hide it
    except UserError as err:
        reason = str(err).splitlines()[0]
        notes.append(f"token counts are estimated at {bytes_per_token:g} bytes per token, not counted: {reason}")
        encoder, cache_dir = ByteEstimate(bytes_per_token), None
        if cfg.context.fim_rate > 0:
            notes.append("FIM: not in the estimated counts (rearranging a chunk needs the tokenizer)")
    built = build_run_data(cfg.phases, DataSettings.of(cfg), encoder, cache_dir, EvaluatedData.of(cfg))
    rows = {name: PhaseRows.of(data, encoder.estimated) for name, data in built.items()}
    if cfg.context.sample_packing:
        notes.append(
            "context.sample_packing: true packs several documents per row: fewer rows and steps "
            "than one document per row"
        )
    return rows, notes


# --- output ------------------------------------------------------------------------------------

COLUMNS = [
    ("phase", "phase", "<"),
    ("docs", "documents", ">"),
    ("eval", "eval_documents", ">"),
    ("rejected", "rejected", ">"),
    ("tokens", "tokens", ">"),
    ("targets", "target_tokens", ">"),
    ("chunks", "chunks", ">"),
    ("rows", "rows", ">"),
    ("packing", "packing_efficiency", ">"),
    ("EOS", "eos_tokens", ">"),
    ("longest", "longest_document_tokens", ">"),
    ("steps/ep", "steps_per_epoch", ">"),
    ("steps", "steps", ">"),
    ("warmup", "warmup_steps", ">"),
    ("evals", "evaluation_steps", ">"),
    ("saves", "checkpoint_steps", ">"),
    ("replay", "replay_tokens", ">"),
    ("general", "general_tokens", ">"),
    ("fim", "fim_chunks", ">"),
]


def format_plan(plans: list[PhasePlan], context: ContextConfig) -> str:
    """A fixed-width table, one line per phase, plus a line on the row settings."""

    def cell(value: object) -> str:
        if isinstance(value, list):
            return f"{len(value):,}"
        if isinstance(value, float):
            return f"{value:.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    table = [[title for title, _, _ in COLUMNS]] + [[cell(getattr(p, key)) for _, key, _ in COLUMNS] for p in plans]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(f"{v:{align}{w}}" for v, w, (_, _, align) in zip(row, widths, COLUMNS)) for row in table]
    packing = "packed (best-fit decreasing)" if context.sample_packing else "one document or chunk per row"
    lines.append(
        f"rows of at most {context.max_tokens:,} tokens, {packing}; overlap {context.overlap_tokens:,} "
        f"tokens ({'trained' if context.overlap_loss else 'context only'})"
        + (
            f"; fill-in-the-middle on {context.fim_rate:.0%} of chunks ({context.fim_spm_rate:.0%} SPM)"
            if context.fim_rate > 0
            else ""
        )
    )
    for plan in plans:
        mix = plan.mix()
        if len(mix) > 1:
            total = sum(tokens for _, tokens, _ in mix)
            parts = [
                f"{name} {tokens:,} ({tokens / total:.1%}{f', weight {weight:g}' if weight else ''})"
                for name, tokens, weight in mix
            ]
            lines.append(f"{plan.phase} mix: " + ", ".join(parts))
    return "\n".join(lines)


def plan_json(plans: list[PhasePlan], context: ContextConfig) -> dict:
    return {"context": context.model_dump(mode="json"), "phases": [asdict(p) for p in plans]}
