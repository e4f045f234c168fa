"""What phased-cpt keeps of a repository's history and files: each change in one phase, how the
history merges (squash, Gerrit, Mercurial-era), long lines, data files, bots, e-mail addresses,
near-duplicates and cut markers. Every test builds its own small repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, HoldoutOptions, ScreenOptions, quality
from phased_cpt.from_git.diffs import filter_patch
from phased_cpt.from_git.neardup import NearDuplicates
from phased_cpt.from_git.personal import EMAIL_PLACEHOLDER, mask_emails
from phased_cpt.from_git.quality import MAX_LINE_CHARS, ContentRule, data_kind, is_minified, shorten_long_lines
from phased_cpt.from_git.rules import PathRules
from tests.unit.from_git.repos import build, commit, git, merge, new_repo, read, report

BOT_ENV = ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com")


def _subjects(out: Path, name: str) -> list[str]:
    return [d["subject"] for d in read(out, name)]


def _bot_commit(repo: Path, files: dict[str, str], message: str, date: str) -> None:
    """Commit as dependabot (author and committer)."""
    for name, content in files.items():
        (repo / name).write_text(content)
    git(repo, "add", "--", *files)
    name, email = BOT_ENV
    git(
        repo,
        "-c",
        f"user.name={name}",
        "-c",
        f"user.email={email}",
        "commit",
        "-q",
        f"--author={name} <{email}>",
        "-m",
        message,
        date=date,
    )


# ---- how the history merges ----------------------------------------------------------------------


@pytest.fixture
def squash_repo(tmp_path: Path) -> Path:
    """A squash-merging repository: two `TITLE (#N)` commits and one direct commit on main."""
    repo = new_repo(tmp_path / "squash", {"app.py": "x = 1\n"})
    commit(repo, {"app.py": "x = 2\n"}, "Raise x (#3)\n\nThe pull request's description.", "2024-01-02T10:00:00Z")
    commit(repo, {"lib.py": "y = 1\n"}, "Add lib (#4)", "2024-01-03T10:00:00Z")
    commit(repo, {"VERSION": "1.1\n"}, "Release 1.1", "2024-01-04T10:00:00Z")
    return repo


def test_squash_merges_are_phase3_pull_requests_and_not_phase2_commits(squash_repo, tmp_path):
    summary = build(squash_repo, tmp_path)
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Release 1.1"]
    stories = read(tmp_path, PHASE3_FILE)
    assert [(d["number"], d["source"], d["kind"]) for d in stories] == [
        (3, "squash_commit", "pull_request"),
        (4, "squash_commit", "pull_request"),
    ]
    assert stories[0]["training_content"].startswith(
        "Pull request #3: Raise x\nDate: 2024-01-02T10:00:00+00:00\n\nThe pull request's description.\n\n"
        "Files changed:\nM app.py\n"
    )
    assert stories[0]["training_content"].endswith("+x = 2\n\nOutcome: merged\n")
    assert summary.output(PHASE2_FILE).skipped == {}
    assert summary.merge_styles == {"squash merges": 2, "direct commits": 2}


def test_with_an_export_the_squash_commits_it_holds_leave_phase2_and_the_others_stay(squash_repo, tmp_path):
    export = tmp_path / "prs.json"
    pull = {"number": 3, "title": "Raise x", "state": "closed", "merged_at": "2024-01-02T10:00:00Z", "diff": None}
    export.write_text(json.dumps([pull]))
    summary = build(squash_repo, tmp_path / "out", prs=export)
    assert _subjects(tmp_path / "out", PHASE2_FILE) == ["Initial commit", "Add lib (#4)", "Release 1.1"]
    assert [d["number"] for d in read(tmp_path / "out", PHASE3_FILE)] == [3]
    assert summary.output(PHASE2_FILE).skipped == {"in-phase-3-story": 1}


def test_a_thin_or_stale_phase3_is_explained_with_the_prs_recipe(tmp_path):
    repo = new_repo(tmp_path / "thin", {"a.py": "a = 0\n"})
    git(repo, "checkout", "-q", "-b", "topic")
    commit(repo, {"t.py": "t = 1\n"}, "Topic work", "2020-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "topic", "Merge branch 'topic'", "2020-01-03T10:00:00Z")
    for day in range(1, 25):
        commit(repo, {"a.py": f"a = {day}\n"}, f"Direct change {day}", f"2024-02-{day:02d}T10:00:00Z")
    summary = build(repo, tmp_path / "out", holdout=HoldoutOptions(commits=0))  # every commit in the phases
    [note] = [note for note in summary.notes if note.startswith("phase 3 ")]
    assert "phase 3 is thin (1 stories for 26 changes)" in note
    assert "is stale (newest story 2020-01-03, newest commit 2024-02-24)" in note
    assert "most changes were committed directly to the mainline" in note
    assert "--prs prs/" in note and "Exporting with the GitHub CLI" in note
    assert f"note: {note}" in summary.format_table()


@pytest.fixture
def gerrit_repo(tmp_path: Path) -> Path:
    """Gerrit's review merges (`Merge "X" into main`, `Change-Id:` trailers) and a Mercurial-era
    forward-port (`merge tip`)."""
    repo = new_repo(tmp_path / "gerrit", {"opts.py": "a = 1\n"})
    git(repo, "checkout", "-q", "-b", "change")
    commit(repo, {"opts.py": "a = 2\n"}, "Document the option\n\nChange-Id: I0123456789abcdef", "2024-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"other.py": "o = 1\n"}, "Unrelated\n\nChange-Id: Ifedcba9876543210", "2024-01-03T10:00:00Z")
    merge(repo, "change", 'Merge "Document the option" into main', "2024-01-04T10:00:00Z")
    git(repo, "checkout", "-q", "-b", "hg-head", "HEAD~1")
    commit(repo, {"fix.py": "f = 1\n"}, "Fix on the other head", "2024-01-05T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "hg-head", "merge tip", "2024-01-06T10:00:00Z")
    return repo


def test_gerrit_review_merges_are_stories_and_head_merges_leave_their_commits_in_phase2(gerrit_repo, tmp_path):
    summary = build(gerrit_repo, tmp_path)
    [review] = read(tmp_path, PHASE3_FILE)
    assert review["kind"] == "review"
    assert review["training_content"].startswith(
        "Review: Document the option\nBranch: main\nDate: 2024-01-04T10:00:00+00:00\n\n"
        "Commits:\n* Document the option\n  Change-Id: I0123456789abcdef\n\nFiles changed:\nM opts.py\n"
    )
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Unrelated", "Fix on the other head"]
    [sync] = report(tmp_path)["outputs"][PHASE3_FILE]["left_out"]
    assert sync["reason"] == "branch-sync" and "without a title of its own" in sync["rule"]
    assert summary.merge_styles["review merges (Gerrit)"] == 1
    assert summary.merge_styles["review commits (Change-Id, no merge)"] == 1


# ---- bots ----------------------------------------------------------------------------------------


@pytest.fixture
def bot_repo(tmp_path: Path) -> Path:
    """A dependabot commit on main, and a dependabot pull request merged by a person."""
    repo = new_repo(tmp_path / "bots", {"requirements.txt": "lib==1.0\n", "app.py": "import lib\n"})
    _bot_commit(repo, {"requirements.txt": "lib==1.1\n"}, "Bump lib from 1.0 to 1.1", "2024-01-02T10:00:00Z")
    git(repo, "checkout", "-q", "-b", "dependabot/pip/lib-1.2")
    _bot_commit(repo, {"requirements.txt": "lib==1.2\n"}, "Bump lib from 1.1 to 1.2", "2024-01-03T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"app.py": "import lib\nlib.run()\n"}, "Run lib", "2024-01-04T10:00:00Z")
    merge(
        repo, "dependabot/pip/lib-1.2", "Merge pull request #7 from org/dependabot/pip/lib-1.2", "2024-01-05T10:00:00Z"
    )
    return repo


def test_bot_commits_and_merges_are_left_out_by_default(bot_repo, tmp_path):
    summary = build(bot_repo, tmp_path)
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Run lib"]
    assert read(tmp_path, PHASE3_FILE) == []
    assert summary.output(PHASE2_FILE).skipped == {"bot": 2, "merge": 1}
    assert summary.output(PHASE3_FILE).skipped == {"bot": 1}
    rules = {e["rule"] for e in report(tmp_path)["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "bot"}
    assert "by a bot: dependabot[bot]" in rules


def test_keep_bots_keeps_them(bot_repo, tmp_path):
    build(bot_repo, tmp_path, screen=ScreenOptions(keep_bots=True))
    assert _subjects(tmp_path, PHASE2_FILE) == ["Initial commit", "Bump lib from 1.0 to 1.1", "Run lib"]
    [story] = read(tmp_path, PHASE3_FILE)
    assert story["number"] == 7 and "* Bump lib from 1.1 to 1.2\n" in story["training_content"]


# ---- e-mail addresses ----------------------------------------------------------------------------

TRAILERS = (
    "Fix the parser\n\nReported at security@project.org.\n\n"
    "Signed-off-by: Ann Example <ann.example@corp.io>\n"
    "Co-authored-by: Bo <12345+bo@users.noreply.github.com>"
)
HEADER = "# Maintainer: Cy <cy@gmail.com>\n# Tests use user@example.com\nVALUE = 1\n"


@pytest.fixture
def email_repo(tmp_path: Path) -> Path:
    repo = new_repo(tmp_path / "mail", {"a.py": "a = 1\n"})
    commit(repo, {"a.py": HEADER}, TRAILERS, "2024-01-02T10:00:00Z")
    return repo


def test_email_addresses_are_masked_except_public_ones(email_repo, tmp_path):
    summary = build(email_repo, tmp_path)
    [file] = read(tmp_path, PHASE1_FILE)
    assert file["training_content"] == (
        f"File: a.py\n\n# Maintainer: Cy <{EMAIL_PLACEHOLDER}>\n# Tests use user@example.com\nVALUE = 1\n"
    )
    change = read(tmp_path, PHASE2_FILE)[1]["training_content"]
    assert f"Signed-off-by: Ann Example <{EMAIL_PLACEHOLDER}>\n" in change
    assert f"Co-authored-by: Bo <{EMAIL_PLACEHOLDER}>\n" in change
    assert "security@project.org" in change and "user@example.com" in change
    written = b"".join(path.read_bytes() for path in tmp_path.glob("*.jsonl"))
    for address in (b"ann.example@corp.io", b"bo@users.noreply", b"cy@gmail.com"):
        assert address not in written
    assert summary.output(PHASE1_FILE).masked_emails == 1
    assert summary.output(PHASE2_FILE).masked_emails == 3  # two trailers, and the header in the diff


def test_keep_emails_keeps_them(email_repo, tmp_path):
    summary = build(email_repo, tmp_path, screen=ScreenOptions(keep_emails=True))
    assert "ann.example@corp.io" in read(tmp_path, PHASE2_FILE)[1]["training_content"]
    assert summary.output(PHASE2_FILE).masked_emails == 0


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("a.b@corp.io", True),
        ("99+x@users.noreply.github.com", True),
        ("support@gmail.com", True),
        ("noreply@github.com", True),
        ("security@pallets.org", False),
        ("git@github.com:owner/repo.git", False),
        ("me@example.org", False),
        ("x@host.test", False),
        ("y = a @ b", False),
    ],
)
def test_mask_emails_rule(text, masked):
    out, count = mask_emails(text)
    assert (count == 1) is masked and (EMAIL_PLACEHOLDER in out) is masked


# ---- long lines, minified and data files ---------------------------------------------------------

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


# ---- near-duplicates -----------------------------------------------------------------------------

TEMPLATE = "".join(f"def check_{i}(value):\n    return validate(value, rule={i})\n" for i in range(30))


@pytest.fixture
def near_repo(tmp_path: Path) -> Path:
    return new_repo(
        tmp_path / "near",
        {
            "a/checks.py": TEMPLATE,
            "b/checks.py": TEMPLATE.replace("rule=7)", "rule=70)"),  # one line of 60 differs
            "c/other.py": "".join(f"x{i} = compute({i})\n" for i in range(40)),
        },
    )


def test_near_duplicate_files_stay_in_phase1_and_are_reported(near_repo, tmp_path):
    """Every hand-written file at the revision is trained; a near-twin is only named in the report."""
    summary = build(near_repo, tmp_path)
    assert [d["path"] for d in read(tmp_path, PHASE1_FILE)] == ["a/checks.py", "b/checks.py", "c/other.py"]
    phase1 = report(tmp_path)["outputs"][PHASE1_FILE]
    assert phase1["similar"] == [{"file": "b/checks.py", "similar_to": "phase1_foundation.jsonl: file a/checks.py"}]
    assert phase1["near_duplicates_kept"] == 1 and summary.output(PHASE1_FILE).skipped == {}
    assert "near-duplicate files kept in phase 1 (the report's `similar`): b/checks.py\n" in summary.format_table()


def test_near_duplicate_history_documents_are_left_out_naming_the_first(tmp_path):
    """A commit whose diff nearly repeats an earlier commit's is left out of phase 2."""
    repo = new_repo(tmp_path / "repo", {"a/checks.py": TEMPLATE}, message="Add the checks")
    commit(
        repo, {"b/checks.py": TEMPLATE.replace("rule=7)", "rule=70)")}, "Copy the checks", "2024-01-02T10:00:00+00:00"
    )
    commit(
        repo, {"c/other.py": "".join(f"x{i} = compute({i})\n" for i in range(40))}, "Other", "2024-01-03T10:00:00+00:00"
    )
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    summary = build(repo, tmp_path / "out")
    assert _subjects(tmp_path / "out", PHASE2_FILE) == ["Add the checks", "Other"]
    [entry] = [
        e for e in report(tmp_path / "out")["outputs"][PHASE2_FILE]["left_out"] if e["reason"] == "near-duplicate"
    ]
    assert entry["rule"] == f"similar to phase2_evolution.jsonl: commit {first}"
    assert summary.output(PHASE2_FILE).skipped["near-duplicate"] == 1
    assert len(read(tmp_path / "out", PHASE1_FILE)) == 3  # the files themselves all stay in phase 1


def test_near_duplicates_are_kept_when_switched_off(near_repo, tmp_path):
    build(near_repo, tmp_path, screen=ScreenOptions(near_duplicate_threshold=None))
    assert len(read(tmp_path, PHASE1_FILE)) == 3
    assert report(tmp_path)["outputs"][PHASE1_FILE]["similar"] == []
    build(near_repo, tmp_path / "kept", keep_duplicates=True)
    assert report(tmp_path / "kept")["outputs"][PHASE1_FILE]["similar"] == []


def test_near_duplicate_index_is_shared_across_phases():
    index = NearDuplicates()
    signature = index.signature(TEMPLATE)
    assert signature is not None and index.find(signature) is None
    index.add(signature, "phase2_evolution.jsonl: commit abc")
    assert index.find(index.signature(TEMPLATE.replace("rule=3)", "rule=33)"))) == "phase2_evolution.jsonl: commit abc"
    assert index.find(index.signature("".join(f"y{i} = other({i})\n" for i in range(40)))) is None
    assert index.signature("a = 1\nb = 2\n") is None  # too short to judge


def test_a_candidate_below_the_threshold_is_not_a_match():
    """LSH candidates are checked against the threshold: at 0.99 a one-line change is no match."""
    index = NearDuplicates(threshold=0.99)
    index.add(index.signature(TEMPLATE), "phase2_evolution.jsonl: commit abc")
    assert index.find(index.signature(TEMPLATE)) == "phase2_evolution.jsonl: commit abc"
    assert index.find(index.signature(TEMPLATE.replace("rule=7)", "rule=70)").replace("rule=8)", "rule=80)"))) is None


# ---- cut markers ---------------------------------------------------------------------------------


def _section(path: str, lines: int) -> bytes:
    body = "".join(f"+line {i} of {path}\n" for i in range(lines))
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -0,0 +1,{lines} @@\n{body}".encode()


def test_a_cut_diff_names_the_file_it_cut_and_the_files_it_did_not_show():
    patch = _section("a.py", 5) + _section("b.py", 50) + _section("c.py", 5) + _section("d.py", 5)
    result = filter_patch(patch, PathRules(), max_diff_bytes=400)
    assert result.truncated
    assert result.text.endswith("bytes shown; cut: b.py; not shown: c.py, d.py]\n")
    assert "+line 0 of a.py\n" in result.text and "c.py\n+line" not in result.text


# ---- builders take a revision or a range ---------------------------------------------------------


def test_plan_history_takes_a_range_and_places_only_its_commits(gerrit_repo):
    from phased_cpt.from_git.git import GitRepo
    from phased_cpt.from_git.merges import plan_history

    repo = GitRepo.open(gerrit_repo)
    cut = git(gerrit_repo, "rev-parse", "HEAD~1").strip()  # the review merge
    whole = plan_history(repo, "HEAD", since_epoch=None, keep_bots=False)
    after = plan_history(repo, f"{cut}..HEAD", since_epoch=None, keep_bots=False)
    fix, tip = (git(gerrit_repo, "rev-parse", rev).strip() for rev in ("HEAD^2", "HEAD"))
    assert after.phase2 == {fix} and set(after.left_out) == {tip}
    assert after.stories == {} and len(whole.stories) == 1
    assert after.left_out[git(gerrit_repo, "rev-parse", "HEAD").strip()][0] == "branch-sync"


def test_a_bots_pull_request_in_the_export_is_left_out_unless_kept(squash_repo, tmp_path):
    export = tmp_path / "prs.json"
    pulls = [
        {"number": 3, "title": "Raise x", "state": "closed", "merged": True, "user": {"login": "ann"}},
        {"number": 9, "title": "Bump lib", "state": "closed", "merged": True, "user": {"login": "dependabot[bot]"}},
    ]
    export.write_text(json.dumps(pulls))
    summary = build(squash_repo, tmp_path / "out", prs=export)
    assert [d["number"] for d in read(tmp_path / "out", PHASE3_FILE)] == [3]
    assert summary.output(PHASE3_FILE).skipped == {"bot": 1}
    build(squash_repo, tmp_path / "kept", prs=export, screen=ScreenOptions(keep_bots=True))
    assert [d["number"] for d in read(tmp_path / "kept", PHASE3_FILE)] == [3, 9]


def test_a_story_lists_at_most_max_story_commits_messages(tmp_path, monkeypatch):
    from phased_cpt.from_git import merges

    monkeypatch.setattr(merges, "MAX_STORY_COMMITS", 2)
    repo = new_repo(tmp_path / "long", {"a.py": "a = 0\n"})
    git(repo, "checkout", "-q", "-b", "topic")
    for day in range(1, 5):
        commit(repo, {"t.py": f"t = {day}\n"}, f"Step {day}", f"2024-01-0{day}T10:00:00Z")
    git(repo, "checkout", "-q", "main")
    merge(repo, "topic", "Merge pull request #5 from ann/topic\n\nFour steps", "2024-01-06T10:00:00Z")
    build(repo, tmp_path / "out")
    [story] = read(tmp_path / "out", PHASE3_FILE)
    assert "Commits:\n* Step 1\n* Step 2\n[2 more commits not listed]\n\nFiles changed:" in story["training_content"]
    assert len(story["commits"]) == 4
