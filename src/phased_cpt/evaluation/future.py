"""Completion tasks on the repository's held-out future (`evaluation.future.tasks`, written by
`data from-git --holdout-*`): a forgetting-matrix column per kind, scored like next-line
completion (`completion.py`: exact match and edit similarity, whitespace at the ends ignored).

A task gives the file as it stands after a change, cut in three: `prefix` + `target` + `suffix`.
The file is tokenized whole and cut at the token boundary before the target's first
non-blank character, as `completion_tasks` cuts a held-out document (never a re-tokenized
fragment whose last token the model never saw in training); the prompt is the prefix's tail.

    next_line   the model writes until the line ends; its first line is the answer
    scope       a whole function or block: the model writes until EOS or the token budget; its
                first N lines (N: the target's) are the answer, compared line by line stripped
    fim         the middle, given the suffix too in the tokenizer's FIM layout (PSM); scored as
                scope. A tokenizer without FIM tokens skips these tasks with a note (the cell
                then says so), not an error.

Per kind, `samples` tasks are scored (a seeded choice, all when there are fewer); the token
budget of scope and fim answers is the longest chosen target's tokens (at most half the prompt
budget, which gives up as many) + `max_new_tokens`, so prompt and answer stay within the context.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from phased_cpt.config import CompletionConfig
from phased_cpt.data.eval_sets import FutureTask
from phased_cpt.data.fim import find_fim_tokens
from phased_cpt.evaluation.completion import (
    CompletionScores,
    CompletionTask,
    GreedyDecoding,
    edit_similarity,
    generate_lines,
    prompt_ids,
)

logger = logging.getLogger(__name__)

NO_FIM_TOKENS = "skipped: the tokenizer has no FIM tokens"


def completion_task(task: FutureTask, tokenizer: PreTrainedTokenizerBase) -> CompletionTask | None:
    """The task cut at the token boundary before its target's first non-blank character (None
    when the target starts in the file's first token)."""
    text = task.prefix + task.target + task.suffix
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    first_char = len(task.prefix) + len(task.target) - len(task.target.lstrip())
    target_end = len(task.prefix) + len(task.target.rstrip())
    cut = next((k for k, (_, end) in enumerate(offsets) if end > first_char), len(ids))
    stop = next((k for k, (_, end) in enumerate(offsets) if end > target_end), len(ids))
    if cut == 0 or cut >= len(ids):
        return None
    if task.kind == "fim":  # the middle ends where the suffix begins: its tokens start there
        stop = next((k for k, (start, _) in enumerate(offsets) if start >= target_end), len(ids))
    end = offsets[stop][0] if stop < len(ids) else len(text)
    return CompletionTask(ids[:cut], text[offsets[cut][0] : end], ids[stop:] if task.kind == "fim" else [])


def block_lines(text: str, count: int) -> str:
    """The first `count` lines of `text`, each stripped, joined by newlines."""
    return "\n".join(line.strip() for line in text.split("\n")[:count])


def score_blocks(tasks: list[CompletionTask], answers: list[str]) -> CompletionScores:
    """Exact match and mean edit similarity of each answer's first N lines (N: its target's)
    against the target, each line stripped. For a one-line target this is `score_completions`."""
    if not tasks:
        return CompletionScores(float("nan"), float("nan"), 0)
    pairs = []
    for task, answer in zip(tasks, answers):
        target = task.target.strip("\n")
        count = target.count("\n") + 1
        pairs.append((block_lines(answer.lstrip("\n"), count).strip(), block_lines(target, count).strip()))
    exact = sum(a == t for a, t in pairs) / len(pairs)
    return CompletionScores(exact, sum(edit_similarity(a, t) for a, t in pairs) / len(pairs), len(pairs))


@dataclass
class FutureTaskEvaluator:
    """The chosen tasks of every task column, cut once per run; scores a model on them."""

    tokenizer: PreTrainedTokenizerBase
    tasks: dict[str, tuple[str, list[CompletionTask]]]
    """{column: (kind, tasks)}"""
    completion: CompletionConfig
    prompt_tokens: int
    batch_size: int

    @classmethod
    def build(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        columns: dict[str, tuple[str, list[FutureTask]]],
        completion: CompletionConfig,
        prompt_tokens: int,
        batch_size: int,
        seed: int,
    ) -> FutureTaskEvaluator:
        """`columns`: {column: (kind, every task of that kind)}; `completion.samples` chosen per column."""
        chosen = {}
        for column, (kind, tasks) in columns.items():
            picked = sorted(
                random.Random(f"{seed}:{column}:future").sample(range(len(tasks)), min(completion.samples, len(tasks)))
            )
            cut = [completion_task(tasks[i], tokenizer) for i in picked]
            chosen[column] = (kind, [task for task in cut if task is not None])
        return cls(tokenizer, chosen, completion, max(1, prompt_tokens), batch_size)

    def answer_tokens(self, tasks: list[CompletionTask]) -> int:
        """The longest target's tokens: what a scope or fim answer needs before `max_new_tokens` more."""
        return max(len(self.tokenizer(t.target, add_special_tokens=False)["input_ids"]) for t in tasks)

    def evaluate(self, model, base_model: bool = False) -> dict[str, dict]:
        """{column: exact_match, edit_similarity, samples} (a fim column without FIM tokens: {note})."""
        fim = find_fim_tokens(self.tokenizer)
        results = {}
        for column, (kind, tasks) in self.tasks.items():
            if not tasks:
                continue
            if kind == "fim" and fim is None:
                logger.info("%s: %s", column, NO_FIM_TOKENS)
                results[column] = {"note": NO_FIM_TOKENS}
                continue
            if kind == "next_line":
                prompts = [prompt_ids(task, self.tokenizer, self.prompt_tokens) for task in tasks]
                decoding = GreedyDecoding(self.completion.max_new_tokens, self.batch_size, base_model)
                answers = generate_lines(model, self.tokenizer, prompts, decoding)
            else:
                budget = min(self.answer_tokens(tasks), self.prompt_tokens // 2)
                limit = self.prompt_tokens - budget  # prompt + answer stay within the context
                prompts = [prompt_ids(task, self.tokenizer, limit, fim if kind == "fim" else None) for task in tasks]
                answers = generate_lines(
                    model,
                    self.tokenizer,
                    prompts,
                    GreedyDecoding(budget + self.completion.max_new_tokens, self.batch_size, base_model),
                    list(fim.ids) if kind == "fim" else None,
                    stop_strings=(),
                )
            results[column] = score_blocks(tasks, answers).to_dict()
        return results
