"""The prepared-data cache: one directory per phase, keyed by everything that shapes its rows.

    <data.cache_dir, default ${XDG_CACHE_HOME:-~/.cache}/phased-cpt/data>/<key>/
      meta.json                       counts and statistics (the plan reads these)
      tokens.bin                      int32 token ids of every document (+ replayed chunks)
      train_chunks.npy  train_row_offsets.npy    the row table (chunks in row order) and where each row starts
      train_own_chunks.npy                      the phase's own chunks, without replay: what later phases replay
      eval_chunks.npy   eval_row_offsets.npy
      rejected.jsonl                  lines left out (data.on_bad_record: skip, or duplicates)

The key is a sha256 of every field of the entry's `spec.DataSpec` (`spec.spec_key`): the bytes
of its files, the encoder (the tokenizer's full serialized vocabulary and special tokens, or the
byte estimate's rate), every data and context setting, the seed and entry name (they choose the
eval documents and replayed chunks), and the keys of the entries it mixes chunks from (earlier
phases, the general source). Changing any of them gives a new key; an entry is never updated in
place. Arrays are `.npy` and raw int32 (no pickles).

Writers, also on a network file system (NFS, Lustre) where file locks may not hold: an entry is
built in a directory of its own (`.<key>.tmp-<host>-<pid>-<random>`) and published by one
`rename` onto `<key>`; a rename onto an existing entry fails, so the first complete entry stays
and a second writer discards its copy (the same bytes: the key fixes the content). Readers
count an entry only once `meta.json` is in it, which it is from the moment it appears. A file
lock (`filelock`) keeps two processes on one machine from building the same entry twice; where
the file system has no locks, it is skipped (`lock_if_supported`) and the rename still decides.
In a multi-process run one process per cache directory builds, the others only read and wait
for its entries (`one_writer_per_cache`, at the end of this module: the whole protocol is here).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import DataConfig
from phased_cpt.distributed import all_gather_object, barrier, broadcast_object, is_main_process, rank, world_size
from phased_cpt.errors import UserError

logger = logging.getLogger(__name__)

T = TypeVar("T")

FORMAT_VERSION = 2
"""2: the row tables are `*_chunks.npy` (1 called them segments and units)."""
META_FILE = "meta.json"
PREPARED_BY_FILE = "prepared_by.json"
"""Which process built the entry: host, pid, rank, seconds."""
WAIT_FOR_WRITER_SECONDS = 600
"""How long a reader waits for an entry its writer reported as published (file-system lag)."""
WAIT_FOR_PREPARATION_SECONDS = 6 * 3600
"""How long a reader waits for the writer of its cache directory to prepare every phase."""
POLL_SECONDS = 0.5
NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def resolve_cache_dir(data: DataConfig) -> Path:
    """`data.cache_dir`, or `${XDG_CACHE_HOME:-~/.cache}/phased-cpt/data` when it is null (shared
    by runs, so a second run of the same data, even in another output dir, reuses it)."""
    if data.cache_dir is not None:
        return Path(data.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phased-cpt" / "data"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; read once per process while its size and mtime stay the same
    (the cache key, the resume check and the multi-process identity check all ask for it)."""
    stat = os.stat(path)
    return _digest(os.path.realpath(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@functools.lru_cache(maxsize=256)
def _digest(path: str, version: tuple[int, ...]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """Changes whenever the tokenizer could produce different ids for the same text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [
        type(tokenizer).__name__,
        vocabulary,
        str(tokenizer.eos_token_id),
        str(tokenizer.bos_token_id),
        json.dumps(tokenizer("a b", add_special_tokens=True)["input_ids"]),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def cache_key(settings: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_reading_only: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar("reading_only", default=frozenset())
"""Cache directories this process only reads while `one_writer_per_cache` runs: another process
builds their entries."""


@contextlib.contextmanager
def reading_only(cache_dir: Path) -> Iterator[None]:
    """Inside it, this process builds no entry in `cache_dir`: `cached_entry` waits for the
    entry its writer publishes instead (the readers of `one_writer_per_cache`)."""
    token = _reading_only.set(_reading_only.get() | {Path(cache_dir)})
    try:
        yield
    finally:
        _reading_only.reset(token)


def cached_entry(cache_dir: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry directory for `key` and whether it was already there; `build(tmp_dir)` fills a
    missing one. A failed build (bad data) leaves nothing behind. Inside `one_writer_per_cache`, a
    process that is not its cache directory's writer only reads: it waits for the writer to
    publish the entry (`wait_for_entry`)."""
    entry = Path(cache_dir) / key
    if is_ready(entry):
        return entry, True
    if Path(cache_dir) in _reading_only.get():
        wait_for_entry(entry)
        return entry, True
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with lock_if_supported(Path(cache_dir) / f".{key}.lock"):
        if is_ready(entry):  # another process built it while we waited
            return entry, True
        published = publish_entry(entry, build)
    return entry, not published


def is_ready(entry: Path) -> bool:
    """A published entry: it has `meta.json` from the moment it appears (see `publish_entry`)."""
    return (entry / META_FILE).is_file()


def publish_entry(entry: Path, build: Callable[[Path], None]) -> bool:
    """Build into a directory of this process's own, then rename it onto `entry`: True if this
    process's copy became the entry, False if another writer's complete copy was there first."""
    tmp = entry.with_name(f".{entry.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        started = time.monotonic()
        build(tmp)
        (tmp / PREPARED_BY_FILE).write_text(
            json.dumps(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "rank": rank(),
                    "seconds": round(time.monotonic() - started, 3),
                }
            )
            + "\n",
            encoding="utf-8",
        )
        set_aside_partial(entry)
        try:
            os.rename(tmp, entry)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not is_ready(entry):
                raise
            logger.warning("%s was prepared by another process at the same time; using that copy", entry)
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def set_aside_partial(entry: Path) -> None:
    """An entry directory without `meta.json` (left by an older version that built in place):
    renamed away before it is removed, so no reader ever sees it change."""
    if entry.exists() and not is_ready(entry):
        stale = entry.with_name(f".{entry.name}.stale-{uuid.uuid4().hex[:8]}")
        os.rename(entry, stale)
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def lock_if_supported(path: Path) -> Iterator[None]:
    """`filelock.FileLock` on `path`, or nothing where the file system has no locks (Lustre
    without `-o flock`, some NFS setups): `publish_entry`'s rename is what keeps entries whole."""
    lock = FileLock(path)
    try:
        lock.acquire()
    except OSError as err:
        if err.errno not in NO_LOCKS:
            raise
        logger.info("%s: the file system has no locks (%s); relying on atomic rename", path.parent, err.strerror)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def wait_for_entry(entry: Path, timeout_s: float | None = None) -> None:
    """Wait for another process to publish `entry` (see `one_writer_per_cache`); at most
    `timeout_s`, default `WAIT_FOR_WRITER_SECONDS`."""
    timeout_s = WAIT_FOR_WRITER_SECONDS if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while not is_ready(entry):
        if time.monotonic() > deadline:
            raise UserError(
                f"{entry}: the process that prepares this data cache entry published it, but it is not visible "
                f"here after {timeout_s:.0f} s; check that data.cache_dir is the same directory for every process "
                "that shares it, or give each node its own (--set data.cache_dir=LOCAL_DIR)"
            )
        time.sleep(POLL_SECONDS)


def probe_path(cache_dir: Path, token: str, rank: int) -> Path:
    """The file rank `rank` of job `token` leaves in its cache directory to find out who shares it."""
    return Path(cache_dir) / f".phased-cpt-{token}-rank{rank}.probe"


def write_probe(cache_dir: Path, token: str, rank: int) -> Path:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    path = probe_path(cache_dir, token, rank)
    path.write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    return path


def prepared_path(cache_dir: Path, token: str, writer: int) -> Path:
    return Path(cache_dir) / f".phased-cpt-{token}-rank{writer}.prepared"


def signal_prepared(cache_dir: Path, token: str, writer: int, error: str | None) -> None:
    """The writer of a cache directory tells the processes that read it that it finished
    preparing every phase (`error` None) or failed with `error`; one rename, never half a file."""
    path = prepared_path(cache_dir, token, writer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"error": error}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def wait_for_prepared(
    cache_dir: Path, token: str, writer: int, timeout_s: float = WAIT_FOR_PREPARATION_SECONDS
) -> str | None:
    """Wait for the writer's signal (`signal_prepared`); its error, or None when it succeeded."""
    path = prepared_path(cache_dir, token, writer)
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise UserError(f"rank {writer} did not finish preparing the data in {cache_dir} within {timeout_s:.0f} s")
        time.sleep(POLL_SECONDS)
    return json.loads(path.read_text(encoding="utf-8"))["error"]


def clear_prepared(cache_dir: Path, token: str, writer: int) -> None:
    prepared_path(cache_dir, token, writer).unlink(missing_ok=True)


def read_meta(entry: Path) -> dict[str, Any]:
    return json.loads((entry / META_FILE).read_text(encoding="utf-8"))


def write_meta(entry: Path, meta: dict[str, Any]) -> None:
    (entry / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


# --- one writer per cache directory in a multi-process run --------------------------------------


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
    seen by neither makes a second writer, which `publish_entry`'s atomic rename makes harmless."""
    probe = write_probe(cache_dir, token, rank())
    barrier()
    seen = {r for r in range(world_size()) if probe_path(cache_dir, token, r).exists()}
    views = tuple(all_gather_object(tuple(sorted(seen))))  # also the barrier after which each rank removes its probe
    probe.unlink(missing_ok=True)
    # Sharing is symmetric: a rank that saw this one's probe shares this directory even when
    # this one did not (yet) see its probe, so both elect the same writer.
    seen |= {r for r, view in enumerate(views) if rank() in view}
    return CacheSharing(tuple(sorted(seen)), views)


def one_writer_per_cache(cache_dir: Path, build: Callable[[], T]) -> T:
    """`build()` in every process, with one writer per cache directory: the writer prepares the
    entries `build` asks `cached_entry` for; the others wait for it through the file system (no
    collective time-out however long preparation takes), then only read (`cached_entry` waits
    for each entry instead of building it). A failed preparation (bad data) stops every process
    with its message. A single process just builds."""
    if world_size() == 1:
        return build()
    token = broadcast_object(uuid.uuid4().hex)
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
                result = build()
            except BaseException as err:
                signal_prepared(cache_dir, token, rank(), str(err) or type(err).__name__)
                raise
            signal_prepared(cache_dir, token, rank(), None)
        else:
            failed = wait_for_prepared(cache_dir, token, sharing.writer)
            if failed is not None:
                raise UserError(failed)
            with reading_only(cache_dir):
                result = build()
    except UserError as err:
        error = str(err)
    errors = all_gather_object(error)
    if rank() == sharing.writer:
        clear_prepared(cache_dir, token, rank())  # every reader has read it
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise UserError(failed)
    return result
