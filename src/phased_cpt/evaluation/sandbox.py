"""Running model-written code: each program in its own process, under limits, scored by whether
it ran to its end (HumanEval's tests, `humaneval.py`).

A completion is untrusted: it may hang, fork, write files, open sockets or eat memory. Every limit
below holds for every program; the ones that depend on the machine are named as such and
`sandbox_mechanisms()` says which hold here (each HumanEval cell records it; the report shows it).

Always:

- **A separate process** (`python -I -S`: no user site, no PYTHONPATH, no startup files), in a
  new session (its own process group), started with an empty environment but for `HOME`,
  `TMPDIR` and `PATH`; stdin is the program, nothing else.
- **A temporary working directory** made for this program alone (`HOME` and `TMPDIR` point at
  it), removed afterwards.
- **Time**: a wall-clock limit (`timeout_s`): on expiry the whole process group is killed
  (SIGKILL); and `RLIMIT_CPU` (`timeout_s` rounded up, + 1 s) against a busy loop.
- **Memory**: `RLIMIT_AS` (`memory_bytes`, 2 GiB by default); `RLIMIT_FSIZE` (16 MiB a file),
  `RLIMIT_NOFILE` (64), no core files; at most `MAX_WRITES` (32) files opened for writing.
- **Processes**: `RLIMIT_NPROC` (`MAX_PROCESSES`) and an audit hook (`sys.addaudithook`) that
  refuses `os.fork`, `os.forkpty`, `os.system`, `os.exec*`, `os.spawn*`, `os.posix_spawn`,
  `subprocess.Popen`, `pty.spawn`; after the program, every process of its group is killed.
- **No network**: the audit hook refuses `socket.__new__` (socket creation) and `socket.connect`.
- **No writes outside the working directory**: the audit hook refuses `open` for writing and
  `os.remove/rename/mkdir/rmdir/chmod/chown/symlink/link/truncate/utime`, `shutil.*` on any path
  outside it (and `sqlite3.connect` to a file there); `ctypes` (which could call libc around the
  hook) and `_posixsubprocess` (whose `fork_exec` raises no audit event) cannot be imported, so
  neither can `subprocess`. Nor can a program get around that check: the hook refuses `dir_fd=`,
  `os.chdir`/`os.fchdir`, opening a directory other than its own (whose descriptor would be a
  `dir_fd`) or a device or FIFO, `chmod/chown/utime/setxattr` through a descriptor of a file
  outside, `resource.setrlimit` and `_posixshmem`; `os.mkfifo`/`os.mknod` (no audit event in
  Python 3.11) are removed from `os`.
- **Output** goes to unnamed files, not pipes: `RLIMIT_FSIZE` stops endless printing (a pipe
  filled this process's memory), and nothing that outlived the program can hold a pipe open.

Where the machine allows (Linux with `unshare`, run as root or with unprivileged user
namespaces; `sandbox_mechanisms()` tests it once):

- a **new network namespace**: the process sees no network interface but its own loopback,
  which is down, so even code that got past the hook reaches nothing;
- a **new PID namespace**: when its first process ends, the kernel kills every process in it, so
  no child outlives the program even if it left the process group;
- run as root, the program **drops to the `nobody` user** (uid/gid 65534, no groups) before it
  runs: the run directory and home (not writable by others) are then closed to it by file
  permissions, and `RLIMIT_NPROC` counts (the kernel does not apply it to root). Only when others
  may read Python's standard library (not so for an interpreter installed under /root, mode
  0700: then the program stays root, and writes and processes are held by the audit hook, the
  PID namespace and the process-group kill).

The audit hook is Python's, not the kernel's: code that is written to escape it (e.g. through a C
extension already loaded) can. The kernel mechanisms are the boundary where they hold; the hook
is what holds on machines without them, which `sandbox_mechanisms()` then says.

A program **passes** when it exits 0 after printing the one-time token the runner prints after
the program's last statement ran (so `os._exit(0)` or `sys.exit(0)` halfway is a failure). The
token is in no namespace the program is given; code that walks the interpreter's frames to find
it could (Python's `typing` needs `sys._getframe`, so frames stay open): this guards against code
that stops early, not against code written to cheat the score.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MEMORY_BYTES = 2 * 1024**3
"""`RLIMIT_AS` of a program: its address space (2 GiB)."""
FILE_BYTES = 16 * 1024**2
"""`RLIMIT_FSIZE`: the largest file a program may write in its directory (16 MiB)."""
MAX_PROCESSES = 32
"""`RLIMIT_NPROC` (counts processes of the program's user: the `nobody` user when run as root)."""
MAX_OPEN_FILES = 64
MAX_WRITES = 32
"""Files a program may open for writing (in its directory): with `FILE_BYTES` each, what it can
put on the disk (512 MiB), where 10 s of writes once reached gigabytes."""
NOBODY = 65534
OUTPUT_CHARS = 2000
"""Of a failing program's stderr, the last characters kept (for the report's examples)."""

RUNNER = r"""
import os, posix, resource, stat, sys, json

DENIED = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "subprocess.Popen",
          "pty.spawn", "socket.__new__", "socket.connect", "socket.bind", "os.kill", "os.killpg", "signal.pthread_kill",
          "os.chdir", "resource.setrlimit", "resource.prlimit"}
PATHS = {"os.remove": 1, "os.rename": 2, "os.mkdir": 1, "os.rmdir": 1, "os.chmod": 1, "os.chown": 1,
         "os.symlink": 2, "os.link": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1, "shutil.copyfile": 2,
         "shutil.copytree": 2, "shutil.move": 2, "sqlite3.connect": 1, "os.setxattr": 1, "os.removexattr": 1}
DIR_FDS = {"os.remove": (1,), "os.rename": (2, 3), "os.mkdir": (2,), "os.rmdir": (1,), "os.chmod": (2,),
           "os.chown": (3,), "os.symlink": (2,), "os.link": (2, 3), "os.utime": (3,)}
IMPORTS = ("ctypes", "_ctypes", "_posixsubprocess", "_posixshmem")
HOME = os.path.realpath(os.getcwd())
WRITES = [0]  # files opened for writing so far: at most MAX_WRITES, each at most RLIMIT_FSIZE

def _inside(path):
    if isinstance(path, int):  # an open descriptor: what it refers to (a pipe or socket has no path)
        try:
            path = os.readlink(f"/proc/self/fd/{path}")
        except OSError:
            return False
        if not path.startswith("/"):
            return True
    full = os.path.realpath(os.path.join(HOME, os.fsdecode(path)))
    return full == HOME or full.startswith(HOME + os.sep)

def _special(path):
    # a directory but the working directory itself (a descriptor of another would make a relative
    # path a way out: dir_fd=, fchdir), a device or a FIFO: opened by no HumanEval program
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    if stat.S_ISDIR(mode):
        return os.path.realpath(os.path.join(HOME, os.fsdecode(path))) != HOME
    return not stat.S_ISREG(mode)

def _hook(event, args):
    if event in DENIED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and args[0] in IMPORTS:
        raise PermissionError(f"sandbox: {args[0]} is not allowed")
    if event == "open":
        path, mode, flags = args[0], args[1] or "", args[2] or 0
        if path is None or isinstance(path, int):
            return
        writes = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        if writes and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the working directory")
        if writes:
            WRITES[0] += 1
            if WRITES[0] > MAX_WRITES:
                raise PermissionError(f"sandbox: more than {MAX_WRITES} files opened for writing")
        if _special(path):
            raise PermissionError(f"sandbox: opening {path!r} (not a regular file) is not allowed")
    elif event in PATHS:
        for path in args[: PATHS[event]]:
            if path is not None and not _inside(path):
                raise PermissionError(f"sandbox: {event} on {path!r} outside the working directory")
        if any(args[i] not in (None, -1) for i in DIR_FDS.get(event, ()) if i < len(args)):
            raise PermissionError(f"sandbox: {event} with dir_fd is not allowed")

def _main():
    # the token lives only in this frame: in no namespace the program is given
    settings = json.loads(sys.stdin.readline())
    program = sys.stdin.read()
    sys.stdin.close()
    if settings["uid"] is not None:
        os.setgroups([])
        os.setgid(settings["uid"])
        os.setuid(settings["uid"])
    for name, value in settings["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    global MAX_WRITES
    MAX_WRITES = settings["max_writes"]
    for module in (os, posix):  # they make files outside and raise no audit event
        for name in ("mkfifo", "mknod"):
            module.__dict__.pop(name, None)
    sys.addaudithook(_hook)
    exec(compile(program, "<completion>", "exec"), {"__name__": "__main__"})
    sys.stdout.flush()
    os.write(1, ("\n" + settings["token"] + "\n").encode())

_main()
"""


@dataclass(frozen=True)
class SandboxLimits:
    """The limits one program runs under (see the module docstring for what each does)."""

    timeout_s: float = 10.0
    memory_bytes: int = MEMORY_BYTES


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str
    """"passed", "timeout" or the end of the program's error output."""


@functools.cache
def sandbox_mechanisms() -> tuple[str, ...]:
    """What isolates a program on this machine, beyond the rlimits and the audit hook (which
    always hold): "netns+pidns" (a new network and PID namespace through `unshare`), and
    "nobody" (run as root: the program drops to uid 65534)."""
    found = []
    if _unshare_prefix():
        found.append("netns+pidns")
    if os.geteuid() == 0 and _stdlib_open_to_others():
        found.append("nobody")
    return tuple(found)


def _stdlib_open_to_others() -> bool:
    """Whether a user other than the owner can read Python's standard library (and so the
    `nobody` user can import what a program imports): every directory above it searchable by
    others, the library itself readable. Not so for an interpreter under /root (mode 0700)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    if not stdlib.stat().st_mode & stat.S_IROTH:
        return False
    return all(directory.stat().st_mode & stat.S_IXOTH for directory in (stdlib, *stdlib.parents))


@functools.cache
def _unshare_prefix() -> tuple[str, ...]:
    """The `unshare` command line that gives a new network and PID namespace, if one works here."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    base = (unshare, "--net", "--pid", "--fork", "--kill-child")
    for prefix in (base, (*base[:1], "--user", "--map-root-user", *base[1:])):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return ()


def run_program(program: str, limits: SandboxLimits) -> Outcome:
    """Run `program` (Python source) in the sandbox; whether it reached its end, exit status 0."""
    home = Path(tempfile.mkdtemp(prefix="phased-cpt-sandbox-"))
    uid = NOBODY if "nobody" in sandbox_mechanisms() else None
    if uid is not None:
        os.chown(home, uid, uid)
    token = secrets.token_hex(16)
    cpu_s = int(limits.timeout_s) + 2
    settings = {
        "token": token,
        "uid": uid,
        "max_writes": MAX_WRITES,
        "limits": {
            "RLIMIT_AS": limits.memory_bytes,
            "RLIMIT_CPU": cpu_s,
            "RLIMIT_FSIZE": FILE_BYTES,
            "RLIMIT_NPROC": MAX_PROCESSES,
            "RLIMIT_NOFILE": MAX_OPEN_FILES,
            "RLIMIT_CORE": 0,
        },
    }
    command = [*_unshare_prefix(), sys.executable, "-I", "-S", "-c", RUNNER]
    env = {"HOME": str(home), "TMPDIR": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    # Output goes to unnamed files, not pipes: RLIMIT_FSIZE caps what a program prints (a pipe
    # would fill this process's memory), and no process that outlives the program can hold a
    # pipe open and keep this one waiting.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, cwd=home, env=env, start_new_session=True
        )
        try:
            process.communicate((json.dumps(settings) + "\n" + program).encode(), timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(process.pid)
            process.wait()
        shutil.rmtree(home, ignore_errors=True)
        if timed_out:
            return Outcome(False, "timeout")
        printed, errors = _tail(stdout, len(token) + 64), _tail(stderr, OUTPUT_CHARS)
    passed = process.returncode == 0 and printed.rstrip().endswith(token)
    tail = errors.strip()
    return Outcome(passed, "passed" if passed else tail or f"exit status {process.returncode}")


def _tail(file, chars: int) -> str:
    """The last `chars` bytes of an output file, as text."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - chars))
    return file.read().decode(errors="replace")


def _kill_group(pid: int) -> None:
    """SIGKILL the program's children (under `unshare`, the first process of the PID namespace:
    the kernel then kills every process in it, even one that left the group and changed its
    user, which clears the parent-death signal `--kill-child` relies on), then every process in
    the program's group (its session leader's pid is the group id)."""
    for child in _children(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s children (Linux's /proc/PID/task/*/children; none elsewhere)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def run_programs(programs: Sequence[str], limits: SandboxLimits, workers: int | None = None) -> list[Outcome]:
    """`run_program` for each, `workers` at a time (default: the CPUs this process may use)."""
    workers = workers or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda program: run_program(program, limits), programs))
