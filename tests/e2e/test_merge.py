"""`phased-cpt merge` end to end: a plain transformers model whose logits are base + adapter's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import assert_user_error, run_cli, tiny_run_config, train_run

pytestmark = pytest.mark.e2e

PROMPTS = ["def main():\n    return", "import os\nimport sys\n", "# a comment"]


@pytest.fixture(scope="module")
def merge_run(tiny_model_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("merge")
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 12))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 12))
    cfg = tiny_run_config(
        tiny_model_dir,
        [("phase1_foundation", p1, 1), ("phase2_evolution", p2, 1)],
        training={"max_steps": 4, "learning_rate": 1e-2},
    )
    return train_run(work, cfg)


def logits(model, tokenizer, prompt: str) -> torch.Tensor:
    with torch.inference_mode():
        return model(**tokenizer(prompt, return_tensors="pt")).logits[0]


def test_merged_model_loads_without_peft_and_matches_base_plus_adapter(merge_run, tiny_model_dir, tmp_path):
    out = tmp_path / "merged"
    result = run_cli(["merge", str(merge_run), "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected_phase = "phase2_evolution"  # the last finished phase
    assert result.stdout.splitlines()[-1].startswith(
        f"merged {expected_phase} into {out} (float32; relative logit error"
    )

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not any("adapter" in p.name for p in out.iterdir())
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.config.use_cache is True and merged.generation_config.use_cache is True
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab()

    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), merge_run / expected_phase / "adapter"
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for prompt in PROMPTS:
        got = logits(merged, tokenizer, prompt)
        torch.testing.assert_close(got, logits(reference, tokenizer, prompt), atol=1e-4, rtol=1e-4)
        assert (got - logits(base, tokenizer, prompt)).abs().max() > 1e-2  # the adapter is in the weights
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no temporary directory left behind


def test_refuses_a_non_empty_out_unless_forced_and_force_replaces_only_an_earlier_merge(merge_run, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(run_cli(["merge", str(merge_run), "--out", str(out)], cwd=tmp_path), "is not empty", "--force")
    assert_user_error(
        run_cli(["merge", str(merge_run), "--out", str(out), "--force"], cwd=tmp_path),
        "not a directory an earlier merge wrote",
    )
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out.joinpath("keep.txt").unlink()
    assert run_cli(["merge", str(merge_run), "--out", str(out)], cwd=tmp_path).returncode == 0  # empty: fine
    umask = os.umask(0o027)  # the export gets the user's modes, not a temporary directory's 0700
    try:
        result = run_cli(
            ["merge", str(merge_run), "--phase", "1", "--out", str(out), "--force", "--dtype", "bfloat16"], cwd=tmp_path
        )
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].startswith(f"merged phase1_foundation into {out} (bfloat16; ")
    assert (out / "model.safetensors").is_file() and (out / ".phased-cpt-merge").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()} == {0o640}
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # the replaced export is gone, no leftovers


def test_force_never_removes_the_run_or_a_directory_holding_it(merge_run):
    """The reported defect: `merge RUN --out RUN --force` deleted the whole run with exit 0 (the
    other protected paths, the base model and the working directory, are unit-tested)."""
    before = sorted(str(p.relative_to(merge_run.parent)) for p in merge_run.parent.rglob("*"))
    for out, message in [(merge_run, "is the source run"), (merge_run.parent, "contains the source run")]:
        assert_user_error(run_cli(["merge", str(merge_run), "--out", str(out), "--force"], cwd=merge_run), message)
    assert sorted(str(p.relative_to(merge_run.parent)) for p in merge_run.parent.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phase", "phase9"], "--phase phase9: no such phase"),
        (["--base-model", "/nowhere/model"], "cannot load the tokenizer of model.name '/nowhere/model'"),
    ],
)
def test_user_mistakes_exit_2_and_write_nothing(merge_run, tmp_path, args, message):
    result = run_cli(["merge", str(merge_run), "--out", str(tmp_path / "merged"), *args], cwd=tmp_path)
    assert_user_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_a_run(tmp_path):
    result = run_cli(["merge", str(tmp_path), "--out", str(tmp_path / "m")], cwd=tmp_path)
    assert_user_error(result, "neither a run directory", "nor an adapter directory")
