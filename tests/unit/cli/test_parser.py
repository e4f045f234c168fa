"""The `chat` and `merge` arguments: help texts, parameter flags, argument errors."""

from __future__ import annotations

import pytest

from phased_cpt.cli.commands import chat_output_dir, params_from_args
from phased_cpt.cli.parser import build_parser
from phased_cpt.errors import UserError
from phased_cpt.inference.params import GenerationParams


def test_chat_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat", "--help"])
    text = capsys.readouterr().out
    for option in (
        "RUN_DIR|ADAPTER_DIR",
        "--phase",
        "--adapter",
        "--list",
        "--chat-template",
        "--prompt ",
        "--prompts",
        "--out",
        "--temperature",
        "--top-p",
        "--top-k",
        "--max-tokens",
        "--repetition-penalty",
        "--seed",
        "--base-model",
        "--output-dir",
        "--config",
    ):
        assert option in text, option


def test_merge_help_and_required_out(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["merge", "--help"])
    text = capsys.readouterr().out
    for option in ("RUN_DIR|ADAPTER_DIR", "--phase", "--out", "--force", "--base-model", "--dtype"):
        assert option in text, option
    with pytest.raises(SystemExit):
        build_parser().parse_args(["merge", "run"])
    assert "--out" in capsys.readouterr().err


def test_generation_flags_become_parameters():
    args = build_parser().parse_args(["chat", "--temperature", "0.5", "--max-tokens", "9", "--top-k", "0"])
    assert params_from_args(args) == GenerationParams(temperature=0.5, max_tokens=9, top_k=0)
    assert params_from_args(build_parser().parse_args(["chat"])) == GenerationParams()


def test_a_bad_flag_value_names_the_flag():
    args = build_parser().parse_args(["chat", "--repetition-penalty", "0"])
    with pytest.raises(UserError, match=r"^--repetition-penalty: repetition_penalty must be a number from 0.01 to 100"):
        params_from_args(args)
    huge_seed = build_parser().parse_args(["chat", "--seed", str(10**26)])
    with pytest.raises(UserError, match=r"^--seed: seed must be an integer from 0 to 4294967295"):
        params_from_args(huge_seed)


def test_output_dir_default_flag_and_config(tmp_path):
    from pathlib import Path

    assert chat_output_dir(build_parser().parse_args(["chat"])) == Path("outputs")
    assert chat_output_dir(build_parser().parse_args(["chat", "--output-dir", "runs"])) == Path("runs")
    config = tmp_path / "c.yaml"
    config.write_text("output:\n  dir: /data/runs\nphases:\n  - {name: p1, file: missing.jsonl}\n")
    assert chat_output_dir(build_parser().parse_args(["chat", "--config", str(config)])) == Path("/data/runs")
