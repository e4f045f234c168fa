"""cli/__init__.py, the `phased-cpt` command's entry point (`main`):

- it stays light where it can: `--help`, `validate` and `data from-git --help` import neither torch
  nor transformers (they are what makes a command take seconds to start);
- user mistakes and damaged inputs, run in-process through `cli.main`: exit 2 and one `error:`
  message, no traceback unless `--debug`, no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from phased_cpt.cli import main
from phased_cpt.errors import UserError
from phased_cpt.evaluation.report import build_report
from phased_cpt.modeling import load_base_model, load_tokenizer
from phased_cpt.run_dir import RunDir
from tests.conftest import bundled_texts, tiny_model_config, write_jsonl, write_run, write_yaml

HEAVY = ("torch", "transformers", "peft", "deepspeed")
PROBE = """
import json, sys
from phased_cpt.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def imported_by(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["chat", "--help"], ["data", "from-git", "--help"], ["export", "--help"]]
)
def test_help_imports_no_ml_library(argv):
    assert imported_by(*argv) == {"code": 0, "heavy": []}


def test_validate_imports_no_ml_library(tmp_path):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 3))
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  name: /nowhere/model\nphases:\n  - {{name: p1, file: {data}}}\n")
    assert imported_by("validate", str(config)) == {"code": 0, "heavy": []}


def test_validate_of_a_local_model_with_known_targets_imports_no_ml_library(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 3))
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  name: {tiny_model_dir}\nphases:\n  - {{name: p1, file: {data}}}\n")
    assert imported_by("validate", str(config)) == {"code": 0, "heavy": []}
    # a target the architecture may not have: the model is built (on the meta device) to check it
    config.write_text(config.read_text() + "training:\n  lora:\n    target_modules: [q_proj, qkv]\n")
    assert imported_by("validate", str(config))["code"] == 2


def test_future_warnings_are_silenced_for_transformers_only():
    probe = (
        "import warnings\n"
        "from phased_cpt.cli import setup_logging\n"
        "setup_logging()\n"
        "for module in ('transformers.modeling_utils', 'phased_cpt.data', 'numpy'):\n"
        "    warnings.warn_explicit('old', FutureWarning, 'f.py', 1, module=module)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stderr.count("FutureWarning: old") == 2, result.stderr


SECRET = "wandb-secret-0123456789abcdef"


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_bytes(b'{"training_content": "good"}\n{"training_content": "bad \\ud800"}\n')
    return write_yaml(tmp_path / "c.yaml", {"phases": [{"name": "p", "file": "p.jsonl"}]})


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


@pytest.mark.parametrize("state", ['{"finished_phases": [{"name": "phase1"', "[]", '{"finished_phases": 3}', ""])
def test_a_damaged_state_file_is_one_error_in_chat_and_report(finished_run, capsys, state):
    (finished_run / "state.json").write_text(state)
    for argv in (["report", str(finished_run)], ["chat", str(finished_run), "--prompt", "x"]):
        code, output = run(argv, capsys)
        assert code == 2 and "Traceback" not in output, output
        assert f"error: {finished_run / 'state.json'}: the run's state is unreadable" in output
    with pytest.raises(UserError, match="the run directory is damaged"):
        build_report(RunDir(finished_run))


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
    run_dir = RunDir(run_path)
    config = run_dir.read_config()
    config["phases"][0]["file"] = str(tmp_path / "data" / "*.jsonl")
    run_dir.write_config(yaml.safe_dump(config))
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
