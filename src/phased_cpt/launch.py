"""`phased-cpt launch`: pre-flight checks, then one training process per GPU (or per CPU slot).

    phased-cpt launch CONFIG [--gpus N] [--launcher deepspeed|torchrun] [--set K=V ...]
        [--hostfile FILE | --nodes N] [--node-rank K] [--master-addr A] [--master-port P]

The launcher defaults to DeepSpeed's when the config sets `deepspeed` or a hostfile is given
(only DeepSpeed's launcher reads one), else torchrun; `LaunchPlan.reason` says which and why.
Every process runs `python -m phased_cpt train CONFIG ...`; ranks come from the launcher's
environment. Several nodes (docs/multi-gpu.md), `Nodes`:

- `--hostfile FILE` alone: DeepSpeed's launcher, started on the first node, starts every node
  over ssh (pdsh).
- `--hostfile FILE --node-rank K`, or `--nodes N --node-rank K --master-addr A`: started on every
  node by the user (or a scheduler), no ssh. torchrun gets `--nnodes/--node_rank/--master_addr`;
  DeepSpeed's launcher `--no_ssh --node_rank` and a hostfile (the given one, or one written for
  `--nodes`: `node-0 slots=G`, ...; its names only count the nodes).

The command line runs the pre-flight checks first (`doctor.run_checks`) and then replaces itself
with the launcher (`exec`), so signals reach it directly.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from phased_cpt.errors import UserError

LAUNCHERS = ("deepspeed", "torchrun")
DEFAULT_MASTER_PORT = 29500
"""torchrun's and DeepSpeed's default; on several nodes every node must use the same port."""


@dataclass(frozen=True)
class LaunchPlan:
    command: list[str]
    env: dict[str, str]
    launcher: str = "torchrun"
    reason: str = ""
    """Why this launcher (printed by `launch`)."""


@dataclass(frozen=True)
class Nodes:
    """The nodes of a job and this node's place among them."""

    count: int = 1
    rank: int | None = None
    """This node's rank; None: one node, or DeepSpeed's launcher starts every node over ssh."""
    master_addr: str | None = None
    """Node 0's address, where rank 0 listens."""
    master_port: int | None = None
    hostfile: Path | None = None

    @property
    def several(self) -> bool:
        return self.count > 1

    @property
    def master_listens_here(self) -> bool:
        """Whether rank 0's rendezvous port opens on this machine: node 0, or a one-node job (with
        a hostfile and no --node-rank, DeepSpeed's launcher starts the master on its first host)."""
        return self.rank == 0 or (self.rank is None and self.hostfile is None)


def resolve_nodes(
    hostfile: Path | None = None,
    count: int | None = None,
    node_rank: int | None = None,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> Nodes:
    """The `--hostfile/--nodes/--node-rank/--master-addr/--master-port` arguments, checked together."""
    if master_port is not None and not 0 < master_port < 65536:
        raise UserError(f"--master-port {master_port}: choose a port between 1 and 65535")
    if hostfile is not None:
        hosts = list(read_hostfile(hostfile))
        if count is not None and count != len(hosts):
            raise UserError(f"--nodes {count} but {hostfile} lists {len(hosts)} host(s); leave out --nodes")
        count = len(hosts)
        if count == 1:  # the local node: DeepSpeed's launcher then needs no ssh (and would try it)
            node_rank, master_addr = node_rank or 0, master_addr or "127.0.0.1"
        if node_rank is not None:
            master_addr = master_addr or hosts[0]
    count = 1 if count is None else count
    if count < 1:
        raise UserError(f"--nodes {count}: at least one node is needed")
    if node_rank is not None and not 0 <= node_rank < count:
        raise UserError(f"--node-rank {node_rank}: must be between 0 and {count - 1} for {count} node(s)")
    if count > 1 and hostfile is None:
        if node_rank is None:
            raise UserError(f"--nodes {count} needs --node-rank K on each node (0 on the node at --master-addr)")
        if not master_addr:
            raise UserError(f"--nodes {count} needs --master-addr: the address of node 0, the same on every node")
    if count > 1 or hostfile is not None:
        master_port = master_port or DEFAULT_MASTER_PORT
    return Nodes(count, node_rank, master_addr, master_port, hostfile)


def read_hostfile(path: Path) -> dict[str, int]:
    """DeepSpeed's hostfile format: `hostname slots=N` per line, `#` comments; {host: slots}."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"--hostfile {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
            "write host names in UTF-8, one 'hostname slots=N' per line"
        ) from None
    hosts: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("slots=") or not parts[1][6:].isdigit() or int(parts[1][6:]) < 1:
            raise UserError(f"{path}:{number}: expected 'hostname slots=N' (N >= 1), got {line!r}")
        if parts[0] in hosts:
            raise UserError(f"{path}:{number}: host {parts[0]!r} is listed twice")
        hosts[parts[0]] = int(parts[1][6:])
    if not hosts:
        raise UserError(f"{path}: no hosts; write one 'hostname slots=N' line per node")
    return hosts


def port_in_use_problem(addr: str | None, port: int) -> str | None:
    """Why the master cannot listen on `port` here (it is taken, or `addr` is not this node's),
    or None. SO_REUSEADDR as torch's TCPStore: a port whose last connections are closing is free."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((socket.gethostbyname(addr) if addr else "", port))
    except socket.gaierror as err:
        return f"--master-addr {addr}: cannot resolve it ({err.strerror})"
    except OSError as err:
        if err.errno == errno.EADDRNOTAVAIL:
            return (
                f"--master-addr {addr} is not an address of this node; start --node-rank 0 on the node at --master-addr"
            )
        held = "another process listens on it; " if err.errno == errno.EADDRINUSE else ""
        return (
            f"--master-port {port} cannot be used on this node ({err.strerror}): {held}"
            "choose another --master-port (the same on every node)"
        )
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def choose_launcher(requested: str | None, deepspeed: str | None, nodes: Nodes) -> tuple[str, str]:
    """(launcher, why): `--launcher`, else DeepSpeed's for a hostfile or a config with
    `deepspeed`, else torchrun."""
    if requested is not None:
        return requested, "--launcher"
    if nodes.hostfile is not None:
        return "deepspeed", "--hostfile: only DeepSpeed's launcher reads one" + (
            "" if deepspeed else "; deepspeed is null, so the processes train with plain DDP"
        )
    if deepspeed:
        return "deepspeed", f"the config sets deepspeed: {deepspeed}"
    return "torchrun", "deepspeed is null: plain DDP"


def plan_launch(
    config: Path,
    train_args: list[str],
    gpus: int,
    launcher: str,
    nodes: Nodes = Nodes(),
    on_gpu: bool = True,
) -> LaunchPlan:
    """The launcher command that starts `gpus` processes on this node (on every node, for
    DeepSpeed's launcher over ssh), each running `phased-cpt train`."""
    if launcher not in LAUNCHERS:
        raise UserError(f"--launcher {launcher}: choose one of {', '.join(LAUNCHERS)}")
    if gpus < 1:
        raise UserError(f"--gpus {gpus}: at least one process is needed")
    if nodes.hostfile is not None and launcher != "deepspeed":
        raise UserError(
            "--hostfile needs --launcher deepspeed; for torchrun, start `phased-cpt launch CONFIG --launcher torchrun "
            "--nodes N --node-rank K --master-addr A` on each node (see docs/multi-gpu.md)"
        )
    if nodes.master_port is not None and nodes.master_listens_here:
        problem = port_in_use_problem(nodes.master_addr, nodes.master_port)
        if problem is not None:
            raise UserError(problem)
    port = str(nodes.master_port or free_port())
    train = ["train", str(config), *train_args]
    env = dict(os.environ)
    if not on_gpu:
        # CPU processes: one thread each, else N processes x all cores oversubscribe the machine.
        env.setdefault("OMP_NUM_THREADS", "1")
        env["LOCAL_SIZE"] = str(gpus)  # DeepSpeed's CPU accelerator counts "devices" from this
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus)]
        if nodes.several:
            command += [
                "--nnodes",
                str(nodes.count),
                "--node_rank",
                str(nodes.rank),
                "--master_addr",
                nodes.master_addr,
            ]
        command += ["--master_port", port, "-m", "phased_cpt", *train]
        return LaunchPlan(command, env, launcher)
    deepspeed_bin = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    if not Path(deepspeed_bin).exists():
        raise UserError("--launcher deepspeed: DeepSpeed is not installed; pip install -e '.[deepspeed]'")
    command = [deepspeed_bin]
    if nodes.rank is not None and (nodes.several or nodes.hostfile is not None):  # started on every node: no ssh
        command += [
            "--hostfile",
            str(nodes.hostfile or node_hostfile(nodes.count, gpus)),
            "--no_ssh",
            "--node_rank",
            str(nodes.rank),
        ]
    elif nodes.hostfile is not None:  # started once: DeepSpeed's launcher reaches the nodes over ssh
        command += ["--hostfile", str(nodes.hostfile)]
    if nodes.master_addr:
        command += ["--master_addr", nodes.master_addr]
    command += ["--num_gpus", str(gpus), "--master_port", port, "--no_local_rank", "--module", "phased_cpt", *train]
    return LaunchPlan(command, env, launcher)


def node_hostfile(count: int, slots: int) -> Path:
    """A hostfile for DeepSpeed's launcher without ssh, where only the node count and slots per
    node matter: `node-0 slots=G` ... (the same content for the same job shape, so re-writing
    it is harmless)."""
    path = Path(tempfile.gettempdir()) / f"phased-cpt-{os.getuid()}-{count}-nodes-x{slots}.hostfile"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(f"node-{i} slots={slots}\n" for i in range(count)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_plan(
    config: Path,
    overrides: list[str],
    processes: int,
    nodes: Nodes,
    launcher: str | None,
    resume: str | None = None,
) -> LaunchPlan:
    """The launcher command for `phased-cpt launch`: `processes` per node, each running
    `phased-cpt train CONFIG` with the same overrides (and `--resume`)."""
    from phased_cpt.config import load_config

    cfg, _ = load_config(config, overrides, check_files=False)
    train_args = [arg for assignment in overrides for arg in ("--set", assignment)]
    if resume is not None:
        train_args += ["--resume", resume]
    chosen, reason = choose_launcher(launcher, cfg.deepspeed, nodes)
    plan = plan_launch(config, train_args, processes, chosen, nodes, on_gpu=gpu_count() > 0)
    return replace(plan, reason=reason)
