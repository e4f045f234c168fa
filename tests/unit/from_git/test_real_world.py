"""What real repositories hold, planted: NUL bytes in a text-diffed file, commit messages that are
not UTF-8, minified and data files, vendored copies under unknown names, `.gitattributes`
linguist marks, LFS pointers, branch-sync and pull-request merges, duplicates; `--exclude` and
`--include` on every phase."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE
from phased_cpt.from_git.git import parse_commit_object, split_records
from phased_cpt.from_git.merges import classify_merge
from phased_cpt.from_git.quality import content_skip
from tests.unit.from_git.repos import build, commit, git, merge, new_repo, read, report

TEXTY_BINARY = b"%PDF-1.5 illustrator\n" + b"A" * 9000 + b"\n\x00\x00\xb9\xff junk\n"


def _ids(out: Path, name: str, key: str) -> list:
    return [d[key] for d in read(out, name)]


@pytest.fixture(scope="module")
def nul_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """requests' crash: a file git diffs as text (no NUL in its first 8000 bytes) whose diff holds
    NUL bytes and invalid UTF-8, in two names: one a default data glob, one not."""
    root = new_repo(tmp_path_factory.mktemp("nul"), {"app.py": "a = 1\n"})
    commit(root, {"ext/logo.ai": TEXTY_BINARY, "ext/logo.txt": TEXTY_BINARY}, "Add logo", "2024-01-02T10:00:00+00:00")
    commit(
        root,
        {
            "ext/logo.ai": TEXTY_BINARY + b"\x00more\xb9\n",
            "ext/logo.txt": TEXTY_BINARY + b"\x00more\n",
            "app.py": "a = 2\n",
        },
        "Update logo and app",
        "2024-01-03T10:00:00+00:00",
    )
    commit(root, {"app.py": "a = 3\n"}, "After the logo", "2024-01-04T10:00:00+00:00")
    return root


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


def test_records_split_on_the_marker_only_whatever_the_chunk_size(monkeypatch):
    from phased_cpt.from_git import git as git_module

    marker = b"\0MARK-1234\0"
    stream = b"" + marker + b"one\0\xff\nbody" + marker + marker + b"three" + b"x" * 50
    for size in (1, 2, 3, 5, 7, 64):
        monkeypatch.setattr(git_module, "_READ_CHUNK_BYTES", size)
        records = list(split_records(io.BytesIO(stream), marker, max_record_bytes=20))
        assert records == [(b"one\0\xff\nbody", 10), (b"", 0), (b"three" + b"x" * 15, 55)]


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


@pytest.fixture(scope="module")
def quality_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_repo(tmp_path_factory.mktemp("quality"), {"app/main.py": "print('hi')\n"})
    commit(
        root,
        {
            "web/bundle.js": "a=1;b=a+1;" * 160 + "\n",
            "web/logo.svg": "<svg>" + "<path d='M0 0'/>" * 10 + "</svg>\n",
            "api/types.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n",
            "assets/model.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 9\n",
            "mypkg/__init__.py": "__version__ = '1.0'\n",
            "mypkg/packages/__init__.py": "",
            "mypkg/packages/urllib9/__init__.py": "__version__ = '9.9'\n__author__ = 'Someone Else'\n",
            "mypkg/packages/urllib9/pool.py": "class Pool:\n    pass\n",
            "lib/leftpad/LICENSE": "MIT License\nCopyright (c) Someone Else\n",
            "lib/leftpad/package.json": '{"name": "leftpad"}\n',
            "lib/leftpad/index.js": "module.exports = pad;\n",
            "LICENSE": "BSD License\nCopyright (c) Us\n",
            "packages/ours/LICENSE": "BSD License\nCopyright (c) Us\n",  # a copy of the root license: ours
            "packages/ours/package.json": '{"name": "ours"}\n',
            "packages/ours/index.js": "module.exports = 1;\n",
            "src/parser.c": "int parse(void) { return 0; }\n",
            "third/x.c": "int x;\n",
            ".gitattributes": "src/parser.[ch] linguist-generated=true\nthird/** linguist-vendored\n",
            "docs/guide.md": "# Guide\n",
            "docs/copy.md": "#   Guide\n",  # the same text up to white space
        },
        "Add everything",
        "2024-01-02T10:00:00+00:00",
    )
    commit(
        root,
        {
            "old/pkg/__init__.py": "",
            "old/pkg/vendored_lib/__init__.py": "__license__ = 'MIT'\n",
            "old/pkg/vendored_lib/core.py": "y = 1\n",
        },
        "Vendor a lib",
        "2024-01-03T10:00:00+00:00",
    )
    git(root, "rm", "-q", "-r", "old")
    commit(root, {}, "Remove the vendored lib", "2024-01-04T10:00:00+00:00")
    return root


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


def test_include_brings_back_default_dropped_files_but_exclude_still_wins(quality_repo, tmp_path):
    build(quality_repo, tmp_path, includes=["web", "lib/leftpad", "third"], excludes=["third/x.c"])
    kept = set(_ids(tmp_path, PHASE1_FILE, "path"))
    assert {"web/bundle.js", "web/logo.svg", "lib/leftpad/index.js"} <= kept
    assert "third/x.c" not in kept and "api/types.go" not in kept


def test_keep_duplicates_keeps_repeated_documents(quality_repo, tmp_path):
    build(quality_repo, tmp_path, keep_duplicates=True)
    assert {"docs/guide.md", "docs/copy.md"} <= set(_ids(tmp_path, PHASE1_FILE, "path"))


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


def test_commit_message_encoding_header_is_honoured_and_bad_text_is_refused():
    raw = (
        b"tree 1\nauthor A <a@x> 1704067200 -0130\ncommitter A <a@x> 1704067200 +0000\n"
        b"encoding ISO-8859-1\n\nCaf\xe9 fix\n\nLonger\nbody  \n"
    )
    message = parse_commit_object(raw)
    assert message is not None and (message.subject, message.body) == ("Café fix", "Longer\nbody")
    assert message.author_date == "2023-12-31T22:30:00-01:30"
    assert parse_commit_object(raw.replace(b"encoding ISO-8859-1\n", b"")) is None
    assert parse_commit_object(b"tree 1\n\nnul \x00 inside\n") is None
    assert parse_commit_object(b"tree 1\nauthor broken\n\nok\n").author_date == ""
