"""from-git on the shared planted repository: a real temporary git repository in, three JSONL
files and a report out (the repository is described in conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phased_cpt import from_git
from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, build_datasets
from phased_cpt.from_git import git as git_module
from phased_cpt.from_git.output import OUTPUT_MARKER
from tests.unit.from_git.conftest import APP_V2, UNICODE_NAME
from tests.unit.from_git.repos import (
    ENV_VALUE,
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    FAKE_PEM_BODY,
    all_output_bytes,
    commit,
    git,
    read,
    report,
)
from tests.unit.from_git.repos import build as _build

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "from_git"
SECRET_VALUES = [FAKE_AWS_KEY, FAKE_PEM_BODY, FAKE_GITHUB_TOKEN, ENV_VALUE, "pr-secret-value", "PRIVATE KEY-----"]
KEPT_FILES = {
    ".env.example": "API_TOKEN=\n",
    ".gitignore": "ignored.txt\n*.log\n",
    "README.md": "# Demo\n\nA demo project.\n",
    "config/aws.py": "ACCESS_KEY_ID = '[REDACTED:aws-access-key]'\n",
    "deploy/server_key.txt": "[REDACTED:private-key]\n",
    "docs/guide.md": "# Guide\n\nRun `python -m demo`.\n",
    "notes/todo.rst": "Write docs\n----------\n",
    "src/app.py": APP_V2,
    UNICODE_NAME: "GRÜSSE = 'grüß dich'\n",
}
PHASE1_SKIPS = {
    "binary": 1,
    "empty": 1,
    "generated": 1,
    "lock": 1,
    "secret": 1,
    "symlink": 1,
    "too-large": 1,
    "undecodable": 1,
    "vendored": 2,
}
SUBJECTS = [
    "Initial commit",
    "Add assets and vendored code",
    "Add configuration",
    "Add greeting feature",
    "Write the guide",
    "Add notes",
    "Update README",
]
_read = read
_git = git
_commit = commit


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


# ---- phase 1 -----------------------------------------------------------------------------------


def test_phase1_has_one_document_per_tracked_text_file_with_header_and_content(repo, built):
    out, _ = built
    documents = _read(out, PHASE1_FILE)
    assert [d["path"] for d in documents] == sorted(KEPT_FILES)
    for document in documents:
        path = document["path"]
        assert document["training_content"] == f"File: {path}\n\n{KEPT_FILES[path]}"
        assert document["commit"] == _head(repo)
        if "[REDACTED:" not in KEPT_FILES[path]:  # `bytes` is the size in the repository
            assert document["bytes"] == len(KEPT_FILES[path].encode())


def test_phase1_counts_every_skipped_file_with_its_reason(built):
    _, summary = built
    stats = summary.output(PHASE1_FILE)
    assert dict(stats.skipped) == PHASE1_SKIPS
    assert stats.documents == len(KEPT_FILES)
    assert stats.bytes == len(Path(summary.out_dir, PHASE1_FILE).read_bytes())


def test_phase1_never_reads_untracked_or_ignored_files(built):
    out, _ = built
    text = (out / PHASE1_FILE).read_text(encoding="utf-8")
    assert "ignored.txt\n\n" not in text and "ignored by .gitignore" not in text
    assert "untracked.txt" not in text and "never added" not in text


def test_exclude_globs_add_to_the_defaults(repo, tmp_path):
    summary = _build(repo, tmp_path, excludes=["*.rst", "docs"])
    paths = [d["path"] for d in _read(tmp_path, PHASE1_FILE)]
    assert paths == sorted(set(KEPT_FILES) - {"notes/todo.rst", "docs/guide.md"})
    assert summary.output(PHASE1_FILE).skipped["excluded"] == 2


def test_no_default_excludes_keeps_vendored_lock_and_generated_files_but_never_secrets(repo, tmp_path):
    summary = _build(repo, tmp_path, use_default_excludes=False)
    paths = {d["path"] for d in _read(tmp_path, PHASE1_FILE)}
    assert paths == set(KEPT_FILES) | {
        "vendor/x.js",
        "web/node_modules/lib/index.js",
        "static/app.min.js",
        "package-lock.json",
    }
    skipped = summary.output(PHASE1_FILE).skipped
    assert skipped["secret"] == 1
    assert not {"vendored", "lock", "generated"} & set(skipped)


def test_rev_selects_the_files_and_history_of_an_older_commit(repo, tmp_path):
    first = _git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    summary = _build(repo, tmp_path, rev=first)
    assert [d["path"] for d in _read(tmp_path, PHASE1_FILE)] == [".gitignore", "README.md", "src/app.py"]
    assert [d["subject"] for d in _read(tmp_path, PHASE2_FILE)] == ["Initial commit"]
    assert summary.commit == first


# ---- phase 2 -----------------------------------------------------------------------------------


def test_phase2_has_one_document_per_commit_not_told_in_phase3_oldest_first(built):
    out, summary = built
    documents = _read(out, PHASE2_FILE)
    assert [d["subject"] for d in documents] == [s for s in SUBJECTS if s != "Add greeting feature"]
    assert [d["date"][:10] for d in documents] == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-05",
        "2024-01-07",
        "2024-01-08",
    ]
    assert dict(summary.output(PHASE2_FILE).skipped) == {"merge": 1, "in-phase-3-story": 1}
    [story] = [e for e in report(out)["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "in-phase-3-story"]
    assert story["rule"].startswith("told in the phase-3 story of merge ")


def test_phase2_document_shows_message_date_files_and_diff(built):
    out, _ = built
    first, _, _, guide, *_ = _read(out, PHASE2_FILE)
    assert first["training_content"].startswith(
        "Commit: Initial commit\nDate: 2024-01-01T10:00:00+00:00\n\nSet up the project.\n\n"
        "Files changed:\nA .gitignore\nA README.md\nA src/app.py\n\ndiff --git a/.gitignore b/.gitignore\n"
    )
    assert "+def main():\n" in first["training_content"]
    assert first["parents"] == []
    assert guide["files"] == ["docs/guide.md"]
    assert "Files changed:\nA docs/guide.md\n" in guide["training_content"]
    assert "+Run `python -m demo`.\n" in guide["training_content"]


def test_phase2_cuts_out_secret_and_excluded_file_diffs_and_counts_them(built):
    out, summary = built
    documents = {d["subject"]: d["training_content"] for d in _read(out, PHASE2_FILE)}
    assets, config = documents["Add assets and vendored code"], documents["Add configuration"]
    for path, reason in [
        ("vendor/x.js", "vendored"),
        ("web/node_modules/lib/index.js", "vendored"),
        ("static/app.min.js", "generated"),
        ("package-lock.json", "lock"),
        ("latin1.txt", "undecodable"),
        ("assets/logo.png", "binary"),
    ]:
        assert f"[diff of {path} omitted: {reason}]\n" in assets
    assert "[diff of .env omitted: secret]\n" in config
    assert "+ACCESS_KEY_ID = '[REDACTED:aws-access-key]'\n" in config
    assert "+[REDACTED:private-key]\n" in config
    assert f"diff --git a/{UNICODE_NAME} b/{UNICODE_NAME}\n" in config
    assert f"A {UNICODE_NAME}\n" in config
    assert dict(summary.output(PHASE2_FILE).dropped_file_diffs) == {
        "binary": 1,
        "generated": 1,
        "lock": 1,
        "secret": 1,
        "undecodable": 1,
        "vendored": 2,
    }


def test_phase2_marks_a_diff_cut_at_the_size_cap(repo, tmp_path):
    summary = _build(repo, tmp_path, max_diff_bytes=300)
    documents = _read(tmp_path, PHASE2_FILE)
    marker = re.compile(
        r"\n\[diff truncated: (\d+) of (\d+) bytes shown(?:; cut: [^;\]]+)?(?:; not shown: [^;\]]+)?\]\n$"
    )
    cut = [d for d in documents if marker.search(d["training_content"])]
    assert "Add assets and vendored code" in [d["subject"] for d in cut]
    assert summary.output(PHASE2_FILE).truncated == len(cut)
    for document in cut:
        text = document["training_content"]
        shown, total = map(int, marker.search(text).groups())
        diff_start = text.index("\n\n", text.index("Files changed:\n")) + 2
        diff = text[diff_start : marker.search(text).start() + 1]
        assert shown == len(diff.encode()) <= 300 < total
        assert diff.endswith("\n")


def test_since_keeps_commits_committed_on_or_after_the_date(repo, tmp_path):
    summary = _build(repo, tmp_path, since="2024-01-05")
    assert [d["subject"] for d in _read(tmp_path, PHASE2_FILE)] == ["Write the guide", "Add notes", "Update README"]
    assert [d["subject"] for d in _read(tmp_path, PHASE3_FILE)] == ["Merge branch 'feature/greet'"]
    assert dict(summary.output(PHASE2_FILE).skipped) == {"merge": 1}


def test_since_after_the_last_merge_leaves_phase3_empty_and_says_so(repo, tmp_path):
    summary = _build(repo, tmp_path, since="2024-01-07T00:00:00+00:00")
    assert _read(tmp_path, PHASE3_FILE) == []
    assert any("phase 3 is empty" in note and "--prs prs/" in note for note in summary.notes)


# ---- phase 3 -----------------------------------------------------------------------------------


def test_phase3_falls_back_to_merge_commits_and_announces_it(repo, built):
    out, summary = built
    [merge] = _read(out, PHASE3_FILE)
    text = merge["training_content"]
    assert text.startswith(
        "Merge: Merge branch 'feature/greet'\nBranch: feature/greet\nDate: 2024-01-06T10:00:00+00:00\n\n"
        "Commits:\n* Add greeting feature\n\nFiles changed:\nM src/app.py\n"
    )
    assert "+def greet(name):\n" in text
    assert merge["commits"] == [_git(repo, "rev-parse", "feature/greet").strip()]
    assert text.endswith("\nOutcome: merged\n")
    assert merge["commit"] == _git(repo, "rev-parse", "HEAD~2").strip()
    assert summary.phase3_source == "merge_commits"
    assert any("was built from 1 merge and squash-merge stories" in note for note in summary.notes)
    assert "note: no --prs export given" in summary.format_table()


# ---- secrets, determinism, outputs, errors -------------------------------------------------------


def test_secret_values_never_appear_in_any_output(repo, tmp_path):
    _build(repo, tmp_path / "a")
    _build(repo, tmp_path / "b", prs=FIXTURES / "pulls.json", use_default_excludes=False, max_file_bytes=10**6)
    written = all_output_bytes(tmp_path)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 6 and len(list(tmp_path.rglob(REPORT_FILE))) == 2
    for value in SECRET_VALUES:
        assert value.encode() not in written


def test_two_runs_give_byte_identical_outputs_and_summaries(repo, tmp_path):
    first = _build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json")
    first_bytes = {name: (tmp_path / "out" / name).read_bytes() for name in (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE)}
    second = _build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json", force=True)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in first_bytes} == first_bytes
    assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
    assert first.format_table() == second.format_table()


def test_reading_git_output_in_tiny_chunks_gives_the_same_history(repo, built, tmp_path, monkeypatch):
    monkeypatch.setattr(git_module, "_READ_CHUNK_BYTES", 7)
    _build(repo, tmp_path)
    for name in (PHASE2_FILE, PHASE3_FILE):
        assert (tmp_path / name).read_bytes() == (built[0] / name).read_bytes()


def test_existing_outputs_are_replaced_and_no_temporary_files_remain(repo, tmp_path):
    out = tmp_path / "nested" / "dataset"
    _build(repo, out, excludes=["*"])
    _build(repo, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, OUTPUT_MARKER]
    )
    assert _read(out, PHASE1_FILE)


def test_a_failed_run_leaves_previous_outputs_untouched(repo, tmp_path, monkeypatch):
    _build(repo, tmp_path)
    before = (tmp_path / PHASE1_FILE).read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(from_git, "write_evolution", fail)
    with pytest.raises(RuntimeError):
        _build(repo, tmp_path, excludes=["*"], force=True)
    assert (tmp_path / PHASE1_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, OUTPUT_MARKER]
    )


def test_committed_outputs_inside_the_repository_are_not_read_back(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    _git(small, "init", "-q", "-b", "main")
    _commit(
        small,
        {
            "a.py": "x = 1\n",
            f"dataset/{PHASE1_FILE}": '{"training_content": "old"}\n',
            f"dataset/{REPORT_FILE}": '{"outputs": {}}\n',
        },
        "Commit an earlier dataset",
        "2024-03-01T10:00:00+00:00",
    )
    for name in (PHASE1_FILE, REPORT_FILE):  # checked-out copies are not from-git's to replace
        (small / "dataset" / name).unlink()
    summary = _build(small, small / "dataset")
    assert [d["path"] for d in _read(small / "dataset", PHASE1_FILE)] == ["a.py"]
    assert dict(summary.output(PHASE1_FILE).skipped) == {"excluded": 2}
    assert dict(summary.output(PHASE2_FILE).dropped_file_diffs) == {"excluded": 2}


def test_missing_repository_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        build_datasets(tmp_path / "nope", tmp_path / "out")


def test_directory_that_is_not_a_repository_is_a_user_error(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UserError, match=r"plain: not a git repository"):
        build_datasets(plain, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_revision_and_bad_since_are_user_errors(repo, tmp_path):
    with pytest.raises(UserError, match="revision 'no-such-branch' does not name a commit"):
        _build(repo, tmp_path, rev="no-such-branch")
    with pytest.raises(UserError, match="--since '2 weeks ago': expected an ISO 8601 date"):
        _build(repo, tmp_path, since="2 weeks ago")


def test_a_subdirectory_of_the_repository_builds_the_whole_repository(repo, built, tmp_path):
    _build(repo / "src", tmp_path)
    assert (tmp_path / PHASE1_FILE).read_bytes() == (built[0] / PHASE1_FILE).read_bytes()


def test_report_lists_every_left_out_file_commit_and_diff_with_reason_rule_and_size(built):
    out, summary = built
    listed = report(out)
    phase1 = listed["outputs"][PHASE1_FILE]
    assert sorted((e["file"], e["reason"]) for e in phase1["left_out"]) == sorted(
        [
            ("assets/logo.png", "binary"),
            ("empty.txt", "empty"),
            ("static/app.min.js", "generated"),
            ("package-lock.json", "lock"),
            (".env", "secret"),
            ("link.py", "symlink"),
            ("data/big.txt", "too-large"),
            ("latin1.txt", "undecodable"),
            ("vendor/x.js", "vendored"),
            ("web/node_modules/lib/index.js", "vendored"),
        ]
    )
    assert all(e["rule"] and e["bytes"] >= 0 for e in phase1["left_out"])
    assert next(e for e in phase1["left_out"] if e["file"] == "data/big.txt")["bytes"] == 5000
    diffs = [e for e in listed["outputs"][PHASE2_FILE]["left_out"] if e.get("kind") == "diff"]
    assert {(e["path"], e["reason"]) for e in diffs} >= {(".env", "secret"), ("vendor/x.js", "vendored")}
    assert all(len(e["commit"]) == 40 for e in diffs)
    redacted = phase1["redacted"]
    assert {(e["file"], e["rule"], e["line"]) for e in redacted} == {
        ("config/aws.py", "aws-access-key", 3),
        ("deploy/server_key.txt", "private-key", 3),
    }
    assert listed["outputs"][PHASE1_FILE]["skipped"] == summary.to_dict()["outputs"][PHASE1_FILE]["skipped"]


def test_summary_table_keeps_counts_and_points_to_the_report(built):
    out, summary = built
    table = summary.format_table()
    assert f"{out / REPORT_FILE}" in table and ".env" not in table
    assert summary.to_dict()["report"] == str(out / REPORT_FILE)
    assert "left_out" not in json.dumps(summary.to_dict())
