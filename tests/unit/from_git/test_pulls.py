"""Phase 3 from a pull-request export (`--prs`): documents, discussion order, and the checks of
the export (pydantic models: strict types, every problem at once, deep nesting)."""

from __future__ import annotations

import json

import pytest

from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE3_FILE
from tests.unit.from_git.conftest import FIXTURES
from tests.unit.from_git.repos import FAKE_AWS_KEY, all_output_bytes, build, read


def test_phase3_from_pr_export_has_one_document_per_pr_in_number_order(repo, tmp_path):
    summary = build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    documents = read(tmp_path, PHASE3_FILE)
    assert [(d["number"], d["outcome"]) for d in documents] == [(3, "closed unmerged"), (7, "merged"), (9, "open")]
    assert summary.phase3_source == "pull_requests" and [n for n in summary.notes if "held out" not in n] == []
    rust, retry, wip = (d["training_content"] for d in documents)
    assert rust.startswith(
        "Pull request #3: Rewrite the client in Rust\nAuthor: mallory\n"
        "Branches: rust -> main\n\nDescription:\n(no description)\n"
    )
    assert "+fn main() {}\n" in rust and rust.endswith("\nOutcome: closed unmerged\n")
    assert "Description:\nDraft.\n" in wip and "Diff: (not in the export)" in wip
    assert wip.endswith("\nOutcome: open\n")
    assert "Description:\nRetries failed requests.\n\nFixes #5.\n" in retry
    assert "+    for attempt in range(3):\n" in retry
    assert retry.endswith("\nOutcome: merged\n")


def test_pr_discussion_is_in_chronological_order_without_pending_or_empty_reviews(repo, tmp_path):
    build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    retry = next(d["training_content"] for d in read(tmp_path, PHASE3_FILE) if d["number"] == 7)
    discussion = retry[retry.index("Discussion:\n") :]
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
    summary = build(repo, tmp_path, prs=FIXTURES / "pulls.json")
    retry = next(d["training_content"] for d in read(tmp_path, PHASE3_FILE) if d["number"] == 7)
    assert "[diff of .env omitted: secret]\n" in retry and "pr-secret-value" not in retry
    assert dict(summary.output(PHASE3_FILE).dropped_file_diffs) == {"secret": 1}


def test_pr_with_a_credential_in_its_text_is_kept_with_the_value_redacted(repo, tmp_path):
    pulls = json.loads((FIXTURES / "pulls.json").read_text())
    pulls[2]["body"] = f"Use key {FAKE_AWS_KEY} for testing"
    pulls[2]["title"] = f"Key {FAKE_AWS_KEY}"
    export = tmp_path / "pulls.json"
    export.write_text(json.dumps(pulls))
    summary = build(repo, tmp_path / "out", prs=export)
    documents = read(tmp_path / "out", PHASE3_FILE)
    assert [d["number"] for d in documents] == [3, 7, 9]
    assert "Use key [REDACTED:aws-access-key] for testing" in documents[2]["training_content"]
    assert documents[2]["title"] == "Key [REDACTED:aws-access-key]"
    assert FAKE_AWS_KEY.encode() not in all_output_bytes(tmp_path / "out")
    assert dict(summary.output(PHASE3_FILE).redactions) == {"aws-access-key": 3}


def test_pr_export_directory_reads_every_json_file(repo, tmp_path):
    pulls = json.loads((FIXTURES / "pulls.json").read_text())
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.json").write_text(json.dumps(pulls[:2]))
    (export / "b.json").write_text(json.dumps(pulls[2]))  # a single object is accepted too
    (export / "notes.txt").write_text("not json")
    build(repo, tmp_path / "out", prs=export)
    assert [d["number"] for d in read(tmp_path / "out", PHASE3_FILE)] == [3, 7, 9]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[{", "pulls.json: not valid JSON (EOF while parsing"),
        ("42", "expected a list of pull-request objects (or one object), got an integer"),
        ('[{"number": 1, "state": "open"}]', "item 0 (#1): missing required key 'title'"),
        (
            '[{"number": "1", "title": "t", "state": "open"}]',
            "item 0: number: Input should be a valid integer, got a string",
        ),
        (
            '[{"number": true, "title": "t", "state": "open"}]',
            "item 0: number: Input should be a valid integer, got a boolean",
        ),
        (
            '[{"number": 1, "title": "t", "state": "merged"}]',
            "item 0 (#1): state: Input should be 'open' or 'closed', got 'merged'",
        ),
        (
            '[{"number": 1, "title": "t", "state": "open", "reviews": {}}]',
            "reviews: Input should be a valid list, got an object",
        ),
        (
            '[{"number": 1, "title": "t", "state": "open", "review_comments": [{"body": "x"}]}]',
            "review_comments[0]: missing required key 'created_at'",
        ),
        (
            '[{"number": 1, "title": "t", "state": "open", "issue_comments": [{"body": "x", "created_at": "soon"}]}]',
            "issue_comments[0].created_at: not an ISO 8601 time: 'soon'",
        ),
        (
            '[{"number": 1, "title": "a", "state": "open"}, {"number": 1, "title": "b", "state": "open"}]',
            "item 1 (#1): pull request #1 appears twice (also",
        ),
        ("[" * 5000 + "]" * 5000, "pulls.json: not valid JSON (recursion limit exceeded"),
        (
            '[{"number": 1, "title": "t", "state": "open", "extra": ' + "[" * 3000 + "]" * 3000 + "}]",
            "not valid JSON (recursion limit exceeded",
        ),
    ],
)
def test_bad_pr_export_is_a_user_error_naming_the_file_and_the_problem(repo, tmp_path, content, expected):
    export = tmp_path / "pulls.json"
    export.write_text(content)
    with pytest.raises(UserError) as caught:
        build(repo, tmp_path / "out", prs=export)
    assert str(export) in str(caught.value)
    assert expected in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_every_problem_of_a_bad_export_is_reported_at_once(repo, tmp_path):
    export = tmp_path / "pulls.json"
    export.write_text('[{"title": 1, "state": "open"}, "nope"]')
    with pytest.raises(UserError) as caught:
        build(repo, tmp_path / "out", prs=export)
    message = str(caught.value)
    assert "(3 problems)" in message
    assert "item 0: missing required key 'number'" in message
    assert "item 0: title: Input should be a valid string, got an integer" in message
    assert "item 1: expected a pull-request object, got a string" in message


def test_missing_pr_export_is_a_user_error(repo, tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        build(repo, tmp_path / "out", prs=tmp_path / "missing.json")


def test_unknown_keys_of_a_github_object_are_ignored(repo, tmp_path):
    export = tmp_path / "pulls.json"
    export.write_text(
        json.dumps(
            [
                {
                    "number": 4,
                    "title": "t",
                    "state": "open",
                    "node_id": "x",
                    "labels": [{"name": "bug"}],
                    "user": {"login": "ann", "id": 1},
                }
            ]
        )
    )
    build(repo, tmp_path / "out", prs=export)
    [document] = read(tmp_path / "out", PHASE3_FILE)
    assert document["training_content"].startswith("Pull request #4: t\nAuthor: ann\n")
