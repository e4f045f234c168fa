"""from_git/history.py: phase 2, one document per commit (message, date, files, diff), and what\nis cut out of it."""

from __future__ import annotations

import re
import subprocess

from phased_cpt.from_git import PHASE2_FILE, PHASE3_FILE
from tests.unit.from_git.conftest import SUBJECTS, UNICODE_NAME, _ids
from tests.unit.from_git.repos import build, git, new_repo, read, report


def test_exclude_applies_to_history_diffs(nul_repo, tmp_path):
    summary = build(nul_repo, tmp_path, excludes=["*.ai", "ext/logo.txt"])
    assert _ids(tmp_path, PHASE2_FILE, "subject") == ["Initial commit", "Update logo and app", "After the logo"]
    listed = report(tmp_path)["outputs"][PHASE2_FILE]["left_out"]
    assert {(e.get("path"), e["reason"]) for e in listed if e.get("kind") == "diff"} == {
        ("ext/logo.ai", "excluded"),
        ("ext/logo.txt", "excluded"),
    }
    assert summary.output(PHASE2_FILE).skipped == {"only-left-out-files": 1}


def test_a_commit_whose_message_is_not_valid_text_is_skipped_and_listed(tmp_path):
    repo = new_repo(tmp_path / "repo", {"a.py": "a = 1\n"})
    head = git(repo, "rev-parse", "HEAD").strip()
    raw = (
        f"tree {git(repo, 'rev-parse', 'HEAD^{tree}').strip()}\nparent {head}\n"
        "author A <a@x> 1704200000 +0000\ncommitter A <a@x> 1704200000 +0000\n\n"
    ).encode() + b"Caf\xe9 \xff fix\n"
    oid = (
        subprocess.run(
            ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
            cwd=repo,
            input=raw,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(repo, "update-ref", "refs/heads/main", oid)
    summary = build(repo, tmp_path / "out")
    assert _ids(tmp_path / "out", PHASE2_FILE, "subject") == ["Initial commit"]
    [entry] = report(tmp_path / "out")["outputs"][PHASE2_FILE]["left_out"]
    assert (entry["reason"], entry["commit"]) == ("undecodable", git(repo, "rev-parse", "HEAD").strip())
    assert summary.output(PHASE2_FILE).skipped == {"undecodable": 1}


def test_phase2_has_one_document_per_commit_not_told_in_phase3_oldest_first(built):
    out, summary = built
    documents = read(out, PHASE2_FILE)
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
    first, _, _, guide, *_ = read(out, PHASE2_FILE)
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
    documents = {d["subject"]: d["training_content"] for d in read(out, PHASE2_FILE)}
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
    summary = build(repo, tmp_path, max_diff_bytes=300)
    documents = read(tmp_path, PHASE2_FILE)
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
    summary = build(repo, tmp_path, since="2024-01-05")
    assert [d["subject"] for d in read(tmp_path, PHASE2_FILE)] == ["Write the guide", "Add notes", "Update README"]
    assert [d["subject"] for d in read(tmp_path, PHASE3_FILE)] == ["Merge branch 'feature/greet'"]
    assert dict(summary.output(PHASE2_FILE).skipped) == {"merge": 1}
