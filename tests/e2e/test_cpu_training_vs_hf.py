"""`benchmarks/cpu_training.py --vs-hf-trainer --tiny`: ours (defaults) against the HF Trainer with
padding-free packing, on the quickstart and on short documents. No timing is asserted."""

import json
import math
import subprocess
import sys

import pytest

from tests.e2e.cli import REPO

pytestmark = pytest.mark.e2e

ATTENTION = {
    "quickstart": "sdpa",
    "short_documents": "sdpa_packed (auto: CPU, packed rows: causal sdpa per document, not one T^2 mask)",
}


def test_the_comparison_runs_both_trainers_on_both_corpora(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cpu_training.py"), "--vs-hf-trainer", "--tiny", "--rounds", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO / "src"),  # this checkout, whatever is installed
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert len(report["load_average_before"]) == 3 and len(report["load_average_after"]) == 3
    for corpus in ("quickstart", "short_documents"):
        case = report[corpus]
        # the defaults: checkpointing auto, resolved as training resolves it (off: a tiny model fits)
        assert case["ours_checkpointing"].startswith("off (auto: needs ~")
        # attention auto: per document where rows are packed (on this CPU); the quickstart asks for sdpa
        assert case["ours_attention"] == ATTENTION[corpus]
        assert case["timed_steps_per_method"] == 3 * 2
        for method in ("ours", "hf"):
            assert case[f"{method}_target_tokens"] > 0
            rate = case[f"{method}_target_tokens"] / case[f"{method}_seconds"]
            assert case[f"{method}_target_tokens_per_second"] == pytest.approx(rate, rel=0.01, abs=0.1)
        ratio = case["ours_target_tokens_per_second"] / case["hf_target_tokens_per_second"]
        assert math.isfinite(case["ratio_ours_vs_hf"]) and case["ratio_ours_vs_hf"] == pytest.approx(ratio, rel=0.01)
        assert [run.split()[0] for run in case["runs_in_order"]] == ["ours", "hf", "hf", "ours"]  # alternating
    assert report["quickstart"]["sample_packing"] is False and report["short_documents"]["sample_packing"] is True
