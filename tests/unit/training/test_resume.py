import hashlib
import json

import pytest

from phased_cpt.errors import UserError
from phased_cpt.plans.job import flatten
from phased_cpt.run_dir import (
    COMPLETE_MARKER,
    FinishedPhase,
    RunDir,
    RunState,
    checkpoint_problem,
    latest_checkpoint,
    list_checkpoints,
    mark_complete,
)
from phased_cpt.training.checkpoints import CheckpointCallback
from phased_cpt.training.metrics import truncate_metrics
from phased_cpt.training.resume import config_differences, resume_point

RESUME_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth")


def make_checkpoint(phase_dir, step, complete=True):
    """A checkpoint with the files a resume needs (contents stand-ins; only their bytes are checked)."""
    path = phase_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in RESUME_FILES:
        (path / name).write_bytes(json.dumps({"global_step": step}).encode() if name.endswith(".json") else b"x" * 64)
    if complete:
        mark_complete(path, step)
    return path


def test_latest_checkpoint_ignores_partial_ones_and_sorts_by_step(tmp_path):
    for step, complete in ((3, True), (12, True), (9, True), (15, False)):
        make_checkpoint(tmp_path, step, complete)
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-9", "checkpoint-12"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-12"
    assert latest_checkpoint(tmp_path / "missing") is None


DAMAGE = {
    "optimizer.pt deleted": lambda c: (c / "optimizer.pt").unlink(),
    "scheduler.pt deleted": lambda c: (c / "scheduler.pt").unlink(),
    "adapter truncated": lambda c: (c / "adapter_model.safetensors").write_bytes(b"x" * 10),
    "optimizer.pt garbage of the same size": lambda c: (c / "optimizer.pt").write_bytes(b"y" * 64),
    "trainer_state.json garbage": lambda c: (c / "trainer_state.json").write_text("{not json"),
    "marker garbage": lambda c: (c / COMPLETE_MARKER).write_bytes(b"\xff\xfe"),
}
PROBLEMS = {
    "optimizer.pt deleted": "optimizer.pt is missing",
    "scheduler.pt deleted": "scheduler.pt is missing",
    "adapter truncated": "adapter_model.safetensors is 10 bytes, 64 were written",
    "optimizer.pt garbage of the same size": "optimizer.pt changed after it was written",
    "trainer_state.json garbage": "trainer_state.json is",
    "marker garbage": "its COMPLETE marker is unreadable",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_saying_why(tmp_path, damage, caplog):
    make_checkpoint(tmp_path, 3)
    latest = make_checkpoint(tmp_path, 6)
    assert checkpoint_problem(latest) is None
    DAMAGE[damage](latest)
    assert PROBLEMS[damage] in checkpoint_problem(latest)
    with caplog.at_level("WARNING", logger="phased_cpt.run_dir"):
        assert latest_checkpoint(tmp_path).name == "checkpoint-3"
    assert (
        f"{latest} is not usable: {PROBLEMS[damage]}" in caplog.text and "falling back to checkpoint-3" in caplog.text
    )


def test_no_usable_checkpoint_starts_the_phase_over_saying_so(tmp_path, caplog):
    only = make_checkpoint(tmp_path, 3)
    (only / "optimizer.pt").unlink()
    make_checkpoint(tmp_path, 6, complete=False)  # a save cut short: skipped without a warning
    with caplog.at_level("WARNING", logger="phased_cpt.run_dir"):
        assert latest_checkpoint(tmp_path) is None
    assert caplog.text.count("is not usable") == 1 and "the phase starts over" in caplog.text


def test_a_marker_without_a_file_list_still_needs_every_resume_file(tmp_path):
    """Markers written before the file list held only the step."""
    checkpoint = make_checkpoint(tmp_path, 3, complete=False)
    (checkpoint / COMPLETE_MARKER).write_text("3\n")
    assert checkpoint_problem(checkpoint) is None
    (checkpoint / "scheduler.pt").unlink()
    assert checkpoint_problem(checkpoint) == "scheduler.pt is missing"


def test_the_marker_lists_every_file_with_its_size_and_sha256(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 3)
    (checkpoint / "global_step3").mkdir()
    (checkpoint / "global_step3" / "shard.pt").write_bytes(b"z" * 5)
    mark_complete(checkpoint, 3)
    manifest = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    assert manifest["step"] == 3
    assert sorted(manifest["files"]) == sorted([*RESUME_FILES, "global_step3/shard.pt"])
    assert manifest["files"]["global_step3/shard.pt"] == {"bytes": 5, "sha256": hashlib.sha256(b"zzzzz").hexdigest()}


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
    run.write_state(RunState(finished_phases=[FinishedPhase(name="a", steps=10), FinishedPhase(name="b", steps=5)]))
    assert resume_point(run, "c") == (None, 15)
    make_checkpoint(tmp_path / "c", 4)
    assert resume_point(run, "c") == (None, 15)  # decided once per session
    checkpoint, step = resume_point(RunDir(tmp_path), "c")  # the next session
    assert checkpoint.name == "checkpoint-4" and step == 19


def test_config_differences_list_run_settings_and_allow_logging_ones():
    stored = {
        "context": {"max_tokens": 2048},
        "training": {"logging_steps": 10, "lora": {"r": 8}},
        "wandb": {"project": "a"},
        "phases": [{"name": "p", "epochs": 1, "description": "x"}],
    }
    current = {
        "context": {"max_tokens": 1024},
        "training": {"logging_steps": 50, "lora": {"r": 16}},
        "wandb": {"project": "b"},
        "phases": [{"name": "p", "epochs": 2, "description": "y"}],
    }
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


def test_input_differences_compare_the_set_of_files_not_only_their_content():
    """A glob that matches more or fewer files on resume is a difference (issue 29, severe 3)."""
    from phased_cpt.training.resume import input_differences

    stored = {"p.file:d/a.jsonl": "1", "p.file:d/b.jsonl": "2"}
    assert input_differences(stored, dict(stored)) == []
    assert input_differences({}, stored) == []  # a run from before input records
    more = input_differences(stored, stored | {"p.file:d/c.jsonl": "3"})
    assert more == ["phases.p.file:d/c.jsonl: a data file the run did not start with (a glob matches more files now?)"]
    fewer = input_differences(stored, {"p.file:d/a.jsonl": "1"})
    assert fewer == ["phases.p.file:d/b.jsonl: a data file the run started with is no longer among its files"]
    changed = input_differences(stored, {"p.file:d/a.jsonl": "1", "p.file:d/b.jsonl": "9"})
    assert changed == ["phases.p.file:d/b.jsonl: the file's content changed since the run started"]


def test_resume_refuses_a_glob_that_matches_other_files_now(tmp_path, monkeypatch):
    """The run started on two files of `d/*.jsonl`; a third one appeared (issue 29, severe 3)."""
    from phased_cpt.config import load_config
    from phased_cpt.training.resume import resume_run, start_run
    from tests.conftest import write_jsonl

    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        write_jsonl(tmp_path / "d" / f"{name}.jsonl", [f"{name} = {i}" for i in range(4)])
    (tmp_path / "c.yaml").write_text("model: {name: some/model}\nphases: [{name: p, file: 'd/*.jsonl'}]\n")
    run = start_run(load_config(tmp_path / "c.yaml")[0])
    run.release_lock()
    resume_run(load_config(tmp_path / "c.yaml")[0], str(run.path)).release_lock()  # unchanged: resumes
    write_jsonl(tmp_path / "d" / "c.jsonl", ["c = 1"])
    with pytest.raises(UserError, match=r"phases\.p\.file:.*c\.jsonl: a data file the run did not start with"):
        resume_run(load_config(tmp_path / "c.yaml")[0], "latest")
    (tmp_path / "d" / "c.jsonl").unlink()
    (tmp_path / "d" / "b.jsonl").unlink()
    with pytest.raises(UserError, match=r"b\.jsonl: a data file the run started with is no longer among its files"):
        resume_run(load_config(tmp_path / "c.yaml")[0], "latest")


def test_a_run_whose_state_an_earlier_version_wrote_resumes(tmp_path, tiny_model_dir):
    """state.json as the version before the typed records wrote it (and, first, as the first
    version did, with no inputs): the run resumes after its finished phase, and the recorded inputs
    are still compared."""
    from phased_cpt.config.loading import load_config
    from phased_cpt.training.resume import input_fingerprints, resume_run, start_run
    from tests.conftest import write_jsonl
    from tests.e2e.cli import tiny_run_config, write_yaml

    files = [(name, write_jsonl(tmp_path / f"{name}.jsonl", [f"def {name}(): pass"]), 1) for name in ("p1", "p2")]
    data = tiny_run_config(tiny_model_dir, files)
    data["output"]["dir"] = str(tmp_path / "outputs")
    cfg, _ = load_config(write_yaml(tmp_path / "run.yaml", data))
    run = start_run(cfg)
    run.release_lock()
    previous = {
        "finished_phases": [
            {
                "name": "p1",
                "steps": 7,
                "train_loss": 2.5,
                "tokens": 900,
                "seconds": 3.25,
                "adapter_fingerprint": "ab" * 32,
                "adapter_file_sha256": None,
            }
        ],
        "inputs": input_fingerprints(cfg),
    }
    first = {"finished_phases": [{"name": "p1", "steps": 7, "train_loss": 2.5, "adapter_sha256": "ab" * 32}]}
    for state in (previous, first):
        run.state_file.write_text(json.dumps(state, indent=2) + "\n")
        resumed = resume_run(cfg, str(run.path))
        assert [p.name for p in resumed.pending_phases(cfg.phases)] == ["p2"]
        assert resume_point(resumed, "p2") == (None, 7)
        resumed.release_lock()
        assert json.loads(run.state_file.read_text()) == state  # untouched until a phase finishes
    previous["inputs"]["p1.file"] = "00" * 32
    run.state_file.write_text(json.dumps(previous))
    with pytest.raises(UserError, match=r"phases.p1.file: the file's content changed"):
        resume_run(cfg, str(run.path))
