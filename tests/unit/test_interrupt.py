"""Ctrl-C before a command takes it over (`phased_cpt.interrupt`): recorded wherever it lands.

The finalizer cases run in a subprocess: pytest replaces `sys.unraisablehook` with its own."""

from __future__ import annotations

import signal
import subprocess
import sys

from phased_cpt import interrupt

FINALIZER = """
import gc, signal, sys
from phased_cpt import interrupt

class Finalized:
    def __del__(self):
        {body}

with interrupt.guard():
    Finalized()
    gc.collect()
    print("requested" if interrupt.requested() else "not requested")
    try:
        interrupt.take_over()
    except KeyboardInterrupt:
        print("stopped")
"""


def run_finalizer(body: str) -> subprocess.CompletedProcess:
    code = FINALIZER.format(body=body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_in_a_finalizer_is_recorded_stops_the_command_and_prints_no_traceback():
    # the signal handler raises inside the finalizer, where the Ctrl-C landed
    done = run_finalizer("interrupt._on_interrupt(signal.SIGINT, None)")
    assert done.stdout.split() == ["requested", "stopped"]
    assert done.stderr == ""


def test_other_errors_in_finalizers_are_still_reported():
    done = run_finalizer("raise ValueError('broken finalizer')")
    assert done.stdout.split() == ["not", "requested"]
    assert "Exception ignored" in done.stderr and "broken finalizer" in done.stderr


def test_the_guard_restores_the_handlers():
    before = (signal.getsignal(signal.SIGINT), sys.unraisablehook)
    with interrupt.guard():
        assert signal.getsignal(signal.SIGINT) is interrupt._on_interrupt
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before
