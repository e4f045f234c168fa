"""Every data file is read once, whatever names it (issue 29, severe 2): a repeated entry, a
symlink beside its target, overlapping globs, a directory link loop under `**`. And a file that
is not a regular one is refused for what it is."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from phased_cpt.config import load_config
from phased_cpt.config.files import expand_pattern, file_problem
from phased_cpt.errors import ConfigError
from tests.conftest import write_jsonl
from tests.unit.config.conftest import problems


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "d" / "p1.jsonl", ["def a(): pass", "def b(): pass"])
    write_jsonl(tmp_path / "g" / "x.jsonl", ["x = 1", "x = 2"])
    write_jsonl(tmp_path / "g" / "sub" / "y.jsonl", ["y = 1", "y = 2"])
    return tmp_path


def load(work: Path, phases: str, overrides=()):
    (work / "c.yaml").write_text(phases)
    return load_config(work / "c.yaml", list(overrides))


def test_a_file_listed_twice_is_read_once_with_a_warning(work):
    cfg, notes = load(work, "phases: [{name: p, file: [d/p1.jsonl, d/p1.jsonl]}]\n")
    assert cfg.phases[0].files == [work / "d" / "p1.jsonl"]
    assert len(notes) == 1 and "phases.0.file" in notes[0] and "it is read once" in notes[0]


def test_a_directory_link_loop_under_globstar_matches_each_file_once_and_ends(work):
    os.symlink(".", work / "g" / "loop")
    os.symlink(".", work / "g" / "loop2")  # two loops: following them would take 2**40 steps
    os.symlink("..", work / "g" / "sub" / "up")
    started = time.monotonic()
    cfg, notes = load(work, "phases: [{name: p, file: 'g/**/*.jsonl'}]\n")
    assert time.monotonic() - started < 10
    assert sorted(cfg.phases[0].files) == [work / "g" / "sub" / "y.jsonl", work / "g" / "x.jsonl"]
    assert notes == []


def test_overlapping_globs_and_a_link_beside_its_target_are_dropped_and_named(work):
    os.symlink("x.jsonl", work / "g" / "z-link.jsonl")
    cfg, notes = load(work, "phases: [{name: p, file: ['g/**/*.jsonl', 'g/*.jsonl']}]\n")
    assert sorted(cfg.phases[0].files) == [work / "g" / "sub" / "y.jsonl", work / "g" / "x.jsonl"]
    assert any("z-link.jsonl is the file" in n for n in notes)
    assert any(f"{work / 'g' / 'x.jsonl'} is the file" in n for n in notes)  # the second glob's match


def test_a_weighted_source_left_with_nothing_is_an_error(work):
    with pytest.raises(ConfigError, match="weight would apply to nothing"):
        load(
            work,
            "phases: [{name: p, file: [{path: 'g/*.jsonl', weight: 1}, {path: g/x.jsonl, weight: 2}]}]\n",
        )


def test_general_file_may_not_be_or_include_a_phase_file(work):
    phases = "phases: [{name: p, file: g/x.jsonl}]\n"
    for general in ("g/x.jsonl", "'g/**/*.jsonl'"):
        with pytest.raises(ConfigError, match="would be trained twice"):
            load(work, phases + f"general: {{file: {general}}}\n")
    load(work, phases + "general: {file: d/p1.jsonl}\n")


def test_a_fifo_a_device_and_a_link_loop_are_refused_for_what_they_are(work):
    os.mkfifo(work / "fifo.jsonl")
    os.symlink("loop.jsonl", work / "loop.jsonl")
    os.symlink("gone.jsonl", work / "dangling.jsonl")
    cases = {
        "fifo.jsonl": "is a FIFO (named pipe), not a regular file",
        "/dev/null": "is a device, not a regular file",
        "loop.jsonl": "is a symlink loop",
        "dangling.jsonl": "is a symlink to a file that does not exist",
        "missing.jsonl": "does not exist",
    }
    for name, reason in cases.items():
        with pytest.raises(ConfigError) as refused:
            load(work, f"phases: [{{name: p, file: '{name}'}}]\n")
        assert f"{name}' {reason}; point the phase" in str(refused.value), name
    assert file_problem(work / "d" / "p1.jsonl") is None


def test_the_expansion_matches_glob_for_plain_trees(work):
    import glob

    write_jsonl(work / "g" / ".hidden.jsonl", ["h = 1"])
    patterns = ("g/**/*.jsonl", "g/*.jsonl", "*/*.jsonl", "g/s*/y.jsonl", "g/**", "**/y.json?", "g/[sx]*")
    for pattern in (*patterns, str(work / "g" / "**" / "*.jsonl")):
        expected = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        assert list(expand_pattern(Path(pattern))) == expected, pattern


def test_a_general_file_with_a_phase_files_content_is_refused_by_validate_and_plan(work, tiny_model_dir, capsys):
    """A copy of a phase file as general text (issue 29): the eval_file rule, by content."""
    import shutil

    from phased_cpt.cli import main

    shutil.copyfile(work / "d" / "p1.jsonl", work / "copy.jsonl")
    (work / "c.yaml").write_text(
        f"model: {{name: {tiny_model_dir}}}\nphases: [{{name: p, file: d/p1.jsonl}}]\ngeneral: {{file: copy.jsonl}}\n"
    )
    for command in ("validate", "plan"):
        assert main([command, str(work / "c.yaml")]) == 2, command
        assert "the general file has the same content as the phase file" in capsys.readouterr().err, command


def test_a_directory_given_as_a_data_file(config_dir):
    (config_dir / "data").mkdir()
    (problem,) = problems("phases: [{name: p, file: data}]\n", config_dir)
    assert (
        problem
        == f"phases.0.file: data file '{config_dir / 'data'}' is a directory, not a regular file; point the phase at "
        "an existing JSONL file"
    )
    (problem,) = problems("phases: [{name: p, file: missing.jsonl}]\n", config_dir)
    assert "does not exist" in problem


def test_eval_file_that_is_the_training_file(config_dir):
    os.symlink(config_dir / "a.jsonl", config_dir / "link.jsonl")
    for eval_file in ("a.jsonl", "./a.jsonl", str(config_dir / "a.jsonl"), "link.jsonl"):
        (problem,) = problems(f"phases: [{{name: p, file: a.jsonl, eval_file: '{eval_file}'}}]\n", config_dir)
        assert problem.startswith("phases.0: eval_file ") and "is a training file itself" in problem
