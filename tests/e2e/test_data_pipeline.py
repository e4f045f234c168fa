"""The data pipeline through the CLI: quarantine of bad lines, the eval split, `plan`, packed training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import assert_user_error, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e

BAD = ["not json at all", '{"training_content": ""}', '["a list"]']


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("data-pipeline")
    texts = bundled_texts("phase1_foundation", 12)
    p1 = write_jsonl(work / "data" / "p1.jsonl", texts)
    with open(p1, "a", encoding="utf-8") as f:  # three bad lines and one duplicate: lines 13-16
        f.write("\n".join(BAD) + "\n" + json.dumps({"training_content": texts[0]}) + "\n")
    write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase3_pr_mastery", 20))
    return work


def config(work: Path, model_dir: Path, name: str, **sections) -> Path:
    phases = [("phase1_foundation", work / "data" / "p1.jsonl", 1), ("phase2_evolution", work / "data" / "p2.jsonl", 1)]
    sections["data"] = {"cache_dir": str(work / "cache"), **sections.get("data", {})}
    return write_yaml(work / f"{name}.yaml", tiny_run_config(model_dir, phases, **sections))


def test_a_bad_line_stops_the_run_before_training_with_every_line_named(work, tiny_model_dir):
    result = run_cli(["train", str(config(work, tiny_model_dir, "strict", output={"dir": "strict-out"}))], cwd=work)
    p1 = work / "data" / "p1.jsonl"
    assert_user_error(
        result,
        f"3 bad line(s) in {p1}",
        f"{p1}:13: invalid JSON",
        f"{p1}:14: field 'training_content' is empty",
        f"{p1}:15: expected a JSON object, got list",
        "data.on_bad_record: skip",
    )
    assert not (work / "strict-out").exists()  # no run directory for a run that never started
    assert f"{p1}:16" not in result.stderr  # a duplicate is not an error


def test_skip_quarantines_bad_lines_in_the_run_directory_and_packed_training_runs(work, tiny_model_dir):
    cfg = config(
        work,
        tiny_model_dir,
        "skip",
        output={"dir": "skip-out"},
        data={"on_bad_record": "skip", "dedup": "exact"},
        context={"sample_packing": True},
        training={"max_steps": 2, "save_steps": 100},
    )
    result = run_cli(["train", str(cfg)], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (work / "skip-out").iterdir()
    rejected = [
        json.loads(line) for line in (run_dir / "rejected" / "phase1_foundation.jsonl").read_text().splitlines()
    ]
    p1 = work / "data" / "p1.jsonl"
    assert [(r["source"], r["line"]) for r in rejected] == [(f"{p1}:{13 + i}", line) for i, line in enumerate(BAD)] + [
        (f"{p1}:16", json.dumps({"training_content": bundled_texts("phase1_foundation", 1)[0]}))
    ]
    assert rejected[-1]["reason"] == f"duplicate of {p1}:1"
    assert not (run_dir / "rejected" / "phase2_evolution.jsonl").exists()
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["name"] for p in state["finished_phases"]] == ["phase1_foundation", "phase2_evolution"]
    assert "packed (best-fit decreasing)" in result.stderr  # the plan table is logged before training


def test_plan_json_counts_the_eval_split_and_a_second_plan_uses_the_cache(work, tiny_model_dir):
    cfg = config(
        work,
        tiny_model_dir,
        "plan",
        data={"on_bad_record": "skip", "dedup": "exact", "eval_ratio": 0.25},
        context={"max_tokens": 64, "overlap_tokens": 8, "sample_packing": True},
    )
    overrides = ["--set", "phases.1.replay_ratio=0.2", "--set", "phases.0.epochs=2"]
    first = run_cli(["plan", str(cfg), "--json", *overrides], cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    p1, p2 = json.loads(first.stdout)["phases"]
    assert (p1["documents"], p1["eval_documents"], p1["rejected"]) == (9, 3, 4)  # 12 good lines, 25% held out
    assert (p2["documents"], p2["eval_documents"]) == (15, 5)
    assert p1["eos_tokens"] == p1["documents"] and p1["chunks"] > p1["documents"]  # long documents were chunked
    assert p1["rows"] < p1["chunks"] and p1["packing_efficiency"] > 0.8
    assert p1["steps"] == 2 * p1["steps_per_epoch"] == 2 * -(-p1["rows"] // 4)
    assert p1["replay_tokens"] == 0 and p2["replay_tokens"] > 0
    assert not p1["cache_hit"] and not p2["cache_hit"]
    second = run_cli(["plan", str(cfg), "--json", *overrides], cwd=work)
    again = json.loads(second.stdout)["phases"]
    assert [p.pop("cache_hit") for p in again] == [True, True]
    assert again == [{k: v for k, v in p.items() if k != "cache_hit"} for p in (p1, p2)]
    assert "reusing prepared data from the cache" in second.stderr
    table = run_cli(["plan", str(cfg), *overrides], cwd=work)
    header, row1, row2, settings, mix, processes, *rest = table.stdout.splitlines()
    assert header.split()[:4] == ["phase", "docs", "eval", "rejected"]
    assert header.split()[-3:] == ["replay", "general", "fim"]
    assert row1.split()[:4] == ["phase1_foundation", "9", "3", "4"] and row2.split()[0] == "phase2_evolution"
    assert settings.startswith("rows of at most 64 tokens, packed")
    assert processes.startswith("processes: 1 (1 GPU(s) x 1 node(s))")
    assert any(line.startswith("memory per GPU (H100 SXM 80GB, 79.2 GiB; rows of 64 tokens)") for line in rest)
    assert any(line.startswith("time on 1 x H100 SXM 80GB (matrix work at 24%") for line in rest)
    own = p2["sources"][0]["tokens"]
    share = p2["replay_tokens"] / (own + p2["replay_tokens"])
    assert mix == (
        f"phase2_evolution mix: p2.jsonl {own:,} ({1 - share:.1%}), replay {p2['replay_tokens']:,} ({share:.1%})"
    )  # only a phase with more than its own data


def test_validate_applies_the_same_policy(work, tiny_model_dir):
    strict = run_cli(["validate", str(config(work, tiny_model_dir, "v-strict"))], cwd=work)
    assert_user_error(strict, f"{work / 'data' / 'p1.jsonl'}:13: invalid JSON")
    lenient = run_cli(
        ["validate", str(config(work, tiny_model_dir, "v-skip", data={"on_bad_record": "skip", "dedup": "exact"}))],
        cwd=work,
    )
    assert lenient.returncode == 0, lenient.stderr
    assert (
        "phase1_foundation: 12 documents" in lenient.stderr
        and "4 line(s) to be left out (1 duplicate(s))" in lenient.stderr
    )


@pytest.mark.parametrize("script", ["data_prep.py", "cpu_training.py"])
def test_benchmark_runs_in_tiny_mode_and_prints_ratios(script, tmp_path_factory):
    import os
    import subprocess
    import sys

    from tests.e2e.cli import REPO

    work = tmp_path_factory.getbasetemp() / "bench"  # shared: the tiny benchmark model is built once
    # WANDB_MODE=offline makes transformers print a notice on stdout, where the result goes
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--tiny", "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ratios = json.loads(result.stdout)["ratios"]
    assert all(isinstance(v, float | int) and v > 0 for v in ratios.values()) and len(ratios) >= 2
