"""Ctrl-C before a command takes it over: the command stops with exit 130 and one line.

Loading a 32B model takes minutes, and a user who presses Ctrl-C then expects the command to
stop. Python turns SIGINT into a `KeyboardInterrupt` wherever the main thread happens to be, and
some libraries catch it there: transformers' lazy imports re-raise it as a `ModuleNotFoundError`,
and an optional import guarded by `except ImportError` then swallows it, so loading went on and
the chat prompt appeared as if nothing was pressed. `guard()` records every interrupt, so the
CLI can tell an interrupt in disguise from a real error, and `take_over()` re-raises one that was
swallowed before a command installs its own Ctrl-C behaviour (the chat prompt: exit 0 or stop
the answer; training: checkpoint at the next step).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = False


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def requested() -> bool:
    """True once Ctrl-C was pressed inside `guard()`, even if a library swallowed the interrupt."""
    return _requested


@contextmanager
def guard() -> Iterator[None]:
    """Record every Ctrl-C while a command runs; restore the previous handler afterwards.

    A Ctrl-C that lands while Python runs a finalizer (`__del__`, a weakref callback) cannot
    propagate from there: Python would print it as "Exception ignored in ..." with a traceback.
    It is recorded like any other (`requested()`), and printed by nobody: the command reports it
    once, as one line (`take_over()`, `cli.main`)."""
    global _requested
    _requested = False
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    previous_hook = sys.unraisablehook

    def quiet_interrupts(unraisable) -> None:
        if not (isinstance(unraisable.exc_type, type) and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def take_over() -> None:
    """Called where a command starts handling Ctrl-C itself: an interrupt that a library swallowed
    during loading stops the command now; after this, Ctrl-C is Python's `KeyboardInterrupt`."""
    global _requested
    if _requested:
        raise KeyboardInterrupt
    if signal.getsignal(signal.SIGINT) is _on_interrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)
