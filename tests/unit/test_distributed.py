"""Rank helpers, rank-0-only writing, and the launcher commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from phased_cpt import distributed
from phased_cpt.distributed import is_local_main_process, is_main_process, world_size
from phased_cpt.errors import UserError
from phased_cpt.launch import DEFAULT_MASTER_PORT, Nodes, choose_launcher, plan_launch, read_hostfile, resolve_nodes
from phased_cpt.run_dir import FinishedPhase, RunDir, RunState
from phased_cpt.training.metrics import open_sink
from phased_cpt.training.processes import main_process_run_dir
from tests.conftest import metrics_config

# --- ranks and rank-0-only writing ------------------------------------------------------------


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


def test_single_process_creates_the_run_directory(tmp_path):
    run = main_process_run_dir(RunDir.create, tmp_path / "outputs", "r")
    assert run.path.is_dir()


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


# --- launch ----------------------------------------------------------------------------------


def test_hostfile_is_read_per_host(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode1 slots=8\nnode2 slots=8  # second\n\n")
    assert read_hostfile(hostfile) == {"node1": 8, "node2": 8}


def test_bad_hostfile_line_names_file_and_line(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 8\n")
    with pytest.raises(UserError, match=r"hostfile:2: expected 'hostname slots=N'"):
        read_hostfile(hostfile)


def test_torchrun_command_starts_n_train_processes(tmp_path):
    plan = plan_launch(
        tmp_path / "c.yaml", ["--set", "a.b=1"], gpus=4, launcher="torchrun", nodes=Nodes(master_port=1234)
    )
    command = plan.command
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "4"
    assert command[-6:] == ["-m", "phased_cpt", "train", str(tmp_path / "c.yaml"), "--set", "a.b=1"]


def test_deepspeed_command_with_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    plan = plan_launch(tmp_path / "c.yaml", [], gpus=8, launcher="deepspeed", nodes=resolve_nodes(hostfile))
    command = plan.command
    assert Path(command[0]).name == "deepspeed"
    assert command[command.index("--hostfile") + 1] == str(hostfile)
    assert "--no_ssh" not in command  # started once, on the first node: DeepSpeed reaches the others by ssh
    assert command[command.index("--master_port") + 1] == str(DEFAULT_MASTER_PORT)  # the same on every node
    assert command[command.index("--num_gpus") + 1] == "8"
    assert command[-4:] == ["--module", "phased_cpt", "train", str(tmp_path / "c.yaml")]


def test_cpu_processes_get_one_thread_each(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_launch(tmp_path / "c.yaml", [], gpus=2, launcher="deepspeed", on_gpu=False)
    assert plan.env["OMP_NUM_THREADS"] == "1"
    assert plan.env["LOCAL_SIZE"] == "2"


def test_hostfile_with_torchrun_is_refused(tmp_path):
    hostfile = tmp_path / "h"
    hostfile.write_text("node1 slots=2\nnode2 slots=2\n")
    with pytest.raises(
        UserError, match="--hostfile needs --launcher deepspeed; for torchrun, .* --nodes N --node-rank K"
    ):
        plan_launch(tmp_path / "c.yaml", [], gpus=2, launcher="torchrun", nodes=resolve_nodes(hostfile))


def test_zero_processes_is_refused(tmp_path):
    with pytest.raises(UserError, match="--gpus 0"):
        plan_launch(tmp_path / "c.yaml", [], gpus=0, launcher="torchrun")


def test_launch_and_doctor_arguments():
    from phased_cpt.cli.parser import build_parser

    args = build_parser().parse_args(
        [
            "launch",
            "c.yaml",
            "--gpus",
            "8",
            "--hostfile",
            "hosts",
            "--launcher",
            "deepspeed",
            "--set",
            "a=1",
            "--resume",
        ]
    )
    assert (args.gpus, str(args.hostfile), args.launcher, args.overrides, args.resume) == (
        8,
        "hosts",
        "deepspeed",
        ["a=1"],
        "latest",
    )
    for command in ("launch", "doctor"):
        args = build_parser().parse_args(
            [command, "c.yaml", "--nodes", "2", "--node-rank", "1", "--master-addr", "n0", "--master-port", "29600"]
        )
        assert (args.nodes, args.node_rank, args.master_addr, args.master_port) == (2, 1, "n0", 29600)
    assert build_parser().parse_args(["doctor", "c.yaml", "--json"]).json is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["launch", "c.yaml", "--launcher", "mpirun"])


# --- several nodes --------------------------------------------------------------------------------


def test_a_hostfile_chooses_deepspeeds_launcher_and_says_so(tmp_path):
    """issue 19.2: `launch config.yaml --hostfile hostfile --gpus 8` on the default config
    (deepspeed: null) uses DeepSpeed's launcher, the only one that reads a hostfile."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("gpu-node-1 slots=8\ngpu-node-2 slots=8\n")
    launcher, reason = choose_launcher(None, None, resolve_nodes(hostfile))
    assert launcher == "deepspeed" and "--hostfile" in reason and "plain DDP" in reason
    assert choose_launcher(None, "zero3", Nodes()) == ("deepspeed", "the config sets deepspeed: zero3")
    assert choose_launcher(None, None, Nodes())[0] == "torchrun"
    assert choose_launcher("torchrun", "zero3", Nodes()) == ("torchrun", "--launcher")


def test_torchrun_on_several_nodes_gets_nnodes_node_rank_and_master(tmp_path):
    nodes = resolve_nodes(count=2, node_rank=1, master_addr="10.0.0.1", master_port=29600)
    command = plan_launch(tmp_path / "c.yaml", [], gpus=8, launcher="torchrun", nodes=nodes).command
    flags = dict(zip(command[3:-4:2], command[4:-4:2]))
    assert flags == {
        "--nproc_per_node": "8",
        "--nnodes": "2",
        "--node_rank": "1",
        "--master_addr": "10.0.0.1",
        "--master_port": "29600",
    }


def test_deepspeed_on_several_nodes_without_ssh_gets_a_hostfile_of_the_job_shape(tmp_path):
    nodes = resolve_nodes(count=2, node_rank=1, master_addr="10.0.0.1")
    command = plan_launch(tmp_path / "c.yaml", [], gpus=4, launcher="deepspeed", nodes=nodes).command
    assert "--no_ssh" in command and command[command.index("--node_rank") + 1] == "1"
    assert command[command.index("--master_addr") + 1] == "10.0.0.1"
    assert command[command.index("--master_port") + 1] == str(DEFAULT_MASTER_PORT)
    hostfile = Path(command[command.index("--hostfile") + 1])
    assert read_hostfile(hostfile) == {"node-0": 4, "node-1": 4}


def test_a_hostfile_with_node_rank_runs_on_each_node_without_ssh(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("gpu-node-1 slots=8\ngpu-node-2 slots=8\n")
    nodes = resolve_nodes(hostfile, node_rank=1)
    assert (nodes.count, nodes.master_addr) == (2, "gpu-node-1")  # node 0 is the first host
    command = plan_launch(tmp_path / "c.yaml", [], gpus=8, launcher="deepspeed", nodes=nodes).command
    assert command[command.index("--hostfile") + 1] == str(hostfile) and "--no_ssh" in command


def test_a_one_host_hostfile_runs_locally_without_ssh(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    command = plan_launch(tmp_path / "c.yaml", [], gpus=2, launcher="deepspeed", nodes=resolve_nodes(hostfile)).command
    assert "--no_ssh" in command and command[command.index("--node_rank") + 1] == "0"
    assert command[command.index("--master_addr") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    "arguments,message",
    [
        (dict(count=2, master_addr="a"), "--nodes 2 needs --node-rank K"),
        (dict(count=2, node_rank=0), "--nodes 2 needs --master-addr"),
        (dict(count=2, node_rank=2, master_addr="a"), "--node-rank 2: must be between 0 and 1"),
        (dict(count=0), "--nodes 0: at least one node"),
        (dict(master_port=70000), "--master-port 70000"),
    ],
)
def test_node_arguments_are_checked_together(arguments, message):
    with pytest.raises(UserError, match=message):
        resolve_nodes(**arguments)


def test_nodes_must_match_the_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("a slots=1\nb slots=1\n")
    with pytest.raises(UserError, match="--nodes 3 but .* lists 2 host"):
        resolve_nodes(hostfile, count=3)


# --- the same job on every node (issue 16) --------------------------------------------------------


def test_identity_differences_name_the_key_the_file_and_the_package():
    from phased_cpt.training.processes import JobIdentity, identity_differences

    reference = JobIdentity(
        "n0", {"training": {"learning_rate": 5e-4}, "data": {"cache_dir": "/a"}}, {"p1": "aa" * 32}, {"torch": "2.13.0"}
    )
    same_but_cache = JobIdentity(
        "n1", {"training": {"learning_rate": 5e-4}, "data": {"cache_dir": "/b"}}, {"p1": "aa" * 32}, {"torch": "2.13.0"}
    )
    assert identity_differences(reference, same_but_cache) == []
    assert reference.config_sha256 == same_but_cache.config_sha256
    other = JobIdentity(
        "n1", {"training": {"learning_rate": 1e-3}, "data": {"cache_dir": "/a"}}, {"p1": "bb" * 32}, {"torch": "2.12.0"}
    )
    assert identity_differences(reference, other) == [
        "training.learning_rate: 0.0005 on rank 0, 0.001 here",
        "phases.p1: the file's content differs (sha256 bbbbbbbbbbbb here, aaaaaaaaaaaa on rank 0)",
        "torch: 2.13.0 on rank 0, 2.12.0 here",
    ]


def test_rank0_waits_for_a_late_rank_part_and_reports_one_that_never_comes(tmp_path, monkeypatch):
    import threading

    from phased_cpt.training import checkpoints

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "rng_state_0.pth").write_bytes(b"r")
    assert checkpoints.wait_for_rank_parts(checkpoint, 2, timeout_s=0.05) == ["rng_state_1.pth"]
    late = threading.Timer(0.2, (checkpoint / "rng_state_1.pth").write_bytes, [b"r"])  # another node's NFS lag
    late.start()
    assert checkpoints.wait_for_rank_parts(checkpoint, 2, timeout_s=30) == []
    late.join()
