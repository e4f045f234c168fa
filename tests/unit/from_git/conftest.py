"""The shared planted repository of the from-git tests, built once per session.

At HEAD: kept text files (one with a space and non-ASCII letters in its name, a `.env.example`
template, a file with a fake AWS key and one with a fake PEM private key, both to be redacted),
a `.env`, a binary, an oversized file, a lock file, vendored files, a minified file, a Latin-1
file, an empty file, a symlink, and in the working tree only, an ignored and an untracked file.
History: eight commits with fixed dates - one of them on a feature branch, one the `--no-ff`
merge of that branch, and the last one with a fake GitHub token in its message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phased_cpt.from_git import Summary
from tests.unit.from_git.repos import (
    ENV_VALUE,
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    FAKE_PEM,
    build,
    commit,
    git,
    merge,
)

APP_V1 = "def main():\n    print('hello')\n"
APP_V2 = APP_V1 + "\n\ndef greet(name):\n    return f'hello {name}'\n"
UNICODE_NAME = "src/ünï code.py"


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "-q", "-b", "main")
    commit(
        root,
        {"README.md": "# Demo\n", ".gitignore": "ignored.txt\n*.log\n", "src/app.py": APP_V1},
        "Initial commit\n\nSet up the project.",
        "2024-01-01T10:00:00+00:00",
    )
    os.symlink("src/app.py", root / "link.py")
    commit(
        root,
        {
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01",
            "vendor/x.js": "var x = 1;\n",
            "web/node_modules/lib/index.js": "module.exports = {};\n",
            "static/app.min.js": "var a=1;\n",
            "package-lock.json": '{"lockfileVersion": 3}\n',
            "latin1.txt": "caf\u00e9\n".encode("latin-1"),
            "empty.txt": "",
            "data/big.txt": "".join(f"line {i:05d} of a big file\n" for i in range(200)),
        },
        "Add assets and vendored code",
        "2024-01-02T10:00:00+00:00",
        also_add=("link.py",),
    )
    commit(
        root,
        {
            ".env": f"API_TOKEN={ENV_VALUE}\n",
            ".env.example": "API_TOKEN=\n",
            "config/aws.py": f"ACCESS_KEY_ID = '{FAKE_AWS_KEY}'\n",
            "deploy/server_key.txt": FAKE_PEM,
            UNICODE_NAME: "GRÜSSE = 'grüß dich'\n",
        },
        "Add configuration",
        "2024-01-03T10:00:00+00:00",
    )
    git(root, "checkout", "-q", "-b", "feature/greet")
    commit(root, {"src/app.py": APP_V2}, "Add greeting feature", "2024-01-04T10:00:00+02:00")
    git(root, "checkout", "-q", "main")
    commit(
        root, {"docs/guide.md": "# Guide\n\nRun `python -m demo`.\n"}, "Write the guide", "2024-01-05T10:00:00+00:00"
    )
    merge(root, "feature/greet", "Merge branch 'feature/greet'", "2024-01-06T10:00:00+00:00")
    commit(root, {"notes/todo.rst": "Write docs\n----------\n"}, "Add notes", "2024-01-07T10:00:00+00:00")
    commit(
        root,
        {"README.md": "# Demo\n\nA demo project.\n"},
        f"Update README\n\nThe old token was {FAKE_GITHUB_TOKEN}.",
        "2024-01-08T10:00:00+00:00",
    )
    (root / "ignored.txt").write_text("ignored by .gitignore\n")
    (root / "untracked.txt").write_text("never added\n")
    return root


@pytest.fixture(scope="session")
def built(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary]:
    """The default build (no --prs), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("out") / "dataset"
    return out, build(repo, out)
