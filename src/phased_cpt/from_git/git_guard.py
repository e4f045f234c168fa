"""What git must never be left waiting on: the git directory checked before git reads it, and a
watchdog that stops a git process that stalls.

A repository can make git read a file it names: a FIFO there hangs git forever, a device such as
`/dev/zero` fills memory. `check_git_dir` refuses such entries in the git directory before the
first git call; `git.SAFE_CONFIG` overrides the config keys that name a file; `git.GitRepo`
refuses config includes (git has no switch to skip them). `Watchdog` is the backstop for what
these do not know: a git call that makes us wait `IDLE_TIMEOUT_S` for its next output is killed
and reported in one line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from phased_cpt.errors import UserError

IDLE_TIMEOUT_S = 180.0
"""A git call that has produced no output for this long while we wait on it is stopped."""

_READ_CHUNK_BYTES = 1 << 20


class Watchdog:
    """Stops a git process that makes us wait longer than `IDLE_TIMEOUT_S` for its next output.

    Only time spent waiting in `read`/`readline` counts: a git process blocked because we are
    busy with its previous output is not stalled. Leaving the context raises a `UserError` with
    `message` when the process was stopped.
    """

    def __init__(self, process: subprocess.Popen[bytes], message: str) -> None:
        self._process = process
        self._message = message
        self._waiting_since: float | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Watchdog:
        if not self._thread.is_alive() and not self._done.is_set():
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self.raise_if_fired()

    def raise_if_fired(self) -> None:
        if self.fired:
            raise UserError(self._message)

    def read(self, stream: IO[bytes], size: int, *, exact: bool = False) -> bytes:
        """`stream.read(size)` (all `size` bytes when `exact`), timed."""
        with self._timed():
            if not exact:
                return stream.read(size)
            parts, left = [], size
            while left > 0 and (part := stream.read(min(left, _READ_CHUNK_BYTES))):
                parts.append(part)
                left -= len(part)
            return b"".join(parts)

    def readline(self, stream: IO[bytes]) -> bytes:
        with self._timed():
            return stream.readline()

    def reader(self, stream: IO[bytes]) -> _TimedStream:
        """`stream` with every `read` timed by this watchdog."""
        return _TimedStream(stream, self)

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        with self._lock:
            self._waiting_since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._waiting_since = None

    def _watch(self) -> None:
        poll_s = min(1.0, IDLE_TIMEOUT_S / 4)
        while not self._done.wait(poll_s):
            with self._lock:
                stalled = self._waiting_since is not None and time.monotonic() - self._waiting_since > IDLE_TIMEOUT_S
            if stalled:
                self.fired = True
                self._process.kill()
                return


class _TimedStream:
    def __init__(self, stream: IO[bytes], watchdog: Watchdog) -> None:
        self._stream = stream
        self._watchdog = watchdog

    def read(self, size: int) -> bytes:
        return self._watchdog.read(self._stream, size)


def find_git_dir(path: Path) -> Path | None:
    """The git directory git would find from `path` (a `.git` directory or `gitdir:` file above
    it, or `path` itself when bare), found without running git; None when there is none."""
    for directory in (path, *path.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.exists() or dot_git.is_symlink():
            if not dot_git.is_file():
                raise UserError(f"{dot_git}: not a regular file or directory; git would hang or fail reading it")
            text = dot_git.read_bytes()[:4096].decode("utf-8", "surrogateescape")
            if text.startswith("gitdir: "):
                return directory / text[len("gitdir: ") :].strip()
            return None
        if (directory / "HEAD").is_file() and (directory / "objects").is_dir() and (directory / "refs").is_dir():
            return directory
    return None


def check_git_dir(git_dir: Path) -> list[Path]:
    """Refuse a git directory that would make git hang or exhaust memory before it reads it;
    return the config files git would read there (the caller refuses includes in them).

    Every entry under the git directory (and under its common directory, for a linked worktree)
    must be a regular file, a directory, or a link to one: a FIFO, socket or device (`/dev/zero`)
    where git reads a file (`config`, `packed-refs`, `info/attributes`, `objects/info/alternates`,
    `shallow`, ...) is refused.
    """
    directories = [git_dir]
    common = git_dir / "commondir"
    if common.is_file():
        directories.append(git_dir / common.read_bytes()[:4096].decode("utf-8", "surrogateescape").strip())
    for directory in directories:
        for path in [directory, *_walk(directory)]:
            try:
                mode = path.stat().st_mode
            except OSError as err:
                raise UserError(f"{path}: cannot be read ({err.strerror}); git would fail or hang on it") from None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UserError(
                    f"{path}: is a {_file_kind(mode)}, not a regular file; git would hang or exhaust memory "
                    "reading it. Remove it, or run on a fresh clone of the repository"
                )
    return [directory / name for directory in directories for name in ("config", "config.worktree")]


def _walk(directory: Path) -> Iterator[Path]:
    """Every entry below `directory`, not descending into linked directories."""
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in [*dirs, *files]:
            yield Path(parent) / name


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"
