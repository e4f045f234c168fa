"""User-facing errors.

A `UserError` is a mistake the user can fix (bad config, bad data, missing file). The CLI prints
its message, without a traceback, and exits with `exit_code` (2 by default). Anything else that
escapes is a bug in phased-cpt and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input; `str(err)` is the whole message shown to the user."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """One or more problems in the configuration, all reported together."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        head = f"{source}: " if source else ""
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{head}{len(problems)} config {noun}:"] + [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class DataError(UserError):
    """Bad training data: every line of the message names `file:line: reason`."""


class TrainingDiverged(UserError):
    """Training produced non-finite losses or weights; the message says what to change."""

    exit_code = 3
