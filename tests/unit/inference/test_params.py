"""docs/architecture.md's "where a change goes" for a generation parameter, made executable: a new
field of `GenerationParams` (with its `Param`) reaches every place that uses one. Each test takes
the parameters from the table, so a parameter that one place misses fails here, with its name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from transformers import GenerationConfig

from phased_cpt.cli.commands import params_from_args
from phased_cpt.cli.parser import build_parser
from phased_cpt.export.ollama import RAW_TEMPLATE, Template, render_modelfile
from phased_cpt.inference.generation import generation_config
from phased_cpt.inference.params import PARAMS, GenerationParams, ParamError, flag, set_param
from phased_cpt.inference.repl import HELP
from tests.unit.export.modelfile_grammar import PARAMETERS as OLLAMA_PARAMETERS
from tests.unit.export.modelfile_grammar import parse_modelfile

ROOT = Path(__file__).resolve().parents[3]
APPLIED_BY_THE_GENERATOR = {"seed": "Generator.generate seeds torch with it before every answer"}
"""Parameters that are no field of transformers' GenerationConfig: each needs its own code in
`inference/generation.py`, so a new one must be named here too."""


def other_value(name: str) -> str:
    """A value of `name` that its check accepts and that is not its default."""
    default = getattr(GenerationParams(), name)
    for text in ("0.5", "2", "3", "1", "0", "0.9"):
        try:
            if getattr(set_param(GenerationParams(), name, text), name) != default:
                return text
        except ParamError:
            continue
    raise AssertionError(f"no test value for {name}: add one to other_value")


def changed(name: str) -> GenerationParams:
    return set_param(GenerationParams(temperature=0.7), name, other_value(name))


def test_every_generation_config_name_is_one_transformers_knows():
    """`Param.generation_config` names the attribute `generation.generation_config` sets: a typo
    there would be an attribute transformers ignores."""
    from transformers import GenerationConfig

    known = GenerationConfig().to_dict()
    assert [p.generation_config for p in PARAMS.values() if p.generation_config not in known] == [None]


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_parameter_is_a_flag_of_chat(name, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat", "--help"])
    assert flag(name) in capsys.readouterr().out
    args = build_parser().parse_args(["chat", "--temperature", "0.7", flag(name), other_value(name)])
    assert params_from_args(args) == changed(name)


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_parameter_is_set_in_the_repl_and_named_by_its_help(name):
    set_line = next(line for line in HELP.splitlines() if line.strip().startswith("/set"))
    assert name in set_line.split()


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_parameter_reaches_generation(name):
    spec = PARAMS[name]
    if spec.generation_config is None:
        assert name in APPLIED_BY_THE_GENERATOR
        return
    assert hasattr(GenerationConfig(), spec.generation_config), f"GenerationConfig has no {spec.generation_config}"
    params = changed(name)
    assert getattr(generation_config(params, [0], 0), spec.generation_config) == getattr(params, name)
    greedy = generation_config(dataclasses.replace(params, temperature=0.0), [0], 0)
    if not spec.sampling_only:
        assert getattr(greedy, spec.generation_config) == getattr(params, name)


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_parameter_is_written_to_ollamas_modelfile(name):
    spec = PARAMS[name]
    assert spec.ollama in OLLAMA_PARAMETERS, f"{name}: {spec.ollama} is no Modelfile PARAMETER"
    params = changed(name)
    commands = parse_modelfile(render_modelfile("m.gguf", Template(RAW_TEMPLATE, [], None), ["</s>"], params))
    written = dict(arg.split(" ", 1) for instruction, arg in commands if instruction == "PARAMETER")
    assert OLLAMA_PARAMETERS[spec.ollama](written[spec.ollama]) == getattr(params, name)


def docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_parameter_is_documented(name):
    """The REPL's command table names it in the `/set` row, and its flag is documented."""
    rows = [line for line in docs_text().splitlines() if line.startswith("| `/set NAME VALUE`")]
    assert rows and all(f"`{name}`" in row for row in rows), f"docs: the /set row does not name {name}"
    assert re.search(rf"`{flag(name)}`", docs_text()), f"docs: {flag(name)} is not documented"
