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
    `training/processes.cache_sharing` finds out which processes share one."""
    return local_rank() in (0, -1)
