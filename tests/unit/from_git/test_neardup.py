"""from_git/neardup.py: near-duplicate documents within and across the phases (MinHash, LSH)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, ScreenOptions
from phased_cpt.from_git.neardup import NearDuplicates
from tests.unit.from_git.conftest import _subjects
from tests.unit.from_git.repos import build, commit, git, new_repo, read, report

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


def test_near_duplicate_files_stay_in_phase1_and_are_reported(near_repo, tmp_path):
    """Every hand-written file at the revision is trained; a near-twin is only named in the report."""
    summary = build(near_repo, tmp_path)
    assert [d["path"] for d in read(tmp_path, PHASE1_FILE)] == ["a/checks.py", "b/checks.py", "c/other.py"]
    phase1 = report(tmp_path)["outputs"][PHASE1_FILE]
    assert phase1["similar"] == [{"file": "b/checks.py", "similar_to": "phase1_foundation.jsonl: file a/checks.py"}]
    assert phase1["near_duplicates_kept"] == 1 and summary.output(PHASE1_FILE).skipped == {}
    assert "near-duplicate files kept in phase 1 (the report's `similar`): b/checks.py\n" in summary.format_table()


def test_near_duplicate_history_documents_are_left_out_naming_the_first(tmp_path):
    """A commit whose diff nearly repeats an earlier commit's is left out of phase 2."""
    repo = new_repo(tmp_path / "repo", {"a/checks.py": TEMPLATE}, message="Add the checks")
    commit(
        repo, {"b/checks.py": TEMPLATE.replace("rule=7)", "rule=70)")}, "Copy the checks", "2024-01-02T10:00:00+00:00"
    )
    commit(
        repo, {"c/other.py": "".join(f"x{i} = compute({i})\n" for i in range(40))}, "Other", "2024-01-03T10:00:00+00:00"
    )
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    summary = build(repo, tmp_path / "out")
    assert _subjects(tmp_path / "out", PHASE2_FILE) == ["Add the checks", "Other"]
    [entry] = [
        e for e in report(tmp_path / "out")["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "near-duplicate"
    ]
    assert entry["rule"] == f"similar to phase2_evolution.jsonl: commit {first}"
    assert summary.output(PHASE2_FILE).skipped["near-duplicate"] == 1
    assert len(read(tmp_path / "out", PHASE1_FILE)) == 3  # the files themselves all stay in phase 1


def test_near_duplicates_are_kept_when_switched_off(near_repo, tmp_path):
    build(near_repo, tmp_path, screen=ScreenOptions(near_duplicate_threshold=None))
    assert len(read(tmp_path, PHASE1_FILE)) == 3
    assert report(tmp_path)["outputs"][PHASE1_FILE]["similar"] == []
    build(near_repo, tmp_path / "kept", keep_duplicates=True)
    assert report(tmp_path / "kept")["outputs"][PHASE1_FILE]["similar"] == []


def test_near_duplicate_index_is_shared_across_phases():
    index = NearDuplicates()
    signature = index.signature(TEMPLATE)
    assert signature is not None and index.find(signature) is None
    index.add(signature, "phase2_evolution.jsonl: commit abc")
    assert index.find(index.signature(TEMPLATE.replace("rule=3)", "rule=33)"))) == "phase2_evolution.jsonl: commit abc"
    assert index.find(index.signature("".join(f"y{i} = other({i})\n" for i in range(40)))) is None
    assert index.signature("a = 1\nb = 2\n") is None  # too short to judge


def test_a_candidate_below_the_threshold_is_not_a_match():
    """LSH candidates are checked against the threshold: at 0.99 a one-line change is no match."""
    index = NearDuplicates(threshold=0.99)
    index.add(index.signature(TEMPLATE), "phase2_evolution.jsonl: commit abc")
    assert index.find(index.signature(TEMPLATE)) == "phase2_evolution.jsonl: commit abc"
    assert index.find(index.signature(TEMPLATE.replace("rule=7)", "rule=70)").replace("rule=8)", "rule=80)"))) is None
