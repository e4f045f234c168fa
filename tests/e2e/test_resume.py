"""Runs you can trust: resume after SIGKILL equals an uninterrupted run, SIGTERM saves and
tells how to resume, partial checkpoints are never resumed from, a changed config is refused."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import phased_cpt_command, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PHASES = ("phase1_foundation", "phase2_evolution")


def resume_config(model_dir: Path, work: Path) -> Path:
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 20))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 48))
    cfg = tiny_run_config(
        model_dir,
        [(PHASES[0], p1, 2), (PHASES[1], p2, 1)],
        training={
            "save_steps": 3,
            "save_total_limit": 2,
            "logging_steps": 1,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        },  # dropout: RNG state must be restored too
        data={"eval_ratio": 0.1},
        evaluation={"eval_steps": 4},
    )
    return write_yaml(work / "config.yaml", cfg)


def start_training(config: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(
        [*phased_cpt_command(), "train", str(config), *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def logged_steps(work: Path) -> list[dict]:
    runs = list((work / "outputs").glob("*/metrics.jsonl")) if (work / "outputs").exists() else []
    if not runs:
        return []
    lines = runs[0].read_text().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return [r for r in records if r.get("kind") == "train"]


def kill_at(process: subprocess.Popen, work: Path, phase: str, step_in_phase: int, sig=signal.SIGKILL) -> None:
    """Send `sig` once `phase` has logged `step_in_phase` steps."""
    deadline = time.time() + 240
    while time.time() < deadline:
        records = [r for r in logged_steps(work) if r["phase"] == phase]
        if len(records) >= step_in_phase:
            process.send_signal(sig)
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended before the kill point: {process.stderr.read()[-2000:]}")
        time.sleep(0.005)
    raise AssertionError("kill point never reached")


def final_adapter(work: Path) -> dict[str, torch.Tensor]:
    (run_dir,) = (work / "outputs").iterdir()
    return load_file(run_dir / PHASES[-1] / "adapter" / "adapter_model.safetensors")


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("reference")
    config = resume_config(tiny_model_dir, work)
    result = run_cli(["train", str(config)], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, final_adapter(work)


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_then_resume_equals_an_uninterrupted_run(reference, tiny_model_dir, tmp_path, phase):
    ref_work, ref_adapter = reference
    config = resume_config(tiny_model_dir, tmp_path)
    process = start_training(config, tmp_path)
    kill_at(process, tmp_path, phase, random.Random(phase).randint(4, 9))
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    resumed = run_cli(["train", str(config), "--resume"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert max_abs_diff(final_adapter(tmp_path), ref_adapter) <= 1e-5
    (run_dir,) = (tmp_path / "outputs").iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    ref_state = json.loads(next((ref_work / "outputs").iterdir()).joinpath("state.json").read_text())
    assert [p["steps"] for p in state["finished_phases"]] == [p["steps"] for p in ref_state["finished_phases"]]
    steps = [r["step"] for r in logged_steps(tmp_path)]
    assert steps == sorted(set(steps)), "metrics.jsonl steps must stay unique and monotonic after a resume"


def test_sigterm_saves_a_checkpoint_and_prints_the_resume_command(reference, tiny_model_dir, tmp_path):
    _, ref_adapter = reference
    config = resume_config(tiny_model_dir, tmp_path)
    process = start_training(config, tmp_path)
    kill_at(process, tmp_path, PHASES[0], 5, sig=signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    checkpoints = sorted((run_dir / PHASES[0]).glob("checkpoint-*"))
    assert checkpoints and all((c / "COMPLETE").is_file() for c in checkpoints)
    last_logged = max(r["step"] for r in logged_steps(tmp_path))
    assert int(checkpoints[-1].name.split("-")[1]) == last_logged  # saved at the step boundary it stopped at
    command = next(line for line in stderr.splitlines() if line.strip().startswith("resume with:"))
    argv = command.split("resume with:", 1)[1].split()
    assert argv[:3] == ["phased-cpt", "train", str(config)] and argv[-2:] == ["--resume", str(run_dir)]
    resumed = run_cli(argv[1:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert max_abs_diff(final_adapter(tmp_path), ref_adapter) <= 1e-5


def test_a_partial_checkpoint_is_never_resumed_from(reference, tiny_model_dir, tmp_path):
    _, ref_adapter = reference
    config = resume_config(tiny_model_dir, tmp_path)
    process = start_training(config, tmp_path)
    kill_at(process, tmp_path, PHASES[0], 7)
    process.wait(timeout=60)
    (run_dir,) = (tmp_path / "outputs").iterdir()
    complete = sorted((run_dir / PHASES[0]).glob("checkpoint-*/COMPLETE"))
    assert complete, "the kill point should come after the first checkpoint"
    # What a kill in the middle of writing the next checkpoint leaves: a directory without the
    # COMPLETE marker, with a truncated file.
    newest = complete[-1].parent
    partial = newest.with_name(f"checkpoint-{int(newest.name.split('-')[1]) + 1}")
    shutil.copytree(newest, partial)
    (partial / "COMPLETE").unlink()
    weights = partial / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    resumed = run_cli(["train", str(config), "--resume", str(run_dir)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {newest}" in resumed.stderr
    assert not partial.exists()  # removed once a newer complete checkpoint was written
    assert max_abs_diff(final_adapter(tmp_path), ref_adapter) <= 1e-5


def test_resume_with_a_changed_run_setting_is_refused_with_the_difference(reference, tmp_path):
    ref_work, _ = reference
    config = ref_work / "config.yaml"
    result = run_cli(
        ["train", str(config), "--resume", "--set", "context.max_tokens=96", "--set", "training.logging_steps=5"],
        cwd=ref_work,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "context.max_tokens: was 128, now 96" in result.stderr
    assert "logging_steps" not in result.stderr  # logging settings may change


def test_resume_refuses_changed_data(reference, tmp_path):
    ref_work, _ = reference
    data = ref_work / "data" / "p2.jsonl"
    original = data.read_bytes()
    try:
        data.write_bytes(original + b'{"training_content": "one more document"}\n')
        result = run_cli(["train", str(ref_work / "config.yaml"), "--resume"], cwd=ref_work)
    finally:
        data.write_bytes(original)
    assert result.returncode == 2
    assert "phases.phase2_evolution.file: the file's content changed" in result.stderr


def test_resume_without_a_run_is_a_clear_error(tiny_model_dir, tmp_path):
    config = resume_config(tiny_model_dir, tmp_path)
    result = run_cli(["train", str(config), "--resume"], cwd=tmp_path)
    assert result.returncode == 2 and "no run named e2e-* under outputs/" in result.stderr


def test_resume_refuses_a_swapped_adapter_of_a_finished_phase(reference, tmp_path):
    """The next phase starts from the last finished phase's adapter file: one that is not the file
    the phase saved (state.json's adapter_file_sha256) is refused, not carried on (issue 29)."""
    ref_work, _ = reference
    (run,) = (ref_work / "outputs").iterdir()
    carried = run / PHASES[1] / "adapter" / "adapter_model.safetensors"
    original = carried.read_bytes()
    try:
        shutil.copyfile(run / PHASES[0] / "adapter" / "adapter_model.safetensors", carried)
        result = run_cli(["train", str(ref_work / "config.yaml"), "--resume"], cwd=ref_work)
    finally:
        carried.write_bytes(original)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"the adapter of the finished phase {PHASES[1]}" in result.stderr
    assert "state.json adapter_file_sha256" in result.stderr
