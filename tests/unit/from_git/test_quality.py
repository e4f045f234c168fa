"""from_git/quality.py: text in the repository that is not worth training on (minified, data,\nlong literals), and what the content rules name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, quality
from phased_cpt.from_git.quality import (
    MAX_LINE_CHARS,
    ContentRule,
    content_skip,
    data_kind,
    is_minified,
    shorten_long_lines,
)
from tests.unit.from_git.repos import build, commit, new_repo, read, report

LONG_LITERAL = 'const USAGE: &str = "' + "x" * 2950 + '";\n'


MAIN_RS = "".join(f'fn f{i}() {{ println!("{i}"); }}\n' for i in range(200)) + LONG_LITERAL


FIXTURE = json.dumps(
    {"cases": [{"input": f"http://host/{i}", "output": [i, i * 2, "ok"]} for i in range(1500)]}, indent=1
)


@pytest.fixture
def content_repo(tmp_path: Path) -> Path:
    repo = new_repo(tmp_path / "content", {"README.md": "# x\n"})
    commit(
        repo,
        {
            "src/main.rs": MAIN_RS,
            "static/bundle.js": "function f(a){return a+1};" * 240 + "\n",
            "tests/fixture.json": FIXTURE,
            "src/big.py": "".join(
                f"def handler_{i}(request):\n    return respond(request, {i})\n\n" for i in range(900)
            ),
        },
        "Add the program",
        "2024-01-02T10:00:00Z",
    )
    return repo


def test_a_hand_written_file_with_one_long_literal_is_kept_with_the_line_cut(content_repo, tmp_path):
    summary = build(content_repo, tmp_path, max_file_bytes=1 << 20)
    files = {d["path"]: d["training_content"] for d in read(tmp_path, PHASE1_FILE)}
    main = files["src/main.rs"]
    assert main.startswith("File: src/main.rs\n\nfn f0()")
    assert main.endswith('const USAGE: &str = "' + "x" * (MAX_LINE_CHARS - 21) + "[line cut: 2973 characters]\n")
    diff = read(tmp_path, PHASE2_FILE)[1]["training_content"]
    assert "[line cut: 2974 characters]" in diff and "x" * 1500 not in diff
    assert "src/big.py" in files  # 40 KB of code is not data
    lines = [e for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"] if e["reason"] == "long-line"]
    assert lines == [{"file": "src/main.rs", "kind": "line", "reason": "long-line", "lines": 1, "bytes": 1946}]
    assert summary.output(PHASE1_FILE).skipped == {"minified": 1, "data": 1}


def test_content_rules_name_the_files_they_dropped_and_include_brings_data_back(content_repo, tmp_path):
    summary = build(content_repo, tmp_path, max_file_bytes=1 << 20)
    table = summary.format_table()
    assert "data files left out: tests/fixture.json\n" in table
    assert "minified files left out: static/bundle.js\n" in table
    [entry] = [e for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"] if e["reason"] == "data"]
    assert entry["rule"] == "content: data (JSON document)"
    assert "[diff of tests/fixture.json omitted: data]" in read(tmp_path, PHASE2_FILE)[1]["training_content"]
    build(content_repo, tmp_path / "with", max_file_bytes=1 << 20, includes=["tests/*.json"])
    assert "tests/fixture.json" in [d["path"] for d in read(tmp_path / "with", PHASE1_FILE)]


def test_a_new_content_rule_is_one_entry_in_content_rules(content_repo, tmp_path, monkeypatch):
    """Phase 1, the diff sections and the summary's named files all follow `CONTENT_RULES`."""
    handlers = ContentRule("handlers", lambda text, path: "900 handlers" if "def handler_899" in text else None)
    monkeypatch.setattr(quality, "CONTENT_RULES", (*quality.CONTENT_RULES, handlers))
    summary = build(content_repo, tmp_path, max_file_bytes=1 << 20)
    assert "src/big.py" not in [d["path"] for d in read(tmp_path, PHASE1_FILE)]
    [entry] = [e for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"] if e["reason"] == "handlers"]
    assert entry["rule"] == "content: handlers (900 handlers)"
    assert "handlers files left out: src/big.py\n" in summary.format_table()
    assert "[diff of src/big.py omitted: handlers]" in read(tmp_path, PHASE2_FILE)[1]["training_content"]


def test_minified_needs_most_of_the_text_in_long_lines_or_a_dense_text():
    assert not is_minified("a = 1\n" * 600 + "s = '" + "x" * 2000 + "'\n")
    assert is_minified("function f(a){return a+1};" * 120 + "\n")  # 4% spaces
    assert is_minified("short\n" + "x" * 1200 + "\n")
    assert not is_minified("")
    paragraph = "The Session establishes all conversations with the database, and holds the objects. " * 16
    assert not is_minified((paragraph + "\n\n") * 4)  # reStructuredText, one paragraph per line
    assert is_minified("\n".join(["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="] * 80) + "\n")  # base64


def test_data_kind_needs_size_and_structure():
    rows = "".join(f'  [{i}, 0x{i:04x}, "{i:08d}"],\n' for i in range(2000))
    assert data_kind(FIXTURE, "t.json") == "JSON document"
    assert data_kind(FIXTURE[:1000], "t.json") is None  # too small
    assert data_kind("VECTORS = [\n" + rows + "]\n", "vectors.py") == "literal table"
    assert data_kind("".join(f"key{i}: value {i}\n" for i in range(3000)), "a.yaml") == "YAML data"
    assert data_kind("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(2000)), "a.py") is None


def test_shorten_long_lines_cuts_only_long_lines():
    assert shorten_long_lines("a\nb\n") == ("a\nb\n", 0)
    text, cut = shorten_long_lines("a\n" + "y" * (MAX_LINE_CHARS + 5) + "\nb")
    assert cut == 1 and text == "a\n" + "y" * MAX_LINE_CHARS + f"[line cut: {MAX_LINE_CHARS + 5} characters]\nb"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a=1;b=a+1;" * 160 + "\n", "minified"),  # one 1600-character line, no spaces
        (("x" * 180 + "\n") * 20, "minified"),  # mean line 180
        (("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 2 + "\n") * 40, "minified"),  # base64: no white space
        ("// Code generated by protoc-gen-go. DO NOT EDIT.\npackage x\n", "generated"),
        ("# @generated by tool\nx = 1\n", "generated"),
        ("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 12345\n", "lfs-pointer"),
        ("def f():\n    return 1\n", None),
        ("# Title\n\n" + "A long line of prose that goes on. " * 8 + "\n", None),
    ],
)
def test_content_quality(text, reason):
    found = content_skip(text)
    assert (None if found is None else found[0]) == reason
