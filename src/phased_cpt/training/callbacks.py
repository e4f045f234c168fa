"""TrainerCallbacks: how a phase reports progress. Behaviour is added to the HF Trainer only
through callbacks, never by patching it."""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phased_cpt.training.metrics import MetricsSink


class MetricsCallback(TrainerCallback):
    """Turns the Trainer's logs into global-step metrics: loss, perplexity, lr, grad norm, tokens/s."""

    def __init__(self, sink: MetricsSink, phase: str, step_offset: int) -> None:
        self.sink = sink
        self.phase = phase
        self.step_offset = step_offset
        self.latest: dict[str, float] = {}
        self._last_time = 0.0
        self._last_tokens = 0

    def on_train_begin(self, args, state: TrainerState, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen
        elapsed = max(now - self._last_time, 1e-9)
        values = {
            "loss": float(logs["loss"]),
            "perplexity": safe_exp(float(logs["loss"])),
            "learning_rate": float(logs.get("learning_rate", 0.0)),
            "tokens_per_second": (tokens - self._last_tokens) * args.world_size / elapsed,
            "epoch": float(logs.get("epoch", state.epoch or 0.0)),
        }
        if logs.get("grad_norm") is not None:
            values["grad_norm"] = float(logs["grad_norm"])
        self._last_time, self._last_tokens = now, tokens
        self.latest = values
        self.sink.log(self.step_offset + state.global_step, self.phase, values)


class ProgressCallback(TrainerCallback):
    """One console progress bar per phase: step/total, loss, perplexity, lr, tokens/s, ETA."""

    def __init__(self, phase: str, metrics: MetricsCallback) -> None:
        self.phase = phase
        self.metrics = metrics
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state: TrainerState, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc=self.phase, unit="step", dynamic_ncols=True)
            self.bar.update(state.global_step)

    def on_step_end(self, args, state: TrainerState, control, **kwargs):
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        latest = self.metrics.latest
        if latest:
            self.bar.set_postfix_str(
                f"loss={latest['loss']:.4f} ppl={latest['perplexity']:.2f} "
                f"lr={latest['learning_rate']:.2e} tok/s={latest['tokens_per_second']:.0f}",
                refresh=False,
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def safe_exp(loss: float) -> float:
    return math.exp(loss) if loss < 80 else math.inf
