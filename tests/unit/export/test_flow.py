"""export/flow.py: the order of an export's steps and what `--out` holds when one fails: a failed
parity check leaves `--out` as it was, with no staging directory beside it; every target the
command line offers has a class."""

from __future__ import annotations

import pytest

from phased_cpt.errors import UserError
from phased_cpt.export import TARGET_NAMES, flow
from phased_cpt.export.hf import HfTarget
from phased_cpt.export.target import EXPORT_MARKER, ExportOptions, Source
from tests.conftest import tiny_model_config


class FailingCheck(HfTarget):
    """The hf target, whose parity check fails after the files were written."""

    def check(self, trained, out_dir, written):
        assert (out_dir / "model.safetensors").is_file() and not (out_dir / EXPORT_MARKER).exists()
        raise UserError("parity check failed")


def test_every_target_the_command_line_offers_has_a_class():
    assert tuple(flow.TARGETS) == TARGET_NAMES
    assert all(flow.make_target(kind, ExportOptions()).kind == kind for kind in TARGET_NAMES)


def test_a_failed_check_leaves_out_as_it_was_and_no_staging(tiny_model_dir, random_adapters, tmp_path, monkeypatch):
    monkeypatch.setitem(flow.TARGETS, "hf", FailingCheck)
    source = Source(model=tiny_model_config(tiny_model_dir), adapter_dir=random_adapters["phase1"], label="phase1")
    out = tmp_path / "exports" / "hf"
    with pytest.raises(UserError, match="parity check failed"):
        flow.export_adapter(source, "hf", out, ExportOptions())
    assert list((tmp_path / "exports").iterdir()) == []


def test_out_may_not_be_the_adapter_it_exports(tiny_model_dir, random_adapters):
    source = Source(model=tiny_model_config(tiny_model_dir), adapter_dir=random_adapters["phase1"], label="phase1")
    with pytest.raises(UserError):
        flow.export_adapter(source, "hf", random_adapters["phase1"], ExportOptions(), force=True)
    assert (random_adapters["phase1"] / "adapter_config.json").is_file()
