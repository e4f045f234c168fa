"""`phased-cpt train` end to end on a tiny offline model: files, adapters, metrics, carry-over."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import REPO, assert_user_error, run_cli, tiny_run_config, write_yaml
from tests.wandb_records import history

pytestmark = pytest.mark.e2e
FAKE_KEY = "fakekey-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 16))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 40))
    cfg = tiny_run_config(
        tiny_model_dir,
        [("phase1_foundation", p1, 3), ("phase2_evolution", p2, 1)],
        wandb={"enabled": True, "project": "e2e", "api_key": "${WANDB_API_KEY}"},
    )
    config = write_yaml(work / "config.yaml", cfg)
    result = run_cli(["train", str(config)], cwd=work, env={"WANDB_API_KEY": FAKE_KEY})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (work / "outputs").iterdir()
    return run_dir, result


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_layout(trained_run):
    run_dir, _ = trained_run
    assert run_dir.name.startswith("e2e-")
    for name in ("config.resolved.yaml", "metrics.jsonl", "state.json", "tensorboard"):
        assert (run_dir / name).exists(), name
    for phase in ("phase1_foundation", "phase2_evolution"):
        assert (run_dir / phase / "adapter" / "adapter_model.safetensors").is_file()
        assert (run_dir / phase / "adapter" / "adapter_config.json").is_file()
        assert list((run_dir / phase).glob("checkpoint-*")), f"no checkpoint in {phase}"
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["name"] for p in state["finished_phases"]] == ["phase1_foundation", "phase2_evolution"]


def test_every_phase_adapter_loads_with_peft(trained_run, tiny_model_dir):
    run_dir, _ = trained_run
    for phase in ("phase1_foundation", "phase2_evolution"):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = PeftModel.from_pretrained(base, run_dir / phase / "adapter")
        saved = load_file(run_dir / phase / "adapter" / "adapter_model.safetensors")
        lora_b = {k: v for k, v in saved.items() if "lora_B" in k}
        assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # trained, not the zero init
        loaded = dict(model.named_parameters())
        some_key = next(iter(lora_b))
        in_model = some_key.replace(".weight", ".default.weight")
        assert torch.equal(loaded[in_model], lora_b[some_key])


def sha_of_adapter_file(path: Path) -> str:
    tensors = load_file(path)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_phase2_starts_from_phase1_final_weights(trained_run):
    run_dir, _ = trained_run
    events = {(r["event"], r.get("phase")): r for r in metrics(run_dir) if "event" in r}
    phase1_file = sha_of_adapter_file(run_dir / "phase1_foundation" / "adapter" / "adapter_model.safetensors")
    phase2_file = sha_of_adapter_file(run_dir / "phase2_evolution" / "adapter" / "adapter_model.safetensors")
    assert events[("phase_start", "phase2_evolution")]["adapter_fingerprint"] == phase1_file
    assert events[("phase_end", "phase1_foundation")]["adapter_fingerprint"] == phase1_file
    assert events[("phase_end", "phase2_evolution")]["adapter_fingerprint"] == phase2_file
    assert phase1_file != phase2_file  # phase 2 trained further
    assert events[("phase_start", "phase1_foundation")]["adapter_fingerprint"] != phase1_file


def test_the_adapter_file_sha256_is_what_sha256sum_prints(trained_run):
    """`adapter_fingerprint` hashes the tensors; `adapter_file_sha256` is the saved file's own
    sha256, in metrics.jsonl and state.json (issue 19 item 8)."""
    run_dir, _ = trained_run
    events = {(r["event"], r.get("phase")): r for r in metrics(run_dir) if "event" in r}
    state = {p["name"]: p for p in json.loads((run_dir / "state.json").read_text())["finished_phases"]}
    for phase in ("phase1_foundation", "phase2_evolution"):
        file = run_dir / phase / "adapter" / "adapter_model.safetensors"
        sha256sum = hashlib.sha256(file.read_bytes()).hexdigest()
        assert events[("phase_end", phase)]["adapter_file_sha256"] == state[phase]["adapter_file_sha256"] == sha256sum
        assert state[phase]["adapter_fingerprint"] == sha_of_adapter_file(file) != sha256sum
        assert "adapter_sha256" not in events[("phase_end", phase)] and "adapter_sha256" not in state[phase]


def test_losses_are_finite_and_fall_in_phase1(trained_run):
    run_dir, _ = trained_run
    records = [r for r in metrics(run_dir) if r.get("kind") == "train"]
    assert all(math.isfinite(r["loss"]) for r in records)
    for r in records:
        assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
        assert r["tokens_per_second"] > 0 and r["learning_rate"] >= 0
    phase1 = [r["loss"] for r in records if r["phase"] == "phase1_foundation"]
    assert len(phase1) >= 6
    assert sum(phase1[-3:]) / 3 < sum(phase1[:3]) / 3 - 0.5
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert {r["phase"] for r in records} == {"phase1_foundation", "phase2_evolution"}


def test_tensorboard_holds_the_scalars_on_one_monotonic_step(trained_run):
    run_dir, _ = trained_run
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("train/loss", "train/perplexity", "train/learning_rate", "train/tokens_per_second"):
        assert tag in tags, tags
    loss = acc.Scalars("train/loss")
    logged = [r for r in metrics(run_dir) if r.get("kind") == "train"]
    assert [e.step for e in loss] == [r["step"] for r in logged]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged])
    assert "phase2_evolution/train/loss" in tags
    assert acc.Scalars("phase2_evolution/train/loss")[0].step > acc.Scalars("phase1_foundation/train/loss")[-1].step


def test_wandb_offline_run_and_no_key_anywhere(trained_run):
    run_dir, result = trained_run
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1  # one W&B run for the whole training run
    (run_file,) = offline_runs[0].glob("*.wandb")
    rows = [row for row in history(run_file) if "train/loss" in row]
    logged = [r for r in metrics(run_dir) if r.get("kind") == "train"]
    assert [row["_step"] for row in rows] == [r["step"] for r in logged]  # global, monotonic across phases
    assert {row["phase"] for row in rows} == {"phase1_foundation", "phase2_evolution"}
    assert [row["train/loss"] for row in rows] == pytest.approx([r["loss"] for r in logged])
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in result.stderr + result.stdout


def test_console_shows_plan_and_progress(trained_run):
    _, result = trained_run
    assert "phase1_foundation" in result.stderr and "rows" in result.stderr
    assert "loss=" in result.stderr and "ppl=" in result.stderr and "tok/s=" in result.stderr
    # stderr is a pipe here, as in a log file: progress as log lines, no progress-bar redraws
    assert "\r" not in result.stderr and "step/s]" not in result.stderr and "batch/s]" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("phase1_foundation: step ")]
    assert progress and all("loss=" in line and "tok/s=" in line for line in progress), result.stderr[-2000:]


# --- user mistakes: exit 2, a message, no traceback, nothing trained --------------------------


def test_broken_jsonl_line_stops_before_training(tiny_model_dir, tmp_path):
    good = write_jsonl(tmp_path / "p1.jsonl", ["fine text"] * 3)
    bad = tmp_path / "p2.jsonl"
    bad.write_text('{"training_content": "ok"}\n{"training_content": "broken\n')
    config = write_yaml(tmp_path / "c.yaml", tiny_run_config(tiny_model_dir, [("a", good, 1), ("b", bad, 1)]))
    result = run_cli(["train", str(config)], cwd=tmp_path)
    assert_user_error(result, f"{bad}:2: invalid JSON")
    assert not (tmp_path / "outputs").exists()


def test_unknown_key_override_exits_2_naming_the_key(tmp_path):
    result = run_cli(["train", str(REPO / "config.yaml"), "--set", "training.lora.rnak=8"], cwd=tmp_path)
    assert_user_error(result, "training.lora.rnak: unknown key (did you mean 'r'?)")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "does-not-exist.yaml"], "does not exist"),
        (["validate", "does-not-exist.yaml"], "does not exist"),
        (
            ["train", "--set", "model.name=/nonexistent/model"],
            "cannot load the tokenizer of model.name '/nonexistent/model'",
        ),
        (
            ["train", "--set", "training.lora.target_modules=[nope_proj]"],
            "training.lora.target_modules: ['nope_proj'] not found",
        ),
        (["train", "--set", "training.learning_rate=fast"], "training.learning_rate:"),
    ],
)
def test_user_mistakes_get_a_message_not_a_traceback(tmp_path, args, expected):
    result = run_cli(args, cwd=tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_user_error(result, expected)


def test_help_on_every_subcommand(tmp_path):
    commands = ["train", "validate", "plan", "report", "chat", "merge", "launch", "doctor", "data", "data from-git"]
    for args in [["--help"]] + [[*command.split(), "--help"] for command in commands]:
        result = run_cli(args, cwd=tmp_path)
        assert result.returncode == 0 and "usage: phased-cpt" in result.stdout, args
    assert "--set" in run_cli(["train", "--help"], cwd=tmp_path).stdout
    assert "--print-translated" in run_cli(["validate", "--help"], cwd=tmp_path).stdout


def test_eval_metrics_and_forgetting_matrix(trained_run):
    run_dir, _ = trained_run
    evals = [r for r in metrics(run_dir) if r.get("kind") == "eval"]
    assert {r["phase"] for r in evals} == {"phase1_foundation", "phase2_evolution"}
    assert all(math.isfinite(r["loss"]) and r["perplexity"] == pytest.approx(math.exp(r["loss"])) for r in evals)
    matrix = json.loads((run_dir / "eval" / "forgetting.json").read_text())
    assert matrix["columns"] == ["phase1_foundation", "phase2_evolution"]
    assert [row["after"] for row in matrix["rows"]] == ["base", "phase1_foundation", "phase2_evolution"]
    values = matrix["perplexity"]
    assert len(values) == 3 and all(len(row) == 2 and all(math.isfinite(v) for v in row) for row in values)
    # the phase-end eval record equals the matrix entry of that phase on its own data
    end_of_phase1 = [r for r in evals if r["phase"] == "phase1_foundation"][-1]
    assert end_of_phase1["perplexity"] == pytest.approx(values[1][0])
    for name in ("forgetting.md", "forgetting.png", "curves.png", "report.md"):
        assert (run_dir / "eval" / name).stat().st_size > 0


def test_report_command_prints_and_writes_the_summary(trained_run, tmp_path):
    run_dir, _ = trained_run
    (run_dir / "eval" / "report.md").unlink()
    result = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = (run_dir / "eval" / "report.md").read_text()
    assert report == result.stdout.rstrip("\n") or report.rstrip() == result.stdout.rstrip()
    state = json.loads((run_dir / "state.json").read_text())
    for phase in state["finished_phases"]:
        assert f"| {phase['name']} | {phase['steps']} |" in report
    assert "Forgetting matrix" in report and "| base |" in report
    missing = run_cli(["report", str(tmp_path)], cwd=tmp_path)
    assert_user_error(missing, "not a phased-cpt run directory")


def test_no_silent_minutes_the_report_splits_the_wall_time(trained_run):
    """Every evaluation shows progress, and the report's total is the run's wall time, with
    training, evaluation and data preparation on their own (the forgetting matrix once took
    3 of a run's 4.5 minutes while the report said 1m14s)."""
    run_dir, result = trained_run
    records = metrics(run_dir)
    (start,) = [r for r in records if r.get("event") == "session_start"]
    (end,) = [r for r in records if r.get("event") == "session_end"]
    evaluations = [r for r in records if r.get("event") == "evaluation"]
    assert [(e["what"], e["after"]) for e in evaluations if e["what"] == "forgetting_matrix"] == [
        ("forgetting_matrix", "base"),
        ("forgetting_matrix", "phase1_foundation"),
        ("forgetting_matrix", "phase2_evolution"),
    ]
    assert all(e["seconds"] > 0 for e in evaluations) and start["preparation_seconds"] > 0
    for cell in ("base model on phase1_foundation", "after phase1_foundation on phase2_evolution"):
        assert cell in result.stderr  # one line per matrix cell
    assert "data prepared in" in result.stderr or "reusing prepared data" in result.stderr
    line = next(x for x in (run_dir / "eval" / "report.md").read_text().splitlines() if x.startswith("Wall time: "))
    parts = dict(part.strip().rsplit(" ", 1) for part in line.split(": ", 2)[2].split(" (")[0].split(","))

    def seconds(text: str) -> int:
        minutes, secs = text.rstrip("s").split("m")[-2:]
        return int(minutes) * 60 + int(secs)

    total = seconds(line.split(": ")[1])
    assert set(parts) == {"training", "evaluation", "data preparation", "other"}
    assert abs(sum(seconds(v) for v in parts.values()) - total) <= 2  # rounding of each part
    assert total == pytest.approx(end["time"] - start["time"], abs=1.0)
    assert seconds(parts["evaluation"]) == pytest.approx(sum(e["seconds"] for e in evaluations), abs=1.0)


def test_nonfinite_losses_stop_the_phase_after_the_configured_count(tiny_model_dir, tmp_path):
    broken = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        broken.model.norm.weight[0] = float("nan")  # every loss is NaN from the first step
    broken.save_pretrained(tmp_path / "broken")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "broken" / name).write_bytes((tiny_model_dir / name).read_bytes())
    data = write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", 16))
    cfg = tiny_run_config(
        tmp_path / "broken",
        [("only", data, 5)],
        training={"save_steps": 1, "max_nonfinite_losses": 3, "gradient_accumulation_steps": 1},
    )
    result = run_cli(["train", str(write_yaml(tmp_path / "c.yaml", cfg))], cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "3 consecutive non-finite losses or gradient norms, the last at step 3" in result.stderr
    assert "training.max_nonfinite_losses=3" in result.stderr
    (run_dir,) = (tmp_path / "outputs").iterdir()
    kept = sorted((run_dir / "only").glob("checkpoint-*/COMPLETE"))
    assert [m.parent.name for m in kept] == ["checkpoint-1", "checkpoint-2"][-len(kept) :] and kept
    weights = load_file(kept[-1].parent / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())  # NaN losses contributed no gradient
    assert not (run_dir / "only" / "adapter").exists()
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r.get("kind") == "train"]
    assert train and all(r["loss"] is None and r["perplexity"] is None and r["skipped_steps"] == 1 for r in train)


def test_diverging_weights_never_become_the_last_good_checkpoint(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", 16))
    cfg = tiny_run_config(
        tiny_model_dir,
        [("only", data, 20)],
        training={
            "learning_rate": 1e4,
            "max_grad_norm": 0.0,
            "save_steps": 1,
            "max_nonfinite_losses": 2,
            "gradient_checkpointing": False,
        },
    )
    result = run_cli(["train", str(write_yaml(tmp_path / "c.yaml", cfg))], cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "non-finite" in result.stderr
    (run_dir,) = (tmp_path / "outputs").iterdir()
    for marker in (run_dir / "only").glob("checkpoint-*/COMPLETE"):
        weights = load_file(marker.parent / "adapter_model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values()), f"{marker.parent} has non-finite weights"
    assert not (run_dir / "only" / "adapter").exists()
