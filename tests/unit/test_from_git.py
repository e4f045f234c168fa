"""Tests of `phased-cpt data from-git`: a real temporary git repository in, three JSONL files out.

The fixture repository (built once per session with fixed names and dates) holds, at HEAD:
kept text files (one with a space and non-ASCII letters in its name, a `.env.example` template),
a `.env`, a file with a fake AWS key, a file with a fake PEM private key, a binary, an oversized
file, a lock file, vendored files, a minified file, a Latin-1 file, an empty file, a symlink, and
in the working tree only, an ignored and an untracked file. History: eight commits with fixed
dates - one of them on a feature branch, one the `--no-ff` merge of that branch, and the last one
with a fake GitHub token in its message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from phased_cpt import from_git
from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, build_datasets, command, git
from phased_cpt.from_git.diffs import cap_text, filter_patch, parse_file_change
from phased_cpt.from_git.git import parse_commit_object
from phased_cpt.from_git.rules import DEFAULT_EXCLUDES, PathRules, matches_glob
from phased_cpt.from_git.secrets import (
    CREDENTIAL_PATTERNS,
    SECRET_FILE_GLOBS,
    find_credential,
    is_secret_path,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "from_git"
MAX_FILE_BYTES = 2000

# Fake credentials, assembled at run time so this file itself holds no credential pattern.
FAKE_AWS_KEY = "AKIA" + "FAKEFAKEFAKE1234"
FAKE_PEM_BODY = "MIIEfakeKEYbodyNOTaREALkey0123456789"
FAKE_PEM = f"-----BEGIN RSA {'PRIVATE'} KEY-----\n{FAKE_PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
FAKE_GITHUB_TOKEN = "ghp" + "_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
ENV_VALUE = "supersecret-value-123"
SECRET_VALUES = [FAKE_AWS_KEY, FAKE_PEM_BODY, FAKE_GITHUB_TOKEN, ENV_VALUE, "pr-secret-value",
                 "PRIVATE KEY-----"]

APP_V1 = "def main():\n    print('hello')\n"
APP_V2 = APP_V1 + "\n\ndef greet(name):\n    return f'hello {name}'\n"
UNICODE_NAME = "src/ünï code.py"
KEPT_FILES = {
    ".env.example": "API_TOKEN=\n",
    ".gitignore": "ignored.txt\n*.log\n",
    "README.md": "# Demo\n\nA demo project.\n",
    "docs/guide.md": "# Guide\n\nRun `python -m demo`.\n",
    "notes/todo.csv": "task,done\nwrite docs,no\n",
    "src/app.py": APP_V2,
    UNICODE_NAME: "GRÜSSE = 'grüß dich'\n",
}
PHASE1_SKIPS = {"binary": 1, "empty": 1, "generated": 1, "lock": 1, "secret": 3, "symlink": 1,
                "too-large": 1, "undecodable": 1, "vendored": 2}
SUBJECTS = ["Initial commit", "Add assets and vendored code", "Add configuration",
            "Add greeting feature", "Write the guide", "Add notes"]


def _git(repo: Path, *args: str, date: str = "2024-01-01T10:00:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date,
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env,
                            capture_output=True, check=True)
    return result.stdout.decode()


def _commit(repo: Path, files: dict[str, str | bytes], message: str, date: str,
            also_add: tuple[str, ...] = ()) -> None:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    _git(repo, "add", "--", *files, *also_add)
    _git(repo, "commit", "-q", "-m", message, date=date)


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    _git(root, "init", "-q", "-b", "main")
    _commit(root, {"README.md": "# Demo\n", ".gitignore": KEPT_FILES[".gitignore"], "src/app.py": APP_V1},
            "Initial commit\n\nSet up the project.", "2024-01-01T10:00:00+00:00")
    os.symlink("src/app.py", root / "link.py")
    _commit(root, {
        "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01",
        "vendor/x.js": "var x = 1;\n",
        "web/node_modules/lib/index.js": "module.exports = {};\n",
        "static/app.min.js": "var a=1;\n",
        "package-lock.json": '{"lockfileVersion": 3}\n',
        "latin1.txt": "caf\u00e9\n".encode("latin-1"),
        "empty.txt": "",
        "data/big.txt": "".join(f"line {i:05d} of a big file\n" for i in range(200)),
    }, "Add assets and vendored code", "2024-01-02T10:00:00+00:00", also_add=("link.py",))
    _commit(root, {
        ".env": f"API_TOKEN={ENV_VALUE}\n",
        ".env.example": KEPT_FILES[".env.example"],
        "config/aws.py": f"ACCESS_KEY_ID = '{FAKE_AWS_KEY}'\n",
        "deploy/server_key.txt": FAKE_PEM,
        UNICODE_NAME: KEPT_FILES[UNICODE_NAME],
    }, "Add configuration", "2024-01-03T10:00:00+00:00")
    _git(root, "checkout", "-q", "-b", "feature/greet")
    _commit(root, {"src/app.py": APP_V2}, "Add greeting feature", "2024-01-04T10:00:00+02:00")
    _git(root, "checkout", "-q", "main")
    _commit(root, {"docs/guide.md": KEPT_FILES["docs/guide.md"]}, "Write the guide",
            "2024-01-05T10:00:00+00:00")
    _git(root, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature/greet'", "feature/greet",
         date="2024-01-06T10:00:00+00:00")
    _commit(root, {"notes/todo.csv": KEPT_FILES["notes/todo.csv"]}, "Add notes", "2024-01-07T10:00:00+00:00")
    _commit(root, {"README.md": KEPT_FILES["README.md"]},
            f"Update README\n\nThe old token was {FAKE_GITHUB_TOKEN}.", "2024-01-08T10:00:00+00:00")
    (root / "ignored.txt").write_text("ignored by .gitignore\n")
    (root / "untracked.txt").write_text("never added\n")
    return root


def _build(repo: Path, out: Path, **options: object) -> from_git.Summary:
    options.setdefault("max_file_bytes", MAX_FILE_BYTES)
    return build_datasets(repo, out, **options)  # type: ignore[arg-type]


def _read(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


def _head(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="session")
def built(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, from_git.Summary]:
    """The default build (no --prs), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("out") / "dataset"
    return out, _build(repo, out)


# ---- phase 1 -----------------------------------------------------------------------------------

def test_phase1_has_one_document_per_tracked_text_file_with_header_and_content(repo, built):
    out, _ = built
    documents = _read(out, PHASE1_FILE)
    assert [d["path"] for d in documents] == sorted(KEPT_FILES)
    for document in documents:
        path = document["path"]
        assert document["training_content"] == f"File: {path}\n\n{KEPT_FILES[path]}"
        assert document["commit"] == _head(repo)
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
    summary = _build(repo, tmp_path, excludes=["*.csv", "docs"])
    paths = [d["path"] for d in _read(tmp_path, PHASE1_FILE)]
    assert paths == sorted(set(KEPT_FILES) - {"notes/todo.csv", "docs/guide.md"})
    assert summary.output(PHASE1_FILE).skipped["excluded"] == 2


def test_no_default_excludes_keeps_vendored_lock_and_generated_files_but_never_secrets(repo, tmp_path):
    summary = _build(repo, tmp_path, use_default_excludes=False)
    paths = {d["path"] for d in _read(tmp_path, PHASE1_FILE)}
    assert paths == set(KEPT_FILES) | {"vendor/x.js", "web/node_modules/lib/index.js",
                                       "static/app.min.js", "package-lock.json"}
    skipped = summary.output(PHASE1_FILE).skipped
    assert skipped["secret"] == 3
    assert not {"vendored", "lock", "generated"} & set(skipped)


def test_rev_selects_the_files_and_history_of_an_older_commit(repo, tmp_path):
    first = _git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    summary = _build(repo, tmp_path, rev=first)
    assert [d["path"] for d in _read(tmp_path, PHASE1_FILE)] == [".gitignore", "README.md", "src/app.py"]
    assert [d["subject"] for d in _read(tmp_path, PHASE2_FILE)] == ["Initial commit"]
    assert summary.commit == first


# ---- phase 2 -----------------------------------------------------------------------------------

def test_phase2_has_one_document_per_non_merge_commit_oldest_first(built):
    out, summary = built
    documents = _read(out, PHASE2_FILE)
    assert [d["subject"] for d in documents] == SUBJECTS
    assert [d["date"][:10] for d in documents] == ["2024-01-01", "2024-01-02", "2024-01-03",
                                                   "2024-01-04", "2024-01-05", "2024-01-07"]
    assert documents[3]["date"] == "2024-01-04T10:00:00+02:00"
    assert dict(summary.output(PHASE2_FILE).skipped) == {"merge": 1, "secret": 1}


def test_phase2_document_shows_message_date_files_and_diff(built):
    out, _ = built
    first, _, _, greet, *_ = _read(out, PHASE2_FILE)
    assert first["training_content"].startswith(
        "Commit: Initial commit\nDate: 2024-01-01T10:00:00+00:00\n\nSet up the project.\n\n"
        "Files changed:\nA .gitignore\nA README.md\nA src/app.py\n\ndiff --git a/.gitignore b/.gitignore\n")
    assert "+def main():\n" in first["training_content"]
    assert first["parents"] == []
    assert greet["files"] == ["src/app.py"]
    assert "Files changed:\nM src/app.py\n" in greet["training_content"]
    assert "+def greet(name):\n" in greet["training_content"]


def test_phase2_cuts_out_secret_and_excluded_file_diffs_and_counts_them(built):
    out, summary = built
    documents = {d["subject"]: d["training_content"] for d in _read(out, PHASE2_FILE)}
    assets, config = documents["Add assets and vendored code"], documents["Add configuration"]
    for path, reason in [("vendor/x.js", "vendored"), ("web/node_modules/lib/index.js", "vendored"),
                         ("static/app.min.js", "generated"), ("package-lock.json", "lock"),
                         ("latin1.txt", "undecodable")]:
        assert f"[diff of {path} omitted: {reason}]\n" in assets
    for path in [".env", "config/aws.py", "deploy/server_key.txt"]:
        assert f"[diff of {path} omitted: secret]\n" in config
    assert f"diff --git a/{UNICODE_NAME} b/{UNICODE_NAME}\n" in config
    assert f"A {UNICODE_NAME}\n" in config
    assert dict(summary.output(PHASE2_FILE).dropped_file_diffs) == {
        "generated": 1, "lock": 1, "secret": 3, "undecodable": 1, "vendored": 2}


def test_phase2_marks_a_diff_cut_at_the_size_cap(repo, tmp_path):
    summary = _build(repo, tmp_path, max_diff_bytes=300)
    documents = _read(tmp_path, PHASE2_FILE)
    marker = re.compile(r"\n\[diff truncated: (\d+) of (\d+) bytes shown\]\n$")
    cut = [d for d in documents if marker.search(d["training_content"])]
    assert "Add assets and vendored code" in [d["subject"] for d in cut]
    assert summary.output(PHASE2_FILE).truncated == len(cut)
    for document in cut:
        text = document["training_content"]
        shown, total = map(int, marker.search(text).groups())
        diff_start = text.index("\n\n", text.index("Files changed:\n")) + 2
        diff = text[diff_start: marker.search(text).start() + 1]
        assert shown == len(diff.encode()) <= 300 < total
        assert diff.endswith("\n")


def test_since_keeps_commits_committed_on_or_after_the_date(repo, tmp_path):
    summary = _build(repo, tmp_path, since="2024-01-05")
    assert [d["subject"] for d in _read(tmp_path, PHASE2_FILE)] == ["Write the guide", "Add notes"]
    assert [d["subject"] for d in _read(tmp_path, PHASE3_FILE)] == ["Merge branch 'feature/greet'"]
    assert dict(summary.output(PHASE2_FILE).skipped) == {"merge": 1, "secret": 1}


def test_since_after_the_last_merge_leaves_phase3_empty_and_says_so(repo, tmp_path):
    summary = _build(repo, tmp_path, since="2024-01-07T00:00:00+00:00")
    assert _read(tmp_path, PHASE3_FILE) == []
    assert any("no merge commits found" in note for note in summary.notes)


# ---- phase 3 -----------------------------------------------------------------------------------

def test_phase3_falls_back_to_merge_commits_and_announces_it(repo, built):
    out, summary = built
    [merge] = _read(out, PHASE3_FILE)
    text = merge["training_content"]
    assert text.startswith("Merge: Merge branch 'feature/greet'\nDate: 2024-01-06T10:00:00+00:00\n")
    assert "Files changed:\nM src/app.py\n" in text and "+def greet(name):\n" in text
    assert text.endswith("\nOutcome: merged\n")
    assert merge["commit"] == _git(repo, "rev-parse", "HEAD~2").strip()
    assert summary.phase3_source == "merge_commits"
    assert any("--prs" in note and "1 merge commit" in note for note in summary.notes)
    assert "note: no --prs export given" in summary.format_table()


def test_phase3_from_pr_export_has_one_document_per_pr_in_number_order(repo, tmp_path):
    summary = _build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    documents = _read(tmp_path, PHASE3_FILE)
    assert [(d["number"], d["outcome"]) for d in documents] == [
        (3, "closed unmerged"), (7, "merged"), (9, "open")]
    assert summary.phase3_source == "pull_requests" and summary.notes == []
    rust, retry, wip = (d["training_content"] for d in documents)
    assert rust.startswith("Pull request #3: Rewrite the client in Rust\nAuthor: mallory\n"
                           "Branches: rust -> main\n\nDescription:\n(no description)\n")
    assert "+fn main() {}\n" in rust and rust.endswith("\nOutcome: closed unmerged\n")
    assert "Description:\nDraft.\n" in wip and "Diff: (not in the export)" in wip
    assert wip.endswith("\nOutcome: open\n")
    assert "Description:\nRetries failed requests.\n\nFixes #5.\n" in retry
    assert "+    for attempt in range(3):\n" in retry
    assert retry.endswith("\nOutcome: merged\n")


def test_pr_discussion_is_in_chronological_order_without_pending_or_empty_reviews(repo, tmp_path):
    _build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    retry = next(d["training_content"] for d in _read(tmp_path, PHASE3_FILE) if d["number"] == 7)
    discussion = retry[retry.index("Discussion:\n"):]
    expected_order = [
        "[2024-02-01T10:00:00Z] comment by erin\nThanks for picking this up!",
        "[2024-02-02T08:59:00Z] review comment by bob on src/fetch.py line 3\nCode:\n@@ -1,2 +1,3 @@",
        "Comment:\nShould this back off between attempts?",
        "[2024-02-02T09:00:00Z] review by bob: changes requested\nPlease add backoff.",
        "[2024-02-02T15:00:00Z] review comment by alice on src/fetch.py line 3\n",
        "Comment:\nAdded exponential backoff.",
        "[2024-02-03T11:00:00Z] review by carol: approved\nShip it.",
    ]
    positions = [discussion.index(part) for part in expected_order]
    assert positions == sorted(positions)
    assert "draft review text" not in retry and "review by bob: commented" not in retry


def test_pr_diff_drops_secret_file_sections(repo, tmp_path):
    summary = _build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    retry = next(d["training_content"] for d in _read(tmp_path, PHASE3_FILE) if d["number"] == 7)
    assert "[diff of .env omitted: secret]\n" in retry and "pr-secret-value" not in retry
    assert dict(summary.output(PHASE3_FILE).dropped_file_diffs) == {"secret": 1}


def test_pr_with_a_credential_in_its_text_is_skipped(repo, tmp_path):
    pulls = json.loads((FIXTURES / "pulls.json").read_text())
    pulls[2]["body"] = f"Use key {FAKE_AWS_KEY} for testing"
    export = tmp_path / "pulls.json"
    export.write_text(json.dumps(pulls))
    summary = _build(repo, tmp_path / "out", prs=export)
    assert [d["number"] for d in _read(tmp_path / "out", PHASE3_FILE)] == [3, 7]
    assert dict(summary.output(PHASE3_FILE).skipped) == {"secret": 1}


def test_pr_export_directory_reads_every_json_file(repo, tmp_path):
    pulls = json.loads((FIXTURES / "pulls.json").read_text())
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.json").write_text(json.dumps(pulls[:2]))
    (export / "b.json").write_text(json.dumps(pulls[2]))  # a single object is accepted too
    (export / "notes.txt").write_text("not json")
    _build(repo, tmp_path / "out", prs=export)
    assert [d["number"] for d in _read(tmp_path / "out", PHASE3_FILE)] == [3, 7, 9]


@pytest.mark.parametrize(("content", "expected"), [
    ("[{", "pulls.json:1:3: not valid JSON"),
    ("42", "expected a list of pull-request objects (or one object), got an integer"),
    ('[{"number": 1, "state": "open"}]', "item 0 (#1): missing required key 'title'"),
    ('[{"number": "1", "title": "t", "state": "open"}]', "item 0: 'number' must be an integer, got a string"),
    ('[{"number": 1, "title": "t", "state": "merged"}]', "'state' must be \"open\" or \"closed\", got 'merged'"),
    ('[{"number": 1, "title": "t", "state": "open", "reviews": {}}]', "'reviews' must be a list, got an object"),
    ('[{"number": 1, "title": "t", "state": "open", "review_comments": [{"body": "x"}]}]',
     "review_comments[0]: missing required key 'created_at'"),
    ('[{"number": 1, "title": "t", "state": "open", "issue_comments": [{"body": "x", "created_at": "soon"}]}]',
     "issue_comments[0]: 'created_at': not an ISO 8601 time: 'soon'"),
    ('[{"number": 1, "title": "a", "state": "open"}, {"number": 1, "title": "b", "state": "open"}]',
     "item 1: pull request #1 appears twice (also"),
])
def test_bad_pr_export_is_a_user_error_naming_the_file_and_the_problem(repo, tmp_path, content, expected):
    export = tmp_path / "pulls.json"
    export.write_text(content)
    with pytest.raises(UserError) as caught:
        _build(repo, tmp_path / "out", prs=export)
    assert str(export) in str(caught.value)
    assert expected in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_every_problem_of_a_bad_export_is_reported_at_once(repo, tmp_path):
    export = tmp_path / "pulls.json"
    export.write_text('[{"title": 1, "state": "open"}, "nope"]')
    with pytest.raises(UserError) as caught:
        _build(repo, tmp_path / "out", prs=export)
    message = str(caught.value)
    assert "(3 problems)" in message
    assert "missing required key 'number'" in message and "'title' must be a string" in message
    assert "item 1: expected a pull-request object, got a string" in message


def test_missing_pr_export_is_a_user_error(repo, tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        _build(repo, tmp_path / "out", prs=tmp_path / "missing.json")


# ---- secrets, determinism, outputs, errors -------------------------------------------------------

def test_secret_values_never_appear_in_any_output(repo, tmp_path):
    _build(repo, tmp_path / "a")
    _build(repo, tmp_path / "b", prs=FIXTURES / "pulls.json", use_default_excludes=False,
           max_file_bytes=10**6)
    written = b"".join(path.read_bytes() for path in sorted(tmp_path.rglob("*.jsonl")))
    assert len(list(tmp_path.rglob("*.jsonl"))) == 6
    for value in SECRET_VALUES:
        assert value.encode() not in written


def test_two_runs_give_byte_identical_outputs_and_summaries(repo, tmp_path):
    first = _build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json")
    first_bytes = {name: (tmp_path / "out" / name).read_bytes() for name in (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE)}
    second = _build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json")
    assert {name: (tmp_path / "out" / name).read_bytes() for name in first_bytes} == first_bytes
    assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
    assert first.format_table() == second.format_table()


def test_reading_git_output_in_tiny_chunks_gives_the_same_history(repo, built, tmp_path, monkeypatch):
    monkeypatch.setattr(git, "_READ_CHUNK_BYTES", 7)
    _build(repo, tmp_path)
    for name in (PHASE2_FILE, PHASE3_FILE):
        assert (tmp_path / name).read_bytes() == (built[0] / name).read_bytes()


def test_existing_outputs_are_replaced_and_no_temporary_files_remain(repo, tmp_path):
    out = tmp_path / "nested" / "dataset"
    out.mkdir(parents=True)
    for name in (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE):
        (out / name).write_text("stale\n")
    _build(repo, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([PHASE1_FILE, PHASE2_FILE, PHASE3_FILE])
    assert "stale" not in (out / PHASE1_FILE).read_text()


def test_a_failed_run_leaves_previous_outputs_untouched(repo, tmp_path, monkeypatch):
    _build(repo, tmp_path)
    before = (tmp_path / PHASE1_FILE).read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(from_git, "write_evolution", fail)
    with pytest.raises(RuntimeError):
        _build(repo, tmp_path, excludes=["*"])
    assert (tmp_path / PHASE1_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([PHASE1_FILE, PHASE2_FILE, PHASE3_FILE])


def test_committed_outputs_inside_the_repository_are_not_read_back(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    _git(small, "init", "-q", "-b", "main")
    _commit(small, {"a.py": "x = 1\n", f"dataset/{PHASE1_FILE}": '{"training_content": "old"}\n'},
            "Commit an earlier dataset", "2024-03-01T10:00:00+00:00")
    summary = _build(small, small / "dataset")
    assert [d["path"] for d in _read(small / "dataset", PHASE1_FILE)] == ["a.py"]
    assert dict(summary.output(PHASE1_FILE).skipped) == {"excluded": 1}
    assert dict(summary.output(PHASE2_FILE).dropped_file_diffs) == {"excluded": 1}


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


# ---- the command -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phased-cpt data from-git")
    command.add_arguments(parser)
    return parser


def test_command_prints_a_json_summary(repo, tmp_path, capsys):
    args = _parser().parse_args([str(repo), "--out", str(tmp_path), "--json", "--max-file-bytes",
                                 str(MAX_FILE_BYTES), "--exclude", "*.csv", "--exclude", "docs"])
    assert command.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["outputs"]) == [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE]
    phase1 = summary["outputs"][PHASE1_FILE]
    assert phase1["skipped"] == dict(sorted({**PHASE1_SKIPS, "excluded": 2}.items()))
    assert phase1["documents"] == len(KEPT_FILES) - 2
    assert summary["outputs"][PHASE2_FILE]["documents"] == len(SUBJECTS)
    assert summary["phase3_source"] == "merge_commits"
    assert summary["commit"] == _head(repo)


def test_command_prints_a_table_by_default(repo, tmp_path, capsys):
    args = _parser().parse_args([str(repo), "--out", str(tmp_path), "--prs", str(FIXTURES / "pulls.json"),
                                 "--max-file-bytes", str(MAX_FILE_BYTES)])
    assert command.run(args) == 0
    table = capsys.readouterr().out
    rows = [tuple(line.split()) for line in table.splitlines()]
    documents = {row[0]: int(row[1]) for row in rows if len(row) == 4 and row[1].isdigit()}
    assert documents == {PHASE1_FILE: len(KEPT_FILES), PHASE2_FILE: len(SUBJECTS), PHASE3_FILE: 3}
    assert (PHASE2_FILE, "skipped", "merge", "1") in rows
    assert (PHASE3_FILE, "diff", "dropped", "secret", "1") in rows


def test_command_defaults_and_flags_reach_build_datasets(tmp_path):
    args = _parser().parse_args(["repo", "--out", "o", "--no-default-excludes", "--since", "2024-01-01",
                                 "--rev", "v1", "--max-diff-bytes", "10"])
    assert (args.repo, args.out, args.rev, args.since) == (Path("repo"), Path("o"), "v1", "2024-01-01")
    assert (args.use_default_excludes, args.max_diff_bytes, args.excludes, args.prs) == (False, 10, [], None)
    defaults = _parser().parse_args(["repo", "--out", "o"])
    assert defaults.use_default_excludes is True and defaults.rev == "HEAD" and defaults.json is False
    assert defaults.max_file_bytes == from_git.DEFAULT_MAX_FILE_BYTES


@pytest.mark.parametrize("value", ["0", "-5", "big"])
def test_command_rejects_a_size_that_is_not_positive(value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["repo", "--out", "o", "--max-file-bytes", value])
    assert "--max-file-bytes" in capsys.readouterr().err


def test_help_and_module_docs_list_every_default_exclude_glob():
    help_text = _parser().format_help()
    unwrapped = "".join(help_text.split())  # argparse may wrap a line inside a glob, at a hyphen
    module_doc = from_git.__doc__ or ""
    for reason, globs in DEFAULT_EXCLUDES.items():
        assert f"{reason}:{''.join(globs)}" in unwrapped
        assert all(glob in module_doc.split() for glob in globs)
    assert "--no-default-excludes" in help_text and ".env" in help_text


def test_user_doc_lists_every_default_exclude_and_secret_file_glob():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "from-git.md").read_text(encoding="utf-8")
    words = set(re.findall(r"[^\s`,()]+", doc))
    for reason, globs in DEFAULT_EXCLUDES.items():
        assert reason in words and set(globs) <= words
    assert set(SECRET_FILE_GLOBS) <= words


# ---- building blocks ---------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "glob", "expected"), [
    ("web/node_modules/x/index.js", "node_modules", True),
    ("a/b/poetry.lock", "*.lock", True),
    ("docs/api/index.md", "docs/api", True),
    ("docs/a.md", "docs/*.md", True),
    ("sub/docs/a.md", "docs/*.md", False),
    ("src/vendored.py", "vendor", False),
    ("Vendor/x.js", "vendor", False),
])
def test_glob_matches_the_path_a_leading_directory_or_a_component(path, glob, expected):
    assert matches_glob(path, glob) is expected


@pytest.mark.parametrize(("path", "expected"), [
    (".env", True), ("app/.env.production", True), ("certs/server.pem", True), ("id_rsa", True),
    (".env.example", False), ("src/env.py", False), ("id_rsa.pub", False),
])
def test_secret_file_names(path, expected):
    assert is_secret_path(path) is expected


CREDENTIAL_SAMPLES = {  # fake values, assembled at run time
    "aws-access-key-id": FAKE_AWS_KEY,
    "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY = " + "Ab1/" * 10,
    "private-key": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "github-token": "gho" + "_" + "a1" * 18,
    "github-fine-grained-token": "github" + "_pat_" + "A1_" * 8,
    "gitlab-token": "glpat" + "-" + "x1" * 10,
    "slack-token": "xoxb" + "-" + "1234567890",
    "google-api-key": "AIza" + "x1-" * 12,
    "stripe-live-key": "sk" + "_live_" + "a1" * 12,
    "huggingface-token": "hf" + "_" + "ab" * 17,
    "npm-token": "npm" + "_" + "a1" * 18,
    "anthropic-key": "sk-ant" + "-" + "a1" * 10,
    "openai-key": "sk-" + "a1" * 10 + "T3Blbk" + "FJ" + "b2" * 10,
}


@pytest.mark.parametrize("name", sorted(CREDENTIAL_SAMPLES))
def test_every_credential_pattern_is_found_by_name(name):
    assert find_credential(f"config = '{CREDENTIAL_SAMPLES[name]}'\n") == name


def test_every_credential_pattern_has_a_sample():
    assert set(CREDENTIAL_SAMPLES) == set(CREDENTIAL_PATTERNS)


def test_credential_patterns_name_what_they_found_without_the_value():
    assert find_credential(f"key = '{FAKE_AWS_KEY}'") == "aws-access-key-id"
    assert find_credential(FAKE_PEM) == "private-key"
    assert find_credential(f"token: {FAKE_GITHUB_TOKEN}") == "github-token"
    assert find_credential("AKIA is a prefix; BEGIN PUBLIC KEY is fine; ghp_short") is None


def test_quoted_and_renamed_paths_are_parsed_from_diff_headers():
    quoted = b'diff --git "a/ta\\tb \\303\\274" "b/ta\\tb \\303\\274"\nnew file mode 100644\n'
    assert parse_file_change(quoted).describe() == "A ta\tb ü"
    renamed = b"diff --git a/old name.py b/new name.py\nsimilarity index 100%\n" \
              b"rename from old name.py\nrename to new name.py\n"
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
    assert result.text.endswith("+b\n[diff truncated: 53 of 5000 bytes shown]\n")


def test_commit_message_encoding_header_is_honoured():
    raw = (b"tree 1\nauthor A <a@x> 1704067200 -0130\ncommitter A <a@x> 1704067200 +0000\n"
           b"encoding ISO-8859-1\n\nCaf\xe9 fix\n\nLonger\nbody  \n")
    message = parse_commit_object(raw)
    assert (message.subject, message.body) == ("Café fix", "Longer\nbody")
    assert message.author_date == "2023-12-31T22:30:00-01:30"
