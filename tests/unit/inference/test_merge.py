"""Merge safety checks: the output directory and the logits tolerance."""

from __future__ import annotations

import pytest
import torch

from phased_cpt.errors import UserError
from phased_cpt.inference.merge import check_out_dir, compare_logits


def test_out_dir_must_be_new_or_empty_unless_forced(tmp_path):
    check_out_dir(tmp_path / "new", force=False)
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", force=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is not empty; .* --force"):
        check_out_dir(tmp_path / "full", force=False)
    check_out_dir(tmp_path / "full", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        check_out_dir(tmp_path / "file", force=True)


def test_float32_tolerance_accepts_rounding_and_rejects_a_real_difference(tmp_path):
    reference = [torch.full((3, 10), 10.0), torch.full((2, 10), -4.0)]
    report = compare_logits(reference, [r + 5e-5 for r in reference], torch.float32, tmp_path)
    assert report.relative_error == pytest.approx(5e-5 * (50 / (30 * 100 + 20 * 16)) ** 0.5, rel=1e-2)  # fp32 rounding of 10 + 5e-5
    assert (report.allowed, report.probes) == (1e-4, 2)
    with pytest.raises(UserError, match=r"differ from base \+ adapter by 0.000951 \(relative; allowed 0.0001 in float32\); nothing"):
        compare_logits(reference, [reference[0] + 1e-2, reference[1]], torch.float32, tmp_path)


def test_low_precision_tolerance_is_wider_and_nan_always_fails(tmp_path):
    reference = [torch.full((2, 4), 10.0)]
    compare_logits(reference, [reference[0] + 0.2], torch.bfloat16, tmp_path)  # 2% off
    with pytest.raises(UserError, match="--dtype float32"):
        compare_logits(reference, [reference[0] + 0.2], torch.float16, tmp_path)
    with pytest.raises(UserError):
        compare_logits(reference, [reference[0] + 0.2], torch.float32, tmp_path)
    with pytest.raises(UserError):
        compare_logits(reference, [torch.full((2, 4), float("nan"))], torch.bfloat16, tmp_path)
