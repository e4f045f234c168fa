"""from_git/vendored.py: vendored and generated code that directory names do not give away."""

from __future__ import annotations

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE
from tests.unit.from_git.conftest import _ids
from tests.unit.from_git.repos import build, read, report


def test_quality_vendored_linguist_lfs_and_duplicate_rules_in_phase1(quality_repo, tmp_path):
    summary = build(quality_repo, tmp_path)
    kept = _ids(tmp_path, PHASE1_FILE, "path")
    assert kept == [
        ".gitattributes",
        "LICENSE",
        "app/main.py",
        "docs/copy.md",
        "mypkg/__init__.py",
        "packages/ours/index.js",
        "packages/ours/package.json",
    ]
    reasons = {e["file"]: (e["reason"], e["rule"]) for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"]}
    assert reasons == {
        "api/types.go": ("generated", "content: generated"),
        "assets/model.bin": ("lfs-pointer", "content: lfs-pointer"),
        "docs/guide.md": ("duplicate", "same text as file docs/copy.md"),
        "lib/leftpad/LICENSE": ("vendored", "lib/leftpad/: own license and package manifest"),
        "lib/leftpad/index.js": ("vendored", "lib/leftpad/: own license and package manifest"),
        "lib/leftpad/package.json": ("vendored", "lib/leftpad/: own license and package manifest"),
        "mypkg/packages/__init__.py": ("empty", "white space only"),
        "packages/ours/LICENSE": ("duplicate", "same text as file LICENSE"),  # a copy: not vendored
        "mypkg/packages/urllib9/__init__.py": (
            "vendored",
            "mypkg/packages/urllib9/: Python package with its own version inside another package",
        ),
        "mypkg/packages/urllib9/pool.py": (
            "vendored",
            "mypkg/packages/urllib9/: Python package with its own version inside another package",
        ),
        "src/parser.c": ("generated", ".gitattributes linguist-generated"),
        "third/x.c": ("vendored", ".gitattributes linguist-vendored"),
        "web/bundle.js": ("minified", "content: minified"),
        "web/logo.svg": ("data", "default data glob"),
    }
    assert set(summary.vendored_dirs) == {"lib/leftpad", "mypkg/packages/urllib9", "old/pkg/vendored_lib"}


def test_a_vendored_copy_removed_later_is_still_cut_out_of_history(quality_repo, tmp_path):
    build(quality_repo, tmp_path)
    subjects = _ids(tmp_path, PHASE2_FILE, "subject")
    assert "Initial commit" in subjects and "Add everything" in subjects
    vendor = [d for d in read(tmp_path, PHASE2_FILE) if d["subject"] == "Vendor a lib"][0]["training_content"]
    assert "[diff of old/pkg/vendored_lib/core.py omitted: vendored]" in vendor
    assert "[diff of old/pkg/__init__.py" not in vendor
