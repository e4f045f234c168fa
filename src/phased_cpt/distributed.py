"""Which process this is, and the collectives between processes: the one authority on both.

The rank comes from the launcher's `RANK`, `LOCAL_RANK` and `WORLD_SIZE` (this is their only
reader): `phased-cpt launch`, `deepspeed train_phased.py` and `torchrun train_phased.py` all set
them; a plain `phased-cpt train` sets none and is rank 0 of a world of one.

The *main process* (rank 0) is the one process that writes the run directory: its state,
config, metrics, report and plots, and the session's record of who wrote them. Every module asks
`is_main_process()`, never the HF Trainer's state or a flag of its own. (The data cache has
writers of its own, one per cache directory: `data/cache.py`.)

The collectives (`barrier`, `all_gather_object`, `broadcast_object`, `all_reduce`) do nothing
useful in a single process: each returns what that one process has. They import torch when
called, so this module stays a leaf that the command line can ask before deciding what to import.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """The process's index on its node (-1 from some launchers means: not set)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the only process that logs, writes the run directory's files, reports and plots."""
    return rank() == 0


def is_local_main_process() -> bool:
    """Local rank 0, the first process of its node. Not "the data-cache writer": a cache
    directory shared by several nodes needs one writer in the whole job, and
    `data/cache.cache_sharing` finds out which processes share one."""
    return local_rank() in (0, -1)


def process_identity() -> dict[str, Any]:
    """This process as the run's `session_start` event records it: rank, world size, host, pid."""
    return {"rank": rank(), "world_size": world_size(), "host": socket.gethostname(), "pid": os.getpid()}


def is_distributed() -> bool:
    """Several processes that have joined one process group (`training.processes.init_distributed`)."""
    if world_size() == 1:
        return False
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait until every process reaches this point."""
    if is_distributed():
        import torch.distributed

        torch.distributed.barrier()


def all_gather_object(value: T) -> list[T]:
    """Every process's `value` (picklable), in rank order, on every process."""
    if not is_distributed():
        return [value]
    import torch.distributed

    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: T) -> T:
    """The main process's `value` (picklable), on every process; the others' `value` is ignored."""
    if not is_distributed():
        return value
    import torch.distributed

    payload = [value]
    torch.distributed.broadcast_object_list(payload, src=0)
    return payload[0]


def all_reduce(tensor: Any, op: Literal["sum", "max"]) -> Any:
    """`tensor` summed (or its maximum taken) element-wise over every process, in place; returned."""
    if is_distributed():
        import torch.distributed

        reduce_op = torch.distributed.ReduceOp.SUM if op == "sum" else torch.distributed.ReduceOp.MAX
        torch.distributed.all_reduce(tensor, op=reduce_op)
    return tensor
