"""from_git/diffs.py: unified diffs made safe and bounded: quoted and renamed paths, the size cap,\nwhat a cut diff names."""

from __future__ import annotations

from phased_cpt.from_git import PHASE2_FILE
from phased_cpt.from_git.diffs import cap_text, filter_patch, parse_file_change
from phased_cpt.from_git.rules import PathRules
from tests.unit.from_git.conftest import _ids
from tests.unit.from_git.repos import build, read


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


def test_a_cut_diff_names_the_file_it_cut_and_the_files_it_did_not_show():
    patch = _section("a.py", 5) + _section("b.py", 50) + _section("c.py", 5) + _section("d.py", 5)
    result = filter_patch(patch, PathRules(), max_diff_bytes=400)
    assert result.truncated
    assert result.text.endswith("bytes shown; cut: b.py; not shown: c.py, d.py]\n")
    assert "+line 0 of a.py\n" in result.text and "c.py\n+line" not in result.text


def test_nul_bytes_and_invalid_utf8_in_a_diff_never_break_records(nul_repo, tmp_path):
    summary = build(nul_repo, tmp_path / "default")
    assert _ids(tmp_path / "default", PHASE2_FILE, "subject") == [  # "Add logo" had only the logos
        "Initial commit",
        "Update logo and app",
        "After the logo",
    ]
    update = read(tmp_path / "default", PHASE2_FILE)[1]["training_content"]
    assert "[diff of ext/logo.ai omitted: data]" in update and "[diff of ext/logo.txt omitted: binary]" in update
    assert "+a = 2\n" in update and "\x00" not in update
    assert summary.output(PHASE2_FILE).dropped_file_diffs == {"data": 2, "binary": 2}
    assert summary.output(PHASE2_FILE).skipped == {"only-left-out-files": 1}
    build(nul_repo, tmp_path / "all", use_default_excludes=False)
    assert "[diff of ext/logo.ai omitted: binary]" in read(tmp_path / "all", PHASE2_FILE)[1]["training_content"]


def _section(path: str, lines: int) -> bytes:
    body = "".join(f"+line {i} of {path}\n" for i in range(lines))
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -0,0 +1,{lines} @@\n{body}".encode()
