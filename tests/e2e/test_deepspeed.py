"""Two CPU processes over gloo, through `phased-cpt launch`, with DeepSpeed ZeRO-2 and ZeRO-3:
complete adapters, phase carry-over, equality with a single-process run, rank-0-only writing,
and a ZeRO-3 run resumed after SIGKILL.

The single-process reference sees the same rows in the same order: with 2 ranks x micro-batch 2,
step k trains on rows 4k..4k+3 of the Trainer's seeded permutation (rank r takes micro-batch
2k+r), exactly the rows of step k with one process and micro-batch 4. Every run stays inside
its first epoch: at an epoch's end a short last batch is padded with repeated rows on the second
rank, which one process does not do.

The bound: train losses agree to ~1e-6, but Adam's first step in a phase moves each weight by
about +-lr whatever the gradient's size, so a gradient element near zero whose sign the
reduction order flips can move a weight by up to a step. Measured (benchmarks/RESULTS.md):
max abs difference 9e-5 at lr 1e-3 after two 3-step phases (ZeRO-3), ~1e-5 in phase 1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from phased_cpt.modeling import fingerprint_tensors
from tests.e2e.cli import REPO, phased_cpt_command, run_cli, write_yaml
from tests.e2e.conftest import PHASES, TOLERANCE, config_data, only_run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed"),
]
CPU_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def work(deepspeed_work) -> tuple[Path, dict[str, Path]]:
    return deepspeed_work


@pytest.fixture(scope="module", params=["zero2", "zero3"])
def ds_run(request, work, tiny_model_dir):
    root, files = work
    cwd = root / request.param
    cwd.mkdir()
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files) | {"deepspeed": request.param})
    result = run_cli(["launch", str(config), "--gpus", "2"], cwd=cwd, env=CPU_ENV)
    assert result.returncode == 0, result.stderr[-5000:]
    return request.param, only_run(cwd / "outputs"), result


def adapter(run_dir: Path, phase: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / phase / "adapter" / "adapter_model.safetensors")


def events(run_dir: Path) -> dict[tuple[str, str], dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {(r["event"], r.get("phase")): r for r in map(json.loads, lines) if "event" in r}


def train_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_launch_checks_then_runs_two_deepspeed_ranks(ds_run):
    stage, run_dir, result = ds_run
    assert "checks: 0 failed" in result.stderr  # the doctor table ran first
    assert "--num_gpus 2" in result.stderr and "--module phased_cpt train" in result.stderr
    checkpoint = run_dir / "p1" / "checkpoint-2"
    (step_dir,) = checkpoint.glob("global_step*")
    optimizer_shards = sorted(p.name for p in step_dir.glob("*optim_states.pt"))
    assert len(optimizer_shards) == 2 and "rank_1" in optimizer_shards[1]  # each rank holds its ZeRO partition
    assert yaml.safe_load((run_dir / "config.resolved.yaml").read_text())["deepspeed"] == stage


def test_no_shared_memory_is_left_behind(ds_run):
    """DeepSpeed's CPU all-reduce creates a 66 MB /dev/shm file per rank and never removes it: 150
    runs filled this 24 GiB machine's RAM and the kernel killed the next compile. The run removes
    the names once every rank has mapped them (`remove_shared_memory_name`)."""
    _, _, result = ds_run
    output = result.stdout + result.stderr
    assert re.search(r"DeepSpeed \S*shm_comm\S* built successfully", output), output[-3000:]  # the op was used
    port = re.search(r"--master_port (\d+)", result.stderr)[1]
    assert sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*")) == []


def test_adapters_are_complete_and_load_with_peft(ds_run, single_run, tiny_model_dir):
    _, run_dir, _ = ds_run
    for phase in PHASES:
        saved, reference = adapter(run_dir, phase), adapter(single_run, phase)
        assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in reference.items()}
        assert all(v.numel() > 0 for v in saved.values())  # never ZeRO-3's 0-size placeholders
        model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir / phase / "adapter"
        )
        loaded = dict(model.named_parameters())
        for name, tensor in saved.items():
            assert torch.equal(loaded[name.replace(".weight", ".default.weight")], tensor)


def test_phase2_starts_from_the_adapter_phase1_saved(ds_run):
    _, run_dir, _ = ds_run
    recorded = events(run_dir)
    saved_p1 = fingerprint_tensors(adapter(run_dir, "p1"))
    assert recorded[("phase_end", "p1")]["adapter_fingerprint"] == saved_p1
    assert recorded[("phase_start", "p2")]["adapter_fingerprint"] == saved_p1
    assert recorded[("phase_end", "p2")]["adapter_fingerprint"] == fingerprint_tensors(adapter(run_dir, "p2"))
    assert saved_p1 != recorded[("phase_end", "p2")]["adapter_fingerprint"]


def test_final_adapter_matches_the_single_process_run(ds_run, single_run):
    stage, run_dir, _ = ds_run
    for phase in PHASES:
        saved, reference = adapter(run_dir, phase), adapter(single_run, phase)
        diff = max((saved[k] - reference[k]).abs().max().item() for k in reference)
        print(f"{stage} {phase}: max abs diff vs single process {diff:.2e}")
        assert diff <= TOLERANCE
    ours, theirs = train_losses(run_dir), train_losses(single_run)
    assert len(ours) == len(theirs) == 6
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-4


def test_evaluation_after_each_phase_matches_the_single_process_run(ds_run, single_run):
    """The forgetting matrix is computed by both ranks (each on half the rows, ZeRO-3 gathering
    weights layer by layer) and written by rank 0."""
    _, run_dir, _ = ds_run
    ours = json.loads((run_dir / "eval" / "forgetting.json").read_text())
    theirs = json.loads((single_run / "eval" / "forgetting.json").read_text())
    assert ours["columns"] == theirs["columns"] == list(PHASES)
    assert len(ours["perplexity"]) == len(theirs["perplexity"]) == 3  # base, after p1, after p2
    for row_ours, row_theirs in zip(ours["perplexity"], theirs["perplexity"]):
        assert row_ours == pytest.approx(row_theirs, rel=1e-4)


def test_only_rank0_writes_the_run_directory(ds_run):
    _, run_dir, _ = ds_run
    assert len(list(run_dir.parent.iterdir())) == 1  # one run directory, not one per rank
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r.get("kind") == "train"]
    assert steps == sorted(set(steps)) == list(range(1, 7))  # each step logged once
    assert len(list((run_dir / "tensorboard").iterdir())) == 1
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["name"] for p in state["finished_phases"]] == list(PHASES)


def test_launch_without_deepspeed_runs_ddp_through_torchrun(work, tiny_model_dir, single_run):
    root, files = work
    cwd = root / "ddp"
    cwd.mkdir()
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files))
    result = run_cli(["launch", str(config), "--gpus", "2"], cwd=cwd, env=CPU_ENV)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "torch.distributed.run --nproc_per_node 2" in result.stderr
    run_dir = only_run(cwd / "outputs")
    final, expected = adapter(run_dir, "p2"), adapter(single_run, "p2")
    assert max((final[k] - expected[k]).abs().max().item() for k in expected) <= TOLERANCE


def test_train_phased_sh_is_launch():
    result = subprocess.run(
        [str(REPO / "train_phased.sh"), "run.yaml", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},  # the interpreter with this project's requirements
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: phased-cpt launch")


# --- resume after SIGKILL --------------------------------------------------------------------


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, "the run ended before it wrote a checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {timeout_s}s"
        time.sleep(0.05)


def test_zero3_run_resumes_after_sigkill(work, tiny_model_dir, single_run):
    root, files = work
    cwd = root / "resume"
    cwd.mkdir()
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files) | {"deepspeed": "zero3"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **CPU_ENV}
    process = subprocess.Popen(
        [*phased_cpt_command(), "launch", str(config), "--gpus", "2"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(cwd / "outputs", process, 120)
        run_dir = only_run(cwd / "outputs")
        wait_for(run_dir / "p1" / "checkpoint-2" / "COMPLETE", process, 120)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both ranks, after a checkpoint
        process.communicate()
    killed_after = [p["name"] for p in json.loads((run_dir / "state.json").read_text())["finished_phases"]]
    assert killed_after != list(PHASES), "the run finished before it was killed"
    print(f"killed with finished phases {killed_after}")

    resumed = run_cli(["launch", str(config), "--gpus", "2", "--resume", str(run_dir)], cwd=cwd, env=CPU_ENV)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["name"] for p in state["finished_phases"]] == list(PHASES)
    if not killed_after:  # killed inside phase 1: it continued from a ZeRO-3 checkpoint
        start = events(run_dir)[("phase_start", "p1")]
        assert Path(start["resumed_from"]).name.startswith("checkpoint-")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r.get("kind") == "train"]
    assert steps == list(range(1, 7))  # every step once: nothing lost, nothing logged twice
    for phase in PHASES:
        final, expected = adapter(run_dir, phase), adapter(single_run, phase)
        assert all(v.numel() > 0 for v in final.values())
        diff = max((final[k] - expected[k]).abs().max().item() for k in expected)
        print(f"zero3 resumed after SIGKILL, {phase}: max abs diff vs single process {diff:.2e}")
        assert diff <= TOLERANCE


# --- LoRA variants under ZeRO-3: phase carry-over of DoRA magnitudes, rsLoRA, trained embeddings ---

LORA_VARIANTS = {
    "dora-rslora-embeddings-full": {"use_dora": True, "use_rslora": True, "embeddings": "full"},
    "embeddings-lora": {"embeddings": "lora"},
}


@pytest.fixture(scope="module", params=list(LORA_VARIANTS))
def variant_runs(request, work, tiny_model_dir) -> tuple[Path, Path]:
    """(single process, ZeRO-3 with 2 ranks) runs of one LoRA variant."""
    root, files = work
    runs = []
    for name, extra, micro_batch in (("single", {}, 4), ("zero3", {"deepspeed": "zero3"}, 2)):
        cwd = root / f"{request.param}-{name}"
        cwd.mkdir()
        data = config_data(tiny_model_dir, files, micro_batch_size=micro_batch)
        data["training"]["lora"].update(LORA_VARIANTS[request.param])
        data["evaluation"] = {
            "completion": {"samples": 3, "max_new_tokens": 4},
            "humaneval": {"problems": 0},
            "batch_size": 2,
        }  # generation, ZeRO-3 too
        config = write_yaml(cwd / "run.yaml", data | extra)
        result = run_cli(
            ["launch", str(config), "--gpus", "2"] if extra else ["train", str(config)], cwd=cwd, env=CPU_ENV
        )
        assert result.returncode == 0, result.stderr[-5000:]
        runs.append(only_run(cwd / "outputs"))
    return runs[0], runs[1]


def adapter_own(run_dir: Path, phase: str) -> dict[str, torch.Tensor]:
    """The saved adapter without the base embedding/LM head weights PEFT adds when they carry LoRA
    (`modeling.adapter_state`; ZeRO-3's save leaves them out)."""
    return {k: v for k, v in adapter(run_dir, phase).items() if ".base_layer." not in k}


def test_a_lora_variant_carries_over_zero3_phases_like_one_process(variant_runs):
    single, zero3 = variant_runs
    recorded = events(zero3)
    saved_p1 = fingerprint_tensors(adapter_own(zero3, "p1"))
    assert (
        recorded[("phase_start", "p2")]["adapter_fingerprint"]
        == saved_p1
        == recorded[("phase_end", "p1")]["adapter_fingerprint"]
    )
    for phase in PHASES:
        saved, reference = adapter_own(zero3, phase), adapter_own(single, phase)
        assert saved.keys() == reference.keys() and all(v.numel() > 0 for v in saved.values())
        diff = max((saved[k] - reference[k]).abs().max().item() for k in reference)
        print(f"{zero3.parent.parent.name} {phase}: max abs diff vs single process {diff:.2e}")
        assert diff <= TOLERANCE
    matrix = json.loads((zero3 / "eval" / "forgetting.json").read_text())
    assert [row["after"] for row in matrix["rows"]] == ["base", *PHASES]
    assert all(
        cell["samples"] == 3 and 0 <= cell["exact_match"] <= 1
        for row in matrix["rows"]
        for cell in row["results"].values()
    )  # greedy completion ran on both ranks in step
