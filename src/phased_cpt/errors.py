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

import errno
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SECRET_WORDS = frozenset(
    {
        "KEY",
        "APIKEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PASSPHRASE",
        "CREDENTIAL",
        "CREDENTIALS",
        "AUTH",
        "PRIVATE",
    }
)
MIN_SECRET_CHARS = 8
"""Shorter values are not masked: they would mask ordinary words and numbers in messages."""


def is_secret_name(name: str) -> bool:
    """`WANDB_API_KEY`, `wandb.api_key`, `hf-token` look secret; `TOKENIZERS_PARALLELISM` does not."""
    return any(word in SECRET_WORDS for word in re.split(r"[^A-Za-z0-9]+", name.upper()))


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """value -> variable name, for every secret-looking environment variable with a long enough value."""
    environ = os.environ if environ is None else environ
    return {value: name for name, value in environ.items() if is_secret_name(name) and len(value) >= MIN_SECRET_CHARS}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with each secret-looking environment variable's value replaced by `<value of $NAME>`."""
    for value, name in sorted(secret_values(environ).items(), key=lambda item: -len(item[0])):
        if value in text:
            text = text.replace(value, f"<value of ${name}>")
    return text


def redact_data(data: Any, environ: Mapping[str, str] | None = None) -> Any:
    """`redact` on every string (keys too) of nested dicts and lists."""
    if isinstance(data, dict):
        return {redact_data(k, environ): redact_data(v, environ) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_data(v, environ) for v in data]
    return redact(data, environ) if isinstance(data, str) else data


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


class StorageError(UserError):
    """A write failed because a disk is full or a directory is not writable. `run_path`: the run
    that can be resumed once there is space (None when no run was started yet)."""

    def __init__(self, message: str, run_path: Path | None = None) -> None:
        super().__init__(message)
        self.run_path = run_path


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
SHORT_WRITE_PATTERNS = (
    "No space left on device",
    "os error 28",
    "unexpected pos",
    "file write failed",
    "requested and",
)
"""How a full disk reads when the writer lost the errno: safetensors ("os error 28"), torch.save
("[enforce fail at inline_container.cc] unexpected pos"), numpy ("N requested and M written")."""
NEARLY_FULL_BYTES = 64 << 20


def storage_problem(err: BaseException, where: Path) -> str | None:
    """What went wrong, when `err` (or an error it came from) is a full disk or a refused write
    under `where`; None for any other error. A write error without an errno counts as a full disk
    only when `where`'s file system is (nearly) full."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS | UNWRITABLE_ERRNOS:
            path = Path(e.filename) if e.filename else where
            if e.errno in FULL_ERRNOS:
                return f"no space left on the device of {path} ({free_space(where)})"
            return f"{path} is not writable ({e.strerror})"
    short_write = any(p in str(e) for e in chain for p in SHORT_WRITE_PATTERNS)
    if short_write and (nearly_full(where) or any("No space left" in str(e) for e in chain)):
        return f"no space left on the device of {where} ({free_space(where)})"
    return None


def existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (what `shutil.disk_usage` can measure)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def nearly_full(where: Path) -> bool:
    usage = shutil.disk_usage(existing(where))
    return usage.free < min(NEARLY_FULL_BYTES, usage.total // 100 + 1) or usage.free < 1 << 20


def free_space(where: Path) -> str:
    free = shutil.disk_usage(existing(where)).free
    return f"{free / 2**20:.1f} MiB free" if free >= 1 << 20 else f"{free} bytes free"


@contextmanager
def storage_errors(where: Path, run_path: Path | None = None) -> Iterator[None]:
    """Turn a full disk or a refused write under `where` into a StorageError saying so."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        problem = storage_problem(err, where)
        if problem is None:
            raise
        raise StorageError(problem, run_path) from err
