"""Reading --prompts files, and the JSONL written by --out."""

from __future__ import annotations

import json

import pytest

from phased_cpt.errors import DataError, UserError
from phased_cpt.inference.batch import compare_prompts, read_prompts
from phased_cpt.inference.generation import Generator
from phased_cpt.inference.params import GenerationParams
from phased_cpt.modeling import load_base_model, load_tokenizer
from tests.conftest import tiny_model_config


def test_text_file_one_prompt_per_non_empty_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("def main():\n\n  import os\n")
    assert read_prompts(path) == ["def main():", "  import os"]


def test_jsonl_file_allows_multi_line_prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"prompt": "def f():\n    return"}) + "\n\n" + json.dumps({"prompt": "x", "id": 2}) + "\n"
    )
    assert read_prompts(path) == ["def f():\n    return", "x"]


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ok"}\n{bad\n{"text": "x"}\n')
    with pytest.raises(DataError) as err:
        read_prompts(path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}:2: invalid JSON")
    assert lines[1] == f'{path}:3: expected an object with a non-empty string field "prompt"'


def test_empty_or_missing_file(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="no prompt in the file"):
        read_prompts(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="cannot read it"):
        read_prompts(tmp_path / "missing.txt")


def test_results_hold_prompt_both_answers_stats_and_parameters(tiny_model_dir, random_adapters, tmp_path):
    import io

    cfg = tiny_model_config(tiny_model_dir)
    generator = Generator(load_base_model(cfg), load_tokenizer(cfg), random_adapters, active="phase1")
    params = GenerationParams(max_tokens=6, seed=3)
    out = io.StringIO()
    results = tmp_path / "sub" / "results.jsonl"
    compare_prompts(generator, ["def main():", "import os"], params, out, results)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["def main():", "import os"]
    for record in records:
        assert record["phase"] == "phase1" and record["adapter"] == str(random_adapters["phase1"])
        assert record["params"] == {
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 50,
            "max_tokens": 6,
            "repetition_penalty": 1.0,
            "seed": 3,
        }
        for side, adapter in (("base", False), ("ft", True)):
            again = generator.generate(record["prompt"], params, adapter=adapter)
            assert record[side]["text"] == again.text
            assert record[side]["generated_tokens"] == again.generated_tokens <= 6
            assert record[side]["prompt_tokens"] == again.prompt_tokens
            assert record[side]["stop"] in ("eos", "max_tokens")
        assert record["base"]["text"] != record["ft"]["text"]
    assert out.getvalue().count("[base] prompt") == 2 and out.getvalue().count("[ft] prompt") == 2


def test_a_prompt_longer_than_the_context_stops_everything_before_the_first_answer(tiny_model_dir, random_adapters):
    import io

    cfg = tiny_model_config(tiny_model_dir)
    generator = Generator(load_base_model(cfg), load_tokenizer(cfg), random_adapters, active="phase1")
    generator.model.config.max_position_embeddings = 16
    out = io.StringIO()
    with pytest.raises(UserError, match=r"^prompt 2/2: the prompt is \d+ tokens, but the model's context is 16 tokens"):
        compare_prompts(generator, ["def main():", "import os\n" * 20], GenerationParams(max_tokens=4), out, None)
    assert out.getvalue() == ""  # nothing was generated
