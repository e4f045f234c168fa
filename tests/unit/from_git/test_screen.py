"""from_git/screen.py: what every document goes through besides the path and content rules: bots\nand exact duplicates (personal data: test_personal.py, near-duplicates: test_neardup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, ScreenOptions
from tests.unit.from_git.conftest import _bot_commit, _ids, _subjects
from tests.unit.from_git.repos import build, commit, git, merge, new_repo, read, report


@pytest.fixture
def bot_repo(tmp_path: Path) -> Path:
    """A dependabot commit on main, and a dependabot pull request merged by a person."""
    repo = new_repo(tmp_path / "bots", {"requirements.txt": "lib==1.0\n", "app.py": "import lib\n"})
    _bot_commit(repo, {"requirements.txt": "lib==1.1\n"}, "Bump lib from 1.0 to 1.1", "2024-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "-b", "dependabot/pip/lib-1.2")
    _bot_commit(repo, {"requirements.txt": "lib==1.2\n"}, "Bump lib from 1.1 to 1.2", "2024-01-03T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"app.py": "import lib\nlib.run()\n"}, "Run lib", "2024-01-04T10:00:00Z")
    merge(
        repo, "dependabot/pip/lib-1.2", "Merge pull request #7 from org/dependabot/pip/lib-1.2", "2024-01-05T10:00:00Z"
    )
    return repo


def test_bot_commits_and_merges_are_left_out_by_default(bot_repo, tmp_path):
    summary = build(bot_repo, tmp_path)
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Run lib"]
    assert read(tmp_path, PHASE3_FILE) == []
    assert summary.output(PHASE2_FILE).skipped == {"bot": 2, "merge": 1}
    assert summary.output(PHASE3_FILE).skipped == {"bot": 1}
    rules = {e["rule"] for e in report(tmp_path)["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "bot"}
    assert "by a bot: dependabot[bot]" in rules


def test_keep_bots_keeps_them(bot_repo, tmp_path):
    build(bot_repo, tmp_path, screen=ScreenOptions(keep_bots=True))
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Bump lib from 1.0 to 1.1", "Run lib"]
    [story] = read(tmp_path, PHASE3_FILE)
    assert story["number"] == 7 and "* Bump lib from 1.1 to 1.2\n" in story["training_content"]


def test_keep_duplicates_keeps_repeated_documents(quality_repo, tmp_path):
    build(quality_repo, tmp_path, keep_duplicates=True)
    assert {"docs/guide.md", "docs/copy.md"} <= set(_ids(tmp_path, PHASE1_FILE, "path"))
