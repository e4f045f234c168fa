"""Merge safety checks: the output directory and the logits tolerance."""

from __future__ import annotations

import pytest
import torch

from phased_cpt.errors import UserError
from phased_cpt.inference.merge import MERGE_MARKER, check_out_dir, compare_logits, write_marker


def test_out_dir_must_be_new_or_empty_unless_forced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_out_dir(tmp_path / "new", force=False, protected={})
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", force=False, protected={})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is not empty; .* --force"):
        check_out_dir(tmp_path / "full", force=False, protected={})
    with pytest.raises(UserError, match="not a directory an earlier merge wrote"):
        check_out_dir(tmp_path / "full", force=True, protected={})
    write_marker(tmp_path / "full", {})
    check_out_dir(tmp_path / "full", force=True, protected={})
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        check_out_dir(tmp_path / "file", force=True, protected={})


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("work/run", "is the source run"),
        ("work", "contains the source run"),
        ("work/run/phase1/merged", "is inside the source run"),
        ("work/run/phase1/adapter", "is the adapter"),
        ("models/base", "is the base model"),
        ("models", "contains the base model"),
        ("models/base/merged", "is inside the base model"),
        (".", "is the working directory"),
        ("..", "contains the"),
        ("link-to-run", "is the source run"),  # through a symlink
    ],
)
def test_out_dir_never_is_contains_or_lies_inside_what_the_merge_reads(tmp_path, monkeypatch, out, message):
    run, base = tmp_path / "work" / "run", tmp_path / "models" / "base"
    (run / "phase1" / "adapter").mkdir(parents=True)
    base.mkdir(parents=True)
    (tmp_path / "link-to-run").symlink_to(run)
    for directory in (run, base):  # as if an earlier merge had written there: --force must still refuse
        (directory / MERGE_MARKER).write_text("{}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    protected = {"source run": run, "adapter": run / "phase1" / "adapter", "base model": base}
    target = tmp_path / out if out not in (".", "..") else cwd / out
    with pytest.raises(UserError, match=message):
        check_out_dir(target, force=True, protected=protected)


def test_force_replaces_only_what_the_earlier_merge_wrote(tmp_path):
    """Files added to an export after the merge (a model card, eval results) are never deleted by
    `merge --force` (issue 29, severe 7): it refuses, naming them."""
    out = tmp_path / "merged"
    (out / "sub").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "sub/part.bin"):
        (out / name).write_text("x")
    write_marker(out, {"adapter": "a"})
    check_out_dir(out, force=True, protected={})
    (out / "README.md").write_text("my model card")
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text("{}")
    (out / "sub" / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as refused:
        check_out_dir(out, force=True, protected={})
    message = str(refused.value)
    assert (
        "holds 4 file(s) the earlier merge did not write (README.md, eval, eval/results.json, sub/notes.txt)" in message
    )
    (out / MERGE_MARKER).write_text("{}")  # an older marker without a file list
    with pytest.raises(UserError, match="does not list the files the earlier merge wrote"):
        check_out_dir(out, force=True, protected={})


def test_float32_tolerance_accepts_rounding_and_rejects_a_real_difference(tmp_path):
    reference = [torch.full((3, 10), 10.0), torch.full((2, 10), -4.0)]
    report = compare_logits(reference, [r + 5e-5 for r in reference], torch.float32, tmp_path)
    assert report.relative_error == pytest.approx(
        5e-5 * (50 / (30 * 100 + 20 * 16)) ** 0.5, rel=1e-2
    )  # fp32 rounding of 10 + 5e-5
    assert (report.allowed, report.probes) == (1e-4, 2)
    with pytest.raises(
        UserError, match=r"differ from base \+ adapter by 0.000951 \(relative; allowed 0.0001 in float32\); nothing"
    ):
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
