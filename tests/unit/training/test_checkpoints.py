"""training/checkpoints.py: Trainer checkpoints of every rank."""

from __future__ import annotations


def test_rank0_waits_for_a_late_rank_part_and_reports_one_that_never_comes(tmp_path, monkeypatch):
    import threading

    from phased_cpt.training import checkpoints

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "rng_state_0.pth").write_bytes(b"r")
    assert checkpoints.wait_for_rank_parts(checkpoint, 2, timeout_s=0.05) == ["rng_state_1.pth"]
    late = threading.Timer(0.2, (checkpoint / "rng_state_1.pth").write_bytes, [b"r"])  # another node's NFS lag
    late.start()
    assert checkpoints.wait_for_rank_parts(checkpoint, 2, timeout_s=30) == []
    late.join()
