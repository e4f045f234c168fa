"""Setting up the processes of a multi-process run before the model is built.

- Every process joins the process group first (gloo on CPU, nccl on GPUs; through DeepSpeed when
  the run uses it), so rank 0 can share the run directory and every rank builds the same model.
- Rank 0 owns the run directory: it creates or resumes it, and the other ranks learn its path by
  broadcast and get a read-only view.

A single process (WORLD_SIZE unset or 1) does none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from phased_cpt.distributed import is_main_process, local_rank, world_size
from phased_cpt.errors import UserError
from phased_cpt.run_dir import RunDir
from phased_cpt.training.deepspeed_plan import DeepSpeedPlan


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


def rank_zero_run_dir(open_run: Callable[..., RunDir], *args: Any) -> RunDir:
    """Rank 0 calls `open_run(*args)` (start or resume the run directory) and shares its path;
    the other ranks get a read-only view of it. One process: just `open_run(*args)`.

    A `UserError` on rank 0 (e.g. a resume that does not match) is raised on every rank, so no
    rank waits forever for a path that never comes.
    """
    if world_size() == 1 or not torch.distributed.is_initialized():
        return open_run(*args)
    run, payload = None, [None]
    if is_main_process():
        try:
            run = open_run(*args)
            payload = [("path", str(run.path))]
        except UserError as err:
            payload = [("error", str(err))]
            torch.distributed.broadcast_object_list(payload, src=0)
            raise
    torch.distributed.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise UserError(value)
    return run or RunDir(Path(value), writer=False)
