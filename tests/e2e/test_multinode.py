"""Two nodes simulated on one machine: two `phased-cpt launch --nodes 2 --node-rank K` invocations
on localhost, one CPU rank each over gloo, both in one working directory (the shared output
directory). For ZeRO-2 and ZeRO-3, with one data cache shared by both nodes and with one cache
per node, through torchrun and through DeepSpeed's launcher (no ssh):

- each cache directory is prepared once, by the lowest rank that sees it (its `prepared_by.json`);
- rank 0 alone writes the run's files (one `session_start` record naming rank 0 per session, each
  step logged once, one TensorBoard event file per session, one W&B run), and every rank writes
  its own checkpoint part;
- the adapters equal the single-process run's within the 2-rank bound (conftest.TOLERANCE);
- a node killed with SIGKILL (its launcher and its rank) during a checkpoint save stops the
  other, and both resume from the last complete checkpoint, never the one the node died in;
- a node started with another config stops both with the difference named.

The cells cover the four stage x layout pairs once each, with the launchers spread over them
(CI time); the one-node tests of either launcher are in test_deepspeed.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phased_cpt.launch import free_port
from tests.e2e.cli import phased_cpt_command, run_cli, write_yaml
from tests.e2e.conftest import PHASES, TOLERANCE, config_data, only_run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed"),
]
NODES = ("a", "b")
NODE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Cell:
    stage: str
    layout: str  # "shared": one cache for both nodes; "node-local": one per node
    launcher: str
    hostfile: bool = False  # DeepSpeed's launcher from a user's hostfile (else --nodes 2)
    doctor: bool = False
    wandb: bool = False  # W&B on (offline): one W&B run for both nodes
    kill: bool = False  # SIGKILL node b after the first complete checkpoint, then resume both

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.layout}-{self.launcher}" + ("-kill" if self.kill else "")


CELLS = [
    Cell("zero2", "shared", "torchrun", doctor=True),
    Cell("zero2", "node-local", "deepspeed", wandb=True),
    Cell("zero3", "shared", "deepspeed", hostfile=True),
    Cell("zero3", "node-local", "torchrun", kill=True),
]


def node_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def cache_dir(cwd: Path, cell: Cell, node: str) -> Path:
    return cwd / ("cache-shared" if cell.layout == "shared" else f"cache-node-{node}")


def start_node(cwd: Path, config: Path, cell: Cell, node_rank: int, port: int, *extra: str) -> subprocess.Popen:
    """`phased-cpt launch` for one node, its output in `cwd/node-<a|b>.{out,err}`."""
    node = NODES[node_rank]
    nodes = ["--hostfile", str(cwd / "hostfile")] if cell.hostfile else ["--nodes", "2"]
    args = [
        "launch",
        str(config),
        "--gpus",
        "1",
        "--launcher",
        cell.launcher,
        *nodes,
        "--node-rank",
        str(node_rank),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "--set",
        f"data.cache_dir={cache_dir(cwd, cell, node)}",
        *([] if cell.doctor else ["--skip-doctor"]),
        *extra,
    ]
    with open(cwd / f"node-{node}.out", "w") as out, open(cwd / f"node-{node}.err", "w") as err:
        return subprocess.Popen(
            [*phased_cpt_command(), *args],
            cwd=cwd,
            env=node_env(),
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def finish(processes: list[subprocess.Popen], timeout_s: float = NODE_TIMEOUT_S) -> list[int]:
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            kill_node(process)
            codes.append(process.returncode)
    return codes


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, found through /proc before any of them dies (torchrun
    starts each rank in a session of its own, so the launcher's process group does not hold it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def kill_node(process: subprocess.Popen) -> None:
    """What a node's power loss does to its processes: SIGKILL to the launcher and every rank."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def run_two_nodes(cwd: Path, config: Path, cell: Cell, *extra: str) -> list[int]:
    port = free_port()
    return finish([start_node(cwd, config, cell, rank, port, *extra) for rank in range(2)])


def stderr(cwd: Path, node: str) -> str:
    return (cwd / f"node-{node}.err").read_text()


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"node a ended before {path} appeared"
        assert time.monotonic() < deadline, f"no {path} after {timeout_s}s"
        time.sleep(0.05)


@dataclass
class TwoNodeRun:
    cell: Cell
    cwd: Path
    run_dir: Path
    survivor_exit: int | None = None
    """Kill cell: node a's exit code after node b was killed (it must stop by itself)."""
    complete_after_kill: list[str] = field(default_factory=list)
    """Kill cell: p1's checkpoints with a COMPLETE marker once both nodes had stopped."""
    partial_after_kill: list[str] = field(default_factory=list)
    """Kill cell: p1's checkpoints without one (the save node b died in)."""


@pytest.fixture(scope="module", params=CELLS, ids=lambda cell: cell.name)
def two_nodes(request, deepspeed_work, tiny_model_dir) -> TwoNodeRun:
    cell: Cell = request.param
    root, files = deepspeed_work
    cwd = root / f"nodes-{cell.name}"
    cwd.mkdir()
    (cwd / "hostfile").write_text("node-a slots=1\nnode-b slots=1\n")
    training = {"save_steps": 1} if cell.kill else {}  # kill cell: a complete checkpoint before the one b dies in
    config = write_yaml(
        cwd / "run.yaml",
        config_data(tiny_model_dir, files, **training) | {"deepspeed": cell.stage, "wandb": {"enabled": cell.wandb}},
    )
    if not cell.kill:
        codes = run_two_nodes(cwd, config, cell)
        assert codes == [0, 0], stderr(cwd, "a")[-4000:] + stderr(cwd, "b")[-4000:]
        return TwoNodeRun(cell, cwd, only_run(cwd / "outputs"))

    port = free_port()
    node_a, node_b = (start_node(cwd, config, cell, rank, port) for rank in range(2))
    try:
        wait_for(cwd / "outputs", node_a, NODE_TIMEOUT_S)
        run_dir = only_run(cwd / "outputs")
        wait_for(run_dir / "p1" / "checkpoint-2", node_a, NODE_TIMEOUT_S)  # the second save has begun
    finally:
        kill_node(node_b)  # node b dies during that save (or, at worst, right after its part)
    (survivor_exit,) = finish([node_a], timeout_s=120)
    checkpoints = sorted((run_dir / "p1").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
    complete = [c.name for c in checkpoints if (c / "COMPLETE").is_file()]
    partial = [c.name for c in checkpoints if not (c / "COMPLETE").is_file()]
    codes = run_two_nodes(cwd, config, cell, "--resume", str(run_dir))
    assert codes == [0, 0], stderr(cwd, "a")[-4000:] + stderr(cwd, "b")[-4000:]
    return TwoNodeRun(cell, cwd, run_dir, survivor_exit, complete, partial)


def adapter(run_dir: Path, phase: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / phase / "adapter" / "adapter_model.safetensors")


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_each_cache_is_prepared_once_by_the_lowest_rank_that_sees_it(two_nodes):
    cell, cwd = two_nodes.cell, two_nodes.cwd
    writers = (
        {cwd / "cache-shared": 0} if cell.layout == "shared" else {cwd / "cache-node-a": 0, cwd / "cache-node-b": 1}
    )
    assert sorted(p.name for p in cwd.iterdir() if p.name.startswith("cache")) == sorted(p.name for p in writers)
    for directory, writer in writers.items():
        entries = [p for p in directory.iterdir() if not p.name.startswith(".")]
        assert len(entries) == len(PHASES)  # one entry per phase, nothing else
        assert [json.loads((e / "prepared_by.json").read_text())["rank"] for e in entries] == [writer] * len(PHASES)
        leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
        assert leftovers == []  # no probe, signal or temporary directory left behind
    for node in NODES:  # no second writer raced to the same entry
        assert "prepared by another process at the same time" not in stderr(cwd, node)


def test_rank0_alone_writes_the_run_files_and_every_rank_its_checkpoint_part(two_nodes):
    run_dir = two_nodes.run_dir
    assert len(list(run_dir.parent.iterdir())) == 1  # one run directory for both nodes
    starts = [r for r in records(run_dir) if r.get("event") == "session_start"]
    assert [(r["rank"], r["world_size"]) for r in starts] == [(0, 2)] * (2 if two_nodes.cell.kill else 1)
    steps = [r["step"] for r in records(run_dir) if r.get("kind") == "train"]
    assert steps == list(range(1, 7))  # each step logged once, by one writer
    assert len(list((run_dir / "tensorboard").iterdir())) == len(starts)  # one event file per start
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == (1 if two_nodes.cell.wandb else 0)
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["name"] for p in state["finished_phases"]] == list(PHASES)
    checkpoint = run_dir / "p2" / "checkpoint-2"
    assert (checkpoint / "COMPLETE").is_file()
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    (step_dir,) = checkpoint.glob("global_step*")
    shards = sorted(p.name for p in step_dir.glob("*optim_states.pt"))
    assert len(shards) == 2 and "zero_pp_rank_0_" in shards[0] and "zero_pp_rank_1_" in shards[1]


def test_adapters_match_the_single_process_run(two_nodes, single_run):
    for phase in PHASES:
        saved, reference = adapter(two_nodes.run_dir, phase), adapter(single_run, phase)
        assert all(v.numel() > 0 for v in saved.values())
        diff = max((saved[k] - reference[k]).abs().max().item() for k in reference)
        print(f"two nodes {two_nodes.cell.name} {phase}: max abs diff vs single process {diff:.2e}")
        assert diff <= TOLERANCE


def test_a_killed_node_stops_the_other_and_both_resume_from_the_last_complete_checkpoint(two_nodes):
    if not two_nodes.cell.kill:
        pytest.skip("the kill cell only")
    run_dir = two_nodes.run_dir
    assert two_nodes.survivor_exit != 0  # node a noticed and stopped by itself (finish's time-out gives -9)
    assert two_nodes.survivor_exit != -signal.SIGKILL, "node a did not stop by itself after node b died"
    # p1 saves at steps 1, 2, 3; node b died in the save of step 2: checkpoint-1 is complete,
    # checkpoint-2 complete only if b had written its part and passed the barrier first.
    assert two_nodes.complete_after_kill in (["checkpoint-1"], ["checkpoint-1", "checkpoint-2"])
    assert set(two_nodes.partial_after_kill) <= {"checkpoint-2"}
    resumed = [r for r in records(run_dir) if r.get("event") == "phase_start" and r["phase"] == "p1"]
    assert len(resumed) == 2  # p1 started, then resumed
    assert Path(resumed[-1]["resumed_from"]).name == two_nodes.complete_after_kill[-1]
    print(
        f"node b killed in the save of p1 step 2: complete {two_nodes.complete_after_kill}, "
        f"partial {two_nodes.partial_after_kill}; node a exited {two_nodes.survivor_exit}; "
        f"resumed from {Path(resumed[-1]['resumed_from']).name}"
    )


def test_doctor_checks_the_master_port_and_prints_the_job_identity(two_nodes):
    if not two_nodes.cell.doctor:
        pytest.skip("the cell that runs doctor")
    identities = []
    for node, statuses in (("a", {"pass"}), ("b", {"pass", "warn"})):  # b: node 0 listening, or not yet started
        text = stderr(two_nodes.cwd, node)
        assert re.search(r"^master\s+(\w+)\s", text, re.M).group(1) in statuses
        identities.append(re.search(r"^job identity\s+pass\s+(config \w+, data \w+)", text, re.M).group(1))
    assert identities[0] == identities[1]


def test_a_node_started_with_another_config_stops_both(deepspeed_work, tiny_model_dir):
    root, files = deepspeed_work
    cwd = root / "nodes-mismatch"
    cwd.mkdir()
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files))  # DDP: the check comes first anyway
    cell = Cell("none", "node-local", "torchrun")
    port = free_port()
    node_a = start_node(cwd, config, cell, 0, port)
    node_b = start_node(cwd, config, cell, 1, port, "--set", "training.learning_rate=0.001")
    assert finish([node_a, node_b]) != [0, 0]
    for node in NODES:
        assert "training.learning_rate: 0.0005 on rank 0, 0.001 here" in stderr(cwd, node), stderr(cwd, node)[-3000:]
    assert not (cwd / "outputs").exists()  # stopped before rank 0 created a run directory


def test_launch_with_a_hostfile_on_the_default_config_uses_deepspeeds_launcher(
    deepspeed_work, tiny_model_dir, single_run
):
    """issue 19.2: the documented `launch config.yaml --hostfile hostfile --gpus N` with `deepspeed:
    null` chooses DeepSpeed's launcher (the only one that reads a hostfile), says so, and trains
    plain DDP. A one-host hostfile runs locally, without ssh."""
    root, files = deepspeed_work
    cwd = root / "hostfile-ddp"
    cwd.mkdir()
    (cwd / "hostfile").write_text("localhost slots=2\n")
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files))
    result = run_cli(
        ["launch", str(config), "--hostfile", "hostfile", "--gpus", "2", "--skip-doctor"],
        cwd=cwd,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "launcher: deepspeed (--hostfile: only DeepSpeed's launcher reads one" in result.stderr
    run_dir = only_run(cwd / "outputs")
    final, expected = adapter(run_dir, "p2"), adapter(single_run, "p2")
    assert max((final[k] - expected[k]).abs().max().item() for k in expected) <= TOLERANCE
