"""The run plan: what each phase will train on, as a table (`train` logs it) or JSON (`plan --json`).

Numbers come from the prepared data (`PhaseData`), so the plan is exactly what training sees:

    phase               docs  eval  rejected     tokens    targets  chunks   rows  packing    EOS  longest  steps/ep  steps   replay
    phase1_foundation     31     1         0      9,214      9,183      40     40    0.72      31      740        10     30        0

`tokens` are the training documents' tokens (EOS included, before chunking and mixing);
`targets` the labels that are trained on once per epoch (overlap, a row's first token of each
document and FIM tokens excluded; replayed and general chunks included); `packing` is real tokens
/ (rows x max_tokens); `EOS` counts document-ending EOS targets (one per training document when
all is well); `replay` the tokens copied from earlier phases, `general` those drawn from the
general source, `fim` the chunks rearranged for fill-in-the-middle. Below the table, a phase
whose training tokens come from more than one place gets a line with the mix in tokens:

    phase2_evolution mix: commits.jsonl 61,200 (60.0%, weight 3), docs/*.jsonl 20,400 (20.0%, weight 1), replay 10,200 (10.0%), general 10,200 (10.0%)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from phased_cpt.config import ContextConfig, PhaseConfig, RunConfig, TrainingConfig
from phased_cpt.data.cache import resolve_cache_dir
from phased_cpt.data.phase_data import PhaseData, build_run_data
from phased_cpt.distributed import world_size


def optimizer_steps(rows: int, training: TrainingConfig, epochs: float, world_size: int = 1) -> int:
    """Optimizer steps the Trainer will take for `rows` rows (as HF computes it)."""
    if training.max_steps is not None:
        return training.max_steps
    batches_per_epoch = math.ceil(rows / (training.micro_batch_size * world_size))
    steps_per_epoch = max(batches_per_epoch // training.gradient_accumulation_steps, 1)
    return math.ceil(epochs * steps_per_epoch)


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
    general_tokens: int
    fim_chunks: int
    sources: list[dict]
    """Per source: its spec, weight, training documents and training tokens (after weights)."""
    eval_tokens: int
    cache_hit: bool

    def mix(self) -> list[tuple[str, int, float | None]]:
        """(where from, training tokens, weight) of every place this phase's tokens come from."""
        parts = [(Path(s["source"]).name, s["tokens"], s["weight"]) for s in self.sources]
        parts += [("replay", self.replay_tokens, None), ("general", self.general_tokens, None)]
        return [p for p in parts if p[1] > 0]


def plan_phases(
    phases: list[PhaseConfig], training: TrainingConfig, context: ContextConfig, phase_data: dict[str, PhaseData],
) -> list[PhasePlan]:
    processes = world_size()
    plans = []
    for phase in phases:
        data = phase_data[phase.name]
        phase_training = phase.training_for(training)
        train = data.train.stats
        plans.append(PhasePlan(
            phase=phase.name,
            documents=train["documents"],
            eval_documents=data.eval.documents if data.eval else 0,
            rejected=data.meta["rejected"],
            duplicates=data.meta["duplicates"],
            tokens=train["document_tokens"],
            target_tokens=train["target_tokens"],
            chunks=train["chunks"],
            rows=train["rows"],
            packing_efficiency=round(train["packing_efficiency"], 4),
            eos_tokens=train["eos_tokens"],
            longest_document_tokens=train["longest_document_tokens"],
            longest_document=data.meta["longest_document"],
            steps_per_epoch=optimizer_steps(data.rows, phase_training.model_copy(update={"max_steps": None}), 1, processes),
            steps=optimizer_steps(data.rows, phase_training, phase.epochs, processes),
            epochs=phase.epochs,
            replay_tokens=train["replay_tokens"],
            general_tokens=train.get("general_tokens", 0),
            fim_chunks=train.get("fim_chunks", 0),
            sources=train.get("sources", []),
            eval_tokens=data.eval.document_tokens if data.eval else 0,
            cache_hit=data.cache_hit,
        ))
    return plans


COLUMNS = [
    ("phase", "phase", "<"), ("docs", "documents", ">"), ("eval", "eval_documents", ">"),
    ("rejected", "rejected", ">"), ("tokens", "tokens", ">"), ("targets", "target_tokens", ">"),
    ("chunks", "chunks", ">"), ("rows", "rows", ">"), ("packing", "packing_efficiency", ">"),
    ("EOS", "eos_tokens", ">"), ("longest", "longest_document_tokens", ">"),
    ("steps/ep", "steps_per_epoch", ">"), ("steps", "steps", ">"), ("replay", "replay_tokens", ">"),
    ("general", "general_tokens", ">"), ("fim", "fim_chunks", ">"),
]


def format_plan(plans: list[PhasePlan], context: ContextConfig) -> str:
    """A fixed-width table, one line per phase, plus a line on the row settings."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    table = [[title for title, _, _ in COLUMNS]] + [[cell(getattr(p, key)) for _, key, _ in COLUMNS] for p in plans]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(f"{v:{align}{w}}" for v, w, (_, _, align) in zip(row, widths, COLUMNS)) for row in table]
    packing = "packed (best-fit decreasing)" if context.sample_packing else "one document or chunk per row"
    lines.append(f"rows of at most {context.max_tokens:,} tokens, {packing}; overlap {context.overlap_tokens:,} "
                 f"tokens ({'trained' if context.overlap_loss else 'context only'})"
                 + (f"; fill-in-the-middle on {context.fim_rate:.0%} of chunks ({context.fim_spm_rate:.0%} SPM)"
                    if context.fim_rate > 0 else ""))
    for plan in plans:
        mix = plan.mix()
        if len(mix) > 1:
            total = sum(tokens for _, tokens, _ in mix)
            parts = [f"{name} {tokens:,} ({tokens / total:.1%}{f', weight {weight:g}' if weight else ''})"
                     for name, tokens, weight in mix]
            lines.append(f"{plan.phase} mix: " + ", ".join(parts))
    return "\n".join(lines)


def plan_json(plans: list[PhasePlan], context: ContextConfig) -> dict:
    return {"context": context.model_dump(mode="json"), "phases": [asdict(p) for p in plans]}


def plan_run(cfg: RunConfig) -> list[PhasePlan]:
    """Prepare (or load from the cache) every phase's data and plan it, without loading the model."""
    from phased_cpt.modeling import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    cache_dir = resolve_cache_dir(cfg.data)
    phase_data = build_run_data(cfg.phases, cfg.data, tokenizer, cfg.context, cfg.training.seed, cache_dir,
                                cfg.general, cfg.evaluation.general_file)
    return plan_phases(cfg.phases, cfg.training, cfg.context, phase_data)
