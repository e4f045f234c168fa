"""Next-line completion on held-out documents: what a code user feels, next to perplexity.

From each held-out set, `samples` cut points are drawn (seeded) among the lines that hold code.
A cut sits at the token boundary just before the line's first non-blank character, so the
prompt is the document's own tokens up to there (never a re-tokenized fragment whose last token
the model never saw in training: a byte-level BPE writes `\n   ` + ` return`, not `\n    ` +
`return`); the target is the text from the cut to the end of the line. The model completes
greedily until it ends a line (or emits EOS, or `max_new_tokens`); its first line is the answer.

    document   "def add(a, b):\n    return a + b\n"    tokens  def| add|(|a|,| b|):|\n   | return| +| b|\n
    cut        line 2, before " return"
    prompt     def| add|(|a|,| b|):|\n                 target  " return a + b"
    infill     [P] <prompt tokens> [S] \n [M]            -> the model writes the middle

- exact match: the answer equals the target, leading and trailing whitespace ignored;
- edit similarity: 1 - Levenshtein(answer, target) / max(len(answer), len(target)) (1 when both
  are empty), same stripping, averaged over the cut points;
- the infill variant gives the model the tokens after the line too, in the tokenizer's own FIM
  layout (PSM, as training lays it out: `fim.py`), and scores the middle it writes the same way.

Prompts longer than `prompt_tokens` keep their last tokens (infill: the prefix keeps its last,
the suffix its first tokens, half the budget each). Generation runs in batches, left-padded,
with the adapter disabled for the base model (`base_model=True`).
"""

from __future__ import annotations

import functools
import random
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from phased_cpt.config import CompletionConfig
from phased_cpt.data.fim import FimTokens, require_fim_tokens

MAX_TARGET_CHARS = 200
"""Lines longer than this (minified code, data) are not used as targets."""


@dataclass(frozen=True)
class GreedyDecoding:
    """How every evaluation generates: greedily, at most `max_new_tokens` per answer, `batch_size`
    prompts at once, through the base model alone (adapter disabled) when `base_model`."""

    max_new_tokens: int
    batch_size: int
    base_model: bool = False


@dataclass(frozen=True)
class CompletionTask:
    prefix_ids: list[int]
    """The document's tokens before the cut (no BOS: `prompt_ids` adds the tokenizer's own)."""
    target: str
    """The text from the cut to the end of the line: what the model should write."""
    suffix_ids: list[int]
    """The document's tokens from the end of the line on: the infill variant's extra context."""


@dataclass(frozen=True)
class CompletionScores:
    exact_match: float
    edit_similarity: float
    samples: int

    def to_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {
            f"{prefix}exact_match": self.exact_match,
            f"{prefix}edit_similarity": self.edit_similarity,
            f"{prefix}samples": self.samples,
        }


def completion_tasks(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    samples: int,
    seed: int,
    name: str,
) -> list[CompletionTask]:
    """`samples` cut points (all, when there are fewer): a seeded choice over every line that
    holds code and has text before it, in document order."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True) if texts else None
    candidates = []
    for d, text in enumerate(texts):
        offsets = encoded["offset_mapping"][d]
        ends = [end for _, end in offsets]
        start = 0
        for line in text.splitlines(keepends=True):
            content = line.rstrip("\r\n")
            stripped = content.lstrip()
            first_char, line_end = start + len(content) - len(stripped), start + len(content)
            start += len(line)
            if not stripped or len(stripped) > MAX_TARGET_CHARS:
                continue
            cut = next(k for k, end in enumerate(ends) if end > first_char)  # the token holding that character
            stop = next((k for k, end in enumerate(ends) if end > line_end), len(ends))
            if cut > 0 and stop > cut:
                candidates.append((d, cut, stop))
    chosen = sorted(random.Random(f"{seed}:{name}:completion").sample(candidates, min(samples, len(candidates))))
    tasks = []
    for d, cut, stop in chosen:
        ids, offsets = encoded["input_ids"][d], encoded["offset_mapping"][d]
        end = offsets[stop][0] if stop < len(ids) else len(texts[d])
        tasks.append(CompletionTask(ids[:cut], texts[d][offsets[cut][0] : end], ids[stop:]))
    return tasks


def edit_similarity(answer: str, target: str) -> float:
    """1 - Levenshtein distance / the longer length; 1.0 for two empty strings."""
    if not answer and not target:
        return 1.0
    previous = list(range(len(target) + 1))
    for i, a in enumerate(answer, 1):
        current = [i]
        for j, t in enumerate(target, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != t)))
        previous = current
    return 1.0 - previous[-1] / max(len(answer), len(target))


def score_completions(tasks: list[CompletionTask], answers: list[str]) -> CompletionScores:
    """Exact match and mean edit similarity of each answer's first line against its target,
    leading and trailing whitespace ignored on both."""
    if not tasks:
        return CompletionScores(float("nan"), float("nan"), 0)
    pairs = [(first_line(a), task.target.strip()) for a, task in zip(answers, tasks)]
    exact = sum(answer == target for answer, target in pairs) / len(tasks)
    similarity = sum(edit_similarity(answer, target) for answer, target in pairs) / len(tasks)
    return CompletionScores(exact, similarity, len(tasks))


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def prompt_ids(
    task: CompletionTask, tokenizer: PreTrainedTokenizerBase, prompt_tokens: int, fim: FimTokens | None = None
) -> list[int]:
    """Token ids of a task's prompt: plain (`fim` None) or the PSM infill layout; BOS first when
    the tokenizer adds one."""
    lead = tokenizer("", add_special_tokens=True)["input_ids"]  # [BOS] for a Llama tokenizer, [] for Qwen2
    if fim is None:
        return lead + task.prefix_ids[-prompt_tokens:]
    budget = max(prompt_tokens - 3, 2)
    keep_suffix = min(len(task.suffix_ids), budget // 2)
    keep_prefix = min(len(task.prefix_ids), budget - keep_suffix)
    prefix = task.prefix_ids[len(task.prefix_ids) - keep_prefix :] if keep_prefix else []
    return [*lead, fim.prefix, *prefix, fim.suffix, *task.suffix_ids[:keep_suffix], fim.middle]


@functools.lru_cache(maxsize=4)
def newline_tokens(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """A mask over the vocabulary: True for the tokens whose text holds a newline."""
    vocabulary = tokenizer.get_vocab()
    mask = torch.zeros(max(vocabulary.values()) + 1, dtype=torch.bool)
    mask[[i for i in vocabulary.values() if "\n" in tokenizer.decode([i])]] = True
    return mask


class StopAtLineEnd(StoppingCriteria):
    """Per sequence: done once it has generated a token whose text holds a newline."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int) -> None:
        self.newline = newline_tokens(tokenizer)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_length :].cpu()
        return self.newline[generated.clamp_max(len(self.newline) - 1)].any(dim=1).to(input_ids.device)


def generate_lines(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    decoding: GreedyDecoding,
    stop_ids: list[int] | None = None,
    stop_strings: tuple[str, ...] | None = None,
) -> list[str]:
    """Greedy completions of `prompts` (token ids), each until it ends a line (given
    `stop_strings`: until it writes one of them; `()`: no such stop), emits EOS (or one of
    `stop_ids`) or reaches `decoding.max_new_tokens`; their decoded text. Left-padded batches."""
    batch_size = decoding.batch_size
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = sorted({tokenizer.eos_token_id, *(stop_ids or [])})
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers: list[str] = []
    stop_at_strings = [StopStringCriteria(tokenizer, list(stop_strings))] if stop_strings else []
    adapter_off = model.disable_adapter() if decoding.base_model else nullcontext()
    try:
        with torch.inference_mode(), adapter_off:
            for i in range(0, len(prompts), batch_size):
                batch = prompts[i : i + batch_size]
                width = max(len(p) for p in batch)
                input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=decoding.max_new_tokens,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=pad,
                    use_cache=True,
                    stopping_criteria=StoppingCriteriaList(
                        [StopAtLineEnd(tokenizer, width)] if stop_strings is None else stop_at_strings
                    ),
                )
                for row in output[:, width:].tolist():
                    kept = []
                    for token in row:
                        if token in eos:
                            break
                        kept.append(token)
                    answers.append(tokenizer.decode(kept, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return answers


def chunk_texts(tokens: np.ndarray, chunks: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The text of each held-out chunk (a document or a window of one), special tokens left out."""
    return [tokenizer.decode(np.asarray(tokens[s : s + n]).tolist(), skip_special_tokens=True) for s, n, _ in chunks]


def evaluate_completion(
    model,
    tokenizer: PreTrainedTokenizerBase,
    tasks: list[CompletionTask],
    prompt_tokens: int,
    decoding: GreedyDecoding,
    fim: FimTokens | None = None,
) -> CompletionScores:
    """Score the model on `tasks`: plain next-line completion, or infill when `fim` is given."""
    prompts = [prompt_ids(task, tokenizer, prompt_tokens, fim) for task in tasks]
    stop = list(fim.ids) if fim is not None else None
    answers = generate_lines(model, tokenizer, prompts, decoding, stop)
    return score_completions(tasks, answers)


class CompletionEvaluator:
    """The completion tasks of every held-out set, drawn once per run; scores a model on all of them."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        eval_sets: dict,
        completion: CompletionConfig,
        prompt_tokens: int,
        batch_size: int,
        seed: int,
    ) -> None:
        """`eval_sets`: {name: `Rows` or None}; `completion.samples` cut points each; prompts of at
        most `prompt_tokens` (at least 1; `completion.prompt_tokens` capped by the context);
        `completion.infill`: also the FIM variant (the tokenizer must have FIM tokens)."""
        self.tokenizer = tokenizer
        self.max_new_tokens = completion.max_new_tokens
        self.prompt_tokens = max(1, prompt_tokens)
        self.batch_size = batch_size
        self.fim = require_fim_tokens(tokenizer, "evaluation.completion.infill") if completion.infill else None
        self.tasks = {
            name: completion_tasks(
                chunk_texts(rows.dataset.tokens, rows.dataset.chunks, tokenizer),
                tokenizer,
                completion.samples,
                seed,
                name,
            )
            for name, rows in eval_sets.items()
            if rows is not None
        }

    def evaluate(self, model, base_model: bool = False) -> dict[str, dict]:
        """{held-out set: exact_match, edit_similarity, samples (and infill_* with infill)}."""
        modes = [("", None)] + ([("infill_", self.fim)] if self.fim is not None else [])
        decoding = GreedyDecoding(self.max_new_tokens, self.batch_size, base_model)
        results: dict[str, dict] = {}
        for name, tasks in self.tasks.items():
            results[name] = {}
            for prefix, fim in modes:
                scores = evaluate_completion(model, self.tokenizer, tasks, self.prompt_tokens, decoding, fim)
                results[name] |= scores.to_dict(prefix)
        return results
