"""Repositories that would make git hang, eat memory or invent history: config keys and files in
the git directory that name something to read, a git call that stalls, a shallow clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, git_guard
from phased_cpt.from_git import git as git_module
from tests.unit.from_git.repos import build, commit, git, new_repo, read, report

PATH_KEYS_OVERRIDDEN = ("diff.orderFile", "mailmap.file", "core.excludesFile", "blame.ignoreRevsFile")
INCLUDE_KEYS = ("include.path", "includeIf.gitdir:/.path", "includeIf.onbranch:main.path")
GIT_DIR_FILES = ("packed-refs", "info/attributes", "info/grafts", "objects/info/alternates", "shallow")


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = new_repo(tmp_path_factory.mktemp("small") / "repo", {"a.py": "a = 1\n"})
    commit(repo, {"a.py": "a = 2\n"}, "Change a", "2024-01-02T10:00:00+00:00")
    commit(repo, {"b.py": "b = 1\n"}, "Add b", "2024-01-03T10:00:00+00:00")
    return repo


def _copy(repo: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    return copy


def _build_within(repo: Path, out: Path, seconds: float) -> object:
    """`build` in a thread: fails the test (instead of hanging the suite) when it does not end."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["summary"] = build(repo, out)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"from-git did not finish within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["summary"]


@pytest.mark.parametrize("key", PATH_KEYS_OVERRIDDEN)
@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_config_keys_that_name_a_file_are_neutralised(small_repo, tmp_path, key, target):
    repo = _copy(small_repo, tmp_path)
    if target == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    git(repo, "config", key, target)
    _build_within(repo, tmp_path / "out", 60)
    assert [d["subject"] for d in read(tmp_path / "out", PHASE2_FILE)] == ["Initial commit", "Change a", "Add b"]


@pytest.mark.parametrize("key", INCLUDE_KEYS)
def test_config_includes_are_refused_in_one_line_before_git_follows_them(small_repo, tmp_path, key):
    repo = _copy(small_repo, tmp_path)
    os.mkfifo(tmp_path / "fifo")
    git(repo, "config", key, str(tmp_path / "fifo"))
    with pytest.raises(UserError, match=r"includes another config file .*Remove the include") as caught:
        _build_within(repo, tmp_path / "out", 60)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", GIT_DIR_FILES)
def test_a_fifo_or_device_inside_the_git_directory_is_refused(small_repo, tmp_path, name):
    repo = _copy(small_repo, tmp_path)
    path = repo / ".git" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    with pytest.raises(UserError, match=rf"{name}: is a FIFO, not a regular file"):
        _build_within(repo, tmp_path / "out", 60)
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(UserError, match=rf"{name}: is a device, not a regular file"):
        _build_within(repo, tmp_path / "out", 60)


def test_working_tree_files_are_never_read(small_repo, tmp_path):
    """`.mailmap` and `.gitattributes` in the working tree: git runs on an empty work tree."""
    repo = _copy(small_repo, tmp_path)
    os.mkfifo(repo / ".mailmap")
    os.mkfifo(repo / ".gitattributes")
    _build_within(repo, tmp_path / "out", 60)
    assert [d["path"] for d in read(tmp_path / "out", PHASE1_FILE)] == ["a.py", "b.py"]


def test_a_stalled_git_call_is_stopped_with_one_line(small_repo, tmp_path, monkeypatch):
    """The backstop for what the checks above do not know: no output for IDLE_TIMEOUT_S."""
    monkeypatch.setattr(git_guard, "IDLE_TIMEOUT_S", 1.0)
    repo = git_module.GitRepo.open(small_repo)
    process = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
    stalled = pytest.raises(UserError, match=r"git log produced no output for 1 s and was stopped")
    with stalled as caught, git_guard.Watchdog(process, repo._stalled_message(["log"])) as watchdog:
        assert process.stdout is not None
        assert watchdog.read(process.stdout, 10) == b""
    assert "\n" not in str(caught.value)
    assert process.wait(5) != 0


def test_a_busy_consumer_is_not_a_stalled_git(small_repo, monkeypatch):
    """Only time spent waiting on git counts: reading objects slowly is fine."""
    monkeypatch.setattr(git_guard, "IDLE_TIMEOUT_S", 0.5)
    repo = git_module.GitRepo.open(small_repo)
    head = repo.resolve_commit("HEAD")
    with repo.open_objects() as objects:
        for _ in range(3):
            threading.Event().wait(0.4)
            assert objects.read(head).startswith(b"tree ")


@pytest.mark.parametrize("depth", [1, 2])
def test_a_shallow_clone_leaves_out_its_boundary_commits_and_says_so(small_repo, tmp_path, depth):
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", f"--depth={depth}", f"file://{small_repo}", str(clone)],
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    summary = build(clone, tmp_path / "out")
    subjects = [d["subject"] for d in read(tmp_path / "out", PHASE2_FILE)]
    assert subjects == ["Initial commit", "Change a", "Add b"][3 - depth + 1 :]
    assert [d["path"] for d in read(tmp_path / "out", PHASE1_FILE)] == ["a.py", "b.py"]
    assert summary.output(PHASE2_FILE).skipped["shallow"] == 1
    [boundary] = [e for e in report(tmp_path / "out")["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "shallow"]
    assert boundary["commit"] == git(clone, "rev-parse", f"HEAD~{depth - 1}").strip()
    assert any("shallow clone" in note and "git fetch --unshallow" in note for note in summary.notes)


def test_a_full_clone_has_no_shallow_note(small_repo, tmp_path):
    summary = build(small_repo, tmp_path / "out")
    assert summary.output(PHASE2_FILE).skipped["shallow"] == 0
    assert not any("shallow" in note for note in summary.notes)


ODD_NAMES = [b"new\nline.py", b"bad\xff.py", b'q"uote.py', b"back\\slash.py", b"tab\there.py", "ünï.py".encode()]


def test_odd_file_names_are_written_as_git_quotes_them(tmp_path):
    repo = new_repo(tmp_path / "repo")
    for name in ODD_NAMES:
        (repo / os.fsdecode(name)).write_bytes(b"x = 1\n" + name.hex().encode() + b"\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add odd names")
    # git's C quoting (`core.quotepath=off` keeps UTF-8 as is); a byte that is not UTF-8 as octal
    expected = sorted(
        ['"new\\nline.py"', '"bad\\377.py"', '"q\\"uote.py"', '"back\\\\slash.py"', '"tab\\there.py"', "ünï.py"]
    )
    build(repo, tmp_path / "out")
    phase1 = read(tmp_path / "out", PHASE1_FILE)
    assert sorted(d["path"] for d in phase1) == expected
    for document in phase1:
        header, blank, _ = document["training_content"].split("\n", 2)
        assert header == f"File: {document['path']}" and blank == ""
    [history] = read(tmp_path / "out", PHASE2_FILE)
    listing = history["training_content"].split("Files changed:\n", 1)[1].split("\n\n", 1)[0]
    assert sorted(listing.split("\n")) == sorted(f"A {name}" for name in expected)
    assert "\ufffd" not in history["training_content"]


def test_quote_path_matches_git_for_every_odd_byte():
    assert git_module.quote_path(b"plain/\xc3\xbc.py") == "plain/ü.py"
    assert git_module.quote_path(b"a\nb") == '"a\\nb"'
    assert git_module.quote_path(b"\xff\x01") == '"\\377\\001"'
