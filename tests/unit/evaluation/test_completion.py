"""Next-line completion: cut points, metrics, prompts, batched generation, and a model whose answers
are known (it memorized its documents)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from phased_cpt.config import CompletionConfig, ContextConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.fim import find_fim_tokens
from phased_cpt.data.rows import RowDataset
from phased_cpt.evaluation.completion import (
    CompletionTask,
    GreedyDecoding,
    chunk_texts,
    completion_tasks,
    edit_similarity,
    evaluate_completion,
    generate_lines,
    prompt_ids,
    score_completions,
)
from phased_cpt.evaluation.perplexity import evaluate_rows

DOCS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    x: int\n\n    y: int\n",
    "for item in items:\n    total += item\nprint(total)\n",
]


@pytest.fixture(scope="module")
def tokenizer(fim_tokenizer):
    """This module's tokenizer is the one with fill-in-the-middle tokens."""
    return fim_tokenizer


def test_cut_points_sit_at_the_token_before_the_first_character_of_lines_that_hold_code(tokenizer):
    tasks = completion_tasks(DOCS, tokenizer, samples=100, seed=0, name="p")
    assert [t.target.strip() for t in tasks] == ["return a + b", "x: int", "y: int", "total += item", "print(total)"]
    for task in tasks:  # the document's own tokens: prefix + the target's + suffix
        text = tokenizer.decode(task.prefix_ids) + task.target + tokenizer.decode(task.suffix_ids)
        assert text in DOCS
        assert (
            task.prefix_ids + tokenizer(task.target, add_special_tokens=False)["input_ids"] + task.suffix_ids
            == tokenizer(text, add_special_tokens=False)["input_ids"]
        )
    first = tasks[0]
    assert (
        tokenizer.decode(first.prefix_ids).startswith("def add(a, b):\n") and tokenizer.decode(first.suffix_ids) == "\n"
    )


def test_cut_points_are_a_seeded_choice(tokenizer):
    texts = ["\n".join(f"x{i} = {i}" for i in range(50))]
    a, b = (
        completion_tasks(texts, tokenizer, 5, seed=1, name="p"),
        completion_tasks(texts, tokenizer, 5, seed=1, name="p"),
    )
    assert a == b and len(a) == 5
    assert completion_tasks(texts, tokenizer, 5, seed=2, name="p") != a
    assert (
        completion_tasks([], tokenizer, 5, 1, "p") == [] and completion_tasks(["one line"], tokenizer, 5, 1, "p") == []
    )


@pytest.mark.parametrize(
    "answer, target, expected",
    [
        ("abc", "abc", 1.0),
        ("", "", 1.0),
        ("abc", "abd", 2 / 3),
        ("", "abc", 0.0),
        ("kitten", "sitting", 1 - 3 / 7),
    ],
)
def test_edit_similarity(answer, target, expected):
    assert edit_similarity(answer, target) == pytest.approx(expected)


def test_scores_take_the_first_line_and_ignore_surrounding_whitespace():
    tasks = [CompletionTask([1], " return a + b", [2]), CompletionTask([1], "x: int", [2])]
    scores = score_completions(tasks, ["return a + b  \n    more", " x: str"])
    assert scores.exact_match == 0.5 and scores.samples == 2
    assert scores.edit_similarity == pytest.approx((1.0 + (1 - 3 / 6)) / 2)
    assert math.isnan(score_completions([], []).exact_match)


def test_prompts_keep_their_last_tokens_and_infill_prompts_use_the_fim_layout(tokenizer):
    prefix, suffix = (
        tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("def add(a, b):\n", "\n\nprint(add(1, 2))\n")
    )
    task = CompletionTask(prefix, "    return a + b", suffix)
    assert prompt_ids(task, tokenizer, 1000) == prefix and prompt_ids(task, tokenizer, 3) == prefix[-3:]
    fim = find_fim_tokens(tokenizer)
    ids = prompt_ids(task, tokenizer, 1000, fim)
    assert ids == [fim.prefix, *prefix, fim.suffix, *suffix, fim.middle]
    short = prompt_ids(task, tokenizer, 9, fim)  # 6 tokens of text: the suffix's first 3, the prefix's last 3
    assert short == [fim.prefix, *prefix[-3:], fim.suffix, *suffix[:3], fim.middle]


@pytest.fixture(scope="module")
def random_model(tiny_fim_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_fim_model_dir)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(random_model, tokenizer):
    prompts = [tokenizer(t)["input_ids"] for t in ("def ", "class Point:\n    x", "for item in items:\n")]
    batched = generate_lines(random_model, tokenizer, prompts, GreedyDecoding(max_new_tokens=8, batch_size=3))
    alone = [
        generate_lines(random_model, tokenizer, [p], GreedyDecoding(max_new_tokens=8, batch_size=1))[0] for p in prompts
    ]
    assert batched == alone
    reference = []  # greedy by hand: argmax of the next-token logits, 8 steps or a newline or EOS
    for ids in prompts:
        ids, new = list(ids), []
        for _ in range(8):
            with torch.no_grad():
                token = int(random_model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
            new.append(token)
            if "\n" in tokenizer.decode([token]):
                break
        reference.append(tokenizer.decode(new, skip_special_tokens=True))
    assert batched == reference


@pytest.fixture(scope="module")
def memorized(tiny_fim_model_dir, tokenizer):
    """A model that learned DOCS by heart: its greedy completions are the documents' own lines.
    One thread: a model this small trains ~100x slower on two threads of a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_fim_model_dir)
    rows = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in DOCS]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2, weight_decay=0.0)
    for _ in range(200):
        loss = sum(model(input_ids=torch.tensor([r]), labels=torch.tensor([r])).loss for r in rows) / len(rows)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.05:
            break
    torch.set_num_threads(threads)
    model.eval()
    return model


def test_a_model_that_memorized_its_documents_completes_every_line(memorized, random_model, tokenizer):
    tasks = completion_tasks(DOCS, tokenizer, samples=10, seed=0, name="p")
    scores = evaluate_completion(memorized, tokenizer, tasks, 64, GreedyDecoding(max_new_tokens=12, batch_size=4))
    assert scores.exact_match == 1.0 and scores.edit_similarity == 1.0 and scores.samples == 5
    untrained = evaluate_completion(random_model, tokenizer, tasks, 64, GreedyDecoding(max_new_tokens=12, batch_size=4))
    assert untrained.exact_match == 0.0 and untrained.edit_similarity < 0.5


def test_top1_accuracy_is_the_share_of_targets_predicted_exactly(memorized, random_model, tokenizer):
    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in DOCS]
    tokens = np.array([t for doc in ids for t in doc], dtype=np.int32)
    starts = np.cumsum([0] + [len(d) for d in ids[:-1]])
    chunks = np.array([(s, len(d), 0) for s, d in zip(starts, ids)], dtype=np.int64)
    dataset = RowDataset(tokens, chunks, np.arange(len(ids) + 1), packed=False)
    collator = make_collator(tokenizer, ContextConfig(max_tokens=64, overlap_tokens=0))
    assert evaluate_rows(memorized, dataset, collator, batch_size=2).top1_accuracy == 1.0
    result = evaluate_rows(random_model, dataset, collator, batch_size=2)
    hits = total = 0
    for doc in ids:  # by hand: argmax at each position against the next token
        with torch.no_grad():
            predicted = random_model(input_ids=torch.tensor([doc])).logits[0, :-1].argmax(-1)
        hits += int((predicted == torch.tensor(doc[1:])).sum())
        total += len(doc) - 1
    assert result.target_tokens == total and result.top1_accuracy == pytest.approx(hits / total)
    assert chunk_texts(tokens, chunks, tokenizer) == DOCS


def test_the_evaluator_draws_tasks_per_held_out_set_and_applies_its_limits(memorized, tokenizer):
    from phased_cpt.data.phase_data import Rows
    from phased_cpt.evaluation.completion import CompletionEvaluator

    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in DOCS]
    tokens = np.array([t for doc in ids for t in doc], dtype=np.int32)
    starts = np.cumsum([0] + [len(d) for d in ids[:-1]])
    chunks = np.array([(s, len(d), 0) for s, d in zip(starts, ids)], dtype=np.int64)
    rows = Rows(RowDataset(tokens, chunks, np.arange(len(ids) + 1), packed=False), {})

    def evaluator(samples=10, max_new_tokens=12, prompt_tokens=52):
        return CompletionEvaluator(
            tokenizer,
            {"p": rows, "none": None},
            CompletionConfig(samples=samples, max_new_tokens=max_new_tokens),
            prompt_tokens,
            batch_size=4,
            seed=0,
        )

    full = evaluator()
    assert list(full.tasks) == ["p"] and len(full.tasks["p"]) == 5
    assert full.evaluate(memorized)["p"]["exact_match"] == 1.0
    assert evaluator(max_new_tokens=1).evaluate(memorized)["p"]["exact_match"] == 0.0  # one token ends no line
    cut = evaluator(prompt_tokens=1)
    assert cut.evaluate(memorized)["p"]["exact_match"] < 1.0  # no context, no memory
    assert evaluator(prompt_tokens=0).prompt_tokens == 1
    fewer = evaluator(samples=2)
    assert len(fewer.tasks["p"]) == 2 and fewer.evaluate(memorized)["p"]["samples"] == 2
