"""`benchmarks/forgetting.py --tiny`, the CI smoke test of the learning-vs-forgetting benchmark:
it cuts a small git repository in time with `data from-git`, trains two variants, and reads back
per variant the learning on the future next to the doc-level split, each set's contamination,
the general-perplexity change and the HumanEval pass@1 change."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import REPO

pytestmark = pytest.mark.e2e


def test_forgetting_benchmark_tiny_reports_future_next_to_doc_level(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"HF_HUB_OFFLINE": "1"}
    plot = tmp_path / "plot.png"
    script = str(REPO / "benchmarks" / "forgetting.py")
    result = subprocess.run(
        [sys.executable, script, "--tiny", "--work", str(tmp_path / "work"), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table, _, rest = result.stdout.partition("\n{")
    report = json.loads("{" + rest)
    assert [row["variant"] for row in report["variants"]] == ["baseline", "general-0.25"]
    assert "future ppl change (learning)" in table and "doc-level ppl change (old split)" in table
    for row, run in zip(report["variants"], report["runs"], strict=True):
        for key in ("future_change", "doc_level_change", "general_change"):
            assert math.isfinite(row[key]) and row[key] > -1
        # the doc-level held-out documents are cut from the trained files; the future is not
        assert 0 <= row["future_seen"] < row["doc_level_seen"] <= 1
        assert row["humaneval_base"] is not None and row["humaneval_change"] is not None
        assert set(run["contamination"]) >= {"phase1_foundation", "future_evolution", "future_tasks.next_line"}
        matrix = json.loads((Path(run["run_dir"]) / "eval" / "forgetting.json").read_text())
        assert matrix["groups"]["future"] == ["future_evolution", "future_pr_mastery"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
