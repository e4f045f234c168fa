"""The sandbox holds what a hostile completion tries: a shell command, a fork loop, a write outside
its directory, a socket, a sleep forever; each scored as a failure, the next program still runs,
and nothing got out (no file, no surviving process, no connection)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from phased_cpt.evaluation import sandbox
from phased_cpt.evaluation.sandbox import Outcome, SandboxLimits, run_program, run_programs, sandbox_mechanisms

LIMITS = SandboxLimits(timeout_s=3.0)


@pytest.fixture(params=["this machine", "audit hook and limits only"], autouse=True)
def mechanisms(request, monkeypatch):
    """Every test runs with what this machine allows, and again as on a machine without
    namespaces or the `nobody` user (the fallback docs/evaluation.md describes)."""
    if request.param != "this machine":
        monkeypatch.setattr(sandbox, "_unshare_prefix", lambda: ())
        monkeypatch.setattr(sandbox, "sandbox_mechanisms", lambda: ())
    return request.param


def processes_holding(path: Path) -> list[int]:
    """Pids of live processes with `path` open (read from /proc/*/fd): a program under test
    opens a file of the test's own to be found by (its command line does not hold the program)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and any(os.readlink(fd) == str(path) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_a_program_that_runs_to_its_end_passes_and_one_that_fails_does_not():
    assert run_program("assert sum([1, 2]) == 3\n", LIMITS) == Outcome(True, "passed")
    failed = run_program("assert sum([1, 2]) == 4\n", LIMITS)
    assert not failed.passed and "AssertionError" in failed.reason


def test_exiting_early_with_status_0_is_a_failure():
    assert not run_program("import os\nos._exit(0)\nassert False\n", LIMITS).passed
    assert not run_program("import sys\nsys.exit(0)\n", LIMITS).passed


def test_writing_inside_its_own_directory_is_allowed():
    program = "open('notes.txt', 'w').write('x')\nassert open('notes.txt').read() == 'x'\n"
    assert run_program(program, LIMITS).passed


def test_os_system_is_contained(tmp_path):
    target = tmp_path / "from_system"
    outcome = run_program(f"import os\nos.system('touch {target}')\n", LIMITS)
    assert not outcome.passed and not target.exists()


def test_writes_outside_its_directory_are_contained(tmp_path):
    targets = [tmp_path / "open", tmp_path / "os_open", Path.home() / "phased_cpt_sandbox_escape"]
    programs = [
        f"open({str(targets[0])!r}, 'w').write('x')\n",
        f"import os\nos.close(os.open({str(targets[1])!r}, os.O_WRONLY | os.O_CREAT))\n",
        "import os\nopen(os.path.expanduser('~') + '/../../" + str(targets[2]).lstrip("/") + "', 'w').write('x')\n",
    ]
    for program in programs:
        assert not run_program(program, LIMITS).passed
    assert not any(target.exists() for target in targets)


def held_file(tmp_path: Path) -> Path:
    """A file the program opens and keeps open, by which `processes_holding` finds what survives."""
    held = tmp_path / "held"
    held.write_text("")
    held.chmod(0o644)
    tmp_path.chmod(0o755)
    return held


def test_a_fork_loop_is_contained_and_no_child_survives(tmp_path):
    held = held_file(tmp_path)
    program = (
        f"HELD = open({str(held)!r})\n"
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "    except OSError:\n"
        "        time.sleep(60)\n"
    )
    started = time.perf_counter()
    outcome = run_program(program, LIMITS)
    assert not outcome.passed
    assert time.perf_counter() - started < 30
    time.sleep(0.5)
    assert processes_holding(held) == []


def test_modules_that_reach_around_the_audit_hook_cannot_be_imported(tmp_path):
    for module in ("ctypes", "_posixsubprocess", "subprocess"):
        outcome = run_program(f"import {module}\n", LIMITS)
        assert not outcome.passed and "is not allowed" in outcome.reason
    database = tmp_path / "escape.db"
    assert not run_program(f"import sqlite3\nsqlite3.connect({str(database)!r}).close()\n", LIMITS).passed
    assert not database.exists()
    assert run_program("import sqlite3\nsqlite3.connect(':memory:').close()\n", LIMITS).passed


def test_a_socket_is_contained():
    """A listener in this process: the program may not reach it (or open a socket at all)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'x')\n"
        assert not run_program(program, LIMITS).passed
        with pytest.raises(TimeoutError):
            server.accept()


def test_sleeping_forever_times_out_and_the_next_program_still_runs(tmp_path):
    held = held_file(tmp_path)
    started = time.perf_counter()
    outcomes = run_programs([f"HELD = open({str(held)!r})\nimport time\ntime.sleep(10**6)\n", "assert True\n"], LIMITS)
    assert outcomes[0] == Outcome(False, "timeout") and outcomes[1].passed
    assert time.perf_counter() - started < 20
    time.sleep(0.5)
    assert processes_holding(held) == []


def test_a_memory_hog_fails_within_its_address_space():
    outcome = run_program("x = bytearray(8 * 1024**3)\n", SandboxLimits(timeout_s=5.0, memory_bytes=512 * 1024**2))
    assert not outcome.passed and "MemoryError" in outcome.reason


def test_the_mechanisms_in_force_are_named(mechanisms):
    assert set(sandbox_mechanisms()) <= {"netns+pidns", "nobody"}
    if mechanisms != "this machine":
        assert sandbox.sandbox_mechanisms() == ()


def test_ways_around_the_path_check_are_contained(tmp_path):
    """A directory's descriptor (`dir_fd=`, `os.fchdir`), an open file's descriptor (`os.fchmod`),
    calls that raise no audit event (`os.mkfifo`), extended attributes and shared memory: nothing
    outside the program's directory is made, changed or deleted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep")
    victim.chmod(0o600)
    opened = f"import os\nd = os.open({str(outside)!r}, os.O_RDONLY)\n"
    held = f"import os\nfd = os.open({str(victim)!r}, os.O_RDONLY)\n"
    programs = [
        opened + "os.fchdir(d)\nopen('made', 'w').write('x')\n",
        opened + "os.close(os.open('made', os.O_WRONLY | os.O_CREAT, dir_fd=d))\n",
        opened + "os.mkdir('made', dir_fd=d)\n",
        opened + "os.unlink('victim', dir_fd=d)\n",
        "import os\nopen('a', 'w').write('x')\n" + opened.split("\n", 1)[1] + "os.rename('a', 'made', dst_dir_fd=d)\n",
        held + "os.fchmod(fd, 0o777)\n",
        held + "os.utime(fd, (0, 0))\n",
        f"import os\nos.mkfifo({str(outside / 'made')!r})\n",
        f"import os\nos.setxattr({str(victim)!r}, 'user.sandbox', b'x')\n",
        "import _posixshmem, os\nos.write(_posixshmem.shm_open('/phased-cpt-escape', os.O_CREAT | os.O_RDWR, 0o600), b'x')\n",
        "import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))\n",
    ]
    for program in programs:
        assert not run_program(program, LIMITS).passed, program
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert victim.read_text() == "keep" and victim.stat().st_mode & 0o777 == 0o600 and victim.stat().st_mtime > 0
    assert os.listxattr(victim) == [] and not Path("/dev/shm/phased-cpt-escape").exists()


def test_ordinary_file_work_inside_its_directory_still_passes():
    program = (
        "import os, pathlib, tempfile\n"
        "pathlib.Path('a.txt').write_text('x')\nos.rename('a.txt', 'b.txt')\nos.mkdir('d')\n"
        "os.remove('b.txt')\nos.rmdir('d')\n"
        "with tempfile.TemporaryFile('w') as t:\n    t.write('x')\n"
    )
    assert run_program(program, LIMITS).passed


def test_endless_output_neither_fills_memory_nor_passes():
    """Printing without end is stopped at the file size limit (it once went into a pipe this
    process read whole: 1.9 GiB in 4 s)."""
    started = time.perf_counter()
    outcome = run_program("import sys\nline = 'x' * 2**20\nwhile True:\n    sys.stdout.write(line)\n", LIMITS)
    assert not outcome.passed and time.perf_counter() - started < 30


def test_a_process_that_leaves_the_group_and_changes_user_does_not_keep_the_runner_waiting(tmp_path):
    """Under `unshare` the program is not its session's leader: it may start its own session,
    and changing its user clears the parent-death signal; the runner still returns at the time
    limit and no process of it survives."""
    held = held_file(tmp_path)
    changes_user = "os.setgid(65534)\nos.setuid(65534)\n" if os.geteuid() == 0 else ""
    program = f"import os, time\nf = open({str(held)!r})\ntry:\n    os.setsid()\nexcept OSError:\n    pass\n{changes_user}time.sleep(600)\n"
    started = time.perf_counter()
    outcome = run_program(program, SandboxLimits(timeout_s=2.0))
    assert outcome == Outcome(False, "timeout") and time.perf_counter() - started < 20
    time.sleep(0.5)
    assert processes_holding(held) == []


def test_filling_the_disk_stops_at_the_number_of_files_written():
    """Writing 15 MiB files in a loop until the time limit once put gigabytes on the disk."""
    program = (
        "block = b'x' * 2**20\nfor i in range(10**6):\n    with open(f'f{i}', 'wb') as f:\n"
        "        for _ in range(15):\n            f.write(block)\n"
    )
    outcome = run_program(program, SandboxLimits(timeout_s=60.0))
    assert not outcome.passed and f"more than {sandbox.MAX_WRITES} files opened for writing" in outcome.reason
