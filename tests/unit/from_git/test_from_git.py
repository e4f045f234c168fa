"""The `data from-git` command line: flags, defaults, printed summaries, help texts, docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phased_cpt import cli, from_git
from phased_cpt.errors import UserError
from phased_cpt.from_git import (
    DEFAULT_EXCLUDES,
    PHASE1_FILE,
    PHASE2_FILE,
    PHASE3_FILE,
    ScreenOptions,
    build_datasets,
)
from phased_cpt.from_git.secrets import SECRET_FILE_GLOBS
from tests.unit.from_git.conftest import FIXTURES, KEPT_FILES, PHASE1_SKIPS, SUBJECTS, _head
from tests.unit.from_git.repos import build

MAX_FILE_BYTES = 2000


# ---- the command -------------------------------------------------------------------------------


def _parse(argv: list[str]):
    return cli.build_parser().parse_args(["data", "from-git", *argv])


def _run(argv: list[str]) -> int:
    return cli.main(["data", "from-git", *argv])


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        _parse(["--help"])
    return capsys.readouterr().out


def test_command_prints_a_json_summary(repo, tmp_path, capsys):
    assert (
        _run(
            [
                str(repo),
                "--out",
                str(tmp_path),
                "--json",
                "--max-file-bytes",
                str(MAX_FILE_BYTES),
                "--exclude",
                "*.rst",
                "--exclude",
                "docs",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["outputs"]) == [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE]
    phase1 = summary["outputs"][PHASE1_FILE]
    assert phase1["skipped"] == dict(sorted({**PHASE1_SKIPS, "excluded": 2}.items()))
    assert phase1["documents"] == len(KEPT_FILES) - 2
    # docs-only, rst-only, and the feature branch's commit, told in phase 3's merge story
    assert summary["outputs"][PHASE2_FILE]["documents"] == len(SUBJECTS) - 3
    assert summary["outputs"][PHASE2_FILE]["skipped"]["only-left-out-files"] == 2
    assert summary["phase3_source"] == "merge_commits"
    assert summary["commit"] == _head(repo)


def test_command_prints_a_table_by_default(repo, tmp_path, capsys):
    assert (
        _run(
            [
                str(repo),
                "--out",
                str(tmp_path),
                "--prs",
                str(FIXTURES / "pulls.json"),
                "--max-file-bytes",
                str(MAX_FILE_BYTES),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    rows = [tuple(line.split()) for line in table.splitlines()]
    documents = {row[0]: int(row[1]) for row in rows if len(row) == 6 and row[1].isdigit()}
    assert documents == {PHASE1_FILE: len(KEPT_FILES), PHASE2_FILE: len(SUBJECTS), PHASE3_FILE: 3}
    assert (PHASE2_FILE, "skipped", "merge", "1") in rows
    assert (PHASE3_FILE, "diff", "dropped", "secret", "1") in rows


def test_command_defaults_and_flags_reach_build_datasets(monkeypatch, capsys):
    calls: list[tuple[tuple, dict]] = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise UserError("recorded")

    monkeypatch.setattr(from_git, "build_datasets", record)
    assert (
        _run(
            [
                "repo",
                "--out",
                "o",
                "--no-default-excludes",
                "--since",
                "2024-01-01",
                "--rev",
                "v1",
                "--max-diff-bytes",
                "10",
                "--max-file-bytes",
                "20",
                "--include",
                "vendor",
                "--include",
                "*.svg",
                "--exclude",
                "docs",
                "--keep-duplicates",
                "--allow-other-owner",
                "--force",
                "--prs",
                "p.json",
                "--holdout-commits",
                "0",
                "--holdout-after",
                "2024-02-01",
                "--keep-bots",
                "--keep-emails",
                "--near-duplicate-threshold",
                "0.5",
            ]
        )
        == 2
    )
    assert calls[-1] == (
        (
            Path("repo"),
            Path("o"),
            from_git.FromGitSettings(
                rev="v1",
                since="2024-01-01",
                prs=Path("p.json"),
                max_file_bytes=20,
                max_diff_bytes=10,
                excludes=("docs",),
                includes=("vendor", "*.svg"),
                use_default_excludes=False,
                allow_other_owner=True,
                force=True,
                holdout=from_git.HoldoutOptions(commits=0, after="2024-02-01"),
                screen=ScreenOptions(
                    keep_bots=True, keep_emails=True, near_duplicate_threshold=0.5, keep_duplicates=True
                ),
            ),
        ),
        {},
    )
    assert _run(["repo", "--out", "o"]) == 2
    assert calls[-1] == ((Path("repo"), Path("o"), from_git.FromGitSettings()), {})  # the CLI's defaults are the API's
    assert capsys.readouterr().err.strip().splitlines() == ["error: recorded", "error: recorded"]


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "near"])
def test_command_rejects_a_similarity_outside_zero_to_one(value, capsys):
    with pytest.raises(SystemExit):
        _parse(["repo", "--out", "o", "--near-duplicate-threshold", value])
    assert "--near-duplicate-threshold" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "big"])
def test_command_rejects_a_size_that_is_not_positive(value, capsys):
    with pytest.raises(SystemExit):
        _parse(["repo", "--out", "o", "--max-file-bytes", value])
    assert "--max-file-bytes" in capsys.readouterr().err


def test_help_lists_every_default_exclude_glob(capsys):
    help_text = _help(capsys)
    unwrapped = "".join(help_text.split())  # argparse may wrap a line inside a glob, at a hyphen
    for reason, globs in DEFAULT_EXCLUDES.items():
        assert f"{reason}:{''.join(globs)}" in unwrapped
    assert "--no-default-excludes" in help_text and ".env" in help_text


def test_user_doc_lists_every_default_exclude_and_secret_file_glob():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "from-git.md").read_text(encoding="utf-8")
    words = set(re.findall(r"[^\s`,()]+", doc))
    for reason, globs in DEFAULT_EXCLUDES.items():
        assert reason in words and set(globs) <= words
    assert set(SECRET_FILE_GLOBS) <= words


def test_user_doc_lists_every_secret_rule_and_skip_reason():
    from phased_cpt.from_git import summary
    from phased_cpt.from_git.secrets import REDACT_PATTERNS, SECRET_FILE_TEMPLATES, STORE_PATTERNS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "from-git.md").read_text(encoding="utf-8")
    words = set(re.findall(r"[^\s`,()|]+", doc))
    assert set(REDACT_PATTERNS) | set(STORE_PATTERNS) | set(SECRET_FILE_TEMPLATES) <= words
    reasons = set(re.findall(r"`([a-z-]+)`", summary.__doc__.split("Reasons, in words:")[1]))
    assert reasons - {"truncated", "skipped"} <= words


@pytest.mark.parametrize("value", ["-1", "many"])
def test_command_rejects_a_holdout_count_below_zero(value, capsys):
    with pytest.raises(SystemExit):
        _parse(["repo", "--out", "o", "--holdout-commits", value])
    assert "--holdout-commits" in capsys.readouterr().err


def test_two_runs_give_byte_identical_outputs_and_summaries(repo, tmp_path):
    first = build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json")
    first_bytes = {name: (tmp_path / "out" / name).read_bytes() for name in (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE)}
    second = build(repo, tmp_path / "out", prs=FIXTURES / "pulls.json", force=True)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in first_bytes} == first_bytes
    assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
    assert first.format_table() == second.format_table()


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
        build(repo, tmp_path, rev="no-such-branch")
    with pytest.raises(UserError, match="--since '2 weeks ago': expected an ISO 8601 date"):
        build(repo, tmp_path, since="2 weeks ago")


def test_a_subdirectory_of_the_repository_builds_the_whole_repository(repo, built, tmp_path):
    build(repo / "src", tmp_path)
    assert (tmp_path / PHASE1_FILE).read_bytes() == (built[0] / PHASE1_FILE).read_bytes()
