"""from_git/summary.py: the run summary and the report: what each output file got, what was left\nout and why."""

from __future__ import annotations

import json

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, REPORT_FILE
from tests.unit.from_git.repos import (
    report,
)


def test_report_lists_every_left_out_file_commit_and_diff_with_reason_rule_and_size(built):
    out, summary = built
    listed = report(out)
    phase1 = listed["outputs"][PHASE1_FILE]
    assert sorted((e["file"], e["reason"]) for e in phase1["left_out"]) == sorted(
        [
            ("assets/logo.png", "binary"),
            ("empty.txt", "empty"),
            ("static/app.min.js", "generated"),
            ("package-lock.json", "lock"),
            (".env", "secret"),
            ("link.py", "symlink"),
            ("data/big.txt", "too-large"),
            ("latin1.txt", "undecodable"),
            ("vendor/x.js", "vendored"),
            ("web/node_modules/lib/index.js", "vendored"),
        ]
    )
    assert all(e["rule"] and e["bytes"] >= 0 for e in phase1["left_out"])
    assert next(e for e in phase1["left_out"] if e["file"] == "data/big.txt")["bytes"] == 5000
    diffs = [e for e in listed["outputs"][PHASE2_FILE]["left_out"] if e.get("kind") == "diff"]
    assert {(e["path"], e["reason"]) for e in diffs} >= {(".env", "secret"), ("vendor/x.js", "vendored")}
    assert all(len(e["commit"]) == 40 for e in diffs)
    redacted = phase1["redacted"]
    assert {(e["file"], e["rule"], e["line"]) for e in redacted} == {
        ("config/aws.py", "aws-access-key", 3),
        ("deploy/server_key.txt", "private-key", 3),
    }
    assert listed["outputs"][PHASE1_FILE]["skipped"] == summary.to_dict()["outputs"][PHASE1_FILE]["skipped"]


def test_summary_table_keeps_counts_and_points_to_the_report(built):
    out, summary = built
    table = summary.format_table()
    assert f"{out / REPORT_FILE}" in table and ".env" not in table
    assert summary.to_dict()["report"] == str(out / REPORT_FILE)
    assert "left_out" not in json.dumps(summary.to_dict())
