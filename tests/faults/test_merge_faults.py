"""`merge` under faults: a full disk (patched write, and a real small filesystem), a read-only
output directory, a failure at each step of writing and swapping. The property: `--out` holds
the earlier export, byte for byte, or the new one; never a mix, never a leftover, one error line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import transformers.modeling_utils
from safetensors.torch import save as safetensors_bytes

from phased_cpt.errors import UserError
from phased_cpt.inference import merge
from phased_cpt.inference.merge import MERGE_MARKER, merge_adapter
from tests.conftest import save_random_adapter, tiny_model_config
from tests.faults.conftest import disk_full, read_only, small_filesystem, tree_bytes

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory) -> Path:
    return save_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "a", seed=3)


@pytest.fixture(scope="module")
def first_export(tiny_model_dir, adapter, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first") / "merged"
    merge_adapter(tiny_model_config(tiny_model_dir), adapter, out)
    assert (out / MERGE_MARKER).is_file()
    return out


@pytest.fixture
def earlier_export(first_export, tmp_path, monkeypatch) -> Path:
    """A copy of an export an earlier merge wrote, in a directory of its own."""
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(first_export, tmp_path / "exports" / "merged"))


def remerge(tiny_model_dir, adapter, out):
    return merge_adapter(tiny_model_config(tiny_model_dir), adapter, out, force=True)


def full_disk_while_saving_weights(monkeypatch):
    """Writes half the weights file, then fails as a full disk does."""

    def save_file(tensors, filename, metadata=None):
        data = safetensors_bytes(tensors, metadata)
        Path(filename).write_bytes(data[: len(data) // 2])
        raise disk_full()

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save_file)


def failing_tokenizer_save(monkeypatch):
    def save_pretrained(self, *args, **kwargs):
        raise disk_full()

    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "save_pretrained", save_pretrained)


def failing_rename_into_place(monkeypatch):
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the earlier export was renamed aside; the new one fails to move in
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(merge.os, "replace", replace)


@pytest.mark.parametrize("fault", [full_disk_while_saving_weights, failing_tokenizer_save, failing_rename_into_place])
def test_a_fault_while_writing_keeps_the_earlier_export(tiny_model_dir, adapter, earlier_export, monkeypatch, fault):
    before = tree_bytes(earlier_export)
    fault(monkeypatch)
    with pytest.raises(UserError) as err:
        remerge(tiny_model_dir, adapter, earlier_export)
    message = str(err.value)
    assert message.startswith(f"cannot write the merged model to {earlier_export}: ") and "\n" not in message
    assert f"nothing at {earlier_export} was changed" in message
    assert tree_bytes(earlier_export) == before
    assert [p.name for p in earlier_export.parent.iterdir()] == ["merged"]  # no temporary directory left


def test_a_real_full_disk_keeps_the_earlier_export(tiny_model_dir, adapter, first_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export_bytes = sum(len(b) for b in tree_bytes(first_export).values())
    with small_filesystem(tmp_path / "small", export_bytes * 3 // 2 + (64 << 10)) as small:
        out = Path(shutil.copytree(first_export, small / "merged"))
        before = tree_bytes(out)
        with pytest.raises(UserError, match=f"cannot write the merged model to {out}: .*No space left on device"):
            remerge(tiny_model_dir, adapter, out)  # the new export beside the old one does not fit
        assert tree_bytes(out) == before
        assert [p.name for p in small.iterdir()] == ["merged"]


def test_a_read_only_output_directory(tiny_model_dir, adapter, earlier_export):
    before = tree_bytes(earlier_export)
    message = f"cannot write the merged model to {earlier_export}: "
    with read_only(earlier_export.parent), pytest.raises(UserError, match=message):
        remerge(tiny_model_dir, adapter, earlier_export)
    assert tree_bytes(earlier_export) == before
    assert [p.name for p in earlier_export.parent.iterdir()] == ["merged"]


def test_without_faults_the_new_export_replaces_the_earlier_one(tiny_model_dir, adapter, earlier_export, tmp_path):
    other = save_random_adapter(tiny_model_dir, tmp_path / "other", seed=4)
    before = tree_bytes(earlier_export)
    remerge(tiny_model_dir, other, earlier_export)
    after = tree_bytes(earlier_export)
    assert after.keys() == before.keys() and after["model.safetensors"] != before["model.safetensors"]
    assert [p.name for p in earlier_export.parent.iterdir()] == ["merged"]


@pytest.mark.parametrize(
    "added", ["README.md", "eval/results.json", "tokenizer/extra.txt", ".hidden-notes", "link-to-config"]
)
def test_files_the_merge_did_not_write_stop_force_and_stay(tiny_model_dir, adapter, earlier_export, added):
    """A model card, eval results or any other file added to an earlier export (issue 29): `merge
    --force` refuses, naming it, before loading anything, and the directory stays byte for byte."""
    path = earlier_export / added
    path.parent.mkdir(parents=True, exist_ok=True)
    if added.startswith("link"):
        path.symlink_to(earlier_export / "config.json")
    else:
        path.write_text("the user's own file")
    before = tree_bytes(earlier_export)
    with pytest.raises(UserError, match=rf"file\(s\) the earlier merge did not write \(.*{added.split('/')[0]}"):
        remerge(tiny_model_dir, adapter, earlier_export)
    assert tree_bytes(earlier_export) == before
    path.unlink()
    if path.parent != earlier_export:
        path.parent.rmdir()
    remerge(tiny_model_dir, adapter, earlier_export)  # once it is moved out, --force replaces the export
    assert (earlier_export / MERGE_MARKER).is_file()
