"""Generation parameters, stop reasons, streaming, and base answers that are exactly the base model's."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from phased_cpt.inference.generation import Completion, DeltaStreamer, Generator, generation_config
from phased_cpt.inference.params import GenerationParams, ParamError, set_param
from phased_cpt.modeling import load_base_model, load_tokenizer
from tests.conftest import tiny_model_config

PROMPT = "def main():\n    "


@pytest.fixture(scope="module")
def generator(tiny_model_dir, random_adapters):
    cfg = tiny_model_config(tiny_model_dir)
    return Generator(load_base_model(cfg), load_tokenizer(cfg), random_adapters, active="phase2")


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


def test_greedy_by_default_sampling_above_zero_temperature():
    greedy = generation_config(GenerationParams(), [0], 0)
    assert greedy.do_sample is False and greedy.max_new_tokens == 128
    sampled = generation_config(GenerationParams(temperature=0.7, top_p=0.9, top_k=5), [0, 3], None)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.top_k) == (True, 0.7, 0.9, 5)
    assert sampled.eos_token_id == [0, 3] and sampled.pad_token_id == 0


def test_stats_line_is_parseable():
    completion = Completion(text="x", token_ids=[5] * 32, prompt_tokens=12, seconds=0.5, stop="max_tokens")
    line = completion.stats("ft")
    assert line == "[ft] prompt 12 tok | generated 32 tok | 0.50 s | 64.0 tok/s | stop: max_tokens"
    assert re.fullmatch(
        r"\[(\w+)\] prompt (\d+) tok \| generated (\d+) tok \| ([\d.]+) s \| ([\d.]+) tok/s \| stop: (\w+)", line
    )
    assert completion.to_json()["generated_tokens"] == 32


def test_streamer_emits_whole_characters_once(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_config(tiny_model_dir))
    text = "héllo wörld → ok"
    ids = tokenizer(text)["input_ids"]
    pieces: list[str] = []
    streamer = DeltaStreamer(tokenizer, pieces.append)
    streamer.put(torch.tensor([[1, 2]]))  # the prompt: not emitted
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_base_answers_are_exactly_the_base_model_and_ft_differs(generator, tiny_model_dir):
    """The contamination check: LoRA layers are injected in place, so only disable_adapter()
    gives the base model back; compare with a base model loaded separately, without peft."""
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.tensor([generator.encode(PROMPT)])
    with torch.inference_mode():
        reference_logits = plain(input_ids=ids).logits[0]
        reference_ids = plain.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=16,
            eos_token_id=None,
            pad_token_id=0,
            use_cache=True,
        )[0, ids.shape[1] :]
    params = GenerationParams(max_tokens=16)
    for phase in ("phase2", "phase1"):  # also after a second adapter is loaded next to the first
        generator.use_phase(phase)
        assert torch.equal(generator.prompt_logits(PROMPT, adapter=False), reference_logits)
        assert not torch.allclose(generator.prompt_logits(PROMPT, adapter=True), reference_logits, atol=1e-3)
        base = generator.generate(PROMPT, params, adapter=False)
        if base.stop == "max_tokens":
            assert base.token_ids == reference_ids.tolist()
        else:
            assert base.token_ids == reference_ids.tolist()[: len(base.token_ids)]
    assert generator.generate(PROMPT, params, adapter=True).token_ids != base.token_ids


def test_phases_switch_without_reloading_the_base(generator):
    generator.use_phase("phase1")
    base_weight = generator.model.get_base_model().lm_head.weight
    first = generator.prompt_logits(PROMPT, adapter=True)
    generator.use_phase("phase2")
    second = generator.prompt_logits(PROMPT, adapter=True)
    assert generator.model.get_base_model().lm_head.weight is base_weight
    assert not torch.allclose(first, second, atol=1e-3)
    generator.use_phase("phase1")
    assert torch.equal(generator.prompt_logits(PROMPT, adapter=True), first)
    with pytest.raises(ParamError, match="unknown phase 'phase9'; one of: phase1, phase2"):
        generator.use_phase("phase9")


def test_seeded_sampling_is_reproducible_and_max_tokens_is_the_stop(generator):
    params = GenerationParams(temperature=1.0, max_tokens=12, seed=7)
    first = generator.generate(PROMPT, params, adapter=True)
    assert generator.generate(PROMPT, params, adapter=True).token_ids == first.token_ids
    other = generator.generate(PROMPT, set_param(params, "seed", "8"), adapter=True)
    assert other.token_ids != first.token_ids
    if first.stop == "max_tokens":
        assert first.generated_tokens == 12 and first.token_ids[-1] not in generator.eos_ids


def test_streamed_text_is_the_answer(generator):
    pieces: list[str] = []
    completion = generator.generate(PROMPT, GenerationParams(max_tokens=10), adapter=True, on_text=pieces.append)
    assert "".join(pieces) == completion.text


def test_chat_template_needs_one(tiny_model_dir, random_adapters):
    from phased_cpt.errors import UserError

    cfg = tiny_model_config(tiny_model_dir)
    with pytest.raises(UserError, match="no chat template"):
        Generator(load_base_model(cfg), load_tokenizer(cfg), random_adapters, "phase1", chat_template=True)


def test_chat_template_wraps_the_prompt(tiny_model_dir, random_adapters):
    cfg = tiny_model_config(tiny_model_dir)
    tokenizer = load_tokenizer(cfg)
    tokenizer.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<bot>"
    generator = Generator(load_base_model(cfg), tokenizer, random_adapters, "phase1", chat_template=True)
    assert tokenizer.decode(generator.encode("hi")) == "<user>hi</user><bot>"


@pytest.fixture
def short_context(generator):
    """The generator's model with a 24-token context (the tiny model's real one is 65,536)."""
    config = generator.model.config
    saved = config.max_position_embeddings
    config.max_position_embeddings = 24
    yield generator
    config.max_position_embeddings = saved


def test_a_prompt_that_fills_the_context_is_refused_before_generating(short_context):
    prompt = "def main():\n    return 1\n" * 8
    tokens = len(short_context.encode(prompt))
    assert tokens >= 24
    with pytest.raises(ParamError, match=rf"^the prompt is {tokens} tokens, but the model's context is 24 tokens"):
        short_context.generate(prompt, GenerationParams(max_tokens=4), adapter=True)


def test_an_answer_stops_where_the_context_ends(short_context):
    prompt = "def main():\n    return"
    room = 24 - len(short_context.encode(prompt))
    completion = short_context.generate(prompt, GenerationParams(max_tokens=64, repetition_penalty=1.3), adapter=True)
    assert completion.generated_tokens <= room
    if completion.stop != "eos":
        assert (completion.stop, completion.generated_tokens) == ("context", room)
