import json

import pytest

from phased_cpt.config import (
    ContextConfig,
    DataConfig,
    EvaluationConfig,
    LoraConfig,
    ModelConfig,
    PhaseConfig,
)
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import DataSettings, build_run_data
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer
from phased_cpt.run_dir import RunDir
from phased_cpt.training.evaluate import RunEvaluator, Scoring
from phased_cpt.training.metrics import open_sink
from tests.conftest import bundled_texts, metrics_config, write_jsonl


@pytest.fixture(scope="module")
def pieces(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluate")
    phases = [
        PhaseConfig(name="a", file=write_jsonl(work / "a.jsonl", bundled_texts("phase1_foundation", 6))),
        PhaseConfig(name="b", file=write_jsonl(work / "b.jsonl", bundled_texts("phase3_pr_mastery", 6))),
    ]
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    context = ContextConfig(max_tokens=64, overlap_tokens=8)
    data = build_run_data(phases, DataSettings(DataConfig(eval_ratio=0.34), context, 0), tokenizer, work / "cache")
    model = attach_lora(
        load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32")), LoraConfig(r=4, alpha=8)
    )
    return model, data, make_collator(tokenizer, context)


def evaluator_for(tmp_path, pieces, **evaluation):
    model, data, collator = pieces
    run = RunDir(tmp_path)
    sink = open_sink(run, metrics_config(tensorboard=False, wandb=False), None)
    return model, run, sink, RunEvaluator(run, data, EvaluationConfig(**evaluation), sink, Scoring(collator))


def records(run):
    """The step records (the evaluation events, with their seconds, are checked on their own)."""
    return [r for r in events(run) if "event" not in r]


def events(run):
    return [json.loads(line) for line in run.metrics_file.read_text().splitlines()]


def test_forgetting_matrix_rows_and_the_phase_end_record(tmp_path, pieces):
    model, run, sink, evaluator = evaluator_for(tmp_path, pieces)
    evaluator.before_training(model)
    evaluator.before_training(model)  # once per run: a resumed run does not add a second base row
    evaluator.after_phase(model, "a", step=7)
    sink.close()
    matrix = json.loads((run.eval_dir / "forgetting.json").read_text())
    assert [row["after"] for row in matrix["rows"]] == ["base", "a"]
    (record,) = records(run)
    assert (record["kind"], record["phase"], record["step"]) == ("eval", "a", 7)
    assert record["perplexity"] == pytest.approx(matrix["perplexity"][1][0])
    timed = [(e["what"], e["after"], e["during_phase"]) for e in events(run) if e.get("event") == "evaluation"]
    assert timed == [("forgetting_matrix", "base", False), ("forgetting_matrix", "a", False)]


def test_each_matrix_cell_logs_a_line(tmp_path, pieces, caplog):
    model, run, sink, evaluator = evaluator_for(tmp_path, pieces)
    with caplog.at_level("INFO", logger="phased_cpt.evaluation.forgetting"):
        evaluator.after_phase(model, "a", step=7)
    sink.close()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(": perplexity")[0] for line in lines] == [
        "forgetting matrix 1/2: after a on a",
        "forgetting matrix 2/2: after a on b",
    ]


def test_without_the_forgetting_matrix_only_the_current_phase_is_evaluated(tmp_path, pieces):
    model, run, sink, evaluator = evaluator_for(tmp_path, pieces, forgetting_matrix=False)
    evaluator.before_training(model)
    evaluator.after_phase(model, "b", step=3)
    sink.close()
    assert not (run.eval_dir / "forgetting.json").exists()
    (record,) = records(run)
    assert record["phase"] == "b" and record["loss"] > 0
    (timed,) = [e for e in events(run) if e.get("event") == "evaluation"]
    assert (timed["what"], timed["after"], timed["during_phase"]) == ("phase", "b", False) and timed["seconds"] > 0


def test_tensorboard_disabled_writes_no_event_files(tmp_path, pieces):
    _, run, sink, _ = evaluator_for(tmp_path, pieces)
    sink.log(1, "a", {"loss": 1.0})
    sink.close()
    assert not run.tensorboard_dir.exists()
    assert records(run)[0]["loss"] == 1.0
