"""HumanEval through the sandbox: the package's canonical solutions pass all 164 problems, an empty
body none; completions end at the next top-level statement; cells compare on common problems."""

from __future__ import annotations

from phased_cpt.evaluation.humaneval import (
    check_program,
    load_problems,
    pass_at_1_on,
    score_programs,
    truncate_completion,
)
from phased_cpt.evaluation.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_s=10.0)


def test_the_package_ships_164_problems_and_a_limit_takes_the_first():
    problems = load_problems()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    assert [p.task_id for p in load_problems(3)] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]


def test_canonical_solutions_pass_all_164_and_an_empty_body_none():
    problems = load_problems()
    assert sum(score_programs(problems, [p.canonical_solution for p in problems], LIMITS)) == 164
    assert sum(score_programs(problems, [""] * len(problems), LIMITS)) == 0


def test_a_completion_ends_at_the_next_top_level_statement():
    text = "    return a + b\n\n\ndef unrelated():\n    pass\n"
    assert truncate_completion(text) == "    return a + b\n\n"
    assert truncate_completion("    return 1\n") == "    return 1\n"
    problem = load_problems(1)[0]
    assert check_program(problem, "    pass\n").endswith(f"check({problem.entry_point})\n")


def test_a_row_compares_with_the_base_on_the_problems_both_scored():
    base = {"passed": [True, False, True, True]}
    assert pass_at_1_on(base, 2) == 0.5
    assert pass_at_1_on({"passed": [True]}, 2) is None
    assert pass_at_1_on(base, 0) is None
