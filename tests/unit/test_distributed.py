"""distributed.py: which process this is, read from the launcher's environment, and by no other module."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.distributed import is_local_main_process, is_main_process, world_size


def test_rank_helpers_read_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not is_main_process()
    assert world_size() == 2
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


@pytest.mark.parametrize("local_rank,main", [("0", True), ("-1", True), ("1", False)])
def test_local_main_process_is_local_rank_0_or_unset(monkeypatch, local_rank, main):
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert is_local_main_process() is main
    monkeypatch.delenv("LOCAL_RANK")
    assert is_local_main_process()


def test_only_distributed_py_reads_the_rank_variables():
    """One reader of the launcher's environment: every other module asks `phased_cpt.distributed`."""
    import re

    src = Path(__file__).resolve().parents[2] / "src" / "phased_cpt"
    pattern = re.compile(r"""environ(?:\.get)?\s*[\[(]\s*["'](?:RANK|LOCAL_RANK|WORLD_SIZE)["']""")
    readers = sorted(
        str(p.relative_to(src)) for p in src.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert readers == ["distributed.py"]
