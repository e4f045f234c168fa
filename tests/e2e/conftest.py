"""What the multi-process e2e tests share (test_deepspeed.py, test_multinode.py): two small phase
files, their run config, and the single-process run every multi-process adapter is compared with.

The single-process reference sees the same rows in the same order as 2 ranks x micro-batch 2:
step k trains on rows 4k..4k+3 of the Trainer's seeded permutation (rank r takes micro-batch
2k+r), exactly the rows of step k with one process and micro-batch 4.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import run_cli, tiny_run_config, write_yaml

PHASES = ("p1", "p2")
TOLERANCE = 1e-4
"""Max abs difference between a 2-rank DeepSpeed adapter and the single-process one (the bound
is explained in test_deepspeed.py)."""


def config_data(model_dir: Path, files: dict[str, Path], **training) -> dict:
    data = tiny_run_config(model_dir, [(name, files[name], 1) for name in PHASES])
    data["training"].update({"micro_batch_size": 2, "max_steps": 3, "save_steps": 2, "learning_rate": 5e-4, **training})
    return data


def only_run(outputs: Path) -> Path:
    (run_dir,) = outputs.iterdir()
    return run_dir


@pytest.fixture(scope="session")
def deepspeed_work(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    work = tmp_path_factory.mktemp("deepspeed")
    files = {
        "p1": write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 16)),
        "p2": write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 16)),
    }
    return work, files


@pytest.fixture(scope="session")
def single_run(deepspeed_work, tiny_model_dir) -> Path:
    """One process, micro-batch 4: the reference for the 2-rank x micro-batch 2 runs."""
    root, files = deepspeed_work
    cwd = root / "single"
    cwd.mkdir()
    config = write_yaml(cwd / "run.yaml", config_data(tiny_model_dir, files, micro_batch_size=4))
    result = run_cli(["train", str(config)], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(cwd / "outputs")


@pytest.fixture(scope="session")
def quickstart_work(tmp_path_factory) -> Path:
    """The working directory of `phased-cpt train` with no config (the embedded quickstart, its tiny
    model built into `cache/`), trained once: test_quickstart.py checks the run, test_export.py
    exports it to every target."""
    work = tmp_path_factory.mktemp("quickstart")
    result = run_cli(["train"], cwd=work, env={"XDG_CACHE_HOME": str(work / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    return work
