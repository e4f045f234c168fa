"""from-git under faults: a run that fails part-way (a full disk) leaves every file of the output
directory as it was - its own earlier output and the files it did not write; a repository whose
config names FIFOs for every path-reading key still finishes."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.from_git import output as output_module
from phased_cpt.from_git.git import SAFE_CONFIG
from tests.unit.from_git.repos import build, commit, git, new_repo

pytestmark = pytest.mark.fault

PATH_KEYS = [key for key, value in SAFE_CONFIG.items() if value == os.devnull and key != "core.hooksPath"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_repo(tmp_path_factory.mktemp("faults") / "repo", {"a.py": "a = 1\n"})
    commit(root, {"b.py": "b = 1\n"}, "Add b", "2024-01-02T10:00:00+00:00")
    return root


@pytest.mark.parametrize("failing_document", [0, 1, 3])
def test_a_full_disk_part_way_leaves_every_file_of_the_output_directory_as_it_was(
    repo, tmp_path, monkeypatch, failing_document
):
    out = tmp_path / "out"
    build(repo, out, excludes=["b.py"])
    (out / "model-card.md").write_text("mine\n")
    (out / "phase4_custom.jsonl").write_text('{"training_content": "mine"}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write = output_module.DocumentWriter.write
    calls = {"n": 0}

    def full_disk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > failing_document:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(output_module.DocumentWriter, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build(repo, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_every_path_reading_key_pointing_to_a_fifo_at_once(repo, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for key in PATH_KEYS:
        git(copy, "config", key, str(fifo))
    git(copy, "config", "blame.ignoreRevsFile", str(fifo))
    summary = build(copy, tmp_path / "out")
    assert summary.outputs[1].documents == 2
    git(copy, "config", "include.path", str(fifo))
    with pytest.raises(UserError, match="includes another config file"):
        build(copy, tmp_path / "out2")
