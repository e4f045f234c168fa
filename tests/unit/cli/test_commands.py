"""Hostile command-line values (issue 29, part B): each is one `error: ...` line naming the flag
or key and what to do, exit 2, never a traceback. The CLI runs in-process through `main`, the
function the console script calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.cli import main
from phased_cpt.cli.parser import build_parser, package_version
from phased_cpt.config import load_config
from phased_cpt.errors import ConfigError
from tests.conftest import bundled_texts, no_liger, tiny_run_config, write_jsonl, write_yaml
from tests.e2e.cli import assert_user_error, run_cli


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "p1.jsonl", [f"def f{i}(x):\n    return x + {i}\n" for i in range(8)])
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {name: nowhere/model}\n"
        "context: {max_tokens: 64, overlap_tokens: 0}\n"
        "phases: [{name: p1, file: p1.jsonl}]\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    return path


def one_error_line(capsys, argv: list[str]) -> str:
    """Run the CLI; assert exit 2 with exactly one `error:` line on stderr; return it."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["doctor", "C", "--gpu-memory", "nan"],
            "error: argument --gpu-memory: must be GiB from 0.01 to 16384, got 'nan'",
        ),
        (
            ["doctor", "C", "--gpu-memory", "1e308"],
            "argument --gpu-memory: must be GiB from 0.01 to 16384, got '1e308'",
        ),
        (["doctor", "C", "--gpus", "-3"], "error: argument --gpus: must be a whole number from 1 to 1048576, got '-3'"),
        (["launch", "C", "--gpus", "0"], "argument --gpus: must be a whole number from 1 to 1048576, got '0'"),
        (["plan", "C", "--bytes-per-token", "nan"], "argument --bytes-per-token: must be bytes per token from 0.1"),
        (["plan", "C", "--bytes-per-token", "1e-320"], "argument --bytes-per-token: must be bytes per token"),
        (["plan", "C", "--nodes", "1.5"], "argument --nodes: expected a whole number from 1 to 1048576, got '1.5'"),
        (["doctor", "C", "--master-port", "0"], "argument --master-port: must be a port from 1 to 65535, got '0'"),
        (["launch", "C", "--node-rank", "-1"], "argument --node-rank: must be a whole number from 0 to"),
        (["plan", "C", "--model-config", "/dev/zero"], "argument --model-config: /dev/zero is not a regular file"),
        (["plan", "C", "--model-config", "/no/such/dir"], "argument --model-config: /no/such/dir does not exist"),
    ],
)
def test_a_bad_number_or_file_flag_is_one_error_line(capsys, config, argv, expected):
    argv = [str(config) if a == "C" else a for a in argv]
    line = one_error_line(capsys, argv)
    assert expected in line
    assert line.endswith(f"(phased-cpt {argv[0]} --help shows the usage)")


def test_model_config_names_the_file_given_and_what_is_wrong(capsys, config, tmp_path):
    """Not the model of the config (`<tiny>`): the file given, and why it is not a config.json."""
    not_json = tmp_path / "data.jsonl"
    not_json.write_text('{"a": 1}\n{"b": 2}\n')
    assert "data.jsonl is not a JSON config.json" in one_error_line(
        capsys, ["plan", str(config), "--model-config", str(not_json)]
    )
    no_shape = tmp_path / "model"
    no_shape.mkdir()
    (no_shape / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 8}))
    line = one_error_line(capsys, ["plan", str(config), "--model-config", str(no_shape)])
    assert f"{no_shape / 'config.json'} does not describe a decoder's shape" in line and "num_hidden_layers" in line


def test_version_is_the_installed_distributions(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"phased-cpt {importlib.metadata.version('phased-cpt')}\n"
    assert package_version() == importlib.metadata.version("phased-cpt")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("context.max_tokens=1", "context.max_tokens (1) leaves 1 token(s) per training row"),
        ("phases.0.epochs=1e308", "phases.0.epochs: Input should be less than or equal to 1000000"),
    ],
)
def test_validate_refuses_what_plan_and_train_cannot_run(capsys, config, override, expected):
    """`validate` passed these, then `plan`/`train` failed with a ValueError/OverflowError."""
    assert main(["validate", str(config), "--set", override]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and expected in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["doctor", "launch"])
def test_a_hostfile_that_is_not_utf8_is_one_error_line(capsys, config, tmp_path, command):
    hostfile = tmp_path / "hosts"
    hostfile.write_bytes(b"node-a slots=2\nnode\xff-b slots=2\n")
    line = one_error_line(capsys, [command, str(config), "--hostfile", str(hostfile), "--node-rank", "0"])
    assert (
        line
        == f"error: {hostfile}:2: not UTF-8 text (byte 0xff); write host names in UTF-8, one 'hostname slots=N' per line"
    )


@pytest.fixture
def taken_port():
    """A port another process (here: this one) listens on."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_launch_refuses_a_master_port_in_use_with_one_line(capsys, config, taken_port):
    """Before: torchrun started and died with a traceback (EADDRINUSE)."""
    line = one_error_line(
        capsys, ["launch", str(config), "--gpus", "2", "--master-port", str(taken_port), "--skip-doctor"]
    )
    assert line.startswith(f"error: --master-port {taken_port} cannot be used on this node (Address already in use)")
    assert "choose another --master-port" in line


def test_doctor_checks_a_given_master_port_on_one_node(capsys, config, taken_port):
    from phased_cpt.doctor import run_checks
    from phased_cpt.launch import resolve_nodes

    checks = {c.name: c for c in run_checks(config, nodes=resolve_nodes(master_port=taken_port))}
    assert checks["master"].status == "fail" and f"--master-port {taken_port} cannot be used" in checks["master"].detail


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"step": 2, "phase": "p1", "kind": "train", "loss": "abc"}, "'loss' is 'abc', not a number"),
        ({"step": "2", "phase": "p1", "kind": "train", "loss": 1.0}, "'step' is '2', not a whole number"),
        ({"event": "session_start", "time": [1]}, "'time' is [1], not a number"),
        ({"step": 2, "phase": 7, "kind": "eval", "loss": 1.0}, "'phase' is 7, not a string"),
    ],
)
def test_report_on_a_metrics_record_of_the_wrong_type_is_one_error_line(capsys, tmp_path, record, expected):
    from tests.conftest import write_run

    run = write_run(tmp_path / "run", tmp_path, ["p1"], ["p1"])
    good = {"step": 1, "phase": "p1", "kind": "train", "loss": 2.0}
    (run / "metrics.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    line = one_error_line(capsys, ["report", str(run)])
    assert (
        line
        == f"error: {run / 'metrics.jsonl'}:2: {expected}; the file was edited or damaged: restore that line or delete it"
    )


def test_report_without_metrics_file_says_it_is_missing(capsys, tmp_path):
    from tests.conftest import write_run

    run = write_run(tmp_path / "run", tmp_path, ["p1"], ["p1"])
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"(no wall-time records: {run / 'metrics.jsonl'} is missing (moved or deleted?)" in out
    assert "predates" not in out
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "phase": "p1", "kind": "train", "loss": 2.0}) + "\n")
    assert main(["report", str(run)]) == 0
    assert "metrics.jsonl has none: the run predates them" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("[{path: p1.jsonl, weight: -1}]", ["phases.0.file.0.weight: Input should be greater than 0 (got -1)"]),
        ("[{path: p1.jsonl, weight: .nan}]", ["phases.0.file.0.weight: Input should be a finite number (got nan)"]),
        (
            "[{path: p1.jsonl, wieght: 1}]",
            ["phases.0.file.0.wieght: unknown key (did you mean 'weight'?); valid keys here: path, weight"],
        ),
        ("5", ["phases.0.file: expected a JSONL path or glob, or a list of them and {path, weight} items (got 5)"]),
        ("{path: p1.jsonl}", ["phases.0.file: a {path, weight} source must be an item of a list"]),
    ],
)
def test_a_bad_source_is_one_problem_without_pydantic_union_internals(config, file, expected):
    """Before: three problems, two of them 'phases.0.file.lax-or-strict[lax=union[json-or-python[...'."""

    with pytest.raises(ConfigError) as err:
        load_config(config, [f"phases.0.file={file}"])
    assert len(err.value.problems) == len(expected)
    for problem, start in zip(err.value.problems, expected, strict=True):
        assert problem.startswith(start) and "[" not in problem.split(":")[0], problem


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "training.max_steps=100000000000000000000000000000",
            "training.max_steps: Input should be less than or equal to",
        ),
        ("phases.0.max_steps=2147483648", "phases.0.max_steps: Input should be less than or equal to 2147483647"),
        ("context.max_tokens=1e400", "context.max_tokens:"),
        (
            "phases.0.lr_scale=1e308",
            "phases.0: its learning rate (learning_rate x lr_scale) is inf, not a finite positive number",
        ),
    ],
)
def test_config_numbers_that_overflow_later_are_refused_by_validate(capsys, config, override, expected):
    """Before: `validate` passed, then `plan` raised OverflowError (steps) or training got lr=inf."""
    assert main(["validate", str(config), "--set", "training.learning_rate=10", "--set", override]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@no_liger
@pytest.mark.e2e
def test_validate_refuses_liger_true_without_liger_kernel(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 4))
    config = tiny_run_config(tiny_model_dir, [("p1", data, 1)])
    config["training"]["performance"] = {"liger_kernel": True}
    result = run_cli(["validate", str(write_yaml(tmp_path / "config.yaml", config))], cwd=tmp_path)
    assert_user_error(
        result, "training.performance.liger_kernel: true needs liger-kernel", "pip install 'phased-cpt[gpu]'"
    )


def test_validate_reads_the_general_files_too(tmp_path, capsys):
    """Moved down from tests/e2e/test_learning_run.py: it needs no training."""
    p1 = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 12))
    general = write_jsonl(tmp_path / "general.jsonl", bundled_texts("phase3_pr_mastery")[12:40])
    bad = tmp_path / "general-eval.jsonl"
    bad.write_text('{"training_content": "ok"}\nnot json\n')
    cfg = {
        "model": {"name": "unused"},
        "phases": [{"name": "p1", "file": str(p1)}],
        "general": {"file": str(general)},
        "evaluation": {"general_file": str(bad)},
    }
    assert main(["validate", str(write_yaml(tmp_path / "config.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: invalid JSON" in err and f"general: 28 documents in {general}" in err
