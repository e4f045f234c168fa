"""from_git/personal.py: e-mail addresses in training text are masked, except public ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, ScreenOptions
from phased_cpt.from_git.personal import EMAIL_PLACEHOLDER, mask_emails
from tests.unit.from_git.repos import build, commit, new_repo, read

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
