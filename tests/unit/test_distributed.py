"""distributed.py: which process this is, read from the launcher's environment, and by no other module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from phased_cpt import distributed
from phased_cpt.distributed import is_local_main_process, is_main_process, world_size
from phased_cpt.run_dir import FinishedPhase, RunDir, RunState
from phased_cpt.training.metrics import open_sink
from tests.conftest import metrics_config


def test_rank_helpers_read_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not is_main_process()
    assert world_size() == 2
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


@pytest.mark.parametrize("local_rank,main", [("0", True), ("-1", True), ("1", False)])
def test_local_main_process_is_local_rank_0_or_unset(monkeypatch, local_rank, main):
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert is_local_main_process() is main
    monkeypatch.delenv("LOCAL_RANK")
    assert is_local_main_process()


def test_only_distributed_py_reads_the_rank_variables():
    """One reader of the launcher's environment: every other module asks `phased_cpt.distributed`."""
    import re

    src = Path(__file__).resolve().parents[2] / "src" / "phased_cpt"
    pattern = re.compile(r"""environ(?:\.get)?\s*[\[(]\s*["'](?:RANK|LOCAL_RANK|WORLD_SIZE)["']""")
    readers = sorted(
        str(p.relative_to(src)) for p in src.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert readers == ["distributed.py"]


def _collectives_on_rank(rank: int, port: int, results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo")
    try:
        distributed.barrier()
        gathered = distributed.all_gather_object((rank, f"host{rank}"))
        shared = distributed.broadcast_object(f"path of rank {rank}")
        summed = distributed.all_reduce(torch.tensor([rank + 1.0]), "sum").item()
        largest = distributed.all_reduce(torch.tensor([float(rank * 7)]), "max").item()
        results.put((rank, distributed.is_main_process(), gathered, shared, summed, largest))
    finally:
        torch.distributed.destroy_process_group()


def test_collectives_between_two_processes_over_gloo():
    """The collectives every module calls, in a real process group of two (gloo on CPU)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = torch.multiprocessing.get_context("fork")  # the children need nothing imported again
    results = context.SimpleQueue()
    torch.multiprocessing.start_processes(
        _collectives_on_rank, args=(port, results), nprocs=2, join=True, start_method="fork"
    )
    found = sorted(results.get() for _ in range(2))
    expected_gather = [(0, "host0"), (1, "host1")]
    assert found == [
        (0, True, expected_gather, "path of rank 0", 3.0, 7.0),
        (1, False, expected_gather, "path of rank 0", 3.0, 7.0),
    ]


def test_a_process_other_than_the_main_one_writes_no_state_config_or_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = RunDir(tmp_path)
    run.write_state(RunState(finished_phases=[FinishedPhase(name="p1", steps=3)]))
    assert run.finished_steps() == 3  # its own copy of the state, in memory
    run.write_config("a: 1\n")
    sink = open_sink(run, metrics_config(tensorboard=True, wandb=True), None)
    sink.log(1, "p1", {"loss": 1.0})
    sink.event("phase_start", phase="p1")
    sink.close()
    assert sink.backends == []
    assert list(tmp_path.iterdir()) == []


def test_one_process_collectives_return_its_own_value():
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object("x") == "x"
    distributed.barrier()
    assert distributed.all_reduce(torch.tensor([2.0]), "sum").item() == 2.0
