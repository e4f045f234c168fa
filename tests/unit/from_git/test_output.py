"""`--out`: from-git replaces only its own earlier output, and only with `--force`; a file it did
not write (or that was edited since) survives every run, `--force` included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phased_cpt import from_git
from phased_cpt.errors import UserError
from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE
from phased_cpt.from_git.output import OUTPUT_MARKER
from tests.unit.from_git.repos import (
    build,
    commit,
    git,
    new_repo,
    read,
)

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


def test_existing_outputs_are_replaced_and_no_temporary_files_remain(repo, tmp_path):
    out = tmp_path / "nested" / "dataset"
    build(repo, out, excludes=["*"])
    build(repo, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, OUTPUT_MARKER]
    )
    assert read(out, PHASE1_FILE)


def test_a_failed_run_leaves_previous_outputs_untouched(repo, tmp_path, monkeypatch):
    build(repo, tmp_path)
    before = (tmp_path / PHASE1_FILE).read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(from_git, "write_evolution", fail)
    with pytest.raises(RuntimeError):
        build(repo, tmp_path, excludes=["*"], force=True)
    assert (tmp_path / PHASE1_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE, OUTPUT_MARKER]
    )


def test_committed_outputs_inside_the_repository_are_not_read_back(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    git(small, "init", "-q", "-b", "main")
    commit(
        small,
        {
            "a.py": "x = 1\n",
            f"dataset/{PHASE1_FILE}": '{"training_content": "old"}\n',
            f"dataset/{REPORT_FILE}": '{"outputs": {}}\n',
        },
        "Commit an earlier dataset",
        "2024-03-01T10:00:00+00:00",
    )
    for name in (PHASE1_FILE, REPORT_FILE):  # checked-out copies are not from-git's to replace
        (small / "dataset" / name).unlink()
    summary = build(small, small / "dataset")
    assert [d["path"] for d in read(small / "dataset", PHASE1_FILE)] == ["a.py"]
    assert dict(summary.output(PHASE1_FILE).skipped) == {"excluded": 2}
    assert dict(summary.output(PHASE2_FILE).dropped_file_diffs) == {"excluded": 2}
