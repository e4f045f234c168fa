"""from_git/holdout.py: the time split of `data from-git`: which side of the cut each commit
lands on, the future files, the contamination figure and bad input (the tasks: test_tasks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phased_cpt import cli
from phased_cpt.errors import UserError
from phased_cpt.from_git import HoldoutOptions
from phased_cpt.from_git.holdout import (
    FUTURE_CHANGES,
    FUTURE_EVOLUTION_FILE,
    FUTURE_FILES,
    FUTURE_PR_FILE,
    FUTURE_TASKS_FILE,
)
from phased_cpt.from_git.tasks import TASK_KINDS
from tests.unit.from_git.conftest import LIB_V2, _oid
from tests.unit.from_git.repos import FAKE_AWS_KEY, build, commit, git, new_repo, read, report

ROOT = Path(__file__).resolve().parents[3]
PHASE2, PHASE3 = "phase2_evolution.jsonl", "phase3_pr_mastery.jsonl"


def _ids(repo: Path, *args: str) -> set[str]:
    return set(git(repo, "rev-list", *args).split())


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
