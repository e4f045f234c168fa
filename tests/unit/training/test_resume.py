import json

import pytest

from phased_cpt.run_dir import COMPLETE_MARKER, RunDir, latest_checkpoint, list_checkpoints
from phased_cpt.training.checkpoints import CheckpointCallback
from phased_cpt.training.metrics import truncate_metrics
from phased_cpt.training.resume import config_differences, flatten, resume_point


def make_checkpoint(phase_dir, step, complete=True):
    path = phase_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (path / COMPLETE_MARKER).write_text(str(step))
    return path


def test_latest_checkpoint_ignores_partial_ones_and_sorts_by_step(tmp_path):
    for step, complete in ((3, True), (12, True), (9, True), (15, False)):
        make_checkpoint(tmp_path, step, complete)
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-9", "checkpoint-12"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-12"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_rotation_keeps_the_newest_complete_and_removes_partial_leftovers(tmp_path):
    for step in (3, 6, 9):
        make_checkpoint(tmp_path, step)
    partial = make_checkpoint(tmp_path, 7, complete=False)
    newest = make_checkpoint(tmp_path, 12)
    CheckpointCallback(tmp_path, save_total_limit=2).rotate(keep=newest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-12", "checkpoint-9"]
    assert not partial.exists()


def test_rotation_without_limit_keeps_every_complete_checkpoint(tmp_path):
    for step in (3, 6, 9):
        make_checkpoint(tmp_path, step)
    CheckpointCallback(tmp_path, save_total_limit=None).rotate(keep=tmp_path / "checkpoint-9")
    assert len(list_checkpoints(tmp_path)) == 3


def test_resume_point_counts_finished_phases(tmp_path):
    run = RunDir(tmp_path)
    run.write_state({"finished_phases": [{"name": "a", "steps": 10}, {"name": "b", "steps": 5}]})
    assert resume_point(run, "c") == (None, 15)
    make_checkpoint(tmp_path / "c", 4)
    checkpoint, step = resume_point(run, "c")
    assert checkpoint.name == "checkpoint-4" and step == 19


def test_config_differences_list_run_settings_and_allow_logging_ones():
    stored = {"context": {"max_tokens": 2048}, "training": {"logging_steps": 10, "lora": {"r": 8}},
              "wandb": {"project": "a"}, "phases": [{"name": "p", "epochs": 1, "description": "x"}]}
    current = {"context": {"max_tokens": 1024}, "training": {"logging_steps": 50, "lora": {"r": 16}},
               "wandb": {"project": "b"}, "phases": [{"name": "p", "epochs": 2, "description": "y"}]}
    assert config_differences(stored, current) == [
        "context.max_tokens: was 2048, now 1024",
        "phases.0.epochs: was 1, now 2",
        "training.lora.r: was 8, now 16",
    ]
    assert config_differences(stored, stored) == []


def test_flatten_addresses_list_items_by_index():
    assert flatten({"a": [{"b": 1}, {"b": 2}], "c": [1, 2]}) == {"a.0.b": 1, "a.1.b": 2, "c": [1, 2]}


def test_truncate_metrics_drops_records_after_the_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 1.0} for s in range(1, 8)] + [{"event": "phase_start", "step": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    truncate_metrics(path, 4)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3, 4, 0]


@pytest.mark.parametrize("missing", [True, False])
def test_truncate_metrics_tolerates_a_missing_file(tmp_path, missing):
    path = tmp_path / "metrics.jsonl"
    if not missing:
        path.write_text("")
    truncate_metrics(path, 3)
    assert not path.exists() or path.read_text() == ""
