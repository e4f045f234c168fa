"""Evaluation during a run: the forgetting matrix rows (base model before training, the adapter
after each phase: perplexity and top-1 accuracy on every held-out set, the general and future
ones included, next-line completion and the future completion tasks when
`evaluation.completion.samples` > 0, HumanEval pass@1 when `evaluation.humaneval.problems` > 0),
the contamination of every evaluation set (eval/contamination.json) and the eval records logged
at each phase end.

The numbers come from `phased_cpt.evaluation`; this module decides when to compute them and
where they go (eval/forgetting.*, metrics). Every evaluation draws a progress bar and records its
wall time as an `evaluation` event in metrics.jsonl, which the report adds up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import GENERAL_COLUMN, HUMANEVAL_COLUMN, EvaluationConfig, RunConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.eval_sets import contamination_line, contamination_table, tasks_by_column
from phased_cpt.data.phase_data import PhaseData
from phased_cpt.distributed import is_main_process
from phased_cpt.evaluation.completion import CompletionEvaluator, GreedyDecoding
from phased_cpt.evaluation.forgetting import BASE_ROW, ForgettingMatrix, evaluate_phases
from phased_cpt.evaluation.future import FutureTaskEvaluator
from phased_cpt.evaluation.humaneval import evaluate_humaneval, load_problems
from phased_cpt.evaluation.perplexity import Collator, EvalResult, evaluate_rows
from phased_cpt.evaluation.sandbox import SandboxLimits
from phased_cpt.run_dir import RunDir, write_atomic
from phased_cpt.training.metrics import MetricsSink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scoring:
    """How held-out rows and prompts become model inputs."""

    collator: Collator
    """Batches held-out rows for perplexity and accuracy."""
    tokenizer: PreTrainedTokenizerBase | None = None
    """Completion, future tasks and HumanEval are scored with the forgetting matrix (None: perplexity only)."""
    max_tokens: int = 0
    """`context.max_tokens`: a completion prompt and its answer fit in it."""
    seed: int = 0
    """`training.seed`: which rows the completion samples are drawn from."""


class RunEvaluator:
    def __init__(
        self,
        run: RunDir,
        phase_data: dict[str, PhaseData],
        evaluation: EvaluationConfig,
        sink: MetricsSink,
        scoring: Scoring,
        phases: Sequence[str] = (),
    ) -> None:
        """`phases`: the run's phase names in order (the last one's row scores `humaneval.final_problems`)."""
        tokenizer, max_tokens, seed = scoring.tokenizer, scoring.max_tokens, scoring.seed
        self.run = run
        self.eval_sets = {name: data.eval for name, data in phase_data.items()}
        self.collator = scoring.collator
        self.evaluation = evaluation
        self.sink = sink
        self.last_phase = phases[-1] if phases else None
        completion = evaluation.completion
        generates = tokenizer is not None and evaluation.forgetting_matrix
        prompt_tokens = min(completion.prompt_tokens, max_tokens - completion.max_new_tokens)
        self.completion = (
            CompletionEvaluator(tokenizer, self.eval_sets, completion, prompt_tokens, evaluation.batch_size, seed)
            if generates and completion.samples > 0
            else None
        )
        task_columns = evaluation.future.task_columns() if generates and completion.samples > 0 else {}
        tasks = tasks_by_column(evaluation) if task_columns else {}
        self.future_tasks = (
            FutureTaskEvaluator.build(
                tokenizer,
                {column: (kind, tasks[column]) for column, kind in task_columns.items()},
                completion,
                prompt_tokens,
                evaluation.batch_size,
                seed,
            )
            if task_columns
            else None
        )
        self.humaneval = evaluation.humaneval if generates and evaluation.humaneval.problems > 0 else None
        self.tokenizer = tokenizer
        future = list(evaluation.future.document_columns())
        groups = {
            "phases": [n for n in self.eval_sets if n != GENERAL_COLUMN and n not in future],
            "general": [GENERAL_COLUMN] if GENERAL_COLUMN in self.eval_sets else [],
            "future": [n for n in future if n in self.eval_sets],
            "tasks": list(task_columns),
            "humaneval": [HUMANEVAL_COLUMN] if self.humaneval is not None else [],
        }
        columns = [c for group in groups.values() for c in group]
        self.forgetting = ForgettingMatrix.load(run.forgetting_file, columns, groups)

    def matrix_row(self, model: PeftModel, base_model: bool = False, after: str = BASE_ROW) -> dict[str, dict]:
        """One forgetting-matrix row, `after` the base model or a phase: perplexity and top-1
        accuracy (and completion scores) per held-out set, future task scores, HumanEval pass@1."""
        results = evaluate_phases(model, self.eval_sets, self.collator, self.evaluation.batch_size, base_model, after)
        if self.completion is not None:
            for name, scores in self.completion.evaluate(model, base_model).items():
                results[name] |= scores
        if self.future_tasks is not None:
            results |= self.future_tasks.evaluate(model, base_model)
        if self.humaneval is not None:
            final = after in (BASE_ROW, self.last_phase)
            problems = load_problems(self.humaneval.final_problems if final else self.humaneval.problems)
            results[HUMANEVAL_COLUMN] = evaluate_humaneval(
                model,
                self.tokenizer,
                problems,
                GreedyDecoding(self.humaneval.max_new_tokens, self.evaluation.batch_size, base_model),
                SandboxLimits(timeout_s=self.humaneval.timeout_s),
            )
        return results

    def current_phase(self, model: PeftModel, phase: str, during: bool = True) -> EvalResult | None:
        """Loss/perplexity on `phase`'s held-out rows (None when it has none). `during`: while the
        phase trains (its time is then inside the phase's)."""
        rows = self.eval_sets[phase]
        if rows is None:
            return None
        started = time.perf_counter()
        result = evaluate_rows(model, rows.dataset, self.collator, self.evaluation.batch_size, desc=f"eval {phase}")
        self.record("phase", phase, started, during=during)
        return result

    def before_training(self, model: PeftModel) -> None:
        """The base-model row of the forgetting matrix (adapter disabled); once per run."""
        if self.evaluation.forgetting_matrix and not self.forgetting.has_row(BASE_ROW):
            started = time.perf_counter()
            self.forgetting.add_row(BASE_ROW, self.matrix_row(model, base_model=True))
            self.forgetting.save(self.run.forgetting_file)
            self.record("forgetting_matrix", BASE_ROW, started)

    def after_phase(self, model: PeftModel, phase: str, step: int) -> None:
        """The phase's forgetting-matrix row, and its own eval record at the phase's last step."""
        crash_point("phase_evaluation", phase)
        if self.evaluation.forgetting_matrix:
            started = time.perf_counter()
            results = self.matrix_row(model, after=phase)
            self.forgetting.add_row(phase, results)
            self.forgetting.save(self.run.forgetting_file)
            self.record("forgetting_matrix", phase, started)
            crash_point("forgetting_row", phase)
            own = results.get(phase)
        else:
            result = self.current_phase(model, phase, during=False)
            own = result.to_dict() if result else None
        if own is not None:
            self.sink.log(step, phase, {"loss": own["loss"], "perplexity": own["perplexity"]}, kind="eval")

    def record(self, what: str, after: str, started: float, during: bool = False) -> None:
        """An `evaluation` event: what ran (a forgetting-matrix row or one phase's held-out rows),
        its seconds, and whether they fell inside a phase's training time."""
        self.sink.event(
            "evaluation",
            what=what,
            after=after,
            seconds=time.perf_counter() - started,
            during_phase=during,
            time=time.time(),
        )


def write_contamination(run: RunDir, cfg: RunConfig) -> None:
    """eval/contamination.json and .md: every evaluation set's share of lines seen verbatim in
    the training text before each forgetting-matrix row is scored (`data/eval_sets.py`); each
    set over `WARN_SHARE` after the last phase is logged as a warning naming it recall. Once per
    run (kept on resume: the data of a run does not change), by the main process."""
    path = run.eval_dir / "contamination.json"
    if not is_main_process() or path.is_file():
        return
    table = contamination_table(cfg)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(table.to_dict(), indent=2) + "\n")
    write_atomic(run.eval_dir / "contamination.md", table.to_markdown())
    logger.info("%s", contamination_line(table))
    for warning in table.warnings():
        logger.warning("warning: %s", warning)
