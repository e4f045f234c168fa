"""User-facing errors, and keeping secrets out of them.

A `UserError` is a mistake the user can fix (bad config, bad data, missing file). The CLI prints
its message, without a traceback, and exits with `exit_code` (2 by default). Anything else that
escapes is a bug in phased-cpt and keeps its traceback.

A message never shows a secret: a name looks secret when one of its `_`-separated words is KEY,
TOKEN, SECRET, PASSWORD, ... (`WANDB_API_KEY`, `HF_TOKEN`, `wandb.api_key`; not
`TOKENIZERS_PARALLELISM`), and `redact` replaces the value of every such environment variable
(8 characters or longer) with `<value of $NAME>`, so a `${WANDB_API_KEY}` put in the wrong key is
reported without its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_WORDS = frozenset({
    "KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "CREDENTIAL",
    "CREDENTIALS", "AUTH", "PRIVATE",
})
MIN_SECRET_CHARS = 8
"""Shorter values are not masked: they would mask ordinary words and numbers in messages."""


def is_secret_name(name: str) -> bool:
    """`WANDB_API_KEY`, `wandb.api_key`, `hf-token` look secret; `TOKENIZERS_PARALLELISM` does not."""
    return any(word in SECRET_WORDS for word in re.split(r"[^A-Za-z0-9]+", name.upper()))


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """value -> variable name, for every secret-looking environment variable with a long enough value."""
    environ = os.environ if environ is None else environ
    return {value: name for name, value in environ.items()
            if is_secret_name(name) and len(value) >= MIN_SECRET_CHARS}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with each secret-looking environment variable's value replaced by `<value of $NAME>`."""
    for value, name in sorted(secret_values(environ).items(), key=lambda item: -len(item[0])):
        if value in text:
            text = text.replace(value, f"<value of ${name}>")
    return text


class UserError(Exception):
    """A problem in the user's input; `str(err)` is the whole message shown to the user, with the
    values of secret-looking environment variables masked (`redact`)."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(redact(message))
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """One or more problems in the configuration, all reported together."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = [redact(p) for p in problems]
        head = f"{source}: " if source else ""
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{head}{len(problems)} config {noun}:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class DataError(UserError):
    """Bad training data: every line of the message names `file:line: reason`."""


class TrainingDiverged(UserError):
    """Training produced non-finite losses or weights; the message says what to change."""

    exit_code = 3
