"""from_git/rules.py: which paths and which file contents become training text."""

from __future__ import annotations

import pytest

from phased_cpt.from_git import PHASE1_FILE
from phased_cpt.from_git.rules import matches_glob
from tests.unit.from_git.conftest import _ids
from tests.unit.from_git.repos import build


@pytest.mark.parametrize(
    ("path", "glob", "expected"),
    [
        ("web/node_modules/x/index.js", "node_modules", True),
        ("a/b/poetry.lock", "*.lock", True),
        ("docs/api/index.md", "docs/api", True),
        ("docs/a.md", "docs/*.md", True),
        ("sub/docs/a.md", "docs/*.md", False),
        ("src/vendored.py", "vendor", False),
        ("Vendor/x.js", "vendor", False),
    ],
)
def test_glob_matches_the_path_a_leading_directory_or_a_component(path, glob, expected):
    assert matches_glob(path, glob) is expected


def test_include_brings_back_default_dropped_files_but_exclude_still_wins(quality_repo, tmp_path):
    build(quality_repo, tmp_path, includes=["web", "lib/leftpad", "third"], excludes=["third/x.c"])
    kept = set(_ids(tmp_path, PHASE1_FILE, "path"))
    assert {"web/bundle.js", "web/logo.svg", "lib/leftpad/index.js"} <= kept
    assert "third/x.c" not in kept and "api/types.go" not in kept
