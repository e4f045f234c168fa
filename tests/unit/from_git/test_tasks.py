"""from_git/tasks.py: completion tasks cut from the code added after the cut (next_line, scope, fim),\ncapped per kind with a fixed seed."""

from __future__ import annotations

from phased_cpt.from_git import HoldoutOptions
from phased_cpt.from_git.git import GitRepo
from phased_cpt.from_git.holdout import (
    FUTURE_TASKS_FILE,
)
from phased_cpt.from_git.rules import repository_rules
from phased_cpt.from_git.tasks import FutureLimits, find_tasks, split_lines, write_tasks
from tests.unit.from_git.conftest import C_FILE, LIB_V3, _oid
from tests.unit.from_git.repos import build, git, read


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
