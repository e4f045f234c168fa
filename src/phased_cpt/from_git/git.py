"""Git access through its command line, streamed so memory stays flat with history length.

Owns every `git` subprocess of `from_git`: opening and checking the repository, resolving a
revision, listing the tracked files of a commit (`git ls-tree -r -z --long`), reading objects
(one long-lived `git cat-file --batch`), and streaming commits with their patches
(`git log --reverse -p`, one commit in memory at a time). Nothing here parses `.git` by hand.

Every command runs with options that make its output independent of the user's git config
where that config would change what we parse: `core.quotepath=off`, no colour, no external diff
or textconv, rename detection on, standard `a/` `b/` prefixes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from phased_cpt.errors import UserError

_CONFIG = (
    "-c", "core.quotepath=off", "-c", "color.ui=never", "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false", "-c", "log.showSignature=false", "-c", "log.showRoot=true",
)
_PATCH_OPTIONS = ("-p", "-M", "--no-ext-diff", "--no-textconv", "--no-color", "--diff-algorithm=myers")
_READ_CHUNK_BYTES = 1 << 20
_HEADER_ROOM_BYTES = 1 << 16  # "id parent..." line before a patch; octopus merges have many parents


@dataclass(frozen=True)
class TreeEntry:
    """One tracked path of a commit, as `git ls-tree -r --long` lists it."""

    path_bytes: bytes
    mode: str
    kind: str  # "blob" or "commit" (a submodule)
    oid: str
    size_bytes: int  # 0 for submodules


@dataclass(frozen=True)
class CommitPatch:
    """One commit from `git log -p`: its id, parents and patch (possibly cut, see `total_bytes`)."""

    oid: str
    parents: tuple[str, ...]
    patch: bytes  # the first `max_patch_bytes` of the patch; empty for a commit without one
    total_bytes: int  # size of the whole patch git produced


@dataclass(frozen=True)
class CommitMessage:
    """The message and author date of one commit object."""

    subject: str
    body: str
    author_date: str  # ISO 8601 with the author's UTC offset


class GitRepo:
    """A git repository on disk, checked when opened; every method runs git in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, path: Path) -> GitRepo:
        """Check that `path` is (inside) a git repository and return it at its top level."""
        if shutil.which("git") is None:
            raise UserError("git was not found on PATH; `data from-git` needs the git command line")
        if not path.exists():
            raise UserError(f"{path}: no such directory (expected a git repository)")
        if not path.is_dir():
            raise UserError(f"{path}: not a directory (expected a git repository)")
        probe = cls(path)
        result = probe._run("rev-parse", "--is-bare-repository", check=False)
        if result.returncode != 0:
            raise UserError(f"{path}: not a git repository ({_git_message(result.stderr)})")
        if result.stdout.strip() == b"true":
            return cls(path.resolve())
        top = probe._run("rev-parse", "--show-toplevel").stdout.decode().strip()
        return cls(Path(top))

    def resolve_commit(self, rev: str) -> str:
        """Full id of the commit `rev` names; a UserError when it names none."""
        result = self._run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                           check=False)
        if result.returncode != 0:
            hint = " (the repository has no commits yet)" if rev == "HEAD" else ""
            raise UserError(f"{self.root}: revision {rev!r} does not name a commit{hint}")
        return result.stdout.decode().strip()

    def list_tree(self, commit: str) -> list[TreeEntry]:
        """Every tracked path of `commit` (blobs and submodules), sorted by path bytes."""
        output = self._run("ls-tree", "-r", "-z", "--long", "--full-tree", commit).stdout
        entries = []
        for record in output.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid, size = meta.split()
            entries.append(TreeEntry(path, mode.decode(), kind.decode(), oid.decode(),
                                     int(size) if size != b"-" else 0))
        return sorted(entries, key=lambda entry: entry.path_bytes)

    def iter_patches(self, commit: str, *, merges: bool, since_epoch: int | None,
                     max_patch_bytes: int) -> Iterator[CommitPatch]:
        """Commits reachable from `commit`, oldest first, each with its patch.

        `merges=False`: every commit, merges included but without a patch (`--diff-merges=off`).
        `merges=True`: merge commits only, each with its diff against the first parent.
        Only the first `max_patch_bytes` of a patch are kept in memory; the rest is counted.
        """
        args = ["log", "--reverse", "--format=%x00%H %P", *_PATCH_OPTIONS]
        args += ["--merges", "--diff-merges=first-parent"] if merges else ["--diff-merges=off"]
        if since_epoch is not None:
            args.append(f"--since=@{since_epoch}")
        args += ["--end-of-options", commit, "--"]
        for record, total in self._stream_records(args, max_patch_bytes + _HEADER_ROOM_BYTES):
            header, _, patch = record.partition(b"\n")
            oid, *parents = header.decode().split()
            patch = patch[1:] if patch.startswith(b"\n") else patch
            yield CommitPatch(oid, tuple(parents), patch[:max_patch_bytes],
                              max(0, total - len(header) - 2))

    def open_objects(self) -> ObjectReader:
        """A reader of objects by id, backed by one `git cat-file --batch`; use it as a context."""
        return ObjectReader(self._popen(["cat-file", "--batch"], stdin=subprocess.PIPE))

    def _stream_records(self, args: list[str], max_record_bytes: int) -> Iterator[tuple[bytes, int]]:
        """NUL-separated records of `git args`, each cut to `max_record_bytes`, with its full size."""
        with tempfile.TemporaryFile() as stderr:
            process = self._popen(args, stderr=stderr)
            assert process.stdout is not None
            finished = False
            try:
                parts: list[bytes] = []
                kept = total = 0
                started = False
                while chunk := process.stdout.read(_READ_CHUNK_BYTES):
                    pieces = chunk.split(b"\0")
                    for index, piece in enumerate(pieces):
                        if index > 0:  # a NUL ended the previous record
                            if started:
                                yield b"".join(parts), total
                            started, parts, kept, total = True, [], 0, 0
                        total += len(piece)
                        if kept < max_record_bytes:
                            parts.append(piece[: max_record_bytes - kept])
                            kept += len(parts[-1])
                if started:
                    yield b"".join(parts), total
                finished = True
            finally:
                process.stdout.close()
                if not finished:  # the consumer stopped early or failed: git is not needed any more
                    process.kill()
                returncode = process.wait()
            if returncode != 0:
                stderr.seek(0)
                raise UserError(f"{self.root}: git {args[0]} failed: {_git_message(stderr.read())}")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(["git", *_CONFIG, *args], cwd=self.root, env=_git_env(),
                                capture_output=True, check=False)
        if check and result.returncode != 0:
            raise UserError(f"{self.root}: git {args[0]} failed: {_git_message(result.stderr)}")
        return result

    def _popen(self, args: list[str], *, stdin: int | None = None,
               stderr: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["git", *_CONFIG, *args], cwd=self.root, env=_git_env(),
                                stdin=stdin, stdout=subprocess.PIPE, stderr=stderr)


class ObjectReader:
    """Reads objects one at a time from a long-lived `git cat-file --batch` process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        self._process.stdout.close()
        self._process.wait()

    def read(self, oid: str) -> bytes:
        """The raw content of object `oid` (a blob's bytes, a commit's headers and message)."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(oid.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:
            raise UserError(f"git object {oid} is missing from the repository")
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after every object
        return data

    def read_message(self, oid: str) -> CommitMessage:
        """Subject, body and author date of commit `oid`."""
        return parse_commit_object(self.read(oid))


def parse_commit_object(raw: bytes) -> CommitMessage:
    """Split a raw commit object into subject, body and author date (honouring `encoding`)."""
    headers, _, message = raw.partition(b"\n\n")
    encoding = "utf-8"
    author_date = ""
    for line in headers.split(b"\n"):
        if line.startswith(b"author "):
            author_date = _format_ident_date(line.decode("utf-8", errors="replace"))
        elif line.startswith(b"encoding "):
            encoding = line[len(b"encoding "):].decode("ascii", errors="replace").strip()
    try:
        text = message.decode(encoding, errors="replace")
    except LookupError:
        text = message.decode("utf-8", errors="replace")
    paragraphs = text.strip().split("\n\n", 1)
    subject = " ".join(line.strip() for line in paragraphs[0].splitlines()).strip()
    body = paragraphs[1].strip() if len(paragraphs) > 1 else ""
    return CommitMessage(subject, "\n".join(line.rstrip() for line in body.splitlines()), author_date)


def _format_ident_date(ident: str) -> str:
    """`author Name <email> 1700000000 +0100` -> `2023-11-14T23:13:20+01:00`."""
    stamp, offset = ident.rsplit(" ", 2)[1:]
    sign = -1 if offset.startswith("-") else 1
    delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
    return datetime.fromtimestamp(int(stamp), timezone(delta)).isoformat()


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


def _git_message(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
