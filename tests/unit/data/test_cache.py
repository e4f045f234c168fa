"""The prepared-data cache's writers: one published entry whatever the number of writers, also
where the file system has no locks (issue 16)."""

from __future__ import annotations

import errno
import json
import os

import pytest
from filelock import FileLock

from phased_cpt.data import cache
from phased_cpt.data.cache import (
    META_FILE,
    PREPARED_BY_FILE,
    cached_entry,
    clear_prepared,
    file_digest,
    publish_entry,
    reading_only,
    signal_prepared,
    wait_for_entry,
    wait_for_prepared,
)
from phased_cpt.errors import UserError


def filler(text: str):
    def build(out):
        (out / "tokens.bin").write_text(text)
        (out / META_FILE).write_text("{}")

    return build


def test_an_entry_is_built_once_and_then_reused(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        filler("a")(out)

    entry, hit = cached_entry(tmp_path, "k", build)
    assert (hit, len(calls)) == (False, 1) and (entry / "tokens.bin").read_text() == "a"
    assert json.loads((entry / PREPARED_BY_FILE).read_text())["pid"] == os.getpid()
    assert cached_entry(tmp_path, "k", build) == (entry, True) and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name != ".k.lock"] == ["k"]  # no temporary directory left


def test_a_second_writer_keeps_the_first_complete_entry_and_discards_its_copy(tmp_path):
    """Two nodes on a file system without locks: the other writer publishes while this one
    builds; this one's rename fails and the entry is the first one, whole."""
    entry = tmp_path / "k"

    def build_while_another_writer_publishes(out):
        assert publish_entry(entry, filler("first")) is True
        filler("second")(out)

    assert publish_entry(entry, build_while_another_writer_publishes) is False
    assert (entry / "tokens.bin").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_a_partial_entry_of_an_older_version_is_replaced(tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "tokens.bin").write_text("half")
    entry, hit = cached_entry(tmp_path, "k", filler("whole"))
    assert not hit and (entry / "tokens.bin").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".k.lock", "k"]


def test_a_failed_build_leaves_nothing(tmp_path):
    def failing(out):
        (out / "tokens.bin").write_text("x")
        raise UserError("p.jsonl:3: bad record")

    with pytest.raises(UserError, match="p.jsonl:3"):
        cached_entry(tmp_path, "k", failing)
    assert [p.name for p in tmp_path.iterdir()] == [".k.lock"]


def test_without_file_locks_the_rename_still_publishes(tmp_path, monkeypatch):
    """Lustre without -o flock answers ENOLCK; the entry is still built and published."""

    def no_locks(self, *args, **kwargs):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(FileLock, "acquire", no_locks)
    entry, hit = cached_entry(tmp_path, "k", filler("a"))
    assert not hit and (entry / "tokens.bin").read_text() == "a"


def test_another_lock_error_is_not_hidden(tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(FileLock, "acquire", denied)
    with pytest.raises(PermissionError):
        cached_entry(tmp_path, "k", filler("a"))


def test_a_reader_never_builds_and_says_what_to_check_when_the_entry_never_appears(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(cache, "WAIT_FOR_WRITER_SECONDS", 0.05)
    with pytest.raises(UserError, match="data.cache_dir is the same directory"):
        wait_for_entry(tmp_path / "k", timeout_s=0.05)
    assert not (tmp_path / "k").exists()
    publish_entry(tmp_path / "k", filler("a"))
    with reading_only(tmp_path):
        assert cached_entry(tmp_path, "k", filler("never")) == (tmp_path / "k", True)
        with pytest.raises(UserError, match="not visible here"):  # a reader never builds a missing entry
            cached_entry(tmp_path, "missing", filler("never"))
    assert not (tmp_path / "missing").exists()


def test_the_writer_signals_success_or_its_error_to_the_readers(tmp_path):
    signal_prepared(tmp_path, "job", 0, None)
    assert wait_for_prepared(tmp_path, "job", 0, timeout_s=1) is None
    signal_prepared(tmp_path, "job", 1, "p.jsonl:3: bad record")
    assert wait_for_prepared(tmp_path, "job", 1, timeout_s=1) == "p.jsonl:3: bad record"
    for writer in (0, 1):
        clear_prepared(tmp_path, "job", writer)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_signal_times_out_naming_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "POLL_SECONDS", 0.01)
    with pytest.raises(UserError, match="rank 2 did not finish preparing"):
        wait_for_prepared(tmp_path, "job", 2, timeout_s=0.05)


def test_file_digest_follows_the_content(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("a\n")
    first = file_digest(path)
    assert file_digest(path) == first
    path.write_text("b\n")
    assert file_digest(path) != first
