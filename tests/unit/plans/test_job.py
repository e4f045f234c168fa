"""plans/job.py: the job identity every node compares with the main process's."""

from __future__ import annotations

from phased_cpt.plans.job import JobIdentity, differing_keys, flatten, identity_differences


def test_identity_differences_name_the_key_the_file_and_the_package():
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
    assert reference.config_sha256 != other.config_sha256


def test_differing_keys_skip_what_may_differ_and_flatten_names_the_path():
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": [1, 2]}
    a = {"training": {"learning_rate": 1e-4, "seed": 1}, "output": {"dir": "x"}}
    b = {"training": {"learning_rate": 2e-4, "seed": 1}, "output": {"dir": "y"}}
    assert differing_keys(a, b, ["output.dir"]) == [("training.learning_rate", 1e-4, 2e-4)]
    assert differing_keys(a, a, []) == []
