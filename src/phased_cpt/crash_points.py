"""Named points where a test can kill the process, to prove a run survives a crash there.

    PHASED_CPT_CRASH_AT=phase_start:phase2_evolution phased-cpt train config.yaml

makes the process SIGKILL itself the first time it reaches `crash_point("phase_start",
"phase2_evolution")`: no `finally`, no flush, no atexit, exactly as a preempted job or the OOM
killer ends it. The value is `NAME` (any detail) or `NAME:DETAIL`. Unset, `crash_point` returns
at once and does nothing; only tests and `scripts/kill_resume_check.py` set it.

The points, in the order a run reaches them (DETAIL in brackets):

    data_prepared       [phase]        a cache entry is built in its temporary directory, not yet committed
    phase_start         [phase]        the phase_start event is logged; no step trained yet
    checkpoint_written  [phase/step]   the Trainer wrote checkpoint-N; it is not marked COMPLETE yet
    phase_evaluation    [phase]        the final adapter is written; the phase-end evaluation begins
    forgetting_row      [phase]        the phase's forgetting-matrix row is saved; phase_end not logged yet
    state_update        [phase]        phase_end is logged; state.json does not list the phase yet
    report              []             curves.png is drawn; report.md is not written yet

A leaf: it imports nothing of phased-cpt.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_ENV = "PHASED_CPT_CRASH_AT"


def crash_point(name: str, detail: str = "") -> None:
    """SIGKILL this process if `PHASED_CPT_CRASH_AT` names this point (see the module docstring)."""
    wanted = os.environ.get(CRASH_AT_ENV)
    if wanted and wanted in (name, f"{name}:{detail}"):
        os.kill(os.getpid(), signal.SIGKILL)
