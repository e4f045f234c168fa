"""Peak memory of CPU tensors, measured the way `torch.cuda.max_memory_allocated` measures GPU
memory: every storage an operator allocates counts until it is freed. Used to check the memory
estimate (`phased_cpt.memory`) against real training steps on the CPU."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Inside `with LiveBytes(known) as live:`, `live.peak` is the most bytes held at once by
    storages created inside the block; storages in `known` (weights, optimizer states) and
    views of them are not counted."""

    def __init__(self, known: list[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {id(t.untyped_storage()): 0 for t in known}
        self._known = [t.untyped_storage() for t in known]  # keeps their ids from being reused

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()  # one Python object per storage while it lives
            key = id(storage)
            if key in self._sizes or storage.nbytes() == 0:
                continue
            self._sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key)
        return out
