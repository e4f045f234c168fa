"""Git access through its command line, hardened for repositories nobody here wrote.

Owns every `git` subprocess of `from_git`, and every one goes through `GitRepo._command`:

- **Nothing the repository configures runs.** A repository cloned from someone else carries
  its own `.git/config`, hooks and `.gitattributes`; reading it must not run any of them. Each
  call gets a cleaned environment (every `GIT_*` variable of the caller dropped, no system or
  global config, no system attributes, no pager, no prompts, no optional locks, no lazy fetch)
  and `-c` overrides that beat the repository's own config: `core.fsmonitor=false`,
  `core.hooksPath=/dev/null`, `core.pager=cat`, `core.attributesFile=/dev/null`,
  `protocol.allow=never` (a partial clone cannot fetch, so no transport command runs),
  `credential.helper=`, `core.askPass=`, `core.sshCommand=false`, `gpg.program=false`,
  `log.showSignature=false`. Diffs are made with `--no-ext-diff --no-textconv` (no
  `diff.external`, no `diff=<driver>` command or textconv from `.gitattributes`). Only
  plumbing that never runs filters is used (`rev-parse`, `rev-list`, `ls-tree`, `log`,
  `cat-file --batch` without `--filters`), so `filter=<driver>` clean/smudge/process commands
  have no occasion to run.
- **Nothing the repository names is read.** Config keys that name a file are overridden
  (`SAFE_CONFIG`), config includes are refused, the git directory is checked for FIFOs and
  devices before git runs, git runs on an empty work tree, and every call is watched for
  stalls (`git_guard`).
- **A repository owned by another user** is refused by git itself (`safe.directory`); we say so
  in one line, and `allow_other_owner=True` (`--allow-other-owner`) trusts that one path
  explicitly with `-c safe.directory=PATH`.
- **Bytes until parsed.** Commit records of `git log -p` are separated by a marker that holds a
  random nonce chosen per run (`%x00phased-cpt-<32 hex>%x00`), so no byte sequence inside a diff
  (NUL bytes, invalid UTF-8, a line that looks like a header) can end a record early: content
  cannot contain a nonce chosen after it was written. A record stays bytes until its header is
  parsed; decoding happens per diff section, later (`diffs.py`).

Output that our parsers read is made independent of the repository's config too:
`core.quotepath=off`, no colour, standard `a/` `b/` prefixes, three lines of context, Myers
diff, rename detection on, `diff.relative=false`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from phased_cpt.errors import UserError
from phased_cpt.from_git import git_guard
from phased_cpt.from_git.git_guard import Watchdog, check_git_dir, find_git_dir

SAFE_CONFIG: dict[str, str] = {
    "core.fsmonitor": "false",
    "core.hooksPath": os.devnull,
    "core.pager": "cat",
    "core.attributesFile": os.devnull,
    "core.askPass": "",
    "core.sshCommand": "false",
    "credential.helper": "",
    "protocol.allow": "never",
    "gpg.program": "false",
    "log.showSignature": "false",
    "core.quotepath": "off",
    "color.ui": "never",
    "diff.noprefix": "false",
    "diff.mnemonicPrefix": "false",
    "diff.relative": "false",
    "log.showRoot": "true",
    # keys that name a file for git to read: a FIFO there hangs git, /dev/zero fills memory
    "core.excludesFile": os.devnull,
    "diff.orderFile": os.devnull,
    "mailmap.file": os.devnull,
    "mailmap.blob": "",
    "log.mailmap": "false",
    "blame.ignoreRevsFile": "",
    "commit.template": "",
    "gpg.ssh.allowedSignersFile": os.devnull,
    "gpg.ssh.revocationFile": os.devnull,
}
"""`-c` overrides on every git call (command-line config beats the repository's own)."""

_INCLUDE_KEY = re.compile(r"(?i)^(?:include|includeif\..*)\.path$")

_DROPPED_ENV = ("PAGER", "EDITOR", "VISUAL", "SSH_ASKPASS", "SSH_AUTH_SOCK")
_SAFE_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_PROTOCOL_FROM_USER": "0",
    "LC_ALL": "C",
}
_PATCH_OPTIONS = ("-p", "-M", "-U3", "--no-ext-diff", "--no-textconv", "--no-color", "--diff-algorithm=myers")
_READ_CHUNK_BYTES = 1 << 20
_HEADER_ROOM_BYTES = 1 << 16  # "id parent..." line before a patch; octopus merges have many parents
_HEADER = re.compile(rb"[0-9a-f]{40,64}(?: [0-9a-f]{40,64})*")


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
    """A git repository on disk, checked when opened; every method runs git in it.

    `git_dir` is the repository's git directory: once opened, git runs with `--git-dir` on it
    and `--work-tree` on an empty directory, so no file of the working tree (`.gitattributes`,
    `.mailmap`) is ever read; everything comes from the object store.
    """

    def __init__(self, root: Path, *, allow_other_owner: bool = False, git_dir: Path | None = None) -> None:
        self.root = root
        self.allow_other_owner = allow_other_owner
        self.git_dir = git_dir
        self._empty_dir = tempfile.TemporaryDirectory(prefix="phased-cpt-git-") if git_dir is not None else None
        self._boundary: tuple[str, ...] | None = None

    @classmethod
    def open(cls, path: Path, *, allow_other_owner: bool = False) -> GitRepo:
        """Check that `path` is (inside) a git repository and return it at its top level.

        Before git reads anything, the git directory is checked (`check_git_dir`): no FIFO or
        device where git reads a file, no config include.
        """
        if shutil.which("git") is None:
            raise UserError("git was not found on PATH; `data from-git` needs the git command line")
        if not path.exists():
            raise UserError(f"{path}: no such directory (expected a git repository)")
        if not path.is_dir():
            raise UserError(f"{path}: not a directory (expected a git repository)")
        found = find_git_dir(path.resolve())
        if found is not None:
            _refuse_includes(check_git_dir(found))
        probe = cls(path.resolve(), allow_other_owner=allow_other_owner)
        result = probe._run("rev-parse", "--is-bare-repository", "--absolute-git-dir", check=False)
        if result.returncode != 0:
            raise UserError(f"{path}: not a git repository ({_git_message(result.stderr)})")
        bare, git_dir = result.stdout.decode("utf-8", "surrogateescape").splitlines()[:2]
        if found is None or found.resolve() != Path(git_dir).resolve():
            _refuse_includes(check_git_dir(Path(git_dir)))  # git found it where we did not look
        if bare.strip() == "true":
            return cls(probe.root, allow_other_owner=allow_other_owner, git_dir=Path(git_dir))
        top = probe._run("rev-parse", "--show-toplevel").stdout.decode("utf-8", "surrogateescape")
        return cls(Path(top.strip()), allow_other_owner=allow_other_owner, git_dir=Path(git_dir))

    def shallow_boundary(self) -> tuple[str, ...]:
        """Ids of the commits a shallow clone was cut at (`.git/shallow`), () for a full clone.

        git shows such a commit without its parents, so its diff "adds" every file of its tree:
        a fabricated change. `iter_patches` leaves these commits out.
        """
        if self._boundary is None:
            self._boundary = ()
            if self._run("rev-parse", "--is-shallow-repository").stdout.strip() == b"true":
                name = self._run("rev-parse", "--git-path", "shallow").stdout.decode("utf-8", "surrogateescape")
                path = Path(name.strip())
                path = path if path.is_absolute() else (self.git_dir or self.root) / path
                self._boundary = tuple(sorted(set(path.read_text("ascii").split()))) if path.is_file() else ()
        return self._boundary

    def resolve_commit(self, rev: str) -> str:
        """Full id of the commit `rev` names; a UserError when it names none."""
        result = self._run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
        if result.returncode != 0:
            hint = " (the repository has no commits yet)" if rev == "HEAD" else ""
            raise UserError(f"{self.root}: revision {rev!r} does not name a commit{hint}")
        return result.stdout.decode("ascii").strip()

    def current_branch(self) -> str | None:
        """The branch HEAD points at (`main`), or None when HEAD is detached."""
        result = self._run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        name = result.stdout.decode("utf-8", "replace").strip()
        return name if result.returncode == 0 and name else None

    def first_parent_chain(self, commit: str) -> set[str]:
        """Ids of `commit` and its first parent, its first parent's first parent, ...: the mainline."""
        output = self._run("rev-list", "--first-parent", "--end-of-options", commit, "--").stdout
        return set(output.decode("ascii").split())

    def first_parent_times(self, commit: str) -> list[tuple[str, int]]:
        """(id, committer time as Unix seconds) of `commit` and its first-parent ancestors, newest first."""
        output = self._run("rev-list", "--first-parent", "--timestamp", "--end-of-options", commit, "--").stdout
        return [(oid, int(stamp)) for stamp, oid in (line.split() for line in output.decode("ascii").splitlines())]

    def is_shallow(self) -> bool:
        """True for a shallow clone: the history before its boundary commits is missing."""
        return bool(self.shallow_boundary())

    def commit_graph(self, revs: str, *, since_epoch: int | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """(id, parent ids) of every commit of `revs` (a revision, or a range such as `A..B`),
        parents before children (`rev-list --topo-order --reverse`)."""
        args = ["rev-list", "--reverse", "--topo-order", "--parents"]
        args += [f"--since=@{since_epoch}"] if since_epoch is not None else []
        output = self._run(*args, "--end-of-options", revs, "--").stdout.decode("ascii")
        return [(ids[0], tuple(ids[1:])) for ids in (line.split() for line in output.splitlines()) if ids]

    def list_tree(self, commit: str) -> list[TreeEntry]:
        """Every tracked path of `commit` (blobs and submodules), sorted by path bytes."""
        output = self._run("ls-tree", "-r", "-z", "--long", "--full-tree", commit).stdout
        entries = []
        for record in output.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid, size = meta.split()
            entries.append(
                TreeEntry(path, mode.decode(), kind.decode(), oid.decode(), int(size) if size != b"-" else 0)
            )
        return sorted(entries, key=lambda entry: entry.path_bytes)

    def iter_added_files(self, commit: str) -> Iterator[tuple[bytes, str, str]]:
        """(path, mode, blob id) of every file ever added in the history of `commit`."""
        args = [
            "log",
            "--format=",
            "--raw",
            "-z",
            "--no-renames",
            "--no-abbrev",
            "--diff-filter=A",
            "--no-ext-diff",
            "--no-textconv",
            "--end-of-options",
            commit,
            "--",
        ]
        output = self._run(*args).stdout
        fields = output.split(b"\0")
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.strip(b"\n").split()
            if len(parts) >= 4 and parts[0].startswith(b":"):
                yield path, parts[1].decode("ascii"), parts[3].decode("ascii")

    def iter_patches(
        self, commit: str, *, merges: bool, since_epoch: int | None, max_patch_bytes: int
    ) -> Iterator[CommitPatch]:
        """Commits reachable from `commit`, oldest first, each with its patch.

        `merges=False`: every commit, merges included but without a patch (`--diff-merges=off`).
        `merges=True`: merge commits only, each with its diff against the first parent.
        Only the first `max_patch_bytes` of a patch are kept in memory; the rest is counted.
        The commits of a shallow clone's boundary (`shallow_boundary`) are left out.
        """
        nonce = f"phased-cpt-{secrets.token_hex(16)}"
        args = ["log", "--reverse", f"--format=%x00{nonce}%x00%H %P", *_PATCH_OPTIONS]
        args += ["--merges", "--diff-merges=first-parent"] if merges else ["--diff-merges=off"]
        if since_epoch is not None:
            args.append(f"--since=@{since_epoch}")
        args += ["--end-of-options", commit, *(f"^{oid}" for oid in self.shallow_boundary()), "--"]
        marker = b"\0" + nonce.encode("ascii") + b"\0"
        for record, total in self._stream_records(args, marker, max_patch_bytes + _HEADER_ROOM_BYTES):
            header, _, patch = record.partition(b"\n")
            if _HEADER.fullmatch(header.rstrip(b" ")) is None:
                raise UserError(f"{self.root}: unexpected output from git log: {header[:80]!r}")
            oid, *parents = header.decode("ascii").split()
            patch = patch[1:] if patch.startswith(b"\n") else patch
            yield CommitPatch(oid, tuple(parents), patch[:max_patch_bytes], max(0, total - len(header) - 2))

    def open_objects(self) -> ObjectReader:
        """A reader of objects by id, backed by one `git cat-file --batch`; use it as a context."""
        process = self._popen(["cat-file", "--batch"], stdin=subprocess.PIPE)
        return ObjectReader(process, Watchdog(process, self._stalled_message(["cat-file"])))

    def _stream_records(self, args: list[str], marker: bytes, max_record_bytes: int) -> Iterator[tuple[bytes, int]]:
        """The records of `git args` that each start with `marker`, each cut to
        `max_record_bytes`, with its full size."""
        with tempfile.TemporaryFile() as stderr:
            process = self._popen(args, stderr=stderr)
            assert process.stdout is not None
            finished = False
            with Watchdog(process, self._stalled_message(args)) as watchdog:
                try:
                    yield from split_records(watchdog.reader(process.stdout), marker, max_record_bytes)
                    finished = True
                finally:
                    process.stdout.close()
                    if not finished:  # the consumer stopped early or failed: git is not needed any more
                        process.kill()
                    returncode = process.wait()
            if returncode != 0:
                stderr.seek(0)
                raise UserError(f"{self.root}: git {args[0]} failed: {_git_message(stderr.read())}")

    def _command(self, args: tuple[str, ...] | list[str]) -> list[str]:
        """The one place a git command line is made: hardened config first, then `args`."""
        config = dict(SAFE_CONFIG)
        if self.allow_other_owner:
            config["safe.directory"] = str(self.root)
        overrides = [item for key, value in config.items() for item in ("-c", f"{key}={value}")]
        location = []
        if self.git_dir is not None and self._empty_dir is not None:
            location = [f"--git-dir={self.git_dir}", f"--work-tree={self._empty_dir.name}"]
        return ["git", "--no-pager", *location, *overrides, *args]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run git to completion, its output in memory; stopped when it stalls (`IDLE_TIMEOUT_S`)."""
        with tempfile.TemporaryFile() as stderr:
            process = self._popen(list(args), stderr=stderr)
            assert process.stdout is not None
            with Watchdog(process, self._stalled_message(args)) as watchdog:
                stdout = b"".join(iter(lambda: watchdog.read(process.stdout, _READ_CHUNK_BYTES), b""))
                process.stdout.close()
                returncode = process.wait()
            stderr.seek(0)
            result = subprocess.CompletedProcess(self._command(args), returncode, stdout, stderr.read())
        self._refuse_other_owner(result.stderr)
        if check and result.returncode != 0:
            raise UserError(f"{self.root}: git {args[0]} failed: {_git_message(result.stderr)}")
        return result

    def _popen(
        self, args: list[str], *, stdin: int | None = None, stderr: IO[bytes] | int = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._command(args),
            cwd=self._empty_dir.name if self._empty_dir is not None else self.root,
            env=safe_env(),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )

    def _stalled_message(self, args: tuple[str, ...] | list[str]) -> str:
        return (
            f"{self.root}: git {args[0]} produced no output for {git_guard.IDLE_TIMEOUT_S:g} s and was stopped "
            "(a file the repository makes git read may be a FIFO or a device; see docs/from-git.md#safety)"
        )

    def _refuse_other_owner(self, stderr: bytes) -> None:
        if b"dubious ownership" in stderr:
            raise UserError(
                f"{self.root}: the repository is owned by another user, and git refuses to read "
                "such a repository (its safe.directory check). If you trust it, pass "
                "--allow-other-owner (phased-cpt never runs the repository's hooks, filters or "
                "configured commands either way), or run as the owner."
            )


_C_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}


def quote_path(raw: bytes) -> str:
    """A path as text, as `git -c core.quotepath=off` prints it: unchanged when it is UTF-8
    without control characters, `"` or `\\`; otherwise in double quotes with C escapes
    (`"a\\nb.py"`) and each byte that is not UTF-8 as `\\ooo` octal. Never ambiguous, never lossy."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(ord(c) < 32 or c in '"\\\x7f' for c in text):
        return text
    out, index = [], 0
    while index < len(raw):
        byte = raw[index]
        if byte in _C_ESCAPES:
            out.append(_C_ESCAPES[byte])
        elif byte < 32 or byte == 127:
            out.append(f"\\{byte:03o}")
        elif byte < 128:
            out.append(chr(byte))
        else:
            width = 2 if byte >> 5 == 6 else 3 if byte >> 4 == 14 else 4 if byte >> 3 == 30 else 1
            try:
                out.append(raw[index : index + width].decode("utf-8"))
                index += width
                continue
            except UnicodeDecodeError:
                out.append(f"\\{byte:03o}")
        index += 1
    return '"' + "".join(out) + '"'


def split_records(stream: IO[bytes], marker: bytes, max_record_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Split a byte stream into the records that each start with `marker`.

    Yields each record without its marker, cut to its first `max_record_bytes`, with its full
    size. Bytes before the first marker are ignored. A marker split across two reads is found.
    """
    keep_back = len(marker) - 1
    pending = b""
    parts: list[bytes] = []
    kept = total = 0
    started = False

    def add(piece: bytes) -> None:
        nonlocal kept, total
        total += len(piece)
        if kept < max_record_bytes and piece:
            parts.append(piece[: max_record_bytes - kept])
            kept += len(parts[-1])

    while chunk := stream.read(_READ_CHUNK_BYTES):
        data = pending + chunk
        position = 0
        while (hit := data.find(marker, position)) >= 0:
            add(data[position:hit])
            if started:
                yield b"".join(parts), total
            started, parts, kept, total = True, [], 0, 0
            position = hit + len(marker)
        safe_end = max(position, len(data) - keep_back)
        add(data[position:safe_end])
        pending = data[safe_end:]
    add(pending)
    if started:
        yield b"".join(parts), total


class ObjectReader:
    """Reads objects one at a time from a long-lived `git cat-file --batch` process."""

    def __init__(self, process: subprocess.Popen[bytes], watchdog: Watchdog) -> None:
        self._process = process
        self._watchdog = watchdog

    def __enter__(self) -> ObjectReader:
        self._watchdog.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:  # git was stopped by the watchdog
            pass
        self._process.stdout.close()
        self._process.wait()
        self._watchdog.__exit__(*exc_info)

    def read(self, oid: str) -> bytes:
        """The raw content of object `oid` (a blob's bytes, a commit's headers and message)."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(oid.encode() + b"\n")
        stdin.flush()
        header = self._watchdog.readline(stdout).split()
        if len(header) != 3:
            self._watchdog.raise_if_fired()
            raise UserError(f"git object {oid} is missing from the repository")
        data = self._watchdog.read(stdout, int(header[2]), exact=True)
        self._watchdog.read(stdout, 1)  # the newline after every object
        self._watchdog.raise_if_fired()
        return data

    def read_message(self, oid: str) -> CommitMessage | None:
        """Subject, body and author date of commit `oid`; None when its message cannot be decoded."""
        return parse_commit_object(self.read(oid))


def parse_commit_object(raw: bytes) -> CommitMessage | None:
    """Split a raw commit object into subject, body and author date (honouring `encoding`).

    The message is decoded strictly, in the encoding its `encoding` header names (UTF-8 without
    one); None when it is not valid in that encoding, or holds a NUL byte: text is never decoded
    lossily.
    """
    headers, _, message = raw.partition(b"\n\n")
    encoding = "utf-8"
    author_date = ""
    for line in headers.split(b"\n"):
        if line.startswith(b"author "):
            author_date = _format_ident_date(line)
        elif line.startswith(b"encoding "):
            encoding = line[len(b"encoding ") :].decode("ascii", errors="replace").strip()
    try:
        text = message.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return None
    if "\0" in text:
        return None
    paragraphs = text.strip().split("\n\n", 1)
    subject = " ".join(line.strip() for line in paragraphs[0].splitlines()).strip()
    body = paragraphs[1].strip() if len(paragraphs) > 1 else ""
    return CommitMessage(subject, "\n".join(line.rstrip() for line in body.splitlines()), author_date)


def _format_ident_date(ident: bytes) -> str:
    """`author Name <email> 1700000000 +0100` -> `2023-11-14T23:13:20+01:00`; "" when malformed."""
    try:
        stamp, offset = ident.rsplit(b" ", 2)[1:]
        sign = -1 if offset.startswith(b"-") else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
        return datetime.fromtimestamp(int(stamp), timezone(delta)).isoformat()
    except (ValueError, OverflowError, OSError):
        return ""


def _refuse_includes(configs: list[Path]) -> None:
    """A UserError when a config file of `configs` includes another file: git has no switch to
    skip includes, so they are refused rather than followed (read with `--no-includes`)."""
    for config in (path for path in configs if path.is_file()):
        with tempfile.TemporaryDirectory(prefix="phased-cpt-git-") as neutral:
            reader = GitRepo(Path(neutral))
            result = reader._run("config", "--file", str(config), "--no-includes", "--null", "--list", check=False)
        if result.returncode != 0:
            raise UserError(f"{config}: git cannot read this config file ({_git_message(result.stderr)})")
        for item in result.stdout.split(b"\0"):
            key, _, value = item.decode("utf-8", "replace").partition("\n")
            if _INCLUDE_KEY.match(key):
                raise UserError(
                    f"{config}: includes another config file ({key} = {value}); phased-cpt does not let git "
                    "follow includes of a repository it reads. Remove the include, or run on a fresh clone"
                )


def safe_env() -> dict[str, str]:
    """The caller's environment without anything that steers git, plus the hardening above."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_") and key not in _DROPPED_ENV}
    env.update(_SAFE_ENV)
    return env


def _git_message(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
