"""TrainerCallbacks: how a phase reports progress (metrics, the progress bar, evaluation every
`eval_steps`). The recipe lists every callback of a phase in the order they run
(`recipe.PhasedRecipe.callbacks`). Training behaviour is changed through callbacks like these and the Trainer's
documented override points (`phase.PhaseTrainer.compute_loss`), never by patching the Trainer."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phased_cpt.distributed import is_main_process
from phased_cpt.evaluation.perplexity import EvalResult, perplexity_of
from phased_cpt.training.metrics import MetricsSink
from phased_cpt.training.throughput import Throughput, phase_throughput

logger = logging.getLogger(__name__)


class MetricsCallback(TrainerCallback):
    """Turns the Trainer's logs into global-step metrics: loss, perplexity, lr, grad norm, tokens/s,
    useful model TFLOP/s per device and MFU (see `throughput.py`).

    tokens/s and MFU are over training time only: the clock runs from the end of the previous
    step's evaluation and checkpoint save (`ClockCallback`, placed after both) to the end of this
    step, so they are not counted as training.
    """

    def __init__(self, sink: MetricsSink, phase: str, step_offset: int) -> None:
        self.sink = sink
        self.phase = phase
        self.step_offset = step_offset
        self.latest: dict[str, float] = {}
        self._ready = 0.0
        self._train_seconds = 0.0
        self._last_tokens = 0
        self.throughput: Throughput | None = None
        """Useful FLOPs per token and the device peak: adds `model_tflops_per_second`, and `mfu` where
        the device's peak is known (a GPU in `phased_cpt.gpus`; never on a CPU)."""

    def on_save(self, args, state: TrainerState, control, **kwargs):
        self.sink.sync()  # the metrics up to a checkpoint are on disk before a resume can start from it

    def on_train_begin(self, args, state: TrainerState, control, model=None, train_dataloader=None, **kwargs):
        if is_main_process() and model is not None and train_dataloader is not None:
            self.throughput = phase_throughput(model, train_dataloader.dataset, args)
            peak = self.throughput.peak
            self.sink.event(
                "throughput",
                phase=self.phase,
                flops_per_token=self.throughput.flops_per_token,
                peak_flops_per_second=peak.flops_per_second if peak else None,
                peak_source=peak.source if peak else None,
            )
        self._ready = time.perf_counter()
        self._train_seconds = 0.0
        self._last_tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state: TrainerState, control, **kwargs):
        self._train_seconds += time.perf_counter() - self._ready

    def restart_clock(self) -> None:
        self._ready = time.perf_counter()

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not is_main_process() or not logs or "loss" not in logs:
            return
        tokens = state.num_input_tokens_seen
        elapsed = max(self._train_seconds, 1e-9)
        values = {
            "loss": float(logs["loss"]),
            "perplexity": perplexity_of(float(logs["loss"])),
            "learning_rate": float(logs.get("learning_rate", 0.0)),
            # num_input_tokens_seen is already summed over all processes by the Trainer
            "tokens_per_second": (tokens - self._last_tokens) / elapsed,
            "epoch": float(logs.get("epoch", state.epoch or 0.0)),
        }
        if self.throughput is not None:
            values |= self.throughput.values(values["tokens_per_second"] / args.world_size)
        if logs.get("grad_norm") is not None:
            values["grad_norm"] = float(logs["grad_norm"])
        if "skipped_steps" in logs:  # optimizer steps skipped for a non-finite loss or gradient (NonFiniteGuard)
            values["skipped_steps"] = int(logs["skipped_steps"])
        self._train_seconds, self._last_tokens = 0.0, tokens
        self.latest = values
        self.sink.log(self.step_offset + state.global_step, self.phase, values)


class ClockCallback(TrainerCallback):
    """Restarts `MetricsCallback`'s training clock once a step's evaluation and checkpoint save are
    done: placed after `EvalCallback` and `CheckpointCallback` (the recipe's list). The callbacks
    after it (`SeedAtTrainBegin`, `NonFiniteGuard`) take no time at a step's end."""

    def __init__(self, metrics: MetricsCallback) -> None:
        self.metrics = metrics

    def on_step_end(self, args, state, control, **kwargs):
        self.metrics.restart_clock()

    def on_save(self, args, state, control, **kwargs):
        self.metrics.restart_clock()

    def on_log(self, args, state, control, **kwargs):
        self.metrics.restart_clock()


class ProgressCallback(TrainerCallback):
    """One console progress bar per phase: step/total, loss, perplexity, lr, tokens/s, MFU, ETA.
    When stderr is not a terminal (a log file, a pipe), no bar: one log line per logged step
    instead (`training.logging_steps`), so a log file holds lines, not thousands of redraws."""

    def __init__(self, phase: str, metrics: MetricsCallback) -> None:
        self.phase = phase
        self.metrics = metrics
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state: TrainerState, control, **kwargs):
        if is_main_process():
            # disable=None: tqdm draws nothing when its stream (stderr) is not a terminal
            self.bar = tqdm(total=state.max_steps, desc=self.phase, unit="step", dynamic_ncols=True, disable=None)
            self.bar.update(state.global_step)

    def on_step_end(self, args, state: TrainerState, control, **kwargs):
        if self.bar is None or self.bar.disable:
            return
        self.bar.update(state.global_step - self.bar.n)
        if self.metrics.latest:
            self.bar.set_postfix_str(self.status(), refresh=False)

    def on_log(self, args, state: TrainerState, control, logs=None, **kwargs):
        if self.bar is not None and self.bar.disable and logs and "loss" in logs and self.metrics.latest:
            logger.info("%s: step %d/%d %s", self.phase, state.global_step, state.max_steps, self.status())

    def status(self) -> str:
        """The latest logged values, as the bar's postfix and the log line show them."""
        latest = self.metrics.latest
        return (
            f"loss={_shown(latest['loss'], '.4f')} ppl={_shown(latest['perplexity'], '.2f')} "
            f"lr={latest['learning_rate']:.2e} tok/s={latest['tokens_per_second']:.0f}"
            + (f" mfu={latest['mfu']:.1%}" if "mfu" in latest else "")
            + (f" skipped={latest['skipped_steps']}" if latest.get("skipped_steps") else "")
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _shown(value: float, spec: str) -> str:
    """A value for the progress bar; a NaN/inf is shown as such, never as a number."""
    return format(value, spec) if math.isfinite(value) else "non-finite"


class EvalCallback(TrainerCallback):
    """Evaluates on the current phase's held-out rows every `eval_steps` optimizer steps."""

    def __init__(
        self,
        evaluate: Callable[[], EvalResult | None],
        eval_steps: int | None,
        sink: MetricsSink,
        phase: str,
        step_offset: int,
    ) -> None:
        self.evaluate = evaluate
        self.eval_steps = eval_steps
        self.sink = sink
        self.phase = phase
        self.step_offset = step_offset

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if self.eval_steps and state.global_step % self.eval_steps == 0 and state.global_step < state.max_steps:
            result = self.evaluate()
            self.sink.log(
                self.step_offset + state.global_step,
                self.phase,
                {"loss": result.loss, "perplexity": result.perplexity},
                kind="eval",
            )
