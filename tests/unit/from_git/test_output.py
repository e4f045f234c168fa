"""`--out`: from-git replaces only its own earlier output, and only with `--force`; a file it did
not write (or that was edited since) survives every run, `--force` included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE
from phased_cpt.from_git.output import OUTPUT_MARKER
from tests.unit.from_git.repos import build, commit, new_repo, read

OUTPUTS = (PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_repo(tmp_path_factory.mktemp("outdir") / "repo", {"a.py": "a = 1\n"})
    commit(root, {"b.py": "b = 1\n"}, "Add b", "2024-01-02T10:00:00+00:00")
    return root


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("name", OUTPUTS)
@pytest.mark.parametrize("force", [False, True])
def test_a_file_from_git_did_not_write_is_never_replaced(repo, tmp_path, name, force):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text('{"training_content": "hand-curated"}\n')
    (out / "notes.md").write_text("mine\n")
    before = _snapshot(out)
    with pytest.raises(UserError, match=rf"{name} was not written by `data from-git`") as caught:
        build(repo, out, force=force)
    assert "\n" not in str(caught.value)
    assert _snapshot(out) == before


def test_an_earlier_run_is_replaced_only_with_force(repo, tmp_path):
    out = tmp_path / "out"
    build(repo, out, excludes=["b.py"])
    (out / "model-card.md").write_text("mine\n")
    before = _snapshot(out)
    with pytest.raises(UserError, match=r"already holds .* pass --force"):
        build(repo, out)
    assert _snapshot(out) == before
    build(repo, out, force=True)
    assert [d["path"] for d in read(out, PHASE1_FILE)] == ["a.py", "b.py"]
    assert (out / "model-card.md").read_text() == "mine\n"
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert sorted(marker["files"]) == sorted(OUTPUTS)


def test_an_output_edited_after_the_run_is_no_longer_replaced(repo, tmp_path):
    """A phase file curated by hand after from-git wrote it is the user's now."""
    out = tmp_path / "out"
    build(repo, out)
    (out / PHASE3_FILE).write_text('{"training_content": "curated"}\n')
    with pytest.raises(UserError, match=rf"{PHASE3_FILE} was not written"):
        build(repo, out, force=True)
    assert (out / PHASE3_FILE).read_text() == '{"training_content": "curated"}\n'


def test_a_symlink_in_place_of_an_output_is_refused(repo, tmp_path):
    out = tmp_path / "out"
    build(repo, out)
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("precious\n")
    (out / PHASE1_FILE).unlink()
    (out / PHASE1_FILE).symlink_to(target)
    with pytest.raises(UserError, match="was not written"):
        build(repo, out, force=True)
    assert target.read_text() == "precious\n"


def test_an_empty_or_foreign_directory_needs_no_force(repo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("mine\n")
    build(repo, out)
    assert (out / "README.md").read_text() == "mine\n"
    assert set(OUTPUTS) <= {p.name for p in out.iterdir()}
