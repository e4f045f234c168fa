"""The Modelfile: its grammar (Ollama's documented syntax), the template rule, stop tokens and
the parameters of `chat`'s defaults."""

from __future__ import annotations

import pytest

from phased_cpt.export.ollama import (
    CHATML_END,
    CHATML_GO_TEMPLATE,
    RAW_TEMPLATE,
    ollama_template,
    render_modelfile,
)
from phased_cpt.inference.params import GenerationParams
from tests.unit.export.modelfile_grammar import ModelfileError, parse_modelfile

CHATML_JINJA = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN_STYLE_JINJA = (  # ChatML, but with a default system prompt when none is given (as Qwen2.5's)
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}" + CHATML_JINJA
)


def test_the_grammar_parser_rejects_what_ollama_rejects():
    assert parse_modelfile('FROM ./m.gguf\nPARAMETER stop "</s>"\n') == [
        ("FROM", "./m.gguf"),
        ("PARAMETER", "stop </s>"),
    ]
    assert parse_modelfile('from ./m.gguf\ntemplate """a\nb"""\n')[1] == ("TEMPLATE", "a\nb")
    for bad in (
        "PARAMETER temperature 0\n",  # no FROM
        "FROM x\nPARAMETERS temperature 0\n",
        "FROM x\nPARAMETER temprature 0\n",
        "FROM x\nPARAMETER top_k 0.5\n",
        'FROM x\nTEMPLATE """never closed\n',
        'FROM x\nPARAMETER stop "unterminated\n',
    ):
        with pytest.raises(ModelfileError):
            parse_modelfile(bad)


def test_a_raw_completion_model_gets_the_prompt_as_is_and_chat_defaults(tokenizer):
    template = ollama_template(tokenizer)
    assert template.text == RAW_TEMPLATE and template.stop == [] and template.note is None
    text = render_modelfile("model-f16.gguf", template, [tokenizer.eos_token], GenerationParams())
    commands = parse_modelfile(text)
    assert commands[0] == ("FROM", "./model-f16.gguf")
    assert ("TEMPLATE", "{{ .Prompt }}") in commands
    params = dict(arg.split(" ", 1) for instruction, arg in commands if instruction == "PARAMETER")
    defaults = GenerationParams()
    assert params == {
        "stop": tokenizer.eos_token,
        "temperature": str(defaults.temperature),
        "top_p": str(defaults.top_p),
        "top_k": str(defaults.top_k),
        "repeat_penalty": str(defaults.repetition_penalty),
        "seed": str(defaults.seed),
        "num_predict": str(defaults.max_tokens),
    }


def test_a_chatml_template_becomes_the_go_chatml_template_with_its_end_token(tokenizer):
    tokenizer.chat_template = CHATML_JINJA
    template = ollama_template(tokenizer)
    assert template.text == CHATML_GO_TEMPLATE and template.stop == [CHATML_END]
    commands = parse_modelfile(render_modelfile("m.gguf", template, ["<|endoftext|>", CHATML_END], GenerationParams()))
    assert ("TEMPLATE", CHATML_GO_TEMPLATE) in commands
    assert [a for i, a in commands if a.startswith("stop")] == ["stop <|endoftext|>", f"stop {CHATML_END}"]


def test_a_template_that_is_not_exactly_chatml_is_left_to_ollama_with_a_note(tokenizer):
    tokenizer.chat_template = QWEN_STYLE_JINJA
    template = ollama_template(tokenizer)
    assert template.text is None and "not plain ChatML" in template.note
    commands = parse_modelfile(render_modelfile("m.gguf", template, ["</s>"], GenerationParams()))
    assert "TEMPLATE" not in [i for i, _ in commands]


def test_quotes_and_backslashes_in_stop_tokens_survive():
    text = render_modelfile("m.gguf", ollama_template_raw(), ['a"b\\c'], GenerationParams())
    assert ("PARAMETER", 'stop a"b\\c') in parse_modelfile(text)


def ollama_template_raw():
    from phased_cpt.export.ollama import Template

    return Template(RAW_TEMPLATE, [])
