"""Setting up the processes of a multi-process run (one node or several) before the model is built.

- Every process joins the process group first (gloo on CPU, nccl on GPUs; through DeepSpeed when
  the run uses it).
- `check_same_job`: every process compares its config, data and software with rank 0's and the
  job stops with the differences listed if one was started differently (another node's copy of
  the config, data or virtual environment).
- `one_writer_per_cache`: one process per data-cache directory prepares the data, the others
  that see the same directory wait for it and read. Which processes share a directory is found
  out, not configured (`cache_sharing`), so a cache on a shared file system gets one writer in
  the whole job and node-local caches one writer per node.
- `main_process_run_dir`: the main process (rank 0, `distributed.is_main_process`) owns the run
  directory; it creates or resumes it, the other ranks learn its path by broadcast and check
  that they see it (`output.dir` must be shared by every node); they write none of its files.

Which process this is and the collectives come from `phased_cpt.distributed`. A single process
(WORLD_SIZE unset or 1) does none of this. docs/multi-gpu.md has the table of who writes what on
several nodes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

from phased_cpt.config import RunConfig, dump_config
from phased_cpt.data.cache import clear_prepared, probe_path, signal_prepared, wait_for_prepared, write_probe
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
from phased_cpt.run_dir import RunDir
from phased_cpt.training.deepspeed_plan import DeepSpeedPlan
from phased_cpt.training.resume import differing_keys, input_fingerprints

logger = logging.getLogger(__name__)

# The names the data-cache protocol below calls (it moves to data/cache.py, issue 27 item 3).
all_gather, broadcast_from_rank0, distributed = all_gather_object, broadcast_object, is_distributed

T = TypeVar("T")

MAY_DIFFER_BETWEEN_PROCESSES = ("data.cache_dir",)
"""Settings that may differ between the processes of one run: a node-local cache has its own path."""
SOFTWARE = ("phased-cpt", "torch", "transformers", "peft", "accelerate", "deepspeed")
"""Packages whose version must be the same in every process."""
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


@dataclass(frozen=True)
class JobIdentity:
    """What must be the same in every process of a run: the resolved config (secrets removed;
    `data.cache_dir` may differ), the sha256 of every phase file, the software versions."""

    host: str
    config: dict[str, Any]
    inputs: dict[str, str]
    software: dict[str, str | None] = field(default_factory=dict)

    @property
    def config_sha256(self) -> str:
        compared = {k: v for k, v in self.config.items() if k != "data"}
        compared["data"] = {k: v for k, v in self.config.get("data", {}).items() if k != "cache_dir"}
        return hashlib.sha256(json.dumps(compared, sort_keys=True).encode("utf-8")).hexdigest()

    @property
    def data_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode("utf-8")).hexdigest()


def job_identity(cfg: RunConfig) -> JobIdentity:
    software = {}
    for package in SOFTWARE:
        try:
            software[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            software[package] = None
    return JobIdentity(socket.gethostname(), yaml.safe_load(dump_config(cfg)), input_fingerprints(cfg), software)


def identity_differences(reference: JobIdentity, other: JobIdentity) -> list[str]:
    """What differs between two processes' identities, one line each (config key, phase file, package)."""
    found = [
        f"{key}: {a!r} on rank 0, {b!r} here"
        for key, a, b in differing_keys(reference.config, other.config, MAY_DIFFER_BETWEEN_PROCESSES)
    ]
    for key in sorted(set(reference.inputs) | set(other.inputs)):
        if reference.inputs.get(key) != other.inputs.get(key):
            found.append(
                f"phases.{key}: the file's content differs (sha256 {str(other.inputs.get(key))[:12]} here, "
                f"{str(reference.inputs.get(key))[:12]} on rank 0)"
            )
    for package in SOFTWARE:
        if reference.software.get(package) != other.software.get(package):
            found.append(f"{package}: {reference.software.get(package)} on rank 0, {other.software.get(package)} here")
    return found


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


# --- one writer per data cache -----------------------------------------------------------------


@dataclass(frozen=True)
class CacheSharing:
    """Which ranks see the same data-cache directory as this process (this one included)."""

    sharing: tuple[int, ...]
    views: tuple[tuple[int, ...], ...] = ()
    """Every rank's `sharing`, in rank order (for the log)."""

    @property
    def writer(self) -> int:
        """The one rank that prepares the data in this directory: the lowest that sees it."""
        return min(self.sharing)

    def writers(self) -> list[int]:
        return sorted({min(view) for view in self.views})


def cache_sharing(cache_dir: Path, token: str) -> CacheSharing:
    """Found out, not configured: every rank leaves a probe file named after `token` (one per
    job) and its rank in its cache directory; after a barrier each looks up every other rank's
    probe by name. Ranks that see each other's probe share the directory, whether it is one
    node's local disk or a file system shared by all nodes, and whatever path each mounted it
    at. A probe seen by one side only (network file-system lag) still pairs the two ranks; one
    seen by neither makes a second writer, which `cache.publish_entry`'s atomic rename makes
    harmless."""
    probe = write_probe(cache_dir, token, rank())
    torch.distributed.barrier()
    seen = {r for r in range(world_size()) if probe_path(cache_dir, token, r).exists()}
    views = tuple(all_gather(tuple(sorted(seen))))  # also the barrier after which each rank removes its probe
    probe.unlink(missing_ok=True)
    # Sharing is symmetric: a rank that saw this one's probe shares this directory even when
    # this one did not (yet) see its probe, so both elect the same writer.
    seen |= {r for r, view in enumerate(views) if rank() in view}
    return CacheSharing(tuple(sorted(seen)), views)


def one_writer_per_cache(cache_dir: Path, build: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`build(*args, **kwargs, cache_dir=cache_dir, may_build=...)` in every process, with one writer per
    cache directory: the writer prepares (`may_build=True`); the others wait for it through the
    file system (no collective time-out however long preparation takes), then only read. A
    failed preparation (bad data) stops every process with its message."""
    if not distributed():
        return build(*args, **kwargs, cache_dir=cache_dir, may_build=True)
    token = broadcast_from_rank0(uuid.uuid4().hex)
    sharing = cache_sharing(cache_dir, token)
    if is_main_process():
        logger.info(
            "data cache: %d writer(s) (rank(s) %s) for %d process(es)",
            len(sharing.writers()),
            ", ".join(map(str, sharing.writers())),
            world_size(),
        )
    result, error = None, None
    try:
        if rank() == sharing.writer:
            try:
                result = build(*args, **kwargs, cache_dir=cache_dir, may_build=True)
            except BaseException as err:
                signal_prepared(cache_dir, token, rank(), str(err) or type(err).__name__)
                raise
            signal_prepared(cache_dir, token, rank(), None)
        else:
            failed = wait_for_prepared(cache_dir, token, sharing.writer)
            if failed is not None:
                raise UserError(failed)
            result = build(*args, **kwargs, cache_dir=cache_dir, may_build=False)
    except UserError as err:
        error = str(err)
    errors = all_gather(error)
    if rank() == sharing.writer:
        clear_prepared(cache_dir, token, rank())  # every reader has read it
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise UserError(failed)
    return result


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
