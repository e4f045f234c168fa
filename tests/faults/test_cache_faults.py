"""The prepared-data cache under faults: a data file rewritten while it is read, a full disk
(patched write, and a real small filesystem), a read-only cache directory. The property: an
entry is committed only whole and only for the bytes its key names; the data files are never
touched; a later build after the fault gives exactly what an undisturbed build gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
from phased_cpt.data import phase_data, prepare
from phased_cpt.data.cache import PREPARED_BY_FILE
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.errors import DataError
from tests.conftest import bundled_texts, write_jsonl
from tests.faults.conftest import disk_full, read_only, small_filesystem, tree_bytes

pytestmark = pytest.mark.fault

CONTEXT = ContextConfig(max_tokens=64, overlap_tokens=8)
DATA = DataConfig(eval_ratio=0.0)


@pytest.fixture
def phase(tmp_path) -> PhaseConfig:
    return PhaseConfig(
        name="p", file=write_jsonl(tmp_path / "data" / "p.jsonl", bundled_texts("phase1_foundation", 20))
    )


def build(phase, tokenizer, cache_dir):
    return build_phase_data(phase, DATA, tokenizer, CONTEXT, seed=0, cache_dir=cache_dir)


def entries(cache_dir: Path) -> list[str]:
    """What the cache directory holds besides lock files."""
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")) if cache_dir.exists() else []


def test_a_file_rewritten_while_it_is_read_is_never_cached_under_its_old_digest(
    phase, tokenizer, tmp_path, monkeypatch
):
    original = phase.file.read_bytes()
    real_digest = phase_data.file_digest

    def digest_then_rewrite(path):
        digest = real_digest(path)
        if path == phase.file:  # another process rewrites the file after its digest was taken
            write_jsonl(path, ["a line the original file does not have"])
        return digest

    monkeypatch.setattr(phase_data, "file_digest", digest_then_rewrite)
    with pytest.raises(DataError, match=f"{phase.file} changed while it was being read .*nothing was cached"):
        build(phase, tokenizer, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []
    monkeypatch.setattr(phase_data, "file_digest", real_digest)
    phase.file.write_bytes(original)  # the original content again: no stale entry may answer for it
    data = build(phase, tokenizer, tmp_path / "cache")
    assert not data.cache_hit and data.train.documents == 20


def full_disk_after_first_write(monkeypatch):
    real_write, calls = prepare.TokenWriter.write, []

    def write(self, ids):
        calls.append(len(ids))
        if len(calls) > 1:
            raise disk_full()
        return real_write(self, ids)

    monkeypatch.setattr(prepare.TokenWriter, "write", write)


def full_disk_at_the_row_tables(monkeypatch):
    def save(*args, **kwargs):
        raise disk_full()

    monkeypatch.setattr(prepare.np, "save", save)


@pytest.mark.parametrize("fault", [full_disk_after_first_write, full_disk_at_the_row_tables])
def test_a_full_disk_leaves_no_entry_and_the_next_build_is_whole(phase, tokenizer, tmp_path, monkeypatch, fault):
    data_before = phase.file.read_bytes()
    reference = build(phase, tokenizer, tmp_path / "reference")
    monkeypatch.setattr(prepare, "TOKENIZE_BATCH_DOCUMENTS", 4)  # several writes
    with monkeypatch.context() as patch:
        fault(patch)
        with pytest.raises(OSError, match="No space left on device"):
            build(phase, tokenizer, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []  # no partial entry, no temporary directory
    assert phase.file.read_bytes() == data_before
    again = build(phase, tokenizer, tmp_path / "cache")
    assert not again.cache_hit
    rebuilt, undisturbed = tree_bytes(again.entry), tree_bytes(reference.entry)
    for entry in (rebuilt, undisturbed):
        del entry[PREPARED_BY_FILE]  # who prepared it and how long it took: not data
    assert rebuilt == undisturbed


def test_a_real_full_disk_leaves_no_entry(phase, tokenizer, tmp_path):
    with small_filesystem(tmp_path / "small", 16 << 10) as small:
        write_jsonl(phase.file, bundled_texts("phase1_foundation"))  # ~60 KB of int32 ids: does not fit
        with pytest.raises(OSError):  # numpy reports a short write ("N requested and M written")
            build(phase, tokenizer, small / "cache")
        assert entries(small / "cache") == []


def test_a_read_only_cache_directory(phase, tokenizer, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with read_only(cache), pytest.raises(OSError):
        build(phase, tokenizer, cache)
    assert entries(cache) == []
    assert build(phase, tokenizer, cache).train.documents == 20


def test_an_entry_holds_what_its_key_names(phase, tokenizer, tmp_path):
    """Without faults: the cached rows are the documents of the file as it is now."""
    first = build(phase, tokenizer, tmp_path / "cache")
    write_jsonl(phase.file, bundled_texts("phase1_foundation", 5))
    second = build(phase, tokenizer, tmp_path / "cache")
    assert (first.train.documents, second.train.documents) == (20, 5) and first.entry != second.entry
    assert json.loads((second.entry / "meta.json").read_text())["train"]["documents"] == 5
