"""The recipe, top to bottom: the callbacks of a phase in the order the Trainer calls them, and
the evaluations and records of a run in the order they happen."""

from __future__ import annotations

import json

import pytest
from transformers.trainer_callback import PrinterCallback

from phased_cpt.config.loading import load_config
from phased_cpt.run_dir import read_metrics
from phased_cpt.training.phase import PhaseTrainer, training_arguments
from phased_cpt.training.recipe import PhasedRecipe
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import tiny_run_config, write_yaml

PHASE_CALLBACKS = [
    "DefaultFlowCallback",  # the Trainer's own: when to log, evaluate, save
    "MetricsCallback",
    "ProgressCallback",
    "CheckpointCallback",
    "GracefulStopCallback",
    "EvalCallback",
    "ClockCallback",
    "SeedAtTrainBegin",
    "NonFiniteGuard",  # PhaseTrainer's own
]


@pytest.fixture(scope="module")
def recipe(tiny_model_dir, tmp_path_factory) -> PhasedRecipe:
    """A two-phase run, set up (once for this module: setting up builds the data and the model)."""
    tmp_path = tmp_path_factory.mktemp("recipe")
    files = [
        ("p1", write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 12)), 1),
        ("p2", write_jsonl(tmp_path / "p2.jsonl", bundled_texts("phase2_evolution", 12)), 1),
    ]
    data = tiny_run_config(
        tiny_model_dir,
        files,
        evaluation={"eval_steps": 2},
        data={"eval_ratio": 0.25, "cache_dir": str(tmp_path / "cache")},
    )
    data["training"].update({"max_steps": 3, "save_steps": 2})
    data["output"]["dir"] = str(tmp_path / "outputs")
    cfg, _ = load_config(write_yaml(tmp_path / "run.yaml", data))
    recipe = PhasedRecipe(cfg)
    recipe.setup()
    return recipe


def test_a_phase_runs_its_callbacks_in_the_recipes_order(recipe):
    phase = recipe.cfg.phases[0]
    training = phase.training_for(recipe.training)
    callbacks = recipe.callbacks(phase, recipe.trainable.model, 0, training)
    trainer = PhaseTrainer(
        model=recipe.trainable.model,
        args=training_arguments(training, 1, recipe.run.phase_dir(phase.name)),
        callbacks=callbacks,
        max_nonfinite_losses=training.max_nonfinite_losses,
    )
    trainer.remove_callback(PrinterCallback)
    order = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert order == PHASE_CALLBACKS
    # what the order is for: the clock restarts after evaluation and the checkpoint save, and no
    # callback that runs at train begin comes after the seeding
    assert order.index("ClockCallback") > max(order.index("EvalCallback"), order.index("CheckpointCallback"))
    begins = [
        type(c).__name__
        for c in trainer.callback_handler.callbacks
        if type(c).on_train_begin is not type(c).__mro__[-2].on_train_begin
    ]
    assert begins[-1] == "SeedAtTrainBegin"


def test_a_run_evaluates_and_records_in_order(recipe):
    recipe.train()
    recipe.finish(failed=False)
    steps = []
    for record in read_metrics(recipe.run.metrics_file):
        if record.get("event") == "evaluation":
            steps.append(f"evaluation {record['what']} {record['after']}")
        elif record.get("event") in ("session_start", "phase_start", "phase_end", "session_end"):
            steps.append(" ".join(filter(None, [record["event"], record.get("phase")])))
    assert steps == [
        "session_start",
        "evaluation forgetting_matrix base",  # the base model, before the first step
        "phase_start p1",
        "evaluation phase p1",  # eval_steps 2 of 3: during the phase
        "evaluation forgetting_matrix p1",  # after the phase, before its record
        "phase_end p1",
        "phase_start p2",
        "evaluation phase p2",
        "evaluation forgetting_matrix p2",
        "phase_end p2",
        "session_end",
    ]
    state = json.loads(recipe.run.state_file.read_text())
    assert [p["name"] for p in state["finished_phases"]] == ["p1", "p2"]
    assert (recipe.run.eval_dir / "report.md").is_file()
