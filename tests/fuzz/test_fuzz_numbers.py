"""Hostile numbers (nan, inf, 1e308, 1e-320, negatives, huge integers, YAML's .nan) in every
numeric command-line flag and every numeric config key (hypothesis, derandomized).

The property: the command ends with exit 0, or exit 2 and the project's own error (one `error:`
line; a config's problems one line each), never a traceback; and what `validate` accepts, `plan`
runs (a number that passes validation and fails later was the defect class of issue 29). The flags
and keys are enumerated from the parser and the schema themselves, so a new one is fuzzed too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import types
import typing
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from phased_cpt.cli import main
from phased_cpt.cli.parser import build_parser
from phased_cpt.config.schema import RunConfig
from phased_cpt.inference.params import PARAMS
from tests.conftest import bundled_texts, write_jsonl
from tests.fuzz.test_fuzz_inputs import fuzz

pytestmark = pytest.mark.fuzz

HOSTILE = [
    "nan", "-nan", "NaN", ".nan", "inf", "-inf", "Infinity", ".inf", "-.inf", "1e308", "-1e308", "1e309", "1e400",
    "1e-320", "-1e-320", "5e-324", "1e-40", "-1", "0", "-0", "0.0", "1", "2", "2147483647", "2147483648",
    "9223372036854775808", "9" * 40, "1.5", "0x10", "1_000", "1e3", "", " ", "true", "null", "[1]", "{a: 1}",
]  # fmt: skip
CORE = [".nan", "nan", ".inf", "-.inf", "1e308", "-1", "0", "1", "1e-320", "9" * 30]
"""Tried on every flag and key (hypothesis `example`s), beyond the values drawn at random."""


def with_core_examples(test):
    for text in CORE:
        test = example(text=text)(test)
    return test


hostile_numbers = st.one_of(
    st.sampled_from(HOSTILE),
    st.floats().map(repr),
    st.integers(-(2**70), 2**70).map(str),
)


# --- command-line flags -----------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) of every subcommand, nested ones (`data from-git`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommands(sub, (*prefix, name))


def numeric_flags() -> list[tuple[tuple[str, ...], str, argparse.Action]]:
    """Every flag that takes a number: the argparse number types, and chat's generation parameters."""
    found = []
    for words, sub in subcommands(build_parser()):
        for action in sub._actions:
            if action.option_strings and (hasattr(action.type, "bounds") or action.dest in PARAMS):
                found.append((words, action.option_strings[0], action))
    return found


NUMERIC_FLAGS = numeric_flags()
POSITIONALS = {
    "data": ["repo", "--out", "out"],
    "chat": [],
    "merge": ["run", "--out", "merged"],
    "export": ["run", "--to", "vllm", "--out", "exported"],
}
"""What each command needs besides the flag to reach argument checking ('config.yaml' by default)."""


def test_every_number_flag_goes_through_a_bounded_number_type():
    """No flag takes a bare `int`/`float` (nan, 1e308 and -3 then reach the command); and the
    enumeration below sees the flags of the issue."""
    for words, sub in subcommands(build_parser()):
        for action in sub._actions:
            assert action.type not in (int, float), (
                f"{' '.join(words)} {action.option_strings}: use cli.parser.number_type"
            )
    names = {(words[0], flag) for words, flag, _ in NUMERIC_FLAGS}
    expected = {
        ("doctor", "--gpu-memory"),
        ("doctor", "--gpus"),
        ("plan", "--bytes-per-token"),
        ("launch", "--master-port"),
    }
    expected |= {
        ("chat", "--temperature"),
        ("data", "--max-file-bytes"),
        ("plan", "--nodes"),
        ("launch", "--node-rank"),
    }
    assert expected <= names


@pytest.mark.parametrize("choice", NUMERIC_FLAGS, ids=lambda c: f"{' '.join(c[0])} {c[1]}")
@fuzz(60)
@with_core_examples
@given(text=hostile_numbers)
def test_a_numeric_flag_is_a_bounded_finite_number_or_one_error_line(choice, text):
    from phased_cpt.cli.commands import params_from_args
    from phased_cpt.errors import UserError

    words, flag, action = choice
    argv = [*words, *POSITIONALS.get(words[0], ["config.yaml"]), f"{flag}={text}"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exit:
        lines = err.getvalue().splitlines()
        assert exit.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: argument {flag}"), lines
        return
    if action.dest in PARAMS:  # parsed by `set_param`, the REPL's /set parser, before the model loads
        try:
            value = getattr(params_from_args(args), action.dest)
        except UserError as error:
            assert str(error).startswith(f"{flag}: ") and "\n" not in str(error)
            return
    else:
        value = getattr(args, action.dest)
        kind, low, high = action.type.bounds
        assert isinstance(value, kind) and low <= value <= high
    assert math.isfinite(value)


# --- config number keys -----------------------------------------------------------------------


def is_number(annotation) -> bool:
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return is_number(args[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return not any(isinstance(a, type) and issubclass(a, BaseModel) for a in args) and any(
            is_number(a) for a in args if a is not type(None)
        )
    return False


def sub_models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in sub_models(a)]


def number_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every numeric config key, as a `--set` path (`phases.1.epochs`: the second phase, which may
    replay; a source weight as `phases.0.file.weight`)."""
    keys = []
    for name, field in model.model_fields.items():
        if is_number(field.annotation):
            keys.append(prefix + name)
        for sub in sub_models(field.annotation):
            keys += number_keys(sub, f"{prefix}{name}.1." if name == "phases" else f"{prefix}{name}.")
    return keys


NUMBER_KEYS = number_keys()


@pytest.fixture(scope="module")
def fuzz_config(tiny_fim_model_dir, tmp_path_factory) -> Path:
    """Two phases on the tiny model with FIM tokens (so context.fim_rate can be planned), a general source."""
    work = tmp_path_factory.mktemp("numbers")
    write_jsonl(work / "p1.jsonl", bundled_texts("phase1_foundation", 6))
    write_jsonl(work / "p2.jsonl", bundled_texts("phase2_evolution", 6))
    write_jsonl(work / "g.jsonl", bundled_texts("phase3_pr_mastery", 6))
    path = work / "c.yaml"
    path.write_text(
        f"model: {{name: {tiny_fim_model_dir}, dtype: float32}}\n"
        "context: {max_tokens: 64, overlap_tokens: 8}\n"
        "phases: [{name: p1, file: p1.jsonl}, {name: p2, file: p2.jsonl}]\n"
        "general: {file: g.jsonl}\n"
        f"output: {{dir: {work / 'out'}}}\n"
        f"data: {{cache_dir: {work / 'cache'}}}\n"
    )
    return path


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_the_enumeration_sees_the_config_keys_of_the_issue():
    assert {"context.max_tokens", "phases.1.epochs", "phases.1.file.weight", "training.lora.r"} <= set(NUMBER_KEYS)
    assert len(NUMBER_KEYS) >= 35


@pytest.mark.parametrize("key", NUMBER_KEYS)
@fuzz(6)
@with_core_examples
@given(text=hostile_numbers)
def test_a_config_number_is_refused_by_validate_or_planned(fuzz_config, key, text):
    if key == "phases.1.file.weight":
        overrides = [f"phases.1.file=[{{path: p2.jsonl, weight: {text or 'null'}}}, {{path: p1.jsonl, weight: 1}}]"]
    else:
        overrides = [f"{key}={text}"]
    sets = [arg for override in overrides for arg in ("--set", override)]
    code, err = run(["validate", str(fuzz_config), *sets])
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        lines = err.splitlines()
        heading = next(i for i, line in enumerate(lines) if line.startswith("error: "))
        assert all(line.startswith("  - ") for line in lines[heading + 1 :]), lines  # one line per problem
        return
    code, err = run(["plan", str(fuzz_config), *sets])  # what validate accepts, plan runs
    assert code == 0, err[-2000:]


COMMAND_FLAGS = {
    command: [(flag, action) for words, flag, action in NUMERIC_FLAGS if words == (command,)]
    for command in ("plan", "doctor")
}


@fuzz(30)
@given(data=st.data(), command=st.sampled_from(sorted(COMMAND_FLAGS)))
def test_plan_and_doctor_run_or_refuse_with_one_line_on_any_numeric_flags(fuzz_config, data, command):
    """The whole command, not only its parser: values the types accept (1048576 GPUs on 1048576
    nodes, 0.01 GiB, 0.1 bytes per token) go through the estimates without an exception."""
    flags = data.draw(
        st.lists(st.sampled_from(COMMAND_FLAGS[command]), min_size=1, max_size=3, unique_by=lambda f: f[0])
    )
    argv = [command, str(fuzz_config)]
    for flag, action in flags:
        if flag == "--node-rank":
            argv += ["--master-addr", "127.0.0.1"]
        argv.append(f"{flag}={data.draw(hostile_numbers if data.draw(st.booleans()) else in_bounds(action))}")
    try:
        code, err = run(argv)
    except SystemExit as exit:  # argparse: one line (checked for every flag above)
        code, err = exit.code, ""
    assert code in (0, 2), err[-2000:]
    if code == 2 and err:
        assert err.splitlines()[-1].startswith("error: ")


def in_bounds(action: argparse.Action) -> st.SearchStrategy[str]:
    """Values the flag's type accepts, extremes first."""
    kind, low, high = action.type.bounds
    values = st.integers(low, high) if kind is int else st.floats(low, high)
    return st.one_of(st.sampled_from([low, high]), values).map(str)
