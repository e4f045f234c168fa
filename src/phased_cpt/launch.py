"""`phased-cpt launch`: pre-flight checks, then one training process per GPU (or per CPU slot).

    phased-cpt launch CONFIG [--gpus N] [--hostfile FILE] [--launcher deepspeed|torchrun] [--set K=V ...]

The launcher defaults to DeepSpeed's when the config sets `deepspeed`, else torchrun. Every
process runs `python -m phased_cpt train CONFIG ...`; ranks come from the launcher's environment.
A hostfile (DeepSpeed's format, `host slots=N` per line) runs on several nodes; see
docs/multi-gpu.md. The command line runs the pre-flight checks first (`doctor.run_checks`) and
then replaces itself with the launcher (`exec`), so signals reach it directly.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from phased_cpt.errors import UserError

LAUNCHERS = ("deepspeed", "torchrun")


@dataclass(frozen=True)
class LaunchPlan:
    command: list[str]
    env: dict[str, str]


def read_hostfile(path: Path) -> dict[str, int]:
    """DeepSpeed's hostfile format: `hostname slots=N` per line, `#` comments; {host: slots}."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"--hostfile {path}: {err.strerror or err}") from None
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plan_launch(
    config: Path,
    train_args: list[str],
    gpus: int,
    launcher: str,
    hostfile: Path | None = None,
    master_port: int | None = None,
    on_gpu: bool = True,
) -> LaunchPlan:
    """The launcher command that starts `gpus` processes per node, each running `phased-cpt train`."""
    if launcher not in LAUNCHERS:
        raise UserError(f"--launcher {launcher}: choose one of {', '.join(LAUNCHERS)}")
    if gpus < 1:
        raise UserError(f"--gpus {gpus}: at least one process is needed")
    if hostfile is not None and launcher != "deepspeed":
        raise UserError(
            "--hostfile needs --launcher deepspeed (for torchrun, start `torchrun --nnodes ... -m phased_cpt "
            "train CONFIG` on each node yourself; see docs/multi-gpu.md)"
        )
    port = str(master_port or free_port())
    train = ["train", str(config), *train_args]
    env = dict(os.environ)
    if not on_gpu:
        # CPU processes: one thread each, else N processes x all cores oversubscribe the machine.
        env.setdefault("OMP_NUM_THREADS", "1")
        env["LOCAL_SIZE"] = str(gpus)  # DeepSpeed's CPU accelerator counts "devices" from this
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus),
                   "--master_port", port, "-m", "phased_cpt", *train]
        return LaunchPlan(command, env)
    deepspeed_bin = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    if not Path(deepspeed_bin).exists():
        raise UserError("--launcher deepspeed: DeepSpeed is not installed; pip install -e '.[deepspeed]'")
    command = [deepspeed_bin]
    if hostfile is not None:
        read_hostfile(hostfile)  # a clear error here rather than DeepSpeed's
        command += ["--hostfile", str(hostfile)]
    command += ["--num_gpus", str(gpus), "--master_port", port, "--no_local_rank", "--module", "phased_cpt", *train]
    return LaunchPlan(command, env)


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_plan(
    config: Path,
    overrides: list[str],
    processes: int,
    hostfile: Path | None,
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
    return plan_launch(
        config, train_args, processes, launcher or ("deepspeed" if cfg.deepspeed else "torchrun"),
        hostfile=hostfile, on_gpu=gpu_count() > 0,
    )
