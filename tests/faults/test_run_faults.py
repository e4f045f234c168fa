"""The run directory under faults (issue 12 items 10, 11, 17): a second process training into a
run, a torn last line in metrics.jsonl, a full disk during a checkpoint or a cache build, a
read-only output directory. The property: one clear line, nothing half-trusted, and the run can
be resumed afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.run_dir import RunDir, read_metrics
from phased_cpt.training.metrics import JsonlBackend
from tests.conftest import bundled_texts, tiny_run_config, write_jsonl, write_yaml
from tests.e2e.cli import assert_user_error, run_cli
from tests.faults.conftest import read_only, small_filesystem

pytestmark = pytest.mark.fault


def config(model_dir: Path, work: Path, output_dir: Path | None = None, cache_dir: Path | None = None) -> Path:
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 6))
    cfg = tiny_run_config(
        model_dir,
        [("phase1_foundation", p1, 1)],
        training={"save_steps": 2, "logging_steps": 1, "lora": {"r": 4, "alpha": 8}},
        context={"max_tokens": 64, "overlap_tokens": 8},
        data={"eval_ratio": 0.0, "cache_dir": str(cache_dir or work / "cache")},
        evaluation={"forgetting_matrix": False},
        tensorboard={"enabled": False},
        output={"dir": str(output_dir or work / "outputs")},
    )
    return write_yaml(work / "config.yaml", cfg)


def hold_lock(run: RunDir) -> subprocess.Popen:
    """Another process that holds the run's lock until it is killed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from phased_cpt.run_dir import RunDir; run = RunDir(pathlib.Path(sys.argv[1])); run.acquire_lock(); "
            "print('held', flush=True); sys.stdin.read()",
            str(run.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


# 12.10: one writer per run directory


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    holder = hold_lock(run)
    try:
        with pytest.raises(UserError, match=rf"is in use: another phased-cpt process \(pid {holder.pid}\)"):
            run.acquire_lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run.lock_file.read_text().strip() == str(holder.pid)  # the dead process's pid is still in the file
    run.acquire_lock()  # stale: its process is gone, so the kernel dropped the lock
    assert run.lock_file.read_text().strip() == str(os.getpid())
    run.release_lock()


def test_resuming_a_run_that_another_process_trains_is_refused(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path)
    run = RunDir(tmp_path / "outputs" / "e2e-20260101_000000")
    run.path.mkdir(parents=True)
    run.write_config("model: {name: x}\n")
    run.metrics_file.write_text('{"event": "session_start"}\n')
    holder = hold_lock(run)
    try:
        result = run_cli(["train", str(cfg), "--resume", str(run.path)], cwd=tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert_user_error(result, f"is in use: another phased-cpt process (pid {holder.pid})", "then resume")
    assert run.metrics_file.read_text() == '{"event": "session_start"}\n'  # nothing written by the refused process
    assert run.config_file.read_text() == "model: {name: x}\n"


# 12.11: a torn last line in metrics.jsonl


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"event": "phase_start"}\n{"step": 2, "lo')
    with caplog.at_level("WARNING", logger="phased_cpt.run_dir"):
        assert read_metrics(metrics) == [{"step": 1, "loss": 2.0}, {"event": "phase_start"}]
    assert f"{metrics}:3: the last line is torn" in caplog.text


@pytest.mark.parametrize("resume_step", [None, 1])
def test_the_writer_after_a_torn_line_starts_on_a_line_of_its_own(tmp_path, resume_step):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    backend = JsonlBackend(metrics, resume_step)
    backend.event("session_start", {})
    backend.sync()
    backend.close()
    assert [json.loads(line) for line in metrics.read_text().splitlines()] == [
        {"step": 1, "loss": 2.0},
        {"event": "session_start"},
    ]


# 12.17: full disk, read-only output directory


def assert_one_error_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert_user_error(result, *expected)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_run_resumes(tiny_model_dir, tmp_path):
    small = tmp_path / "small"
    with small_filesystem(small, 128 << 10):  # the run's first files fit; a checkpoint (~150 KB) does not
        cfg = config(tiny_model_dir, tmp_path, output_dir=small)
        result = run_cli(["train", str(cfg)], cwd=tmp_path)
        line = assert_one_error_line(
            result, "no space left on the device of", "the run can be resumed once there is room"
        )
        (run_path,) = small.iterdir()
        assert f"--resume {run_path}" in line
        assert not [p for p in run_path.rglob("*.png") if p.stat().st_size == 0]  # no 0-byte curves.png
        assert not [c for c in run_path.rglob("checkpoint-*") if (c / "COMPLETE").exists()]
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        resumed = run_cli(["train", str(cfg), "--resume", str(run_path)], cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert [p["name"] for p in json.loads((run_path / "state.json").read_text())["finished_phases"]] == [
            "phase1_foundation"
        ]


def test_a_full_disk_during_the_cache_build_is_one_line(tiny_model_dir, tmp_path):
    small = tmp_path / "small"
    with small_filesystem(small, 8 << 10):
        result = run_cli(["train", str(config(tiny_model_dir, tmp_path, cache_dir=small / "cache"))], cwd=tmp_path)
        assert_one_error_line(result, "no space left on the device of", "nothing was left half-written")
    assert not (tmp_path / "outputs").exists()


def test_a_read_only_output_directory_is_one_line(tiny_model_dir, tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with read_only(outputs):
        result = run_cli(["train", str(config(tiny_model_dir, tmp_path))], cwd=tmp_path)
    assert_one_error_line(result, f"{outputs}", "is not writable")
