"""Which process this is: the only reader of the launcher's `RANK`, `LOCAL_RANK` and `WORLD_SIZE`.

`phased-cpt launch`, `deepspeed train_phased.py` and `torchrun train_phased.py` all set them; a
plain `phased-cpt train` sets none and is rank 0 of a world of one. A leaf: it imports nothing of
phased-cpt and no torch, so the command line can ask it before deciding what to import.
"""

from __future__ import annotations

import os


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


# --- collectives: the only calls into torch.distributed's object collectives -------------------
# torch is imported lazily (the command line asks this module before deciding what to import);
# without an initialised process group each is what one process alone would get.


def _initialised() -> bool:
    if world_size() == 1:
        return False
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait for every process of the run (nothing to wait for alone)."""
    if _initialised():
        import torch.distributed

        torch.distributed.barrier()


def all_gather_object(value: object) -> list:
    """Every process's `value`, in rank order, on every process (`[value]` alone)."""
    if not _initialised():
        return [value]
    import torch.distributed

    gathered: list = [None] * world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: object) -> object:
    """Rank 0's `value` on every process (`value` itself alone)."""
    if not _initialised():
        return value
    import torch.distributed

    payload = [value]
    torch.distributed.broadcast_object_list(payload, src=0)
    return payload[0]
