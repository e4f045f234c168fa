"""`--out` for exports: merge's guarantee, with the kind of export in the marker."""

from __future__ import annotations

import json

import pytest

from phased_cpt.errors import UserError
from phased_cpt.export.target import EXPORT_MARKER, ExportOptions, read_marker
from phased_cpt.export.vllm import VllmTarget
from phased_cpt.inference.merge import MERGED, check_out_dir


def test_force_replaces_only_an_earlier_export_of_the_same_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = VllmTarget(ExportOptions()).output
    out = tmp_path / "out"
    check_out_dir(out, False, {}, output)  # new
    out.mkdir()
    check_out_dir(out, False, {}, output)  # empty
    (out / EXPORT_MARKER).write_text(json.dumps({"kind": "gguf"}))
    with pytest.raises(UserError, match="not empty"):
        check_out_dir(out, False, {}, output)
    with pytest.raises(UserError, match="an earlier export --to vllm wrote .*saying kind vllm"):
        check_out_dir(out, True, {}, output)
    (out / EXPORT_MARKER).write_text(json.dumps({"kind": "vllm"}))  # no file list: what else is in `out`?
    with pytest.raises(UserError, match="does not list the files"):
        check_out_dir(out, True, {}, output)
    (out / "adapter_model.safetensors").write_bytes(b"x")
    (out / EXPORT_MARKER).write_text(json.dumps({"kind": "vllm", "files": ["adapter_model.safetensors"]}))
    check_out_dir(out, True, {}, output)
    (out / "MODEL_CARD.md").write_text("mine")  # a file the export did not write is never deleted
    with pytest.raises(
        UserError, match=r"holds 1 file\(s\) the earlier export --to vllm did not write \(MODEL_CARD.md\)"
    ):
        check_out_dir(out, True, {}, output)
    (out / "MODEL_CARD.md").unlink()
    with pytest.raises(UserError, match="an earlier merge wrote"):
        check_out_dir(out, True, {}, MERGED)  # an export is not a merge
    (out / EXPORT_MARKER).write_text("garbage")
    with pytest.raises(UserError, match="saying kind vllm"):
        check_out_dir(out, True, {}, output)


def test_check_reads_the_marker_of_the_same_kind(tmp_path):
    with pytest.raises(UserError, match="holds no export"):
        read_marker(tmp_path, "gguf")
    (tmp_path / EXPORT_MARKER).write_text(json.dumps({"kind": "hf"}))
    with pytest.raises(UserError, match="holds a hf export; pass --to hf"):
        read_marker(tmp_path, "gguf")
    assert read_marker(tmp_path, "hf") == {"kind": "hf"}
