"""The run-directory contract: stored config, model, phases, "latest", checkpoint steps."""

from __future__ import annotations

import os

import pytest

from phased_cpt.errors import UserError
from phased_cpt.run_dir import (
    RunDir,
    checkpoint_dir,
    checkpoint_step,
    is_complete,
    latest_run,
    list_checkpoints,
    mark_complete,
)


def make_run(output_dir, name: str, mtime: float, finished: list[str] = ()) -> RunDir:
    run = RunDir(output_dir / name)
    run.path.mkdir(parents=True)
    run.write_config("model:\n  name: some/model\n  dtype: float32\nphases:\n  - {name: p1}\n  - {name: p2}\n")
    for phase in finished:
        run.mark_done(phase, steps=1)
    os.utime(run.config_file, (mtime, mtime))
    return run


def test_latest_run_is_the_one_whose_config_was_written_last_with_optional_filters(tmp_path):
    make_run(tmp_path, "a-20240101_000000", 100, finished=["p1"])
    make_run(tmp_path, "b-20240102_000000", 300)
    make_run(tmp_path, "a-20240103_000000", 200)
    assert latest_run(tmp_path).name == "b-20240102_000000"
    assert latest_run(tmp_path, run_name="a").name == "a-20240103_000000"
    assert latest_run(tmp_path, finished=True).name == "a-20240101_000000"
    assert latest_run(tmp_path, run_name="b", finished=True) is None
    assert latest_run(tmp_path / "missing") is None


def test_stored_config_model_and_phases(tmp_path):
    run = make_run(tmp_path, "r-1", 1)
    assert run.read_config()["model"]["name"] == "some/model"
    assert (run.model_config().name, run.model_config().dtype) == ("some/model", "float32")
    assert run.phase_names() == ["p1", "p2"]


def test_an_unreadable_stored_config_is_a_user_error_naming_the_file(tmp_path):
    run = make_run(tmp_path, "r-1", 1, finished=["p1"])
    run.config_file.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match=r"config.resolved.yaml: the run's config is not a mapping"):
        run.model_config()
    assert run.phase_names() == ["p1"]  # falls back to the finished phases


def test_checkpoint_steps_have_one_parser_and_completeness_one_marker(tmp_path):
    assert checkpoint_step(checkpoint_dir(tmp_path, 12)) == 12
    assert checkpoint_step(tmp_path / "checkpoint-12.partial") is None
    assert checkpoint_step(tmp_path / "adapter") is None
    for step in (2, 10):
        checkpoint_dir(tmp_path, step).mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    mark_complete(checkpoint_dir(tmp_path, 10), 10)
    assert is_complete(checkpoint_dir(tmp_path, 10)) and not is_complete(checkpoint_dir(tmp_path, 2))
    assert list_checkpoints(tmp_path) == [checkpoint_dir(tmp_path, 10)]
    assert list_checkpoints(tmp_path, complete_only=False) == [checkpoint_dir(tmp_path, 2), checkpoint_dir(tmp_path, 10)]


def test_the_run_containing_an_adapter_or_checkpoint(tmp_path):
    run = make_run(tmp_path, "r-1", 1)
    assert RunDir.containing(run.adapter_dir("p1")).path == run.path.resolve()
    assert RunDir.containing(checkpoint_dir(run.phase_dir("p1"), 4)).path == run.path.resolve()
    assert RunDir.containing(tmp_path / "elsewhere" / "adapter") is None
