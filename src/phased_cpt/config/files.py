"""Which files a config's data paths name: globs expanded, and every file counted once.

A file is identified by what it is on disk (device and inode), not by its spelling: the same
file named twice in a list, reached through a symlink beside it, or matched by two overlapping
globs is one file, kept where it is first named; the later names are dropped and reported
(`Expansion.dropped`). `**` descends into symlinked directories, but never into a directory it
has already visited, so a link back up (`g/loop -> .`) matches nothing twice and cannot recurse
without end. Like `glob`, `*` does not match names starting with a dot.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FileIdentity = tuple[int, int]
"""(st_dev, st_ino): the same for every name of one file."""


def file_identity(path: Path) -> FileIdentity | None:
    """What `path` is on disk, following symlinks; None when it cannot be reached."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def same_file(a: Path, b: Path) -> bool:
    """One file under two names (or one name twice, existing or not)."""
    found = file_identity(a)
    return (found is not None and found == file_identity(b)) or a.resolve() == b.resolve()


def expand_pattern(pattern: Path) -> tuple[Path, ...]:
    """The regular files a path or glob names, sorted (a plain path names itself, existing or
    not). Two names of one file both appear: `unique_files` keeps one."""
    text = str(pattern)
    if not glob.has_magic(text):
        return (pattern,)
    anchor = Path(pattern.anchor) if pattern.is_absolute() else Path()
    parts = pattern.parts[1:] if pattern.is_absolute() else pattern.parts
    return tuple(sorted({path for path in _walk(anchor, parts, set()) if path.is_file()}))


def _walk(directory: Path, parts: Sequence[str], visited: set[tuple[FileIdentity, int]]) -> Iterator[Path]:
    if not parts:
        yield directory
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        identity = file_identity(directory)
        if identity is None or (identity, len(parts)) in visited:
            return  # this `**` was here before through another name: a link loop, or a second way in
        visited.add((identity, len(parts)))
        yield from _walk(directory, rest, visited)
        for name in _listdir(directory):
            child = directory / name
            if name.startswith("."):
                continue
            if child.is_dir():
                yield from _walk(child, parts, visited)
            elif not rest:  # a trailing `**` names the files below too
                yield child
    elif glob.has_magic(head):
        for name in _listdir(directory):
            if fnmatch.fnmatchcase(name, head) and (head.startswith(".") or not name.startswith(".")):
                yield from _walk(directory / name, rest, visited)
    else:
        yield from _walk(directory / head, rest, visited)


def _listdir(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


@dataclass
class Expansion:
    """Files named once each, in the order first named, and the names dropped as repeats."""

    kept: list[Path] = field(default_factory=list)
    dropped: list[tuple[Path, Path]] = field(default_factory=list)
    """(the repeated name, the name it repeats)."""
    seen: dict[FileIdentity, Path] = field(default_factory=dict)

    def add(self, path: Path) -> bool:
        identity = file_identity(path)
        first = self.seen.setdefault(identity, path) if identity is not None else path
        if first is not path:
            self.dropped.append((path, first))
            return False
        self.kept.append(path)
        return True

    def notes(self, where: str) -> list[str]:
        return [
            f"{where}: {repeat} is the file {first} again (a repeated entry, a link to it, or an overlapping "
            "glob); it is read once"
            for repeat, first in self.dropped
        ]


def unique_files(paths: Sequence[Path]) -> Expansion:
    """`paths` with every file kept once (see `Expansion`)."""
    expansion = Expansion()
    for path in paths:
        expansion.add(path)
    return expansion


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a data file (None: it is a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
        if os.path.lexists(path) and err.errno == errno.ENOENT:
            return "is a symlink to a file that does not exist"
        return "does not exist" if err.errno == errno.ENOENT else f"cannot be read ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
    kind = next((what for test, what in kinds if test(mode)), "a device")
    return f"is {kind}, not a regular file"
