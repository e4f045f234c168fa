"""REPL commands, driven line by line on the tiny model with two random adapters."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from phased_cpt.inference.generation import Generator
from phased_cpt.inference.params import GenerationParams
from phased_cpt.inference.repl import ALIASES, COMMANDS, HELP, Repl
from phased_cpt.modeling import load_base_model, load_tokenizer
from tests.conftest import tiny_model_config

ROOT = Path(__file__).resolve().parents[3]
STATS = re.compile(
    r"^\[(base|ft)\] prompt (\d+) tok \| generated (\d+) tok \| [\d.]+ s \| [\d.]+ tok/s \| stop: (eos|max_tokens)$"
)


@pytest.fixture(scope="module")
def generator(tiny_model_dir, random_adapters):
    cfg = tiny_model_config(tiny_model_dir)
    return Generator(load_base_model(cfg), load_tokenizer(cfg), random_adapters, active="phase2")


@pytest.fixture
def repl(generator):
    generator.use_phase("phase2")
    return Repl(generator, GenerationParams(max_tokens=8), out=io.StringIO())


def said(repl: Repl, *lines: str) -> list[str]:
    """Handle `lines`; return what the REPL printed for them."""
    repl.out.seek(0)
    repl.out.truncate()
    for line in lines:
        assert repl.handle(line)
    return repl.out.getvalue().splitlines()


def stats(lines: list[str]) -> list[tuple[str, int, int, str]]:
    return [(m[1], int(m[2]), int(m[3]), m[4]) for m in map(STATS.match, lines) if m]


def test_prompt_in_compare_mode_answers_base_then_ft(repl):
    lines = said(repl, "def main():")
    assert lines[0] == "--- base model (adapter disabled) ---"
    assert "--- fine-tuned (phase2) ---" in lines
    found = stats(lines)
    assert [s[0] for s in found] == ["base", "ft"]
    prompt_tokens = len(repl.generator.encode("def main():"))
    for _, prompt, generated, stop in found:
        assert prompt == prompt_tokens and 1 <= generated <= 8
        assert generated == 8 if stop == "max_tokens" else stop == "eos"


def test_set_and_params(repl):
    assert said(repl, "/set temperature 0.7", "/set max_tokens 3") == ["temperature = 0.7", "max_tokens = 3"]
    (line,) = said(repl, "/params")
    assert line.startswith("temperature=0.7 top_p=1.0 top_k=50 max_tokens=3 repetition_penalty=1.0 seed=0")
    assert line.endswith("| mode: compare base vs ft | phase: phase2")
    assert all(generated <= 3 for _, _, generated, _ in stats(said(repl, "hello")))


def test_compare_toggle_base_and_ft_modes(repl):
    assert said(repl, "/compare") == ["mode: ft only"]
    assert [s[0] for s in stats(said(repl, "x = 1"))] == ["ft"]
    assert said(repl, "/base") == ["mode: base only"]
    assert [s[0] for s in stats(said(repl, "x = 1"))] == ["base"]
    assert said(repl, "/compare") == ["mode: compare base vs ft"]
    assert said(repl, "/ft", "/compare") == ["mode: ft only", "mode: compare base vs ft"]


def test_phase_lists_and_switches(repl):
    assert said(repl, "/phase")[:2] == [
        f"  1. phase1  {repl.generator.adapters['phase1']}",
        f"* 2. phase2  {repl.generator.adapters['phase2']}",
    ]
    assert said(repl, "/phase 1") == [f"phase: phase1 ({repl.generator.adapters['phase1']})"]
    assert "--- fine-tuned (phase1) ---" in said(repl, "/ft", "abc")
    assert said(repl, "/phase phase2")[0].startswith("phase: phase2")
    assert said(repl, "/phase nine") == ["error: unknown phase 'nine'; one of: phase1, phase2"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/bogus", "error: unknown command /bogus (/help lists the commands)"),
        ("/set temperature hot", "error: temperature must be 0 (greedy) or a finite number >= 0.001, got 'hot'"),
        ("/set seed 1e26", "error: seed must be an integer from 0 to 4294967295, got '1e26'"),
        (
            "/set seed 100000000000000000000000000",
            "error: seed must be an integer from 0 to 4294967295, got '100000000000000000000000000'",
        ),
        ("/set max_tokens", "error: usage: /set NAME VALUE, e.g. /set temperature 0.7"),
        (
            "/set colour 3",
            "error: unknown parameter 'colour'; one of: temperature, top_p, top_k, max_tokens, repetition_penalty, seed",
        ),
    ],
)
def test_bad_commands_get_one_error_line_and_change_nothing(repl, line, error):
    assert said(repl, line) == [error]
    assert repl.params == GenerationParams(max_tokens=8)


def test_reset_restores_starting_parameters_and_compare(repl):
    said(repl, "/set seed 5", "/base")
    assert said(repl, "/reset") == [
        "temperature=0.0 top_p=1.0 top_k=50 max_tokens=8 repetition_penalty=1.0 seed=0 | mode: compare base vs ft"
    ]
    assert repl.params == GenerationParams(max_tokens=8) and repl.compare


def test_help_names_every_command(repl):
    text = "\n".join(said(repl, "/help"))
    for command in ("/set", "/params", "/compare", "/base", "/ft", "/phase", "/reset", "/help", "/quit"):
        assert command in text


def test_every_command_has_a_method_a_help_line_and_a_docs_row():
    """docs/architecture.md's "where a change goes" for a REPL command, made executable: an entry
    in `COMMANDS` and a `do_` method, each with the other, /help naming it, the docs' table too."""
    methods = {name.removeprefix("do_") for name in dir(Repl) if name.startswith("do_")}
    assert methods == set(COMMANDS)
    assert set(ALIASES.values()) <= set(COMMANDS)
    in_help = set(re.findall(r"(?m)^  /(\w+)(?:, /(\w+))?", HELP))
    assert {name for pair in in_help for name in pair if name} == set(COMMANDS)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    rows = [
        line for path in docs for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"\| `/\w+", line)
    ]
    documented = {name for row in rows for name in re.findall(r"`/(\w+)", row.split("|")[1])}
    assert documented == set(COMMANDS)


def test_quit_eof_and_ctrl_c_end_the_loop(repl):
    assert repl.handle("/quit") is False
    lines = iter(["/set seed 3", "/quit", "never read"])
    assert repl.run(lambda prompt: next(lines)) == 0
    assert repl.params.seed == 3

    def eof(prompt):
        raise EOFError

    def interrupt(prompt):
        raise KeyboardInterrupt

    assert repl.run(eof) == 0 and repl.run(interrupt) == 0


def test_a_trailing_backslash_continues_the_prompt(repl):
    lines = iter(["def f():\\", "    return 1"])
    assert repl.read_prompt(lambda prompt: next(lines)) == "def f():\n    return 1"


def test_empty_line_is_ignored(repl):
    assert said(repl, "", "   ") == []


def test_ctrl_c_during_an_answer_stops_it_and_the_repl_goes_on(repl):
    def interrupted(text):
        raise KeyboardInterrupt  # what Ctrl-C raises while tokens stream

    repl.stream = interrupted
    lines = said(repl, "def main():")
    assert lines == ["--- base model (adapter disabled) ---", "", "[interrupted]"]
    assert said(repl, "/params")[0].startswith("temperature=")


def test_a_prompt_longer_than_the_context_is_one_error_line(repl):
    config = repl.generator.model.config
    saved, config.max_position_embeddings = config.max_position_embeddings, 8
    try:
        lines = said(repl, "import os " * 10)
    finally:
        config.max_position_embeddings = saved
    assert len(lines) == 1 and re.fullmatch(
        r"error: the prompt is \d+ tokens, but the model's context is 8 tokens \(max_position_embeddings\), "
        r"leaving no room for an answer; shorten the prompt",
        lines[0],
    )


def test_control_characters_a_model_generates_are_shown_escaped(repl):
    """A NUL or an escape sequence in a completion is shown as `\\x00` / `\\x1b`, never sent raw to
    the terminal; new lines and tabs stay as they are."""
    repl.stream("a\x00b\x1b[2Jc\td\ne\x7f\x9b")
    assert repl.out.getvalue() == "a\\x00b\\x1b[2Jc\td\ne\\x7f\\x9b"
