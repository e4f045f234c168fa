"""Building blocks of from-git: glob matching, diff header parsing, the diff size cap."""

from __future__ import annotations

import pytest

from phased_cpt.from_git.diffs import cap_text, filter_patch, parse_file_change
from phased_cpt.from_git.rules import PathRules, matches_glob


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


def test_quoted_and_renamed_paths_are_parsed_from_diff_headers():
    quoted = b'diff --git "a/ta\\tb \\303\\274" "b/ta\\tb \\303\\274"\nnew file mode 100644\n'
    assert parse_file_change(quoted).describe() == 'A "ta\\tb ü"'  # shown as git quotes it: one line
    renamed = (
        b"diff --git a/old name.py b/new name.py\nsimilarity index 100%\n"
        b"rename from old name.py\nrename to new name.py\n"
    )
    assert parse_file_change(renamed).describe() == "R old name.py -> new name.py"
    spaced = b"diff --git a/a b/c.txt b/a b/c.txt\nindex 1..2 100644\n--- a/a b/c.txt\n"
    assert parse_file_change(spaced).path == "a b/c.txt"


def test_cap_text_cuts_at_a_line_end_and_never_inside_a_character():
    assert cap_text("ab\ncd\n", 6) == "ab\ncd\n"
    assert cap_text("ab\ncd\n", 5) == "ab\n"
    assert cap_text("üüü", 3) == "ü"


def test_a_patch_cut_while_reading_is_marked_truncated():
    patch = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+partial li"
    result = filter_patch(patch, PathRules(), max_diff_bytes=1000, total_bytes=5000)
    assert result.truncated
    assert result.text.endswith("+b\n[diff truncated: 53 of 5000 bytes shown; cut: x; later files not read]\n")
