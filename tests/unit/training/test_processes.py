"""training/processes.py: the run directory rank 0 creates, and the job identity every node compares."""

from __future__ import annotations

from phased_cpt.run_dir import RunDir
from phased_cpt.training.processes import rank_zero_run_dir


def test_single_process_creates_the_run_directory(tmp_path):
    run = rank_zero_run_dir(RunDir.create, tmp_path / "outputs", "r")
    assert run.path.is_dir() and run.writer


def test_identity_differences_name_the_key_the_file_and_the_package():
    from phased_cpt.training.processes import JobIdentity, identity_differences

    reference = JobIdentity(
        "n0", {"training": {"learning_rate": 5e-4}, "data": {"cache_dir": "/a"}}, {"p1": "aa" * 32}, {"torch": "2.13.0"}
    )
    same_but_cache = JobIdentity(
        "n1", {"training": {"learning_rate": 5e-4}, "data": {"cache_dir": "/b"}}, {"p1": "aa" * 32}, {"torch": "2.13.0"}
    )
    assert identity_differences(reference, same_but_cache) == []
    assert reference.config_sha256 == same_but_cache.config_sha256
    other = JobIdentity(
        "n1", {"training": {"learning_rate": 1e-3}, "data": {"cache_dir": "/a"}}, {"p1": "bb" * 32}, {"torch": "2.12.0"}
    )
    assert identity_differences(reference, other) == [
        "training.learning_rate: 0.0005 on rank 0, 0.001 here",
        "phases.p1: the file's content differs (sha256 bbbbbbbbbbbb here, aaaaaaaaaaaa on rank 0)",
        "torch: 2.13.0 on rank 0, 2.12.0 here",
    ]
