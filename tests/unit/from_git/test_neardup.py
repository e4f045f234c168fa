"""from_git/neardup.py: near-duplicate documents within and across the phases (MinHash, LSH)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, ScreenOptions
from phased_cpt.from_git.neardup import NearDuplicates
from tests.unit.from_git.repos import build, new_repo, read, report

TEMPLATE = "".join(f"def check_{i}(value):\n    return validate(value, rule={i})\n" for i in range(30))


@pytest.fixture
def near_repo(tmp_path: Path) -> Path:
    return new_repo(
        tmp_path / "near",
        {
            "a/checks.py": TEMPLATE,
            "b/checks.py": TEMPLATE.replace("rule=7)", "rule=70)"),  # one line of 60 differs
            "c/other.py": "".join(f"x{i} = compute({i})\n" for i in range(40)),
        },
    )


def test_near_duplicate_files_are_left_out_naming_the_first(near_repo, tmp_path):
    summary = build(near_repo, tmp_path)
    assert [d["path"] for d in read(tmp_path, PHASE1_FILE)] == ["a/checks.py", "c/other.py"]
    [entry] = [e for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"] if e["reason"] == "near-duplicate"]
    assert entry["file"] == "b/checks.py" and entry["rule"] == "similar to phase1_foundation.jsonl: file a/checks.py"
    assert summary.output(PHASE1_FILE).skipped == {"near-duplicate": 1}


def test_near_duplicates_are_kept_when_switched_off(near_repo, tmp_path):
    build(near_repo, tmp_path, screen=ScreenOptions(near_duplicate_threshold=None))
    assert len(read(tmp_path, PHASE1_FILE)) == 3
    build(near_repo, tmp_path / "kept", keep_duplicates=True)
    assert len(read(tmp_path / "kept", PHASE1_FILE)) == 3


def test_near_duplicate_index_is_shared_across_phases():
    index = NearDuplicates()
    signature = index.signature(TEMPLATE)
    assert signature is not None and index.find(signature) is None
    index.add(signature, "phase2_evolution.jsonl: commit abc")
    assert index.find(index.signature(TEMPLATE.replace("rule=3)", "rule=33)"))) == "phase2_evolution.jsonl: commit abc"
    assert index.find(index.signature("".join(f"y{i} = other({i})\n" for i in range(40)))) is None
    assert index.signature("a = 1\nb = 2\n") is None  # too short to judge
