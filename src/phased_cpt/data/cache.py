"""The prepared-data cache: one directory per phase, keyed by everything that shapes its rows.

    <data.cache_dir, default ${XDG_CACHE_HOME:-~/.cache}/phased-cpt/data>/<key>/
      meta.json                       counts and statistics (the plan reads these)
      tokens.bin                      int32 token ids of every document (+ replayed chunks)
      train_chunks.npy  train_row_offsets.npy    the row table (chunks in row order) and where each row starts
      train_own_chunks.npy                      the phase's own chunks, without replay: what later phases replay
      eval_chunks.npy   eval_row_offsets.npy
      rejected.jsonl                  lines left out (data.on_bad_record: skip, or duplicates)

The key is a sha256 of: the bytes of the phase's files, the tokenizer (its full serialized
vocabulary and special tokens), every data and context setting, the seed and phase name (they
choose the eval documents and replayed chunks), and, with replay, the keys of earlier phases.
Changing any of them gives a new key; an entry is never updated in place. Arrays are `.npy`
and raw int32 (no pickles). An entry is written to a temporary directory and renamed into
place under a file lock, so concurrent processes never see half an entry; under torchrun only
local rank 0 builds, the other ranks wait for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import DataConfig
from phased_cpt.distributed import is_local_main_process

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""2: the row tables are `*_chunks.npy` (1 called them segments and units)."""
META_FILE = "meta.json"
WAIT_FOR_RANK0_SECONDS = 6 * 3600


def resolve_cache_dir(data: DataConfig) -> Path:
    """`data.cache_dir`, or `${XDG_CACHE_HOME:-~/.cache}/phased-cpt/data` when it is null (shared
    by runs, so a second run of the same data, even in another output dir, reuses it)."""
    if data.cache_dir is not None:
        return Path(data.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phased-cpt" / "data"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """Changes whenever the tokenizer could produce different ids for the same text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [type(tokenizer).__name__, vocabulary, str(tokenizer.eos_token_id), str(tokenizer.bos_token_id),
             json.dumps(tokenizer("a b", add_special_tokens=True)["input_ids"])]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def cache_key(settings: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def cached_entry(cache_dir: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry directory for `key` and whether it was already there; `build(tmp_dir)` fills a
    missing one. A failed build (bad data) leaves nothing behind."""
    entry = Path(cache_dir) / key
    if (entry / META_FILE).is_file():
        return entry, True
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    if not is_local_main_process():  # only local rank 0 writes the cache; the others wait
        wait_for_entry(entry)
        return entry, True
    with FileLock(Path(cache_dir) / f".{key}.lock"):
        if (entry / META_FILE).is_file():  # another process built it while we waited
            return entry, True
        tmp = Path(cache_dir) / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            build(tmp)
            shutil.rmtree(entry, ignore_errors=True)  # a partial entry from a crashed older version
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry, False


def wait_for_entry(entry: Path) -> None:
    deadline = time.monotonic() + WAIT_FOR_RANK0_SECONDS
    while not (entry / META_FILE).is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"local rank 0 did not finish preparing {entry}")
        time.sleep(1.0)


def read_meta(entry: Path) -> dict[str, Any]:
    return json.loads((entry / META_FILE).read_text(encoding="utf-8"))


def write_meta(entry: Path, meta: dict[str, Any]) -> None:
    (entry / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
