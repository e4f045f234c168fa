"""`phased-cpt doctor` (the model shape behind its memory and disk checks: test_model_shape.py; the
estimate itself: test_memory.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from phased_cpt.cli import main
from phased_cpt.doctor import FAIL, PASS, WARN, checkpoint_bytes, has_failures, run_checks
from phased_cpt.model_shape import adapter_parameters, model_shape
from tests.conftest import bundled_texts, tiny_run_config, write_jsonl, write_yaml

FAKE_KEY = "fakekey-doctor-0123456789abcdef"

# --- the checks ------------------------------------------------------------------------------


@pytest.fixture
def run_config(tmp_path, tiny_model_dir) -> Path:
    p1 = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 4))
    return write_yaml(tmp_path / "run.yaml", tiny_run_config(tiny_model_dir, [("p1", p1, 1)]) | {"deepspeed": "zero3"})


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only report")
def test_cpu_machine_reports_no_gpu_and_how_to_run_on_cpu(run_config):
    checks = by_name(run_checks(run_config))
    assert checks["gpus"].status == WARN
    assert "no GPU" in checks["gpus"].detail
    assert "phased-cpt launch CONFIG --gpus N" in checks["gpus"].detail
    assert checks["nccl"].status == PASS and "gloo" in checks["nccl"].detail
    assert checks["data p1"].status == PASS and checks["data p1"].detail.startswith("4 documents")
    assert checks["tokenizer"].status == PASS
    assert checks["deepspeed plan"].detail.startswith("zero3")
    assert not [c for c in checks.values() if c.status == FAIL]


def test_missing_dataset_file_fails_clearly(run_config, tmp_path):
    checks = by_name(run_checks(run_config, [f"phases.0.file={tmp_path / 'missing.jsonl'}"]))
    assert checks["data p1"].status == FAIL
    assert checks["data p1"].detail == f"missing file: {tmp_path / 'missing.jsonl'}"


def test_bad_record_fails_with_file_and_line(run_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"training_content": "ok"}\n{not json\n')
    checks = by_name(run_checks(run_config, [f"phases.0.file={bad}"]))
    assert checks["data p1"].status == FAIL
    assert f"{bad}:2" in checks["data p1"].detail


def test_tokenizer_without_model_fails(run_config, tmp_path):
    checks = by_name(run_checks(run_config, [f"model.name={tmp_path / 'nowhere'}"]))
    assert checks["tokenizer"].status == FAIL


def test_wandb_key_is_reported_but_never_shown(run_config, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    checks = run_checks(run_config, ["wandb.enabled=true"])
    wandb = by_name(checks)["wandb"]
    assert wandb.status == PASS and "API key set" in wandb.detail
    assert FAKE_KEY not in json.dumps([c.detail for c in checks])


def test_wandb_without_key_warns_offline(run_config, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb = by_name(run_checks(run_config, ["wandb.enabled=true"]))["wandb"]
    assert wandb.status == WARN and "offline" in wandb.detail


def test_checkpoint_size_is_lora_sized(run_config):
    from phased_cpt.config import load_config

    cfg, _ = load_config(run_config)
    shape = model_shape(cfg.model)
    lora = adapter_parameters(shape, cfg.training.lora).total
    # save_total_limit 2 (+1 being written) checkpoints of 16 bytes per LoRA parameter + the adapter
    assert checkpoint_bytes(cfg) == 1 * (3 * lora * 16 + lora * 4)


def test_doctor_cli_json_and_exit_code(run_config, tmp_path, capsys):
    assert main(["doctor", str(run_config), "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in checks} <= {PASS, WARN}
    assert main(["doctor", str(run_config), "--json", "--set", f"phases.0.file={tmp_path / 'gone.jsonl'}"]) == 2
    captured = capsys.readouterr()
    failed = [c["name"] for c in json.loads(captured.out) if c["status"] == FAIL]
    assert failed == ["data p1"]
    assert "pre-flight checks failed: data p1" in captured.err


# --- memory: honest without a GPU, checked against --gpu-memory -------------------------------------

QWEN25_7B_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "model_configs" / "qwen2.5-7b"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_without_a_gpu_memory_is_unknown_with_what_it_needs(run_config):
    memory = by_name(run_checks(run_config, ["model.dtype=bfloat16"], model_config=QWEN25_7B_DIR))["memory"]
    assert memory.status == WARN
    assert memory.detail.startswith("unknown (no GPU here): needs ~")
    assert "bfloat16" in memory.detail and "--gpu-memory" in memory.detail
    assert not has_failures([memory])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_the_dtype_comes_from_the_config_not_from_this_cpu(run_config):
    def needs(dtype: str) -> float:
        memory = by_name(run_checks(run_config, [f"model.dtype={dtype}"], model_config=QWEN25_7B_DIR))["memory"]
        return float(memory.detail.split("needs ~")[1].split(" GiB")[0])

    assert needs("auto") == needs("bfloat16")  # auto: the bf16 of the GPU the run will have
    assert needs("float32") > needs("bfloat16") + 14  # 7.6B weights at 4 bytes instead of 2


def test_gpu_memory_fails_what_does_not_fit_and_passes_what_does(run_config):
    seven_b = [
        "context.max_tokens=4096",
        "context.overlap_tokens=0",
        "model.dtype=bfloat16",
        "training.micro_batch_size=1",
    ]
    small = by_name(run_checks(run_config, seven_b, gpu_memory_gib=80, model_config=QWEN25_7B_DIR))["memory"]
    assert small.status == PASS and "fits the 80 GiB of --gpu-memory" in small.detail
    large = by_name(run_checks(run_config, seven_b, gpu_memory_gib=16, model_config=QWEN25_7B_DIR))["memory"]
    assert large.status == FAIL and "more than the 16 GiB of --gpu-memory: try" in large.detail


def test_doctor_cli_gpu_memory_flag_exits_2_when_the_model_does_not_fit(run_config, capsys):
    args = ["doctor", str(run_config), "--json", "--gpu-memory", "8", "--model-config", str(QWEN25_7B_DIR)]
    assert main(args) == 2
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["memory"]["status"] == FAIL


# --- several nodes (issue 16) -------------------------------------------------------------------


def test_node_0_checks_its_master_port_is_free_and_the_others_that_it_answers():
    import socket

    from phased_cpt.doctor import check_master
    from phased_cpt.launch import resolve_nodes

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        taken = check_master(resolve_nodes(count=2, node_rank=0, master_addr="127.0.0.1", master_port=port))
        assert taken.status == FAIL and f"port {port} cannot be used" in taken.detail
        answers = check_master(resolve_nodes(count=2, node_rank=1, master_addr="127.0.0.1", master_port=port))
        assert answers.status == PASS and f"127.0.0.1:{port}" in answers.detail
    free = check_master(resolve_nodes(count=2, node_rank=0, master_addr="127.0.0.1", master_port=port))
    assert free.status == PASS
    not_started = check_master(resolve_nodes(count=2, node_rank=1, master_addr="127.0.0.1", master_port=port))
    assert not_started.status == WARN and "node 0 is not started" in not_started.detail
    unknown = check_master(resolve_nodes(count=2, node_rank=1, master_addr="no-such-host.invalid", master_port=port))
    assert unknown.status == FAIL and "cannot resolve" in unknown.detail


def test_doctor_on_several_nodes_prints_the_job_identity_that_changes_with_the_config(run_config):
    from phased_cpt.launch import resolve_nodes

    nodes = resolve_nodes(count=2, node_rank=1, master_addr="127.0.0.1", master_port=1)
    identity = by_name(run_checks(run_config, processes=1, nodes=nodes))["job identity"]
    assert identity.status == PASS and "(node 1 of 2, host " in identity.detail
    other_cache = by_name(run_checks(run_config, ["data.cache_dir=/elsewhere"], nodes=nodes))["job identity"]
    other_lr = by_name(run_checks(run_config, ["training.learning_rate=0.123"], nodes=nodes))["job identity"]
    assert other_cache.detail == identity.detail  # a node-local cache may have its own path
    assert other_lr.detail.split(",")[0] != identity.detail.split(",")[0]
    assert "job identity" not in by_name(run_checks(run_config))  # one node: nothing to compare


def test_the_memory_of_several_nodes_is_for_every_process_of_the_job(run_config):
    """ZeRO-3 partitions over 2 nodes x 1 process: the estimate is the one of 2 processes."""
    from phased_cpt.launch import resolve_nodes

    nodes = resolve_nodes(count=2, node_rank=1, master_addr="127.0.0.1", master_port=1)
    on_two_nodes = by_name(run_checks(run_config, processes=1, nodes=nodes))["memory"].detail
    assert "2 process(es)" in on_two_nodes
    assert on_two_nodes == by_name(run_checks(run_config, processes=2))["memory"].detail
