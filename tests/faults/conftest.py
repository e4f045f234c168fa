"""Fault injection helpers: a real small or read-only filesystem where the machine allows it
(root in a container that may mount), a patched write that fails with ENOSPC everywhere.

Root ignores file modes, so a read-only directory is a read-only bind mount for root and a
`chmod 0555` directory otherwise; a full disk is a small tmpfs (root only) or a patched write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted at `path` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)):
        pytest.skip("mounting a small tmpfs needs root (and a container that allows mounts)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` made read-only for this process: a read-only bind mount as root, chmod 0555 otherwise."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        pytest.skip("a read-only directory for root needs a bind mount, which this machine does not allow")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def disk_full() -> OSError:
    """The error a write on a full disk raises."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content: to show a fault changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
