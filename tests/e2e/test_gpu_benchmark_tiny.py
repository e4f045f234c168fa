"""The GPU benchmark in its CPU tiny mode, and MFU / tokens/s in a real training run.

No timing is asserted: only that the benchmark runs every variant (or says why not), prints a
table that parses, and that training logs consistent throughput numbers."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import REPO, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e


def parse_table(stdout: str) -> list[dict[str, str]]:
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_the_tiny_benchmark_prints_a_table_with_finite_ratios(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--tiny", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith("environment: python=")
    rows = parse_table(result.stdout)
    variants = {(r["case"], r["variant"]): r for r in rows}
    assert set(variants) == {
        ("tiny-128", v) for v in ("plain", "liger", "ours", "ours-dropout0", "ours-every2", "ours-offload")
    } | {("tiny-corpus-128", v) for v in ("hf-packed-liger", "hf-packed", "ours-packed", "ours")}
    for row in rows:
        if row["status"].startswith("skipped: "):
            continue
        assert row["status"] == "ok", row
        for column in ("tok/s", "target tok/s", "step s", "vs baseline"):
            assert math.isfinite(float(row[column])) and float(row[column]) > 0, (column, row)
        assert row["MFU"] == "nan"  # no known peak on a CPU: MFU is not made up
        assert float(row["target tok/s"]) <= float(row["tok/s"])
    assert variants[("tiny-128", "plain")]["baseline"] == "plain"
    assert float(variants[("tiny-128", "plain")]["vs baseline"]) == 1.0
    liger = variants[("tiny-128", "liger")]["status"]
    assert liger.startswith("skipped: liger") or liger == "ok"
    ours = variants[("tiny-128", "ours")]
    ratio = float(ours["target tok/s"]) / float(variants[("tiny-128", "plain")]["target tok/s"])
    assert float(ours["vs baseline"]) == pytest.approx(ratio, rel=2e-3)
    saved = json.loads(out.read_text())
    assert saved["environment"]["torch"] and len(saved["results"]) == len(rows)
    packed = next(r for r in saved["results"] if r["variant"] == "ours-packed")
    assert 0 < packed["extra"]["packing_efficiency"] <= 1 and packed["extra"]["rows"] >= 1


def test_training_logs_tokens_per_second_and_no_mfu_on_cpu(tiny_model_dir, tmp_path):
    """MFU is shown only against a known GPU peak: on a CPU it is neither logged nor drawn in the
    progress bar (it once read mfu=248% against a measured 512x512 matmul)."""
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 12))
    config = tiny_run_config(tiny_model_dir, [("p1", data, 1)], context={"sample_packing": True})
    config["training"].update(max_steps=2, micro_batch_size=1)
    config["data"] = {"eval_ratio": 0.0, "cache_dir": str(tmp_path / "cache")}
    config["evaluation"] = {"forgetting_matrix": False}
    result = run_cli(["train", str(write_yaml(tmp_path / "config.yaml", config))], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("speed path: liger=") == 1
    (metrics_file,) = (tmp_path / "outputs").glob("e2e-*/metrics.jsonl")
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    (event,) = [r for r in records if r.get("event") == "throughput"]
    assert event["phase"] == "p1" and event["peak_source"] is None and event["peak_flops_per_second"] is None
    assert "mfu=" not in result.stderr
    train = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for record in train:
        expected = record["tokens_per_second"] * event["flops_per_token"]
        assert record["model_tflops_per_second"] == pytest.approx(expected / 1e12, rel=1e-6)
        assert "mfu" not in record
