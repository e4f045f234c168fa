"""`benchmarks/gpu_check.py --cpu-rehearsal`: the GPU check's code path, tiny shapes, on the CPU,
so the first GPU run is not the first time it runs. No timing is asserted."""

import json
import subprocess
import sys

import pytest

from tests.e2e.cli import REPO

pytestmark = pytest.mark.e2e
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}


def gpu_check(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(out), "--cpu-rehearsal", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**ENV, "HOME": str(tmp_path)},
    )
    report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else {}
    return result, report


def test_the_rehearsal_answers_every_question(tmp_path):
    result, report = gpu_check(tmp_path, "--budget-s", "900")  # CI machines are slower than the budget assumes
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    rows = {row["case"]: row for row in report["rows"]}
    assert rows["wheels"]["status"].startswith("skipped: no --wheels folder given")
    environment = rows["environment"]["details"]
    assert environment["gpu"] == "none (CPU)" and environment["torch"]
    assert {"liger_kernel", "flash_attn", "deepspeed", "driver", "cuda"} <= set(environment)
    train = rows["train"]
    assert train["status"] == "ok", train
    assert all(train["details"]["checks"].values())
    assert train["details"]["resumed_from"] == "p2/checkpoint-2"
    assert {"p1/adapter", "p2/adapter"} <= set(train["details"]["adapters"])
    assert "checkpointing=off (auto: needs ~" in train["details"]["speed_path"]
    # attention auto: per document on this CPU (packed rows); the run's log says why
    assert ", attention=sdpa_packed, " in train["details"]["speed_path"]
    log = (tmp_path / "out" / "train-killed.log").read_text()
    assert "attention: sdpa_packed (auto: CPU, packed rows: causal sdpa per document, not one T^2 mask)" in log
    for case in ("tiny-128/plain", "tiny-128/ours", "tiny-corpus/hf-packed", "tiny-corpus/ours-packed"):
        row = rows[case]
        assert row["status"] == "ok", row
        assert row["details"]["target_tokens_per_second"] > 0 and row["details"]["predicted_peak_gib"] > 0
    for case in ("tiny-128/liger", "tiny-corpus/hf-packed-liger"):
        assert rows[case]["status"].startswith("skipped: liger"), rows[case]
    assert [plan["name"] for plan in report["plan"]] == ["train", "throughput", "corpus"]
    for plan in report["plan"]:  # the arithmetic shown adds up to the planned seconds
        assert plan["arithmetic"].endswith(f"= {plan['seconds']:.0f} s")
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| question | case | status |") and len(table) == len(report["rows"]) + 1
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith(table[0])
    # what comes back from the GPU machine: the report and the two train logs, nothing bulky
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "gpu_check.json",
        "gpu_check.md",
        "train-killed.log",
        "train-resumed.log",
    ]


def test_a_case_that_does_not_fit_the_budget_is_left_out_and_missing_wheels_are_a_line(tmp_path):
    work = tmp_path / "work"
    result, report = gpu_check(
        tmp_path, "--budget-s", "0.5", "--only", "train", "--wheels", str(tmp_path / "none"), "--work", str(work)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["case"]: row for row in report["rows"]}
    assert rows["wheels"]["status"] == (
        f"skipped: {tmp_path / 'none' / 'requirements.txt'} not found; "
        "run `make gpu-wheels` on a machine with the package index"
    )
    planned = report["plan"][0]["seconds"]
    assert rows["train"]["status"].startswith(f"left out: planned {planned:.0f} s, 0 s left of the budget")
    assert "tiny-128/plain" not in rows  # not asked for
    assert not (work / "train").exists()  # nothing of a left-out case ran
