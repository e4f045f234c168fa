"""A tokenizer that loses text, is damaged, or has more ids than the model's embedding is refused
by validate, doctor, plan, train and chat (issue 29, severe 1), before any run directory exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phased_cpt.cli import main
from phased_cpt.config import load_config
from phased_cpt.errors import UserError
from phased_cpt.tokenizer_check import PROBE_TEXT, first_line, local_tokenizer_problems, tokenizer_problem
from tests.conftest import bundled_texts, write_jsonl, write_yaml
from tests.unit.cli.test_cli import imported_by


def without_tokenizer_json(source: Path, out: Path) -> Path:
    """The model directory as the hostile round found it: no tokenizer.json, and a
    tokenizer_config.json naming Qwen2Tokenizer (transformers 5 then builds a 1-token tokenizer)."""
    shutil.copytree(source, out)
    (out / "tokenizer.json").unlink()
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def with_embedding_rows(source: Path, out: Path, rows: int) -> Path:
    shutil.copytree(source, out)
    config = json.loads((out / "config.json").read_text())
    config["vocab_size"] = rows
    (out / "config.json").write_text(json.dumps(config))
    return out


def with_tokenizer_json(source: Path, out: Path, text: str) -> Path:
    shutil.copytree(source, out)
    (out / "tokenizer.json").write_text(text)
    return out


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", limit=12))
    return tmp_path


def write_config(project: Path, model: Path | str, **context) -> Path:
    config = {"model": {"name": str(model)}, "phases": [{"name": "p", "file": "p.jsonl"}]}
    if context:
        config["context"] = context
    return write_yaml(project / "c.yaml", config)


def test_the_rule_refuses_a_tiny_vocabulary_an_empty_encoding_and_ids_past_the_embedding():
    ids = list(range(40))
    assert tokenizer_problem("m", 512, ids, None, 512) is None
    assert "has only 1 id(s)" in tokenizer_problem("m", 1, ids, None, None)
    assert "to nothing" in tokenizer_problem("m", 512, [], None, None)
    assert "to 2 token(s)" in tokenizer_problem("m", 512, [5, 6], None, None)
    assert "lose the text" in tokenizer_problem("m", 512, [3] * 40, 3, None)  # all unknown
    assert "21 of them unknown (UNK)" in tokenizer_problem("m", 512, [3] * 21 + list(range(100, 119)), 3, None)
    assert tokenizer_problem("m", 512, [3] * 20 + list(range(100, 120)), 3, None) is None  # half unknown: still text
    assert "ids up to 511, and the model's embedding has 300 rows" in tokenizer_problem("m", 512, ids, None, 300)
    assert len(PROBE_TEXT) > 100


def test_a_loader_error_is_shown_by_its_first_non_empty_line():
    assert first_line(OSError("\n\nthe file is damaged\nmore")) == "OSError: the file is damaged"
    assert first_line(KeyError()) == "KeyError"


def test_a_directory_without_tokenizer_files_is_refused_everywhere_naming_them(project, tiny_model_dir, capsys):
    model = without_tokenizer_json(tiny_model_dir, project / "model")
    config = write_config(project, model)
    assert imported_by("validate", str(config))["code"] == 2  # validate stays light and still refuses
    for command in (["validate"], ["plan"], ["train"], ["doctor"]):
        assert main([*command, str(config)]) == 2, command
        err = "".join(capsys.readouterr())  # doctor's table is on stdout
        assert "tokenizer.json, vocab.json + merges.txt, tokenizer.model, vocab.txt" in err, (command, err)
    assert not (project / "outputs").exists()


def test_the_loaded_one_token_tokenizer_is_refused_by_load_tokenizer(project, tiny_model_dir):
    from phased_cpt.modeling import TokenizerError, load_tokenizer

    cfg, _ = load_config(write_config(project, without_tokenizer_json(tiny_model_dir, project / "model")))
    with pytest.raises(TokenizerError, match="has only 1 id"):
        load_tokenizer(cfg.model)


@pytest.mark.parametrize("text", ["{}", "[]", "not json", '{"version": "1.0"}'])
def test_a_damaged_tokenizer_json_is_one_line_in_every_command(project, tiny_model_dir, capsys, text):
    model = with_tokenizer_json(tiny_model_dir, project / "model", text)
    config = write_config(project, model)
    for command in ("validate", "plan", "train", "doctor"):
        assert main([command, str(config)]) == 2, command
        err = "".join(capsys.readouterr())  # doctor's table is on stdout
        assert "Traceback" not in err and "tokenizer" in err, (command, err)
        assert "copy" in err, (command, err)  # what to do: copy the tokenizer files again
    assert not (project / "outputs").exists()


def test_a_tokenizer_with_more_ids_than_the_embedding_stops_before_the_run_directory(project, tiny_model_dir, capsys):
    model = with_embedding_rows(tiny_model_dir, project / "model", 300)
    config = write_config(project, model)
    for command in ("validate", "train", "doctor"):
        assert main([command, str(config)]) == 2, command
        assert "the model's embedding has 300 rows" in "".join(capsys.readouterr()), command
    assert not (project / "outputs").exists()


def test_chat_refuses_the_one_token_tokenizer(project, tiny_model_dir):
    from phased_cpt.config import ModelConfig
    from phased_cpt.inference.discovery import Target
    from phased_cpt.inference.generation import load_generator

    model = without_tokenizer_json(tiny_model_dir, project / "model")
    target = Target(ModelConfig(name=str(model)), {}, "base")
    with pytest.raises(UserError, match="has only 1 id"):
        load_generator(target, None)


def test_validate_refuses_fim_without_fim_tokens_as_plan_does(project, tiny_model_dir, tiny_fim_model_dir, capsys):
    assert main(["validate", str(write_config(project, tiny_model_dir, fim_rate=0.5))]) == 2
    assert "context.fim_rate needs fill-in-the-middle tokens" in capsys.readouterr().err
    assert main(["validate", str(write_config(project, tiny_fim_model_dir, fim_rate=0.5))]) == 0


def test_a_good_tokenizer_passes_the_light_check(tiny_model_dir, tiny_fim_model_dir):
    assert local_tokenizer_problems(str(tiny_model_dir)) == []
    assert local_tokenizer_problems(str(tiny_fim_model_dir), ["context.fim_rate"]) == []
    assert local_tokenizer_problems("Qwen/Qwen2.5-0.5B") == []  # a hub id is left to loading


def test_validate_warns_about_a_missing_local_looking_model_path(project, capsys):
    """`./modles/tiny` is a typo of a local path, not a hub id: a warning (issue 29)."""
    assert main(["validate", str(write_config(project, "./modles/tiny"))]) == 0  # it may exist where training runs
    assert "warning: model.name './modles/tiny' is a local path (not a hub id) and does not exist here" in (
        capsys.readouterr().err
    )
    assert main(["validate", str(write_config(project, "Qwen/Qwen2.5-0.5B"))]) == 0  # a hub id: left to loading
    assert "warning: model.name" not in capsys.readouterr().err


def test_a_special_token_missing_from_the_vocabulary_is_refused_by_validate_as_by_plan(project, tiny_model_dir, capsys):
    """tokenizer_config.json names an eos_token the vocabulary lacks: transformers adds it as a new
    id, one past an embedding the vocabulary fills; `plan` refused it while `validate` said valid."""
    model = project / "model"
    shutil.copytree(tiny_model_dir, model)
    from tokenizers import Tokenizer

    vocabulary = Tokenizer.from_file(str(model / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    config = json.loads((model / "config.json").read_text())
    config["vocab_size"] = vocabulary
    (model / "config.json").write_text(json.dumps(config))
    assert main(["validate", str(write_config(project, model))]) == 0
    capsys.readouterr()
    settings = json.loads((model / "tokenizer_config.json").read_text())
    settings["eos_token"] = "<|not-in-the-vocabulary|>"
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    for command in ("validate", "plan"):
        assert main([command, str(write_config(project, model))]) == 2, command
        assert f"the model's embedding has {vocabulary} rows" in capsys.readouterr().err, command
    assert main(["validate", str(write_config(project, model))]) == 2
    assert "names '<|not-in-the-vocabulary|>', not in its vocabulary" in capsys.readouterr().err
