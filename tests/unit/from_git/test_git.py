"""Reading a repository never runs anything it configures: one planted repository whose config,
hooks and `.gitattributes` would each write a marker file if git ran them, read by from-git."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE
from phased_cpt.from_git import git as git_module
from phased_cpt.from_git.git import parse_commit_object, split_records
from tests.unit.from_git.repos import build, commit, git, merge, new_repo, read

HOOKS = (
    "pre-commit",
    "post-checkout",
    "post-index-change",
    "reference-transaction",
    "pre-auto-gc",
    "post-rewrite",
    "fsmonitor-watchman",
    "post-merge",
)


def _touch(markers: Path, name: str) -> str:
    """A shell command that writes marker `name`; `#` turns any arguments git appends into a comment."""
    return f"touch {markers / name} #"


def _plant(root: Path, markers: Path) -> Path:
    """A repository with every command-running vector of git config, hooks and attributes set."""
    repo = new_repo(root, {"app.py": "x = 1\n", "data.bin": "text\n", ".gitattributes": "* diff=evil filter=evil\n"})
    commit(repo, {"app.py": "x = 2\n"}, "Change app", "2024-01-02T10:00:00+00:00")
    git(repo, "checkout", "-q", "-b", "side")
    commit(repo, {"side.py": "y = 1\n"}, "Side work", "2024-01-03T10:00:00+00:00")
    git(repo, "checkout", "-q", "main")
    merge(repo, "side", "Merge pull request #1 from a/side\n\nSide", "2024-01-04T10:00:00+00:00")
    _add_signed_commit(repo)
    hooks = root / "evil-hooks"
    hooks.mkdir()
    for hook_dir in (hooks, repo / ".git" / "hooks"):
        for name in HOOKS:
            script = hook_dir / name
            script.write_text(f"#!/bin/sh\n{_touch(markers, 'hook-' + name)}\n")
            script.chmod(script.stat().st_mode | stat.S_IEXEC)
    origin = new_repo(root / "origin", {"o.txt": "o\n"})
    config = {
        "core.fsmonitor": _touch(markers, "fsmonitor"),
        "core.hooksPath": str(hooks),
        "core.pager": _touch(markers, "core-pager"),
        "pager.log": _touch(markers, "pager-log"),
        "pager.ls-tree": _touch(markers, "pager-ls-tree"),
        "diff.external": _touch(markers, "diff-external"),
        "diff.evil.command": _touch(markers, "diff-driver-command"),
        "diff.evil.textconv": _touch(markers, "textconv"),
        "filter.evil.clean": _touch(markers, "filter-clean"),
        "filter.evil.smudge": _touch(markers, "filter-smudge"),
        "filter.evil.process": _touch(markers, "filter-process"),
        "filter.evil.required": "false",
        "gpg.program": _touch(markers, "gpg"),
        "gpg.ssh.program": _touch(markers, "gpg-ssh"),
        "log.showSignature": "true",
        "core.sshCommand": _touch(markers, "ssh"),
        "core.askPass": _touch(markers, "askpass"),
        "credential.helper": "!" + _touch(markers, "credential"),
        "core.editor": _touch(markers, "editor"),
        "sequence.editor": _touch(markers, "sequence-editor"),
        "core.alternateRefsCommand": _touch(markers, "alternate-refs"),
        "remote.origin.url": f"file://{origin}",
        "remote.origin.uploadpack": _touch(markers, "upload-pack"),
        "remote.origin.promisor": "true",
        "extensions.partialClone": "origin",
        "core.repositoryFormatVersion": "1",
    }
    for key, value in config.items():
        git(repo, "config", key, value)
    return repo


def _add_signed_commit(repo: Path) -> None:
    """A commit object with a (fake) signature header, so `log.showSignature` would call gpg."""
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    body = (
        f"tree {tree}\nparent {head}\nauthor Ada <a@x> 1704200000 +0000\n"
        "committer Ada <a@x> 1704200000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n "
        "iQEzBAABCAAdFiEEfake\n -----END PGP SIGNATURE-----\n\nSigned commit\n"
    )
    oid = (
        subprocess.run(
            ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
            cwd=repo,
            input=body.encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(repo, "update-ref", "refs/heads/main", oid)


@pytest.fixture()
def planted(tmp_path: Path) -> tuple[Path, Path]:
    markers = tmp_path / "markers"
    markers.mkdir()
    return _plant(tmp_path / "work", markers), markers


def test_no_configured_command_hook_filter_or_driver_runs(planted, tmp_path):
    repo, markers = planted
    summary = build(repo, tmp_path / "out")
    assert sorted(p.name for p in markers.iterdir()) == []
    assert [d["path"] for d in read(tmp_path / "out", PHASE1_FILE)] == [
        ".gitattributes",
        "app.py",
        "data.bin",
        "side.py",
    ]
    assert [d["subject"] for d in read(tmp_path / "out", PHASE2_FILE)] == [
        "Initial commit",
        "Change app",
        "Signed commit",
    ]
    [story] = read(tmp_path / "out", PHASE3_FILE)  # "Side work" is told in its merge's story
    assert story["number"] == 1 and "* Side work\n" in story["training_content"]
    assert summary.output(PHASE2_FILE).documents == 3


def test_the_markers_do_fire_under_plain_git(planted):
    """The control: the same repository read with plain git runs its fsmonitor and filter, so the
    test above would fail if from-git's hardening were missing."""
    repo, markers = planted
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_PAGER": "cat"}
    subprocess.run(["git", "show", "HEAD~2"], cwd=repo, env=env, capture_output=True, check=False)
    subprocess.run(["git", "status"], cwd=repo, env=env, capture_output=True, check=False)
    fired = {p.name for p in markers.iterdir()}
    assert {"fsmonitor", "filter-process"} <= fired, fired


def test_git_variables_of_the_caller_do_not_steer_git(planted, tmp_path, monkeypatch):
    repo, markers = planted
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", _touch(markers, "env-external-diff"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor={_touch(markers, 'env-fsmonitor')}'")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PAGER", _touch(markers, "env-pager"))
    build(repo, tmp_path / "out")
    assert sorted(p.name for p in markers.iterdir()) == []


def test_every_git_call_goes_through_the_hardened_command(planted, tmp_path, monkeypatch):
    repo, _ = planted
    calls: list[list[str]] = []
    for name in ("run", "Popen"):
        real = getattr(subprocess, name)

        def spy(args, *rest, _real=real, **kwargs):
            calls.append(list(args))
            assert kwargs["env"]["GIT_CONFIG_GLOBAL"] == os.devnull
            assert kwargs["env"]["GIT_CONFIG_NOSYSTEM"] == "1"
            return _real(args, *rest, **kwargs)

        monkeypatch.setattr(git_module.subprocess, name, spy)
    build(repo, tmp_path / "out")
    assert calls and all(call[:2] == ["git", "--no-pager"] for call in calls)
    for call in calls:
        overrides = [call[i + 1] for i, arg in enumerate(call) if arg == "-c"]
        assert {"core.fsmonitor=false", f"core.hooksPath={os.devnull}", "protocol.allow=never"} <= set(overrides)
        if "log" in call:
            assert "--no-ext-diff" in call and "--no-textconv" in call


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_repository_of_another_owner_is_refused_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("SUDO_UID", raising=False)
    repo = new_repo(tmp_path / "theirs", {"a.py": "a = 1\n"})
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 12345, 12345)
    with pytest.raises(UserError, match="owned by another user.*--allow-other-owner"):
        build(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    build(repo, tmp_path / "out", allow_other_owner=True)
    assert [d["path"] for d in read(tmp_path / "out", PHASE1_FILE)] == ["a.py"]


def test_records_split_on_the_marker_only_whatever_the_chunk_size(monkeypatch):
    from phased_cpt.from_git import git as git_module

    marker = b"\0MARK-1234\0"
    stream = b"" + marker + b"one\0\xff\nbody" + marker + marker + b"three" + b"x" * 50
    for size in (1, 2, 3, 5, 7, 64):
        monkeypatch.setattr(git_module, "_READ_CHUNK_BYTES", size)
        records = list(split_records(io.BytesIO(stream), marker, max_record_bytes=20))
        assert records == [(b"one\0\xff\nbody", 10), (b"", 0), (b"three" + b"x" * 15, 55)]


def test_commit_message_encoding_header_is_honoured_and_bad_text_is_refused():
    raw = (
        b"tree 1\nauthor A <a@x> 1704067200 -0130\ncommitter A <a@x> 1704067200 +0000\n"
        b"encoding ISO-8859-1\n\nCaf\xe9 fix\n\nLonger\nbody  \n"
    )
    message = parse_commit_object(raw)
    assert message is not None and (message.subject, message.body) == ("Café fix", "Longer\nbody")
    assert message.author_date == "2023-12-31T22:30:00-01:30"
    assert parse_commit_object(raw.replace(b"encoding ISO-8859-1\n", b"")) is None
    assert parse_commit_object(b"tree 1\n\nnul \x00 inside\n") is None
    assert parse_commit_object(b"tree 1\nauthor broken\n\nok\n").author_date == ""


def test_reading_git_output_in_tiny_chunks_gives_the_same_history(repo, built, tmp_path, monkeypatch):
    monkeypatch.setattr(git_module, "_READ_CHUNK_BYTES", 7)
    build(repo, tmp_path)
    for name in (PHASE2_FILE, PHASE3_FILE):
        assert (tmp_path / name).read_bytes() == (built[0] / name).read_bytes()
