"""Evaluation during a run: the forgetting matrix rows (base model before training, the adapter
after each phase) and the eval records logged at each phase end.

The numbers come from `phased_cpt.evaluation`; this module decides when to compute them and
where they go (eval/forgetting.*, metrics).
"""

from __future__ import annotations

from peft import PeftModel

from phased_cpt.config import EvaluationConfig
from phased_cpt.crash_points import crash_point
from phased_cpt.data.phase_data import PhaseData
from phased_cpt.evaluation.forgetting import BASE_ROW, ForgettingMatrix, evaluate_phases
from phased_cpt.evaluation.perplexity import Collator, EvalResult, evaluate_rows
from phased_cpt.run_dir import RunDir
from phased_cpt.training.metrics import MetricsSink


class RunEvaluator:
    def __init__(
        self, run: RunDir, phase_data: dict[str, PhaseData], collator: Collator, evaluation: EvaluationConfig,
        sink: MetricsSink,
    ) -> None:
        self.run = run
        self.eval_sets = {name: data.eval for name, data in phase_data.items()}
        self.collator = collator
        self.evaluation = evaluation
        self.sink = sink
        self.forgetting = ForgettingMatrix.load(run.eval_dir / "forgetting.json", list(self.eval_sets))

    def current_phase(self, model: PeftModel, phase: str) -> EvalResult | None:
        """Loss/perplexity on `phase`'s held-out rows (None when it has none)."""
        rows = self.eval_sets[phase]
        if rows is None:
            return None
        return evaluate_rows(model, rows.dataset, self.collator, self.evaluation.batch_size)

    def before_training(self, model: PeftModel) -> None:
        """The base-model row of the forgetting matrix (adapter disabled); once per run."""
        if self.evaluation.forgetting_matrix and not self.forgetting.has_row(BASE_ROW):
            results = evaluate_phases(model, self.eval_sets, self.collator, self.evaluation.batch_size, base_model=True)
            self.forgetting.add_row(BASE_ROW, results)
            self.forgetting.save(self.run.eval_dir)

    def after_phase(self, model: PeftModel, phase: str, step: int) -> None:
        """The phase's forgetting-matrix row, and its own eval record at the phase's last step."""
        crash_point("phase_evaluation", phase)
        if self.evaluation.forgetting_matrix:
            results = evaluate_phases(model, self.eval_sets, self.collator, self.evaluation.batch_size)
            self.forgetting.add_row(phase, results)
            self.forgetting.save(self.run.eval_dir)
            crash_point("forgetting_row", phase)
            own = results.get(phase)
        else:
            result = self.current_phase(model, phase)
            own = result.to_dict() if result else None
        if own is not None:
            self.sink.log(step, phase, {"loss": own["loss"], "perplexity": own["perplexity"]}, kind="eval")
