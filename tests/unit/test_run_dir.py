"""The run-directory contract: stored config, model, phases, "latest", checkpoint steps."""

from __future__ import annotations

import json
import os
import re

import pytest

from phased_cpt.config import PhaseConfig
from phased_cpt.errors import UserError
from phased_cpt.run_dir import (
    FinishedPhase,
    RunDir,
    RunState,
    checkpoint_dir,
    checkpoint_step,
    is_complete,
    latest_run,
    list_checkpoints,
    mark_complete,
    missing_rank_parts,
)
from tests.conftest import REPO


def make_run(output_dir, name: str, mtime: float, finished: list[str] = ()) -> RunDir:
    run = RunDir(output_dir / name)
    run.path.mkdir(parents=True)
    run.write_config("model:\n  name: some/model\n  dtype: float32\nphases:\n  - {name: p1}\n  - {name: p2}\n")
    for phase in finished:
        run.mark_done(FinishedPhase(name=phase, steps=1))
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
    assert list_checkpoints(tmp_path, complete_only=False) == [
        checkpoint_dir(tmp_path, 2),
        checkpoint_dir(tmp_path, 10),
    ]


def test_the_run_containing_an_adapter_or_checkpoint(tmp_path):
    run = make_run(tmp_path, "r-1", 1)
    assert RunDir.containing(run.adapter_dir("p1")).path == run.path.resolve()
    assert RunDir.containing(checkpoint_dir(run.phase_dir("p1"), 4)).path == run.path.resolve()
    assert RunDir.containing(tmp_path / "elsewhere" / "adapter") is None


def test_a_checkpoint_of_several_ranks_lacks_the_part_of_any_rank_that_did_not_write_it(tmp_path):
    """issue 16: every rank of every node writes its own part; a node that died leaves its
    part missing, and the checkpoint must not be marked complete."""
    checkpoint = checkpoint_dir(tmp_path, 4)
    step_dir = checkpoint / "global_step4"
    step_dir.mkdir(parents=True)
    assert missing_rank_parts(checkpoint, 1) == []  # one process: nothing is per rank
    (checkpoint / "rng_state_0.pth").write_bytes(b"r")
    (step_dir / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o")
    (step_dir / "mp_rank_00_model_states.pt").write_bytes(b"m")  # ZeRO-2: rank 0 alone writes the weights
    assert missing_rank_parts(checkpoint, 2) == [
        "rng_state_1.pth",
        "global_step4/*zero_pp_rank_1_mp_rank_*_optim_states.pt",
    ]
    (checkpoint / "rng_state_1.pth").write_bytes(b"r")
    (step_dir / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"o")
    assert missing_rank_parts(checkpoint, 2) == []
    (step_dir / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"m")  # ZeRO-3: weights per rank too
    assert missing_rank_parts(checkpoint, 2) == ["global_step4/*zero_pp_rank_1_mp_rank_*_model_states.pt"]
    (step_dir / "zero_pp_rank_1_mp_rank_00_model_states.pt").write_bytes(b"m")
    assert missing_rank_parts(checkpoint, 2) == []
    assert missing_rank_parts(checkpoint, 3) == [
        "rng_state_2.pth",
        "global_step4/*zero_pp_rank_2_mp_rank_*_optim_states.pt",
        "global_step4/*zero_pp_rank_2_mp_rank_*_model_states.pt",
    ]


def test_latest_run_matches_the_stamp_exactly_not_a_longer_name_with_the_same_prefix(tmp_path):
    """`rx` must not resume `rx-large-<stamp>` (issue 29): the name is `<run_name>-<stamp>[-N]`."""
    make_run(tmp_path, "rx-20240101_000000", 100)
    make_run(tmp_path, "rx-large-20240102_000000", 300)
    make_run(tmp_path, "rx-20240101_000000-1", 200)
    assert latest_run(tmp_path, run_name="rx").name == "rx-20240101_000000-1"
    assert latest_run(tmp_path, run_name="rx-large").name == "rx-large-20240102_000000"
    make_run(tmp_path, "ry-large-20240102_000000", 400)
    assert latest_run(tmp_path, run_name="ry") is None


def test_a_carried_adapter_must_be_the_file_its_phase_saved(tmp_path):
    from phased_cpt.run_dir import adapter_file_sha256

    run = make_run(tmp_path, "r-20240101_000000", 1)
    run.write_state(RunState(finished_phases=[]))
    weights = run.adapter_dir("p1") / "adapter_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"the phase's own adapter")
    run.mark_done(FinishedPhase(name="p1", steps=1, adapter_file_sha256=adapter_file_sha256(run.adapter_dir("p1"))))
    run.check_carried_adapter()
    weights.write_bytes(b"another adapter, swapped in")
    with pytest.raises(UserError, match=r"adapter of the finished phase p1 .* has sha256 [0-9a-f]{12}\.\.\., not"):
        run.check_carried_adapter()
    weights.unlink()
    with pytest.raises(UserError, match="is missing"):
        run.check_carried_adapter()


def test_the_documented_run_directory_stamp_is_the_one_runs_get(tmp_path):
    """`-YYYYMMDD_HHMMSS`, wherever a doc names it (issue 19 item 11)."""
    from datetime import datetime

    from phased_cpt.run_dir import RunDir

    run = RunDir.create(tmp_path, "name", now=datetime(2026, 1, 2, 3, 4, 5))
    assert run.path.name == "name-20260102_030405"
    for path in [REPO / "config.yaml", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        doc, text = path.name, path.read_text()
        for i in [i for i in range(len(text)) if text.startswith("YYYYMMDD_HHMMSS", i)]:
            assert text[i - 1] == "-", f"{doc}: {text[i - 30 : i + 15]!r}"


def test_a_field_this_version_does_not_know_is_kept(tmp_path):
    run = RunDir(tmp_path)
    run.state_file.write_text(json.dumps({"finished_phases": [{"name": "p1", "steps": 1, "note": "hi"}], "extra": 1}))
    run.mark_done(FinishedPhase(name="p2", steps=1))
    written = json.loads(run.state_file.read_text())
    assert written["finished_phases"][0] == {"name": "p1", "steps": 1, "note": "hi"}
    assert written["extra"] == 1


@pytest.mark.parametrize(
    "state, problem",
    [
        ({"finished_phases": [{"steps": 3}]}, "finished_phases.0.name: Field required"),
        (
            {"finished_phases": [{"name": "p1", "steps": "many"}]},
            "finished_phases.0.steps: Input should be a valid integer",
        ),
        ({"finished_phases": {"name": "p1"}}, "finished_phases: Input should be a valid list"),
        ({"inputs": {}}, "no 'finished_phases' in it"),
        ([], "no 'finished_phases' in it"),
    ],
)
def test_a_damaged_state_file_names_the_field(tmp_path, state, problem):
    run = RunDir(tmp_path)
    run.state_file.write_text(json.dumps(state))
    with pytest.raises(UserError, match=re.escape(f"the run's state is unreadable ({problem}")):
        run.read_state()


FIRST_VERSION_STATE = {
    "finished_phases": [
        {"name": "p1", "steps": 4, "train_loss": 1.25, "adapter_sha256": "ab" * 32},
        {"name": "p2", "steps": 2, "train_loss": None, "adapter_sha256": "cd" * 32},
    ]
}


def test_a_state_file_of_the_first_version_is_read_and_written_back_as_it_was(tmp_path):
    run = make_run(tmp_path, "r-20240101_000000", 1)
    run.state_file.write_text(json.dumps(FIRST_VERSION_STATE))
    state = RunDir(run.path).read_state()
    assert [p.name for p in state.finished_phases] == ["p1", "p2"]
    assert state.finished_phases[0].adapter_sha256 == "ab" * 32
    assert state.finished_phases[1].train_loss is None
    assert state.inputs == {} and state.wandb_run_id is None
    resumed = RunDir(run.path)
    assert resumed.finished_steps() == 6
    assert (
        resumed.pending_phases([PhaseConfig(name="p1", file=__file__), PhaseConfig(name="p3", file=__file__)])[0].name
        == "p3"
    )
    resumed.check_carried_adapter()  # nothing recorded to compare: not refused
    resumed.mark_done(FinishedPhase(name="p3", steps=1, train_loss=0.5, tokens=64, seconds=1.5))
    written = json.loads(run.state_file.read_text())
    assert written["finished_phases"][:2] == FIRST_VERSION_STATE["finished_phases"]  # not a key added or lost
    assert written["finished_phases"][2] == {"name": "p3", "steps": 1, "train_loss": 0.5, "tokens": 64, "seconds": 1.5}
    assert set(written) == {"finished_phases"}


def test_the_state_this_version_writes_reads_back_equal(tmp_path):
    run = RunDir(tmp_path)
    state = RunState(finished_phases=[], inputs={"p1.file": "00" * 32})
    run.write_state(state)
    phase = FinishedPhase(
        name="p1", steps=3, train_loss=None, tokens=10, seconds=0.5, adapter_fingerprint="f", adapter_file_sha256="s"
    )
    run.mark_done(phase)
    read = RunDir(tmp_path).read_state()
    assert read.inputs == {"p1.file": "00" * 32}
    assert read.finished_phases == [phase]
    assert json.loads(run.state_file.read_text())["finished_phases"][0]["train_loss"] is None  # written as null
