"""Evaluation during a run: the forgetting matrix rows (base model before training, the adapter
after each phase: perplexity and top-1 accuracy on every held-out set, the general one included,
and next-line completion when `evaluation.completion.samples` > 0) and the eval records logged
at each phase end.

The numbers come from `phased_cpt.evaluation`; this module decides when to compute them and
where they go (eval/forgetting.*, metrics). Every evaluation draws a progress bar and records its
wall time as an `evaluation` event in metrics.jsonl, which the report adds up.
"""

from __future__ import annotations

import time

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import EvaluationConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.phase_data import PhaseData
from phased_cpt.evaluation.completion import CompletionEvaluator
from phased_cpt.evaluation.forgetting import BASE_ROW, ForgettingMatrix, evaluate_phases
from phased_cpt.evaluation.perplexity import Collator, EvalResult, evaluate_rows
from phased_cpt.run_dir import RunDir
from phased_cpt.training.metrics import MetricsSink


class RunEvaluator:
    def __init__(
        self,
        run: RunDir,
        phase_data: dict[str, PhaseData],
        collator: Collator,
        evaluation: EvaluationConfig,
        sink: MetricsSink,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_tokens: int = 0,
        seed: int = 0,
    ) -> None:
        """`tokenizer`: completion is scored with the forgetting matrix (None: perplexity only)."""
        self.run = run
        self.eval_sets = {name: data.eval for name, data in phase_data.items()}
        self.collator = collator
        self.evaluation = evaluation
        self.sink = sink
        self.forgetting = ForgettingMatrix.load(run.eval_dir / "forgetting.json", list(self.eval_sets))
        completion = evaluation.completion
        wants_completion = tokenizer is not None and evaluation.forgetting_matrix and completion.samples > 0
        self.completion = (
            CompletionEvaluator(
                tokenizer,
                self.eval_sets,
                completion.samples,
                completion.max_new_tokens,
                min(completion.prompt_tokens, max_tokens - completion.max_new_tokens),
                completion.infill,
                evaluation.batch_size,
                seed,
            )
            if wants_completion
            else None
        )

    def matrix_row(self, model: PeftModel, base_model: bool = False, after: str = BASE_ROW) -> dict[str, dict]:
        """One forgetting-matrix row, `after` the base model or a phase: perplexity and top-1
        accuracy (and completion scores) per held-out set."""
        results = evaluate_phases(model, self.eval_sets, self.collator, self.evaluation.batch_size, base_model, after)
        if self.completion is not None:
            for name, scores in self.completion.evaluate(model, base_model).items():
                results[name] |= scores
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
            self.forgetting.save(self.run.eval_dir)
            self.record("forgetting_matrix", BASE_ROW, started)

    def after_phase(self, model: PeftModel, phase: str, step: int) -> None:
        """The phase's forgetting-matrix row, and its own eval record at the phase's last step."""
        crash_point("phase_evaluation", phase)
        if self.evaluation.forgetting_matrix:
            started = time.perf_counter()
            results = self.matrix_row(model, after=phase)
            self.forgetting.add_row(phase, results)
            self.forgetting.save(self.run.eval_dir)
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
