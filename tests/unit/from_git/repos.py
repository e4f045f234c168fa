"""Helpers of the from-git tests: planted git repositories built in temporary directories.

Every repository is made by the tests with fixed names and dates (no network, no global or
system git config), so outputs are deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from phased_cpt.from_git import FromGitSettings, ScreenOptions, Summary, build_datasets

# Fake credentials, assembled at run time so the test files themselves hold no credential pattern.
FAKE_AWS_KEY = "AKIA" + "FAKEFAKEFAKE1234"
FAKE_PEM_BODY = "MIIEfakeKEYbodyNOTaREALkey0123456789"
FAKE_PEM = f"-----BEGIN RSA {'PRIVATE'} KEY-----\n{FAKE_PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
FAKE_GITHUB_TOKEN = "ghp" + "_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
ENV_VALUE = "supersecret-value-123"


def git(repo: Path, *args: str, date: str = "2024-01-01T10:00:00+00:00") -> str:
    """Run git in `repo` as the test author, isolated from the machine's git config."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        check=True,
    )
    return result.stdout.decode()


def commit(repo: Path, files: dict[str, str | bytes], message: str, date: str, also_add: tuple[str, ...] = ()) -> None:
    """Write `files` into `repo` and commit them (and `also_add`) with `message` at `date`."""
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    git(repo, "add", "--", *files, *also_add)
    git(repo, "commit", "-q", "--allow-empty", "-m", message, date=date)


def merge(repo: Path, branch: str, message: str, date: str) -> None:
    """Merge `branch` into the current branch with a merge commit (`--no-ff`) saying `message`."""
    git(repo, "merge", "-q", "--no-ff", "-m", message, branch, date=date)


def new_repo(root: Path, files: dict[str, str | bytes] | None = None, message: str = "Initial commit") -> Path:
    """A fresh repository at `root` on branch main, with one commit of `files` when given."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    if files:
        commit(root, files, message, "2024-01-01T10:00:00+00:00")
    return root


def read(out: Path, name: str) -> list[dict]:
    """The documents of output file `name` in `out`."""
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


def report(out: Path) -> dict:
    """The parsed from-git-report.json of `out`."""
    return json.loads((out / "from-git-report.json").read_text(encoding="utf-8"))


def build(repo: Path, out: Path, **options: object) -> Summary:
    """`build_datasets` with a small default `max_file_bytes` (the fixture's big file is 5 KB)."""
    options.setdefault("max_file_bytes", 2000)
    return build_datasets(repo, out, settings(**options))


def settings(**options: object) -> FromGitSettings:
    """`FromGitSettings` from flat keywords: `keep_duplicates` goes into `screen`, lists become tuples."""
    screen = options.pop("screen", ScreenOptions())
    if "keep_duplicates" in options:
        screen = dataclasses.replace(screen, keep_duplicates=options.pop("keep_duplicates"))  # type: ignore[type-var]
    for key in ("excludes", "includes"):
        if key in options:
            options[key] = tuple(options[key])  # type: ignore[arg-type]
    return FromGitSettings(screen=screen, **options)  # type: ignore[arg-type]


def all_output_bytes(out: Path) -> bytes:
    """Every file the run wrote under `out` (phase files and report), concatenated."""
    return b"".join(path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file())
