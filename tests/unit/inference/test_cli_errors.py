"""What the command line shows for user mistakes and damaged inputs, run in-process through
`cli.main`: exit 2 and one `error:` message, no traceback unless `--debug`, no secret."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from phased_cpt.cli import main
from phased_cpt.errors import UserError
from phased_cpt.evaluation.report import build_report
from phased_cpt.inference.discovery import resolve_target
from phased_cpt.modeling import load_base_model, load_tokenizer
from phased_cpt.run_dir import RunDir
from tests.conftest import tiny_model_config, write_run

SECRET = "wandb-secret-0123456789abcdef"


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_bytes(b'{"training_content": "good"}\n{"training_content": "bad \\ud800"}\n')
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"phases": [{"name": "p", "file": "p.jsonl"}]}))
    return path


def test_validate_reports_a_lone_surrogate_as_a_bad_record(config, capsys):
    code, output = run(["validate", str(config)], capsys)
    assert code == 2 and "Traceback" not in output
    assert f"error: 1 bad line(s) in {config.parent / 'p.jsonl'}" in output
    assert f"{config.parent / 'p.jsonl'}:2: field 'training_content' contains a lone surrogate \\ud800" in output


def test_debug_adds_the_traceback(config, capsys):
    code, output = run(["validate", str(config), "--debug"], capsys)
    assert code == 2 and "Traceback (most recent call last)" in output and "DataError" in output
    assert run(["--debug", "validate", str(config)], capsys)[0] == 2


def test_a_key_on_the_command_line_is_refused_before_anything_starts(config, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    for assignment in (f"wandb.api_key={SECRET}", f"wandb.entity={SECRET}"):
        code, output = run(["train", str(config), "--set", "wandb.enabled=true", "--set", assignment], capsys)
        assert code == 2 and "a secret on the command line" in output
        assert SECRET not in output
    assert not (config.parent / "outputs").exists()


def test_a_secret_in_the_wrong_key_is_masked(config, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    data = yaml.safe_load(config.read_text()) | {"wandb": {"enabled": "${WANDB_API_KEY}"}}
    config.write_text(yaml.safe_dump(data))
    code, output = run(["validate", str(config)], capsys)
    assert code == 2 and SECRET not in output and "<value of $WANDB_API_KEY>" in output


@pytest.fixture
def damaged_run(tmp_path, tiny_model_dir, random_adapters):
    return write_run(tmp_path / "run", tiny_model_dir, ["phase1", "phase2"], ["phase1", "phase2"], random_adapters)


@pytest.mark.parametrize("state", ['{"finished_phases": [{"name": "phase1"', "[]", '{"finished_phases": 3}', ""])
def test_a_damaged_state_file_is_one_error_in_chat_and_report(damaged_run, capsys, state):
    (damaged_run / "state.json").write_text(state)
    for argv in (["report", str(damaged_run)], ["chat", str(damaged_run), "--prompt", "x"]):
        code, output = run(argv, capsys)
        assert code == 2 and "Traceback" not in output, output
        assert f"error: {damaged_run / 'state.json'}: the run's state is unreadable" in output
    with pytest.raises(UserError, match="the run directory is damaged"):
        build_report(RunDir(damaged_run))


def test_a_damaged_forgetting_matrix_does_not_stop_the_report(damaged_run):
    (damaged_run / "eval").mkdir()
    (damaged_run / "eval" / "forgetting.json").write_text('{"columns": ')
    report = build_report(RunDir(damaged_run))
    assert "(not shown: " in report and "forgetting.json is damaged" in report


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "config"])
def test_a_truncated_or_garbage_adapter_is_one_error(tiny_model_dir, random_adapters, tmp_path, damage, capsys):
    import shutil

    from phased_cpt.inference.generation import Generator
    from phased_cpt.inference.params import ParamError

    adapters = {name: shutil.copytree(path, tmp_path / name) for name, path in random_adapters.items()}
    weights = adapters["phase2"] / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        weights.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        (adapters["phase2"] / "adapter_config.json").write_text("{not json")
    cfg = tiny_model_config(tiny_model_dir)
    with pytest.raises(
        UserError, match=f"cannot load the LoRA adapter in {adapters['phase2']}: .*truncated or damaged"
    ):
        Generator(load_base_model(cfg), load_tokenizer(cfg), adapters, active="phase2")
    generator = Generator(load_base_model(cfg), load_tokenizer(cfg), adapters, active="phase1")
    with pytest.raises(ParamError, match="cannot load the LoRA adapter"):  # /phase in the REPL: one error line
        generator.use_phase("phase2")
    code, output = run(
        ["chat", "--adapter", str(adapters["phase2"]), "--base-model", str(tiny_model_dir), "--prompt", "x"], capsys
    )
    assert code == 2 and "Traceback" not in output
    assert ("adapter_config.json: cannot read it" if damage == "config" else "cannot load the LoRA adapter") in output


def test_state_file_damage_is_reported_by_discovery(damaged_run):
    (damaged_run / "state.json").write_text(json.dumps({"finished_phases": [{"steps": 3}]}))
    with pytest.raises(UserError, match="the run's state is unreadable"):
        resolve_target(damaged_run)


def test_validate_refuses_an_eval_file_with_the_training_files_content(config, capsys):
    (config.parent / "p.jsonl").write_text('{"training_content": "one"}\n{"training_content": "two"}\n')
    (config.parent / "held.jsonl").write_bytes((config.parent / "p.jsonl").read_bytes())
    config.write_text(yaml.safe_dump({"phases": [{"name": "p", "file": "p.jsonl", "eval_file": "held.jsonl"}]}))
    code, output = run(["validate", str(config)], capsys)
    assert code == 2 and "the eval_file has the same content as the training file" in output


def test_chat_out_never_overwrites_the_runs_data_and_needs_force_for_an_existing_file(
    tmp_path, tiny_model_dir, random_adapters, capsys, monkeypatch
):
    """`chat --out FILE` (issue 29): the run's own training data, its files and the prompts file
    are refused always; any other existing file needs --force. Nothing is loaded or written first."""
    from phased_cpt.inference.batch import check_results_file

    monkeypatch.chdir(tmp_path)
    run_path = write_run(tmp_path / "outputs" / "r", tiny_model_dir, ["p1"], ["p1"], adapters=random_adapters)
    data = tmp_path / "data" / "p1.jsonl"
    data.parent.mkdir()
    data.write_text('{"training_content": "x = 1"}\n')
    config = yaml.safe_load((run_path / "config.resolved.yaml").read_text())
    config["phases"][0]["file"] = str(tmp_path / "data" / "*.jsonl")
    (run_path / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def f():\n")
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my results\n")
    cases = {
        str(data): "is the run's data",
        str(tmp_path / "data" / ".." / "data" / "p1.jsonl"): "is the run's data",
        str(run_path / "state.json"): "is inside the run directory",
        str(prompts): "is the prompts file",
        str(mine): "exists; name a new file, or pass --force",
    }
    for out, message in cases.items():
        for force in ([], ["--force"]) if "exists" not in message else ([],):
            code, output = run(["chat", str(run_path), "--prompts", str(prompts), "--out", out, *force], capsys)
            assert code == 2 and message in output and "Traceback" not in output, (out, output)
    assert data.read_text() == '{"training_content": "x = 1"}\n' and mine.read_text() == "my results\n"
    check_results_file(mine, True, {"the run's data": [data]})  # --force lets another file be replaced
