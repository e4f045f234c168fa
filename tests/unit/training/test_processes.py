"""training/processes.py: the run directory rank 0 creates, and the job identity every node compares."""

from __future__ import annotations

from phased_cpt.run_dir import RunDir
from phased_cpt.training.processes import main_process_run_dir


def test_single_process_creates_the_run_directory(tmp_path):
    run = main_process_run_dir(RunDir.create, tmp_path / "outputs", "r")
    assert run.path.is_dir()
