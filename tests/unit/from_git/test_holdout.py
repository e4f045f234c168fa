"""The time split of `data from-git` (holdout.py, tasks.py): which side of the cut each commit
lands on, the future files, the tasks' shape, the contamination figure and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phased_cpt import cli
from phased_cpt.errors import UserError
from phased_cpt.from_git import HoldoutOptions
from phased_cpt.from_git.git import GitRepo
from phased_cpt.from_git.holdout import (
    FUTURE_CHANGES,
    FUTURE_EVOLUTION_FILE,
    FUTURE_FILES,
    FUTURE_PR_FILE,
    FUTURE_TASKS_FILE,
)
from phased_cpt.from_git.rules import repository_rules
from phased_cpt.from_git.tasks import TASK_KINDS, FutureLimits, find_tasks, split_lines, write_tasks
from tests.unit.from_git.repos import FAKE_AWS_KEY, build, commit, git, merge, new_repo, read, report

ROOT = Path(__file__).resolve().parents[3]
PHASE2, PHASE3 = "phase2_evolution.jsonl", "phase3_pr_mastery.jsonl"
LIB_V1 = (
    "import os\n\n\ndef load_settings(path):\n    with open(path) as handle:\n        return handle.read()\n"
    "\n\ndef old_helper_that_moves(value):\n    return value * 2  # doubled for the caller\n"
)
LIB_V2 = "import os\n\n\ndef load_settings(path):\n    with open(path) as handle:\n        return handle.read()\n"
LIB_V3 = LIB_V2 + (
    "\n\ndef parse_settings(text):\n    pairs = [line.split('=', 1) for line in text.splitlines()]\n"
    "    return {key.strip(): value.strip() for key, value in pairs}\n"
    "\n\ndef old_helper_that_moves(value):\n    return value * 2  # doubled for the caller\n"
)
C_FILE = (
    "#include <stdio.h>\n\nint count_widgets(const int *values, int length) {\n    int total = 0;\n"
    "    for (int index = 0; index < length; index++) {\n        total += values[index] > 0 ? 1 : 0;\n    }\n"
    "    return total;\n}\n"
)


@pytest.fixture(scope="module")
def dated_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mainline c1 c2 c3 M1 c4 c5 M2 c6 (first parent, one a day from 2024-01-01); feature f1 merged
    by M1 (before the cut), feature2 f2 written before c5 but merged by M2 after the cut."""
    root = new_repo(tmp_path_factory.mktemp("dated"))
    commit(root, {"src/lib.py": LIB_V1, "README.md": "# Demo\n"}, "c1: start", "2024-01-01T10:00:00+00:00")
    commit(root, {"docs/guide.md": "Run the demo with care and attention.\n"}, "c2: guide", "2024-01-02T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "feature")
    commit(root, {"src/extra.py": "EXTRA_SETTING_NAME = 'first feature'\n"}, "f1: extra", "2024-01-03T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"src/lib.py": LIB_V2}, "c3: drop the helper", "2024-01-04T10:00:00+00:00")
    merge(root, "feature", "Merge pull request #1 from ada/feature", "2024-01-05T10:00:00+00:00")
    commit(root, {"notes.txt": "A note written before the cut.\n"}, "c4: notes", "2024-01-06T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "feature2")
    commit(root, {"src/late.py": "LATE_SETTING_NAME = 'second feature'\n"}, "f2: late", "2024-01-07T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"src/widgets.c": C_FILE}, "c5: widgets", "2024-01-08T10:00:00+00:00")
    merge(root, "feature2", "Merge pull request #2 from ada/feature2", "2024-01-10T10:00:00+00:00")
    commit(root, {"src/lib.py": LIB_V3}, "c6: parse settings", "2024-01-11T10:00:00+00:00")
    return root


def _ids(repo: Path, *args: str) -> set[str]:
    return set(git(repo, "rev-list", *args).split())


def _oid(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev).strip()


def test_the_cut_places_every_commit_on_its_side(dated_repo, tmp_path):
    out = tmp_path / "out"
    summary = build(dated_repo, out, holdout=HoldoutOptions(commits=3))
    cut = _oid(dated_repo, "main~3")  # c4
    assert summary.holdout is not None and summary.holdout.cut.commit == cut == summary.commit

    def told(*names: str) -> set[str]:
        """Every commit a file's documents tell: a commit document's own, a story's merge and branch commits."""
        return {oid for name in names for doc in read(out, name) for oid in [doc["commit"], *doc.get("commits", [])]}

    training_commits, future_commits = told(PHASE2, PHASE3), told(FUTURE_EVOLUTION_FILE, FUTURE_PR_FILE)
    # each change is told once (phase 2 the mainline's own commits, phase 3 a merged branch as one story)
    assert training_commits == _ids(dated_repo, cut) and future_commits == _ids(dated_repo, f"{cut}..main")
    assert not told(PHASE2) & told(PHASE3) and not told(FUTURE_EVOLUTION_FILE) & told(FUTURE_PR_FILE)
    assert {doc["commit"] for doc in read(out, PHASE3)} == _ids(dated_repo, "--merges", cut)
    assert {doc["commit"] for doc in read(out, FUTURE_PR_FILE)} == _ids(dated_repo, "--merges", f"{cut}..main")
    assert training_commits | future_commits == _ids(dated_repo, "main") and not training_commits & future_commits
    # f2 was written before c5 but merged after the cut: the model could not have seen it
    f2 = _oid(dated_repo, "main~1^2")
    assert f2 in future_commits
    # phase 1 is the tree of the cut, not of HEAD
    files = {doc["path"]: doc["training_content"] for doc in read(out, "phase1_foundation.jsonl")}
    assert "src/widgets.c" not in files and files["src/lib.py"].endswith(LIB_V2)
    assert report(out)["holdout"]["first_parent_commits"] == {"training": 5, "held_out": 3}


def test_holdout_after_a_date_and_both_options(dated_repo, tmp_path):
    by_date = build(dated_repo, tmp_path / "a", holdout=HoldoutOptions(after="2024-01-07T12:00:00Z"))
    assert by_date.holdout is not None and by_date.holdout.cut.commit == _oid(dated_repo, "main~3")
    on_a_commit = build(dated_repo, tmp_path / "b", holdout=HoldoutOptions(after="2024-01-06T10:00:00+00:00"))
    assert on_a_commit.holdout is not None and on_a_commit.holdout.cut.commit == _oid(dated_repo, "main~3")
    both = build(dated_repo, tmp_path / "c", holdout=HoldoutOptions(commits=1, after="2024-01-04T12:00:00Z"))
    assert both.holdout is not None and both.holdout.cut.commit == _oid(dated_repo, "main~5")  # c3: the larger future
    assert both.holdout.cut.rule == "--holdout-after 2024-01-04T12:00:00Z"


def test_holdout_after_trains_on_no_commit_dated_after_it_when_dates_are_out_of_order():
    """Committer dates out of order on the mainline (c3 dated March, c4 January after it): the
    cut once fell at the newest commit dated before the date (c4), so c3, dated after it, was
    trained on while the summary said every later commit was held out."""
    from datetime import datetime

    from phased_cpt.from_git.holdout import _choose_cut

    def at(date: str) -> int:
        return int(datetime.fromisoformat(date + "T00:00:00+00:00").timestamp())

    newest_first = [("c5", at("2024-04-01")), ("c4", at("2024-01-05")), ("c3", at("2024-03-01"))]
    newest_first += [("c2", at("2024-01-02")), ("c1", at("2024-01-01"))]
    cut, _ = _choose_cut(newest_first, "c5", HoldoutOptions(after="2024-02-01"), False)
    assert (cut.commit, cut.held_out) == ("c2", 3)
    assert _choose_cut(newest_first, "c5", HoldoutOptions(after="2024-03-15"), False)[0].commit == "c4"
    with pytest.raises(UserError, match="nothing would be held out"):
        _choose_cut(newest_first, "c5", HoldoutOptions(after="2024-04-01"), False)
    dated_first_after = [*newest_first[:-1], ("c1", at("2024-02-15"))]
    with pytest.raises(UserError, match="nothing would be left to train on"):
        _choose_cut(dated_first_after, "c5", HoldoutOptions(after="2024-02-01"), False)


def test_a_future_file_from_git_did_not_write_is_neither_replaced_nor_removed(dated_repo, tmp_path, capsys):
    """A hand-made future_tasks.jsonl in --out was replaced by a run with a cut and deleted by one
    without ("removed future_tasks.jsonl of an earlier run": there was none)."""
    out = tmp_path / "out"
    out.mkdir()
    mine = out / FUTURE_TASKS_FILE
    mine.write_text('{"hand": "made"}\n')
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(out), "--holdout-commits", "2"]) == 2
    assert "future_tasks.jsonl was not written by `data from-git`" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [FUTURE_TASKS_FILE] and mine.read_text() == '{"hand": "made"}\n'
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(out), "--holdout-commits", "0", "--force"]) == 2
    assert "future_tasks.jsonl was not written by `data from-git`" in capsys.readouterr().err
    assert mine.read_text() == '{"hand": "made"}\n'
    ours = tmp_path / "ours"
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(ours), "--holdout-commits", "2"]) == 0
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(ours), "--holdout-commits", "2", "--force"]) == 0
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(ours), "--holdout-commits", "0", "--force"]) == 0
    assert not any((ours / name).exists() for name in FUTURE_FILES)


def test_tasks_are_cut_from_the_file_after_the_change(dated_repo, tmp_path):
    out = tmp_path / "out"
    build(dated_repo, out, holdout=HoldoutOptions(commits=3))
    tasks = read(out, FUTURE_TASKS_FILE)
    assert {task["kind"] for task in tasks} == {"next_line", "scope", "fim"}
    for task in tasks:
        assert set(task) == {"kind", "prefix", "suffix", "target", "path", "commit"}
        after = git(dated_repo, "show", f"{task['commit']}:{task['path']}")
        whole = task["prefix"] + task["target"] + task["suffix"]
        if task["kind"] == "fim":
            assert whole == after and task["suffix"].strip()
        else:
            assert after.startswith(whole) and task["suffix"] == ""
        added = {
            line[1:] + "\n"
            for line in git(dated_repo, "show", "--format=", task["commit"], "--", task["path"]).splitlines()
            if line.startswith("+") and not line.startswith("+++")
        }
        assert any(line in added for line in split_lines(task["target"]))
        assert task["prefix"].strip()
    scopes = {task["target"] for task in tasks if task["kind"] == "scope"}
    assert (
        "def parse_settings(text):\n" + LIB_V3.split("def parse_settings(text):\n")[1].split("\n\n\n")[0] + "\n"
        in scopes
    )
    assert C_FILE[C_FILE.index("int count") :] in scopes  # a brace block with its closing line
    next_lines = [task for task in tasks if task["kind"] == "next_line"]
    assert all(len(task["target"].strip()) >= 25 and task["target"].count("\n") == 1 for task in next_lines)
    # deterministic
    build(dated_repo, tmp_path / "again", holdout=HoldoutOptions(commits=3))
    assert (tmp_path / "again" / FUTURE_TASKS_FILE).read_bytes() == (out / FUTURE_TASKS_FILE).read_bytes()


def test_find_tasks_rules_on_small_inputs():
    lines = split_lines("x = 1\ndef grow(values):\n    return [v * 2 for v in values]\n\ny = 2\n")
    assert list(find_tasks(lines, {1, 2})) == [("next_line", 2, 3), ("scope", 1, 3), ("fim", 1, 3)]
    # a block mostly unchanged is not a scope; a run at the end of the file has no suffix: no fim
    assert [kind for kind, *_ in find_tasks(lines, {2, 3, 4})] == ["next_line"]
    # nothing before a line: no task ends there; a block at the top of the file has no prefix: no scope
    top = split_lines("def grow(values):\n    return [v * 2 for v in values]\n")
    assert list(find_tasks(top, {0, 1})) == [("next_line", 1, 2)]
    assert split_lines("a\fb\nc") == ["a\fb\n", "c"]


def test_printed_contamination_equals_a_count_outside_the_tool(dated_repo, tmp_path):
    summary = build(dated_repo, tmp_path / "out", holdout=HoldoutOptions(commits=3))
    script = ROOT / "benchmarks" / "future_contamination.py"
    done = subprocess.run(
        [sys.executable, str(script), str(dated_repo), "--holdout-commits", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    outside = json.loads(done.stdout)
    assert summary.holdout is not None
    inside = summary.holdout.contamination[FUTURE_CHANGES]
    assert outside["cut"] == summary.holdout.cut.commit
    # c5 adds 3 counted lines, f2 1 (told in M2's story); c6 adds 3 new ones and brings back the 2 of
    # the helper c3 removed
    assert (inside.lines, inside.seen) == (outside["lines"], outside["seen"]) == (9, 2)
    printed = summary.to_dict()["holdout"]["contamination"]
    assert printed[FUTURE_CHANGES] == {"lines": 9, "seen": 2, "share": 0.2222}
    assert printed[FUTURE_EVOLUTION_FILE] == {"lines": 8, "seen": 2, "share": 0.25}
    assert any("future_evolution.jsonl: 25.0% of its scored lines" in note for note in summary.notes)
    assert "future_evolution.jsonl" in summary.format_table().split("contamination:")[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (HoldoutOptions(after="2023-12-31"), "before the first commit (2024-01-01T10:00:00+00:00)"),
        (HoldoutOptions(after="2024-01-11T10:00:00Z"), "at or after the last commit"),
        (HoldoutOptions(after="last week"), "expected an ISO 8601 date"),
        (HoldoutOptions(commits=8), "has 8 first-parent commit(s), so at most 7 can be held out"),
    ],
)
def test_bad_cuts_are_one_line_errors_before_any_output(dated_repo, tmp_path, options, message):
    with pytest.raises(UserError, match=None) as caught:
        build(dated_repo, tmp_path / "out", holdout=options)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_off_default_and_short_histories(dated_repo, tmp_path):
    cut = build(dated_repo, tmp_path / "off", holdout=HoldoutOptions(commits=3))
    assert cut.holdout is not None and read(tmp_path / "off", FUTURE_TASKS_FILE)
    off = build(dated_repo, tmp_path / "off", holdout=HoldoutOptions(commits=0), force=True)  # removes the future
    assert off.holdout is None
    assert not any((tmp_path / "off" / name).exists() for name in FUTURE_FILES)
    assert f"removed {FUTURE_TASKS_FILE} of an earlier run: these phases hold its future" in off.notes
    assert any("--holdout-commits 0" in note for note in off.notes)
    short = build(dated_repo, tmp_path / "short")  # 8 first-parent commits: 10% is under 2
    assert short.holdout is None and any("only 8 first-parent commit(s)" in note for note in short.notes)
    assert "holdout" not in short.to_dict()


def test_default_cut_holds_out_ten_percent(tmp_path):
    repo = new_repo(tmp_path / "long")
    for day in range(1, 26):
        commit(
            repo,
            {f"f{day}.py": f"VALUE_NUMBER_{day} = 'a value of twenty-five'\n"},
            f"day {day}",
            f"2024-02-{day:02d}T10:00:00+00:00",
        )
    summary = build(repo, tmp_path / "out")
    assert summary.holdout is not None and summary.holdout.cut.held_out == 2
    assert summary.holdout.cut.rule == "default: the last 2 of 25 first-parent commits"
    assert len(read(tmp_path / "out", FUTURE_EVOLUTION_FILE)) == 2


def test_a_cut_that_leaves_phases_empty_says_so(tmp_path):
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00"}, "binary only", "2024-01-01T10:00:00+00:00")
    commit(repo, {"app.py": "print('a line that is long enough')\n"}, "code", "2024-01-02T10:00:00+00:00")
    summary = build(repo, tmp_path / "out", holdout=HoldoutOptions(commits=1))
    notes = "\n".join(summary.notes)
    assert "leaves phase1_foundation.jsonl empty" in notes and "leaves phase2_evolution.jsonl empty" in notes
    assert summary.to_dict()["holdout"]["empty_phases"] == [
        "phase1_foundation.jsonl",
        "phase2_evolution.jsonl",
        "phase3_pr_mastery.jsonl",
    ]


def test_a_shallow_clone_is_noted_and_bounds_the_cut(dated_repo, tmp_path):
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "3", f"file://{dated_repo}", str(shallow))
    summary = build(shallow, tmp_path / "out", holdout=HoldoutOptions(commits=1))
    assert any(note.startswith("shallow clone:") for note in summary.notes)
    with pytest.raises(UserError, match="shallow clone"):
        build(shallow, tmp_path / "out2", holdout=HoldoutOptions(commits=5))


def test_pull_requests_split_at_the_cut(dated_repo, tmp_path):
    prs = tmp_path / "prs.json"
    pulls = [
        {"number": 1, "title": "Early", "state": "closed", "merged_at": "2024-01-05T10:00:00Z", "diff": None},
        {"number": 2, "title": "Late", "state": "closed", "merged_at": "2024-01-10T10:00:00Z", "diff": None},
        {"number": 3, "title": "Open", "state": "open", "created_at": "2024-01-09T10:00:00Z"},
        {"number": 4, "title": "Undated", "state": "open"},
    ]
    prs.write_text(json.dumps(pulls))
    out = tmp_path / "out"
    summary = build(dated_repo, out, prs=prs, holdout=HoldoutOptions(commits=3))
    assert [doc["number"] for doc in read(out, "phase3_pr_mastery.jsonl")] == [1, 4]
    assert [doc["number"] for doc in read(out, FUTURE_PR_FILE)] == [2, 3]
    assert summary.to_dict()["holdout"]["future_pull_requests"] == 2


def test_the_command_prints_the_time_split(dated_repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(out), "--holdout-commits", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["holdout"]["cut"] == _oid(dated_repo, "main~3")
    assert printed["holdout"]["tasks"] == {
        kind: len([t for t in read(out, FUTURE_TASKS_FILE) if t["kind"] == kind]) for kind in TASK_KINDS
    }
    assert (
        printed["outputs"][FUTURE_EVOLUTION_FILE]["documents"] == len(read(out, FUTURE_EVOLUTION_FILE)) == 2
    )  # c5, c6 (f2 is told in M2's story, in future_pr_mastery.jsonl)
    assert (
        cli.main(["data", "from-git", str(dated_repo), "--out", str(out), "--holdout-after", "2024-01-07", "--force"])
        == 0
    )
    table = capsys.readouterr().out
    assert "time split (--holdout-after 2024-01-07): training as of" in table and "future_tasks.jsonl" in table
    assert cli.main(["data", "from-git", str(dated_repo), "--out", str(out), "--holdout-after", "1999-01-01"]) == 2
    assert "before the first commit" in capsys.readouterr().err


def test_future_sets_follow_the_phase_rules_and_redact(tmp_path):
    repo = new_repo(tmp_path / "repo", {"app.py": "def first_function_of_the_app():\n    return 1\n"})
    commit(
        repo,
        {
            "app.py": "def first_function_of_the_app():\n    return 1\n\n\ndef connect_to_the_service():\n"
            f"    key_id = '{FAKE_AWS_KEY}'\n    return open_the_connection_to(key_id)\n\n\nSTATUS = 'ready'\n",
            "vendor/lib/copied_library.py": "def vendored_function_with_a_long_name():\n    return 'vendored'\n",
        },
        "After the cut",
        "2024-01-02T10:00:00+00:00",
    )
    out = tmp_path / "out"
    build(repo, out, holdout=HoldoutOptions(commits=1))
    written = b"".join((out / name).read_bytes() for name in FUTURE_FILES)
    assert FAKE_AWS_KEY.encode() not in written and b"[REDACTED:" in written
    tasks = read(out, FUTURE_TASKS_FILE)
    assert tasks and {task["path"] for task in tasks} == {"app.py"}
    assert "vendored_function_with_a_long_name" not in (out / FUTURE_EVOLUTION_FILE).read_text()


def test_tasks_are_capped_per_kind_with_a_fixed_seed(dated_repo, tmp_path):
    git_repo = GitRepo.open(dated_repo)
    head = git_repo.resolve_commit("HEAD")
    rules = repository_rules(
        git_repo, head, git_repo.list_tree(head), excludes=[], includes=[], use_default_excludes=True
    )
    limits = FutureLimits(max_diff_bytes=1 << 16, max_file_bytes=1 << 20, max_tasks_per_kind=1)
    runs = []
    for name in ("a.jsonl", "b.jsonl"):
        temp, counts = write_tasks(git_repo, f"{_oid(dated_repo, 'main~3')}..{head}", rules, limits, tmp_path / name)
        assert counts == {"next_line": 1, "scope": 1, "fim": 1}
        runs.append(temp.read_text())
    assert runs[0] == runs[1] and len(runs[0].splitlines()) == 3
