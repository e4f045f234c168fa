"""from_git/foundation.py: phase 1, one document per tracked text file at one commit, and every\nfile left out counted with its reason."""

from __future__ import annotations

from pathlib import Path

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE
from tests.unit.from_git.conftest import KEPT_FILES, PHASE1_SKIPS, _head
from tests.unit.from_git.repos import (
    build,
    git,
    read,
)


def test_phase1_has_one_document_per_tracked_text_file_with_header_and_content(repo, built):
    out, _ = built
    documents = read(out, PHASE1_FILE)
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
    summary = build(repo, tmp_path, excludes=["*.rst", "docs"])
    paths = [d["path"] for d in read(tmp_path, PHASE1_FILE)]
    assert paths == sorted(set(KEPT_FILES) - {"notes/todo.rst", "docs/guide.md"})
    assert summary.output(PHASE1_FILE).skipped["excluded"] == 2


def test_no_default_excludes_keeps_vendored_lock_and_generated_files_but_never_secrets(repo, tmp_path):
    summary = build(repo, tmp_path, use_default_excludes=False)
    paths = {d["path"] for d in read(tmp_path, PHASE1_FILE)}
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
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    summary = build(repo, tmp_path, rev=first)
    assert [d["path"] for d in read(tmp_path, PHASE1_FILE)] == [".gitignore", "README.md", "src/app.py"]
    assert [d["subject"] for d in read(tmp_path, PHASE2_FILE)] == ["Initial commit"]
    assert summary.commit == first
