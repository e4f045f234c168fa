"""The `data from-git` command line: flags, defaults, printed summaries, help texts, docs."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from phased_cpt import from_git
from phased_cpt.from_git import DEFAULT_EXCLUDES, PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, command
from phased_cpt.from_git.secrets import SECRET_FILE_GLOBS
from tests.unit.from_git.repos import git
from tests.unit.from_git.test_phases import KEPT_FILES, PHASE1_SKIPS, SUBJECTS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "from_git"
MAX_FILE_BYTES = 2000


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


# ---- the command -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phased-cpt data from-git")
    command.add_arguments(parser)
    return parser


def test_command_prints_a_json_summary(repo, tmp_path, capsys):
    args = _parser().parse_args([str(repo), "--out", str(tmp_path), "--json", "--max-file-bytes",
                                 str(MAX_FILE_BYTES), "--exclude", "*.rst", "--exclude", "docs"])
    assert command.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["outputs"]) == [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE]
    phase1 = summary["outputs"][PHASE1_FILE]
    assert phase1["skipped"] == dict(sorted({**PHASE1_SKIPS, "excluded": 2}.items()))
    assert phase1["documents"] == len(KEPT_FILES) - 2
    assert summary["outputs"][PHASE2_FILE]["documents"] == len(SUBJECTS) - 2  # docs-only, rst-only
    assert summary["outputs"][PHASE2_FILE]["skipped"]["only-left-out-files"] == 2
    assert summary["phase3_source"] == "merge_commits"
    assert summary["commit"] == _head(repo)


def test_command_prints_a_table_by_default(repo, tmp_path, capsys):
    args = _parser().parse_args([str(repo), "--out", str(tmp_path), "--prs", str(FIXTURES / "pulls.json"),
                                 "--max-file-bytes", str(MAX_FILE_BYTES)])
    assert command.run(args) == 0
    table = capsys.readouterr().out
    rows = [tuple(line.split()) for line in table.splitlines()]
    documents = {row[0]: int(row[1]) for row in rows if len(row) == 5 and row[1].isdigit()}
    assert documents == {PHASE1_FILE: len(KEPT_FILES), PHASE2_FILE: len(SUBJECTS), PHASE3_FILE: 3}
    assert (PHASE2_FILE, "skipped", "merge", "1") in rows
    assert (PHASE3_FILE, "diff", "dropped", "secret", "1") in rows


def test_command_defaults_and_flags_reach_build_datasets(tmp_path):
    args = _parser().parse_args(["repo", "--out", "o", "--no-default-excludes", "--since", "2024-01-01",
                                 "--rev", "v1", "--max-diff-bytes", "10"])
    assert (args.repo, args.out, args.rev, args.since) == (Path("repo"), Path("o"), "v1", "2024-01-01")
    assert (args.use_default_excludes, args.max_diff_bytes, args.excludes, args.prs) == (False, 10, [], None)
    more = _parser().parse_args(["repo", "--out", "o", "--include", "vendor", "--include", "*.svg",
                                 "--keep-duplicates", "--allow-other-owner"])
    assert (more.includes, more.keep_duplicates, more.allow_other_owner) == (["vendor", "*.svg"], True, True)
    defaults = _parser().parse_args(["repo", "--out", "o"])
    assert defaults.use_default_excludes is True and defaults.rev == "HEAD" and defaults.json is False
    assert (defaults.includes, defaults.keep_duplicates, defaults.allow_other_owner) == ([], False, False)
    assert defaults.max_file_bytes == from_git.DEFAULT_MAX_FILE_BYTES


@pytest.mark.parametrize("value", ["0", "-5", "big"])
def test_command_rejects_a_size_that_is_not_positive(value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["repo", "--out", "o", "--max-file-bytes", value])
    assert "--max-file-bytes" in capsys.readouterr().err


def test_help_lists_every_default_exclude_glob():
    help_text = _parser().format_help()
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
