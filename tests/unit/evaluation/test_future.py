"""Future completion tasks: cut on the whole file's tokens, scored line by line, FIM skipped with
a note for a tokenizer without FIM tokens; the learning headline picks the least contaminated sets."""

from __future__ import annotations

import math

from transformers import AutoModelForCausalLM

from phased_cpt.config import CompletionConfig, ModelConfig
from phased_cpt.data.eval_sets import ContaminationTable, FutureTask
from phased_cpt.evaluation.completion import CompletionTask
from phased_cpt.evaluation.forgetting import ForgettingMatrix
from phased_cpt.evaluation.future import NO_FIM_TOKENS, FutureTaskEvaluator, completion_task, score_blocks
from phased_cpt.evaluation.learning import learning_headline
from phased_cpt.modeling import load_tokenizer

PREFIX = "def add(a, b):\n"
BODY = "    total = a + b\n    return total\n"
AFTER = "\n\ndef sub(a, b):\n    return a - b\n"


def future(kind: str, target: str, suffix: str = "") -> FutureTask:
    return FutureTask(kind, PREFIX, suffix, target, "m.py", "c0ffee")


def test_a_task_is_cut_on_the_files_own_tokens(fim_tokenizer):
    task = completion_task(future("next_line", "    total = a + b\n"), fim_tokenizer)
    whole = fim_tokenizer(PREFIX + "    total = a + b\n", add_special_tokens=False)["input_ids"]
    assert whole[: len(task.prefix_ids)] == task.prefix_ids
    assert task.target.strip() == "total = a + b" and task.suffix_ids == []
    fim = completion_task(future("fim", BODY, AFTER), fim_tokenizer)
    assert fim.target.strip() == BODY.strip()
    assert fim_tokenizer.decode(fim.suffix_ids).strip() == AFTER.strip()


def test_blocks_are_scored_on_as_many_lines_as_the_target_has():
    task = CompletionTask([1], "    total = a + b\n    return total", [])
    exact = score_blocks([task], ["total = a + b\n  return total\nprint('extra')"])
    assert (exact.exact_match, exact.edit_similarity, exact.samples) == (1.0, 1.0, 1)
    wrong = score_blocks([task], ["total = a + b\n"])
    assert wrong.exact_match == 0.0 and 0 < wrong.edit_similarity < 1
    assert math.isnan(score_blocks([], []).exact_match)


def test_fim_tasks_are_skipped_with_a_note_without_fim_tokens(tiny_model_dir):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    evaluator = FutureTaskEvaluator.build(
        tokenizer,
        {
            "t.next_line": ("next_line", [future("next_line", "    total = a + b\n")]),
            "t.scope": ("scope", [future("scope", BODY)]),
            "t.fim": ("fim", [future("fim", BODY, AFTER)]),
        },
        CompletionConfig(samples=4, max_new_tokens=4),
        prompt_tokens=64,
        batch_size=2,
        seed=0,
    )
    results = evaluator.evaluate(model)
    assert results["t.fim"] == {"note": NO_FIM_TOKENS}
    assert results["t.next_line"]["samples"] == 1 and results["t.scope"]["samples"] == 1


def cell(loss: float, tokens: int = 100) -> dict:
    return {"loss": loss, "perplexity": math.exp(loss), "target_tokens": tokens}


def test_the_headline_uses_the_least_contaminated_sets_and_names_the_rest_recall():
    groups = {"phases": ["p1", "p2"], "future": ["future_evolution"]}
    matrix = ForgettingMatrix(
        ["p1", "p2", "future_evolution"],
        [
            {"after": "base", "results": {"p1": cell(3.0), "p2": cell(3.0), "future_evolution": cell(3.0)}},
            {"after": "p2", "results": {"p1": cell(1.0), "p2": cell(1.0), "future_evolution": cell(2.0)}},
        ],
        groups,
    )

    def shares(p1: float, p2: float, future: float) -> ContaminationTable:
        row = {
            c: {"lines": 100, "seen": int(s * 100), "share": s}
            for c, s in zip(groups["phases"] + groups["future"], (p1, p2, future))
        }
        return ContaminationTable(list(row), [{"after": "base", "results": row}, {"after": "p2", "results": row}])

    headline = learning_headline(matrix, shares(0.5, 0.9, 0.1))
    assert headline.startswith("Learning on the least contaminated sets, future_evolution (10.0% of lines seen")
    assert f"perplexity {(math.exp(2.0) / math.exp(3.0) - 1) * 100:+.1f}% after p2" in headline
    assert "recall rather than learning: p1 (50.0%), p2 (90.0%)" in headline
    dirty = learning_headline(matrix, shares(0.5, 0.9, 0.3))
    assert "sets, future_evolution (30.0%" in dirty and "this run has no clean measure of learning" in dirty
    assert learning_headline(matrix, None) is None
