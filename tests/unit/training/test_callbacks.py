import json

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from phased_cpt.run_dir import RunDir
from phased_cpt.training import callbacks
from phased_cpt.training.callbacks import ClockCallback, MetricsCallback
from phased_cpt.training.metrics import open_sink
from tests.conftest import metrics_config


class FakeClock:
    """Stands in for the `time` module of callbacks.py: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_tokens_per_second_counts_training_time_not_evaluation_or_saves(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(callbacks, "time", clock)
    run = RunDir(tmp_path)
    sink = open_sink(run, metrics_config(tensorboard=False, wandb=False), None)
    metrics = MetricsCallback(sink, "p", step_offset=10)
    clock_callback = ClockCallback(metrics)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state, control = TrainerState(), TrainerControl()
    metrics.on_train_begin(args, state, control)
    for _ in range(2):  # two steps of 0.05 s training, each followed by 0.3 s of evaluation and saving
        clock.sleep(0.05)
        state.global_step += 1
        state.num_input_tokens_seen += 1000
        metrics.on_step_end(args, state, control)
        clock.sleep(0.15)  # an evaluation inside a step-end callback
        clock_callback.on_step_end(args, state, control)
        clock.sleep(0.15)  # a checkpoint save
        clock_callback.on_save(args, state, control)
    metrics.on_log(args, state, control, logs={"loss": 2.0, "learning_rate": 1e-4})
    sink.close()
    (record,) = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert record["step"] == 12
    # 2000 tokens over 0.1 s of training, not over 0.7 s of wall time
    assert record["tokens_per_second"] == pytest.approx(2000 / 0.1)


def test_a_non_finite_value_is_never_logged_as_a_number(tmp_path, monkeypatch):
    """metrics.jsonl gets null; TensorBoard and W&B get nothing for it (issue 12 item 5)."""
    import math

    import wandb
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.wandb_records import history

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = RunDir(tmp_path)
    sink = open_sink(run, metrics_config(tensorboard=True, wandb=True), None)
    sink.log(1, "p", {"loss": 2.0, "grad_norm": 0.5})
    sink.log(2, "p", {"loss": math.nan, "perplexity": math.inf, "grad_norm": -math.inf, "skipped_steps": 1.0})
    sink.log(3, "p", {"loss": 1.5, "grad_norm": 0.4})
    sink.close()
    wandb.teardown()  # waits for W&B's service to finish writing the offline run file
    records = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert records[1] == {
        "step": 2,
        "phase": "p",
        "kind": "train",
        "loss": None,
        "perplexity": None,
        "grad_norm": None,
        "skipped_steps": 1.0,
    }
    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 3]
    assert "train/perplexity" not in events.Tags()["scalars"]
    assert all(math.isfinite(e.value) for tag in events.Tags()["scalars"] for e in events.Scalars(tag))
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/*.wandb")
    rows = {row["_step"]: row for row in history(run_file)}
    assert "train/loss" not in rows[2] and rows[2]["train/skipped_steps"] == 1.0
    assert [rows[s]["train/loss"] for s in (1, 3)] == [2.0, 1.5]
