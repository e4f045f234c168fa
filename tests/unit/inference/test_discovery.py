"""What chat and merge load: newest run, explicit phase, adapter directories, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phased_cpt.cli import main
from phased_cpt.errors import UserError
from phased_cpt.inference.discovery import describe_runs, resolve_target
from phased_cpt.run_dir import RunDir
from tests.conftest import write_run

PHASES = ["phase1_foundation", "phase2_evolution", "phase3_pr_mastery"]


def age(run: Path, seconds_ago: float) -> Path:
    """Runs are ordered by their config file's mtime."""
    config_file = RunDir(run).config_file
    t = config_file.stat().st_mtime - seconds_ago
    os.utime(config_file, (t, t))
    return run


def add_checkpoint(run: Path, phase: str, step: int, complete: bool = True) -> Path:
    path = run / phase / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/m"}))
    if complete:
        (path / "COMPLETE").write_text("")
    return path


def test_no_run_found_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"no run found under .*outputs/.*phased-cpt train"):
        resolve_target(output_dir=tmp_path / "outputs")


def test_newest_run_and_its_last_finished_phase(tmp_path):
    out = tmp_path / "outputs"
    age(write_run(out / "old", Path("/m/old"), PHASES, PHASES), 100)
    write_run(out / "new", Path("/m/new"), PHASES, PHASES[:2])
    target = resolve_target(output_dir=out)
    assert target.run.path == out / "new"
    assert target.active == "phase2_evolution"
    assert target.adapter_dir == out / "new" / "phase2_evolution" / "adapter"
    assert list(target.adapters) == PHASES[:2]
    assert target.model.name == "/m/new" and target.model.dtype == "float32"


def test_newest_run_without_a_finished_phase_is_skipped(tmp_path):
    out = tmp_path / "outputs"
    age(write_run(out / "done", Path("/m"), PHASES, PHASES[:1]), 100)
    write_run(out / "running", Path("/m"), PHASES, [])
    assert resolve_target(output_dir=out).run.path == out / "done"


def test_only_unfinished_runs_is_a_user_error(tmp_path):
    write_run(tmp_path / "outputs" / "running", Path("/m"), PHASES, [])
    with pytest.raises(UserError, match="no run under .* has a finished phase"):
        resolve_target(output_dir=tmp_path / "outputs")


@pytest.mark.parametrize("phase", ["phase1_foundation", "1"])
def test_explicit_phase_by_name_or_number(tmp_path, phase):
    run = write_run(tmp_path / "run", Path("/m"), PHASES, PHASES)
    target = resolve_target(run, phase=phase)
    assert target.active == "phase1_foundation"
    assert target.adapter_dir == run / "phase1_foundation" / "adapter"


def test_unfinished_phase_points_at_its_latest_complete_checkpoint(tmp_path):
    run = write_run(tmp_path / "run", Path("/m"), PHASES, PHASES[:1])
    add_checkpoint(run, "phase2_evolution", 5)
    add_checkpoint(run, "phase2_evolution", 10)
    add_checkpoint(run, "phase2_evolution", 15, complete=False)
    with pytest.raises(UserError) as err:
        resolve_target(run, phase="phase2_evolution")
    assert "has not finished" in str(err.value)
    assert str(run / "phase2_evolution" / "checkpoint-10") in str(err.value)


@pytest.mark.parametrize("phase", ["nope", "4", "0"])
def test_unknown_phase_lists_the_finished_ones(tmp_path, phase):
    run = write_run(tmp_path / "run", Path("/m"), PHASES, PHASES)
    with pytest.raises(UserError, match=f"--phase {phase}: no such phase .*1 phase1_foundation, 2 phase2_evolution"):
        resolve_target(run, phase=phase)


def test_a_directory_that_is_neither_run_nor_adapter(tmp_path):
    with pytest.raises(UserError, match="neither a run directory .* nor an adapter directory"):
        resolve_target(tmp_path)


def test_adapter_dir_inside_a_run_keeps_the_other_phases(tmp_path):
    run = write_run(tmp_path / "run", Path("/m"), PHASES, PHASES)
    target = resolve_target(run / "phase1_foundation" / "adapter")
    assert target.active == "phase1_foundation"
    assert list(target.adapters) == PHASES and target.run.path == run.resolve()


def test_checkpoint_as_adapter_is_labelled_with_its_phase(tmp_path):
    run = write_run(tmp_path / "run", Path("/m/base"), PHASES, PHASES[:1])
    checkpoint = add_checkpoint(run, "phase2_evolution", 5)
    target = resolve_target(adapter=checkpoint)
    assert target.active == "phase2_evolution/checkpoint-5"
    assert list(target.adapters) == ["phase1_foundation", "phase2_evolution/checkpoint-5"]
    assert target.model.name == "/m/base"  # from the run's config, not the adapter's


def test_standalone_adapter_names_its_base_model(tmp_path):
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    target = resolve_target(adapter)
    assert (target.model.name, target.active, target.run) == ("org/base", "my-adapter", None)
    assert resolve_target(adapter, base_model="/elsewhere").model.name == "/elsewhere"


def test_adapter_without_a_base_model_asks_for_one(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="--base-model"):
        resolve_target(tmp_path)


def test_conflicting_arguments(tmp_path):
    run = write_run(tmp_path / "run", Path("/m"), PHASES, PHASES)
    with pytest.raises(UserError, match="--phase or --adapter"):
        resolve_target(phase="1", adapter=run / "phase1_foundation" / "adapter")
    with pytest.raises(UserError, match="--phase needs a run directory"):
        resolve_target(run / "phase1_foundation" / "adapter", phase="2")


def test_list_shows_runs_phases_adapters_and_checkpoints(tmp_path):
    out = tmp_path / "outputs"
    run = write_run(out / "run", Path("/m/base"), PHASES, PHASES[:1])
    add_checkpoint(run, "phase2_evolution", 5)
    lines = describe_runs(out).splitlines()
    assert lines[0] == f"{run}  (base model: /m/base)"
    assert lines[1:] == [
        "  1. phase1_foundation: finished, 3 steps",
        f"       adapter     {run / 'phase1_foundation' / 'adapter'}",
        "  2. phase2_evolution: not finished",
        f"       checkpoint  {run / 'phase2_evolution' / 'checkpoint-5'}",
        "  3. phase3_pr_mastery: not finished",
    ]
    assert describe_runs(tmp_path / "none") == f"no run found under {tmp_path / 'none'}/\n"


def test_chat_run_dir_list_lists_that_run_only(tmp_path, capsys):
    """`chat RUN_DIR --list` describes RUN_DIR, not the newest runs under ./outputs (issue 19)."""

    out = tmp_path / "outputs"
    older = age(write_run(out / "older", Path("/m/base"), PHASES, PHASES[:1]), 60)
    write_run(out / "newer", Path("/m/base"), PHASES, PHASES)
    assert main(["chat", str(older), "--list", "--output-dir", str(out)]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(f"{older}  (base model: /m/base)") and "newer" not in listed
    assert main(["chat", str(tmp_path), "--list"]) == 2
    assert "is neither a run directory" in capsys.readouterr().err


def test_state_file_damage_is_reported_by_discovery(finished_run):
    (finished_run / "state.json").write_text(json.dumps({"finished_phases": [{"steps": 3}]}))
    with pytest.raises(UserError, match="the run's state is unreadable"):
        resolve_target(finished_run)
