"""training/signals.py: SIGTERM / SIGINT only set a flag while training runs (a second Ctrl-C stops at
once), the callback saves and stops at the next step boundary, and the handlers are restored after."""

from __future__ import annotations

import os
import signal

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from phased_cpt.training.signals import GracefulStopCallback, StopRequest, TrainingInterrupted, stop_on_signals


def test_a_signal_during_training_is_a_request_not_an_exit_and_the_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as request:
        assert not request
        os.kill(os.getpid(), signal.SIGTERM)
        assert request and request.signum == signal.SIGTERM
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_second_ctrl_c_stops_at_once():
    request = StopRequest()
    request._handle(signal.SIGINT, None)
    assert request.signum == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        request._handle(signal.SIGINT, None)


def test_the_callback_saves_and_stops_only_once_a_stop_was_requested(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    request = StopRequest()
    callback = GracefulStopCallback(request)
    control = callback.on_step_end(args, TrainerState(), TrainerControl())
    assert not control.should_save and not control.should_training_stop
    request.signum = signal.SIGTERM
    control = callback.on_step_end(args, TrainerState(), TrainerControl())
    assert control.should_save and control.should_training_stop


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_exit_code_is_128_plus_the_signal(tmp_path, signum, code):
    err = TrainingInterrupted(tmp_path, signum)
    assert err.exit_code == code and err.run_path == tmp_path
