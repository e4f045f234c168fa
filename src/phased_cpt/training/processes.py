"""Setting up the processes of a multi-process run (one node or several) before the model is built.

- Every process joins the process group first (gloo on CPU, nccl on GPUs; through DeepSpeed when
  the run uses it).
- `check_same_job`: every process compares its config, data and software with rank 0's and the
  job stops with the differences listed if one was started differently (another node's copy of
  the config, data or virtual environment).
- One process per data-cache directory prepares the data: `data/cache.one_writer_per_cache`.
- `main_process_run_dir`: the main process (rank 0, `distributed.is_main_process`) owns the run
  directory; it creates or resumes it, the other ranks learn its path by broadcast and check
  that they see it (`output.dir` must be shared by every node); they write none of its files.

Which process this is and the collectives come from `phased_cpt.distributed`. A single process
(WORLD_SIZE unset or 1) does none of this. docs/multi-gpu.md has the table of who writes what on
several nodes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from phased_cpt.config import RunConfig
from phased_cpt.distributed import (
    all_gather_object,
    barrier,
    broadcast_object,
    is_distributed,
    is_main_process,
    local_rank,
    rank,
    world_size,
)
from phased_cpt.errors import UserError
from phased_cpt.plans.deepspeed import DeepSpeedPlan
from phased_cpt.plans.job import identity_differences, job_identity
from phased_cpt.run_dir import RunDir

RUN_DIR_VISIBLE_SECONDS = 60.0
"""How long a rank waits to see the run directory rank 0 created (file-system lag)."""


def init_distributed(plan: DeepSpeedPlan | None) -> None:
    """Join the process group before anything else: rank 0 shares the run directory through it,
    and every rank builds the same model afterwards.

    gloo on CPU, nccl on GPUs. A single process (WORLD_SIZE unset or 1) does nothing.
    """
    if world_size() == 1 or torch.distributed.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    if plan is None:
        torch.distributed.init_process_group(backend=backend)
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    if backend == "gloo":
        remove_shared_memory_name()


SHM_DIR = Path("/dev/shm")


def shared_memory_name(rank_: int) -> Path:
    """The shared-memory file DeepSpeed's CPU all-reduce (its `deepspeed_shm_comm` op, used when
    every rank is on this machine) creates for a rank of this job: 66 MB of RAM, named after the
    user, MASTER_ADDR and MASTER_PORT (deepspeed/ops/csrc/cpu/comm/shm.cpp)."""
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    return SHM_DIR / f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{rank_}"


def remove_shared_memory_name() -> None:
    """DeepSpeed (0.19.8) never removes its CPU all-reduce's shared-memory file, so every CPU run
    left 66 MB of RAM per rank in /dev/shm until reboot, and a machine that ran enough of them ran
    out of memory. Once every rank has mapped every other rank's file (the barrier: each rank maps
    them inside `init_distributed`), the names are no longer needed: each rank removes its own;
    the mappings stay valid, and the memory is freed when the last rank exits, however it exits."""
    barrier()
    shared_memory_name(rank()).unlink(missing_ok=True)


# --- the same job on every process -------------------------------------------------------------


def check_same_job(cfg: RunConfig) -> None:
    """Stop every process with the differences listed when a process's config (other than
    `data.cache_dir`), data files or software differ from rank 0's: on several nodes each node
    has its own copy of them, and a run whose ranks train on different data or settings would
    not fail, only be wrong."""
    if not is_distributed():
        return
    identities = all_gather_object(job_identity(cfg))
    problems = []
    for index, identity in enumerate(identities[1:], start=1):
        differences = identity_differences(identities[0], identity)
        if differences:
            problems.append(f"rank {index} (host {identity.host}):\n" + "\n".join(f"    - {d}" for d in differences))
    if problems:
        raise UserError(
            f"the processes of this run were not started alike; compared with rank 0 (host {identities[0].host}):\n  "
            + "\n  ".join(problems)
            + "\nstart every node with the same config, data and software (only data.cache_dir may differ)"
        )


# --- the run directory ---------------------------------------------------------------------------


def main_process_run_dir(open_run: Callable[..., RunDir], *args: Any) -> RunDir:
    """The main process calls `open_run(*args)` (start or resume the run directory) and shares its
    path; the other ranks get the same directory, whose files they never write
    (`distributed.is_main_process`). One process: just `open_run(*args)`.

    A `UserError` on the main process (e.g. a resume that does not match) is raised on every rank,
    so no rank waits forever for a path that never comes. A rank that does not see the directory
    stops every rank: `output.dir` must be one directory for all nodes (DeepSpeed writes each
    rank's checkpoint shards there, and a resume reads them all).
    """
    if not is_distributed():
        return open_run(*args)
    run, payload = None, None
    if is_main_process():
        try:
            run = open_run(*args)
            payload = ("path", str(run.path))
        except UserError as err:
            broadcast_object(("error", str(err)))
            raise
    kind, value = broadcast_object(payload)
    if kind == "error":
        raise UserError(value)
    run = run or RunDir(Path(value))
    blind = [
        (r, host)
        for r, (host, sees) in enumerate(all_gather_object((socket.gethostname(), sees_run_dir(run.path))))
        if not sees
    ]
    if blind:
        raise UserError(
            f"output.dir must be one directory shared by every node: {', '.join(f'rank {r} (host {h})' for r, h in blind)} "
            f"cannot see the run directory {run.path} that rank 0 created; put output.dir on a shared file system"
        )
    return run


def sees_run_dir(path: Path, timeout_s: float = RUN_DIR_VISIBLE_SECONDS) -> bool:
    deadline = time.monotonic() + timeout_s
    while not RunDir.is_run_dir(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
