"""inference/params.py: generation parameters a user sets, each checked with the allowed values in a
one-line error, and text that cannot be tokenized."""

from __future__ import annotations

import pytest

from phased_cpt.inference.params import GenerationParams, ParamError, set_param, text_problem


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("temperature", "0.7", 0.7),
        ("temperature", "0", 0.0),
        ("top_p", "1", 1.0),
        ("top_k", "0", 0),
        ("max_tokens", "32", 32),
        ("repetition_penalty", "1.1", 1.1),
        ("seed", "3", 3),
        ("seed", "4294967295", 2**32 - 1),
    ],
)
def test_set_param_accepts(name, text, value):
    params = set_param(GenerationParams(), name, text)
    assert getattr(params, name) == value
    assert set_param(GenerationParams(), name, text) == params  # pure: the input is unchanged


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("temperature", "-1", "temperature must be 0 (greedy) or a finite number >= 0.001"),
        ("temperature", "nan", "temperature must be"),
        ("temperature", "1e400", "temperature must be 0 (greedy) or a finite number >= 0.001, got '1e400'"),
        ("temperature", "hot", "temperature must be 0 (greedy) or a finite number >= 0.001, got 'hot'"),
        ("temperature", "1e-40", "temperature must be 0 (greedy) or a finite number >= 0.001, got '1e-40'"),
        ("temperature", "1e-320", "temperature must be 0 (greedy) or a finite number >= 0.001, got '1e-320'"),
        ("repetition_penalty", "1e-320", "repetition_penalty must be a number from 0.01 to 100 (1: off)"),
        ("repetition_penalty", "1e308", "repetition_penalty must be a number from 0.01 to 100 (1: off)"),
        ("top_p", "0", "top_p must be a number in (0, 1]"),
        ("top_k", "1.5", "top_k must be an integer from 0 to 2147483647"),
        ("top_k", "99999999999999999999999", "top_k must be an integer from 0"),
        ("max_tokens", "0", "max_tokens must be an integer from 1 to 2147483647"),
        ("repetition_penalty", "0", "repetition_penalty must be a number from 0.01 to 100 (1: off)"),
        ("repetition_penalty", "inf", "repetition_penalty must be a number from 0.01 to 100 (1: off)"),
        ("seed", "1e26", "seed must be an integer from 0 to 4294967295, got '1e26'"),
        ("seed", "100000000000000000000000000", "seed must be an integer from 0 to 4294967295"),
        ("seed", "-1", "seed must be an integer from 0 to 4294967295"),
        ("temprature", "1", "unknown parameter 'temprature'; one of: temperature, top_p"),
    ],
)
def test_set_param_rejects_with_one_line(name, text, message):
    with pytest.raises(ParamError) as err:
        set_param(GenerationParams(), name, text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_describe_names_every_parameter_with_its_value():
    params = GenerationParams(temperature=0.7, seed=3)
    assert params.describe() == "temperature=0.7 top_p=1.0 top_k=50 max_tokens=128 repetition_penalty=1.0 seed=3"


def test_text_that_is_not_utf8_is_one_problem_naming_the_byte_or_code_point():
    assert text_problem("hello, wörld") is None
    assert text_problem("ab\udc9fc") == (
        "the prompt is not valid UTF-8 text (byte 0x9f at character 3); set the terminal or file to UTF-8"
    )
    assert text_problem("\ud800", what="line 2") == (
        "line 2 is not valid UTF-8 text (code point U+D800 at character 1); set the terminal or file to UTF-8"
    )
