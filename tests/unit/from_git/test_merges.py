"""from_git/merges.py: how the history merges and which phase each change is trained in (every\nchange once): squash and review merges, exports of pull requests, stories, ranges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.from_git import (
    PHASE2_FILE,
    PHASE3_FILE,
    HoldoutOptions,
    ScreenOptions,
)
from phased_cpt.from_git.merges import classify_merge
from tests.unit.from_git.conftest import _subjects
from tests.unit.from_git.repos import (
    build,
    commit,
    git,
    merge,
    new_repo,
    read,
    report,
)


@pytest.fixture
def squash_repo(tmp_path: Path) -> Path:
    """A squash-merging repository: two `TITLE (#N)` commits and one direct commit on main."""
    repo = new_repo(tmp_path / "squash", {"app.py": "x = 1\n"})
    commit(repo, {"app.py": "x = 2\n"}, "Raise x (#3)\n\nThe pull request's description.", "2024-01-02T10:00:00Z")
    commit(repo, {"lib.py": "y = 1\n"}, "Add lib (#4)", "2024-01-03T10:00:00Z")
    commit(repo, {"VERSION": "1.1\n"}, "Release 1.1", "2024-01-04T10:00:00Z")
    return repo


def test_squash_merges_are_phase3_pull_requests_and_not_phase2_commits(squash_repo, tmp_path):
    summary = build(squash_repo, tmp_path)
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Release 1.1"]
    stories = read(tmp_path, PHASE3_FILE)
    assert [(d["number"], d["source"], d["kind"]) for d in stories] == [
        (3, "squash_commit", "pull_request"),
        (4, "squash_commit", "pull_request"),
    ]
    assert stories[0]["training_content"].startswith(
        "Pull request #3: Raise x\nDate: 2024-01-02T10:00:00+00:00\n\nThe pull request's description.\n\n"
        "Files changed:\nM app.py\n"
    )
    assert stories[0]["training_content"].endswith("+x = 2\n\nOutcome: merged\n")
    assert summary.output(PHASE2_FILE).skipped == {}
    assert summary.merge_styles == {"squash merges": 2, "direct commits": 2}


def test_with_an_export_the_squash_commits_it_holds_leave_phase2_and_the_others_stay(squash_repo, tmp_path):
    export = tmp_path / "prs.json"
    pull = {"number": 3, "title": "Raise x", "state": "closed", "merged_at": "2024-01-02T10:00:00Z", "diff": None}
    export.write_text(json.dumps([pull]))
    summary = build(squash_repo, tmp_path / "out", prs=export)
    assert _subjects(tmp_path / "out", PHASE2_FILE) == ["Initial commit", "Add lib (#4)", "Release 1.1"]
    assert [d["number"] for d in read(tmp_path / "out", PHASE3_FILE)] == [3]
    assert summary.output(PHASE2_FILE).skipped == {"in-phase-3-story": 1}


def test_a_thin_or_stale_phase3_is_explained_with_the_prs_recipe(tmp_path):
    repo = new_repo(tmp_path / "thin", {"a.py": "a = 0\n"})
    git(repo, "checkout", "-q", "-b", "topic")
    commit(repo, {"t.py": "t = 1\n"}, "Topic work", "2020-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "topic", "Merge branch 'topic'", "2020-01-03T10:00:00Z")
    for day in range(1, 25):
        commit(repo, {"a.py": f"a = {day}\n"}, f"Direct change {day}", f"2024-02-{day:02d}T10:00:00Z")
    summary = build(repo, tmp_path / "out", holdout=HoldoutOptions(commits=0))  # every commit in the phases
    [note] = [note for note in summary.notes if note.startswith("phase 3 ")]
    assert "phase 3 is thin (1 stories for 26 changes)" in note
    assert "is stale (newest story 2020-01-03, newest commit 2024-02-24)" in note
    assert "most changes were committed directly to the mainline" in note
    assert "--prs prs/" in note and "Exporting with the GitHub CLI" in note
    assert f"note: {note}" in summary.format_table()


@pytest.fixture
def gerrit_repo(tmp_path: Path) -> Path:
    """Gerrit's review merges (`Merge "X" into main`, `Change-Id:` trailers) and a Mercurial-era
    forward-port (`merge tip`)."""
    repo = new_repo(tmp_path / "gerrit", {"opts.py": "a = 1\n"})
    git(repo, "checkout", "-q", "-b", "change")
    commit(repo, {"opts.py": "a = 2\n"}, "Document the option\n\nChange-Id: I0123456789abcdef", "2024-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"other.py": "o = 1\n"}, "Unrelated\n\nChange-Id: Ifedcba9876543210", "2024-01-03T10:00:00Z")
    merge(repo, "change", 'Merge "Document the option" into main', "2024-01-04T10:00:00Z")
    git(repo, "checkout", "-q", "-b", "hg-head", "HEAD~1")
    commit(repo, {"fix.py": "f = 1\n"}, "Fix on the other head", "2024-01-05T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "hg-head", "merge tip", "2024-01-06T10:00:00Z")
    return repo


def test_gerrit_review_merges_are_stories_and_head_merges_leave_their_commits_in_phase2(gerrit_repo, tmp_path):
    summary = build(gerrit_repo, tmp_path)
    [review] = read(tmp_path, PHASE3_FILE)
    assert review["kind"] == "review"
    assert review["training_content"].startswith(
        "Review: Document the option\nBranch: main\nDate: 2024-01-04T10:00:00+00:00\n\n"
        "Commits:\n* Document the option\n  Change-Id: I0123456789abcdef\n\nFiles changed:\nM opts.py\n"
    )
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Unrelated", "Fix on the other head"]
    [sync] = report(tmp_path)["outputs"][PHASE3_FILE]["left_out"]
    assert sync["reason"] == "branch-sync" and "without a title of its own" in sync["rule"]
    assert summary.merge_styles["review merges (Gerrit)"] == 1
    assert summary.merge_styles["review commits (Change-Id, no merge)"] == 1


def test_plan_history_takes_a_range_and_places_only_its_commits(gerrit_repo):
    from phased_cpt.from_git.git import GitRepo
    from phased_cpt.from_git.merges import plan_history

    repo = GitRepo.open(gerrit_repo)
    cut = git(gerrit_repo, "rev-parse", "HEAD~1").strip()  # the review merge
    whole = plan_history(repo, "HEAD", since_epoch=None, keep_bots=False)
    after = plan_history(repo, f"{cut}..HEAD", since_epoch=None, keep_bots=False)
    fix, tip = (git(gerrit_repo, "rev-parse", rev).strip() for rev in ("HEAD^2", "HEAD"))
    assert after.phase2 == {fix} and set(after.left_out) == {tip}
    assert after.stories == {} and len(whole.stories) == 1
    assert after.left_out[git(gerrit_repo, "rev-parse", "HEAD").strip()][0] == "branch-sync"


def test_a_bots_pull_request_in_the_export_is_left_out_unless_kept(squash_repo, tmp_path):
    export = tmp_path / "prs.json"
    pulls = [
        {"number": 3, "title": "Raise x", "state": "closed", "merged": True, "user": {"login": "ann"}},
        {"number": 9, "title": "Bump lib", "state": "closed", "merged": True, "user": {"login": "dependabot[bot]"}},
    ]
    export.write_text(json.dumps(pulls))
    summary = build(squash_repo, tmp_path / "out", prs=export)
    assert [d["number"] for d in read(tmp_path / "out", PHASE3_FILE)] == [3]
    assert summary.output(PHASE3_FILE).skipped == {"bot": 1}
    build(squash_repo, tmp_path / "kept", prs=export, screen=ScreenOptions(keep_bots=True))
    assert [d["number"] for d in read(tmp_path / "kept", PHASE3_FILE)] == [3, 9]


def test_a_story_lists_at_most_max_story_commits_messages(tmp_path, monkeypatch):
    from phased_cpt.from_git import merges

    monkeypatch.setattr(merges, "MAX_STORY_COMMITS", 2)
    repo = new_repo(tmp_path / "long", {"a.py": "a = 0\n"})
    git(repo, "checkout", "-q", "-b", "topic")
    for day in range(1, 5):
        commit(repo, {"t.py": f"t = {day}\n"}, f"Step {day}", f"2024-01-0{day}T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "topic", "Merge pull request #5 from ann/topic\n\nFour steps", "2024-01-06T10:00:00Z")
    build(repo, tmp_path / "out")
    [story] = read(tmp_path / "out", PHASE3_FILE)
    assert "Commits:\n* Step 1\n* Step 2\n[2 more commits not listed]\n\nFiles changed:" in story["training_content"]
    assert len(story["commits"]) == 4


@pytest.fixture(scope="module")
def merge_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pull-request merge, a branch merge, the mainline merged into a feature branch, and a
    `git pull` of master into master (both branch syncs)."""
    root = new_repo(tmp_path_factory.mktemp("merges"), {"a.py": "a = 1\n"})
    git(root, "checkout", "-q", "-b", "feature")
    commit(root, {"f.py": "f = 1\n"}, "Feature work", "2024-01-02T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"a.py": "a = 2\n"}, "Mainline work", "2024-01-03T10:00:00+00:00")
    git(root, "checkout", "-q", "feature")
    merge(root, "main", "Merge branch 'main' into feature", "2024-01-04T10:00:00+00:00")
    commit(root, {"f.py": "f = 2\n"}, "More feature work", "2024-01-05T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    merge(
        root,
        "feature",
        "Merge pull request #12 from ann/feature\n\nAdd the feature\n\nIt does f.",
        "2024-01-06T10:00:00+00:00",
    )
    git(root, "checkout", "-q", "-b", "topic")
    commit(root, {"t.py": "t = 1\n"}, "Topic work", "2024-01-07T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    merge(root, "topic", "Merge branch 'topic'", "2024-01-08T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "upstream", "HEAD~1")
    commit(root, {"u.py": "u = 1\n"}, "Upstream work", "2024-01-09T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"l.py": "l = 1\n"}, "Local work", "2024-01-10T10:00:00+00:00")
    merge(root, "upstream", "Merge branch 'master' of github.com:org/repo", "2024-01-11T10:00:00+00:00")
    return root


def test_merges_are_classified_and_branch_syncs_dropped(merge_repo, tmp_path):
    summary = build(merge_repo, tmp_path)
    documents = read(tmp_path, PHASE3_FILE)
    assert [(d["kind"], d.get("number")) for d in documents] == [("pull_request", 12), ("branch", None)]
    pr = documents[0]["training_content"]
    assert pr.startswith(
        "Pull request #12: Add the feature\nBranch: ann/feature\nDate: 2024-01-06T10:00:00+00:00\n\n"
        "It does f.\n\nCommits:\n* Feature work\n* More feature work\n\nFiles changed:\nA f.py\n"
    )
    assert "+f = 2\n" in pr and "a = 2" not in pr and pr.endswith("\nOutcome: merged\n")
    assert documents[1]["training_content"].startswith("Merge: Merge branch 'topic'\nBranch: topic\n")
    left_out = {e["reason"]: e["rule"] for e in report(tmp_path)["outputs"][PHASE3_FILE]["left_out"]}
    assert left_out["branch-sync"] == "merges the mainline branch 'master'"
    assert left_out["inside-branch"].startswith("a merge inside the branch of merge ")  # main into feature
    assert summary.output(PHASE3_FILE).skipped == {"branch-sync": 1, "inside-branch": 1}


def test_each_change_is_trained_once_a_branch_in_its_story_a_synced_branch_in_phase2(merge_repo, tmp_path):
    """The commits of a pull request or branch merge are told in its phase-3 story and are not
    phase-2 documents; the commits a branch sync brings in stay phase-2 documents (the sync is
    left out): no diff is in both phases."""
    build(merge_repo, tmp_path)
    phase2 = [d["subject"] for d in read(tmp_path, PHASE2_FILE)]
    assert sorted(phase2) == ["Initial commit", "Local work", "Mainline work", "Upstream work"]
    phase2_lines = {line for d in read(tmp_path, PHASE2_FILE) for line in d["training_content"].split("\n")}
    for story in read(tmp_path, PHASE3_FILE):
        changed = [line for line in story["training_content"].split("\n") if line.startswith(("+", "-"))]
        assert changed and not [
            line for line in changed if line in phase2_lines and not line.startswith(("+++", "---"))
        ]


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Merge pull request #9 from a/b", "Fix it\n\nMore", ("pull_request", 9, "Fix it")),
        ("Merged in fix-x (pull request #4)", "Fix x", ("pull_request", 4, "Fix x")),
        ("Ignore flake8 B905 (#2423)", "", ("pull_request", 2423, "Ignore flake8 B905")),
        ("Merge branch 'fix' into 'main'", "Fix y\n\nSee merge request grp/proj!31", ("pull_request", 31, "Fix y")),
        ("Merge remote-tracking branch 'origin/main'", "", ("branch-sync", None, "")),
        ("Merge branch 'dev' of github.com:x/y into dev", "", ("branch-sync", None, "")),
        ("Merge branch 'feature-x'", "", ("branch", None, "Merge branch 'feature-x'")),
        ("Merge branch '1.0-maintenance'", "", ("branch-sync", None, "")),
        ("Merge branch 'release/0.2.2' into develop", "", ("branch-sync", None, "")),
        ("Merge branch '2.x'", "", ("branch-sync", None, "")),
        ("Merge branch 'feature/2.x-compat'", "", ("branch", None, "Merge branch 'feature/2.x-compat'")),
        ('Merge "Document the option" into main', "", ("review", None, "Document the option")),
        ('Merge "Fix a typo"', "", ("review", None, "Fix a typo")),
        (
            "Merge remote-tracking branch 'origin/pr/412'",
            "",
            ("pull_request", 412, "Merge remote-tracking branch 'origin/pr/412'"),
        ),
        ("merge tip", "", ("branch-sync", None, "")),
        ("- merge", "", ("branch-sync", None, "")),
        ("Merge branch 'rel_1_4'", "", ("branch-sync", None, "")),
    ],
)
def test_merge_messages(subject, body, expected):
    from phased_cpt.from_git.git import CommitMessage

    merge = classify_merge(CommitMessage(subject, body, ""), ("p1", "p2"), {"p1"}, {"main", "master"})
    assert (merge.kind, merge.number, merge.title) == expected


def test_since_after_the_last_merge_leaves_phase3_empty_and_says_so(repo, tmp_path):
    summary = build(repo, tmp_path, since="2024-01-07T00:00:00+00:00")
    assert read(tmp_path, PHASE3_FILE) == []
    assert any("phase 3 is empty" in note and "--prs prs/" in note for note in summary.notes)


def test_phase3_falls_back_to_merge_commits_and_announces_it(repo, built):
    out, summary = built
    [merge] = read(out, PHASE3_FILE)
    text = merge["training_content"]
    assert text.startswith(
        "Merge: Merge branch 'feature/greet'\nBranch: feature/greet\nDate: 2024-01-06T10:00:00+00:00\n\n"
        "Commits:\n* Add greeting feature\n\nFiles changed:\nM src/app.py\n"
    )
    assert "+def greet(name):\n" in text
    assert merge["commits"] == [git(repo, "rev-parse", "feature/greet").strip()]
    assert text.endswith("\nOutcome: merged\n")
    assert merge["commit"] == git(repo, "rev-parse", "HEAD~2").strip()
    assert summary.phase3_source == "merge_commits"
    assert any("was built from 1 merge and squash-merge stories" in note for note in summary.notes)
    assert "note: no --prs export given" in summary.format_table()
