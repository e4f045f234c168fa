"""The shared planted repository of the from-git tests, built once per session.

At HEAD: kept text files (one with a space and non-ASCII letters in its name, a `.env.example`
template, a file with a fake AWS key and one with a fake PEM private key, both to be redacted),
a `.env`, a binary, an oversized file, a lock file, vendored files, a minified file, a Latin-1
file, an empty file, a symlink, and in the working tree only, an ignored and an untracked file.
History: eight commits with fixed dates - one of them on a feature branch, one the `--no-ff`
merge of that branch, and the last one with a fake GitHub token in its message.

Also the smaller planted repositories and helpers that several test modules share (`nul_repo`,
`quality_repo`, the phase-1 expectations, `_ids`, `_subjects`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phased_cpt.from_git import (
    Summary,
)
from tests.unit.from_git.repos import (
    ENV_VALUE,
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    FAKE_PEM,
    FAKE_PEM_BODY,
    build,
    commit,
    git,
    merge,
    new_repo,
    read,
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


TEXTY_BINARY = b"%PDF-1.5 illustrator\n" + b"A" * 9000 + b"\n\x00\x00\xb9\xff junk\n"


@pytest.fixture(scope="module")
def nul_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """requests' crash: a file git diffs as text (no NUL in its first 8000 bytes) whose diff holds
    NUL bytes and invalid UTF-8, in two names: one a default data glob, one not."""
    root = new_repo(tmp_path_factory.mktemp("nul"), {"app.py": "a = 1\n"})
    commit(root, {"ext/logo.ai": TEXTY_BINARY, "ext/logo.txt": TEXTY_BINARY}, "Add logo", "2024-01-02T10:00:00+00:00")
    commit(
        root,
        {
            "ext/logo.ai": TEXTY_BINARY + b"\x00more\xb9\n",
            "ext/logo.txt": TEXTY_BINARY + b"\x00more\n",
            "app.py": "a = 2\n",
        },
        "Update logo and app",
        "2024-01-03T10:00:00+00:00",
    )
    commit(root, {"app.py": "a = 3\n"}, "After the logo", "2024-01-04T10:00:00+00:00")
    return root


@pytest.fixture(scope="module")
def quality_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_repo(tmp_path_factory.mktemp("quality"), {"app/main.py": "print('hi')\n"})
    commit(
        root,
        {
            "web/bundle.js": "a=1;b=a+1;" * 160 + "\n",
            "web/logo.svg": "<svg>" + "<path d='M0 0'/>" * 10 + "</svg>\n",
            "api/types.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n",
            "assets/model.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 9\n",
            "mypkg/__init__.py": "__version__ = '1.0'\n",
            "mypkg/packages/__init__.py": "",
            "mypkg/packages/urllib9/__init__.py": "__version__ = '9.9'\n__author__ = 'Someone Else'\n",
            "mypkg/packages/urllib9/pool.py": "class Pool:\n    pass\n",
            "lib/leftpad/LICENSE": "MIT License\nCopyright (c) Someone Else\n",
            "lib/leftpad/package.json": '{"name": "leftpad"}\n',
            "lib/leftpad/index.js": "module.exports = pad;\n",
            "LICENSE": "BSD License\nCopyright (c) Us\n",
            "packages/ours/LICENSE": "BSD License\nCopyright (c) Us\n",  # a copy of the root license: ours
            "packages/ours/package.json": '{"name": "ours"}\n',
            "packages/ours/index.js": "module.exports = 1;\n",
            "src/parser.c": "int parse(void) { return 0; }\n",
            "third/x.c": "int x;\n",
            ".gitattributes": "src/parser.[ch] linguist-generated=true\nthird/** linguist-vendored\n",
            "docs/guide.md": "# Guide\n",
            "docs/copy.md": "#   Guide\n",  # the same text up to white space
        },
        "Add everything",
        "2024-01-02T10:00:00+00:00",
    )
    commit(
        root,
        {
            "old/pkg/__init__.py": "",
            "old/pkg/vendored_lib/__init__.py": "__license__ = 'MIT'\n",
            "old/pkg/vendored_lib/core.py": "y = 1\n",
        },
        "Vendor a lib",
        "2024-01-03T10:00:00+00:00",
    )
    git(root, "rm", "-q", "-r", "old")
    commit(root, {}, "Remove the vendored lib", "2024-01-04T10:00:00+00:00")
    return root


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "from_git"


SECRET_VALUES = [FAKE_AWS_KEY, FAKE_PEM_BODY, FAKE_GITHUB_TOKEN, ENV_VALUE, "pr-secret-value", "PRIVATE KEY-----"]


KEPT_FILES = {
    ".env.example": "API_TOKEN=\n",
    ".gitignore": "ignored.txt\n*.log\n",
    "README.md": "# Demo\n\nA demo project.\n",
    "config/aws.py": "ACCESS_KEY_ID = '[REDACTED:aws-access-key]'\n",
    "deploy/server_key.txt": "[REDACTED:private-key]\n",
    "docs/guide.md": "# Guide\n\nRun `python -m demo`.\n",
    "notes/todo.rst": "Write docs\n----------\n",
    "src/app.py": APP_V2,
    UNICODE_NAME: "GRÜSSE = 'grüß dich'\n",
}


PHASE1_SKIPS = {
    "binary": 1,
    "empty": 1,
    "generated": 1,
    "lock": 1,
    "secret": 1,
    "symlink": 1,
    "too-large": 1,
    "undecodable": 1,
    "vendored": 2,
}


SUBJECTS = [
    "Initial commit",
    "Add assets and vendored code",
    "Add configuration",
    "Add greeting feature",
    "Write the guide",
    "Add notes",
    "Update README",
]


BOT_ENV = ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com")


def _subjects(out: Path, name: str) -> list[str]:
    return _ids(out, name, "subject")


def _bot_commit(repo: Path, files: dict[str, str], message: str, date: str) -> None:
    """Commit as dependabot (author and committer)."""
    for name, content in files.items():
        (repo / name).write_text(content)
    git(repo, "add", "--", *files)
    name, email = BOT_ENV
    git(
        repo,
        "-c",
        f"user.name={name}",
        "-c",
        f"user.email={email}",
        "commit",
        "-q",
        f"--author={name} <{email}>",
        "-m",
        message,
        date=date,
    )


def _ids(out: Path, name: str, key: str) -> list:
    return [d[key] for d in read(out, name)]


def _head(repo: Path) -> str:
    return _oid(repo, "HEAD")


LIB_V1 = (
    "import os\n\n\ndef load_settings(path):\n    with open(path) as handle:\n        return handle.read()\n"
    "\n\ndef old_helper_that_moves(value):\n    return value * 2  # doubled for the caller\n"
)


LIB_V2 = "import os\n\n\ndef load_settings(path):\n    with open(path) as handle:\n        return handle.read()\n"


LIB_V3 = LIB_V2 + (
    "\n\ndef parse_settings(text):\n    pairs = [line.split('=', 1) for line in text.splitlines()]\n"
    "    return {key.strip(): value.strip() for key, value in pairs}\n"
    "\n\ndef old_helper_that_moves(value):\n    return value * 2  # doubled for the caller\n"
)


C_FILE = (
    "#include <stdio.h>\n\nint count_widgets(const int *values, int length) {\n    int total = 0;\n"
    "    for (int index = 0; index < length; index++) {\n        total += values[index] > 0 ? 1 : 0;\n    }\n"
    "    return total;\n}\n"
)


@pytest.fixture(scope="module")
def dated_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mainline c1 c2 c3 M1 c4 c5 M2 c6 (first parent, one a day from 2024-01-01); feature f1 merged
    by M1 (before the cut), feature2 f2 written before c5 but merged by M2 after the cut."""
    root = new_repo(tmp_path_factory.mktemp("dated"))
    commit(root, {"src/lib.py": LIB_V1, "README.md": "# Demo\n"}, "c1: start", "2024-01-01T10:00:00+00:00")
    commit(root, {"docs/guide.md": "Run the demo with care and attention.\n"}, "c2: guide", "2024-01-02T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "feature")
    commit(root, {"src/extra.py": "EXTRA_SETTING_NAME = 'first feature'\n"}, "f1: extra", "2024-01-03T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"src/lib.py": LIB_V2}, "c3: drop the helper", "2024-01-04T10:00:00+00:00")
    merge(root, "feature", "Merge pull request #1 from ada/feature", "2024-01-05T10:00:00+00:00")
    commit(root, {"notes.txt": "A note written before the cut.\n"}, "c4: notes", "2024-01-06T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "feature2")
    commit(root, {"src/late.py": "LATE_SETTING_NAME = 'second feature'\n"}, "f2: late", "2024-01-07T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"src/widgets.c": C_FILE}, "c5: widgets", "2024-01-08T10:00:00+00:00")
    merge(root, "feature2", "Merge pull request #2 from ada/feature2", "2024-01-10T10:00:00+00:00")
    commit(root, {"src/lib.py": LIB_V3}, "c6: parse settings", "2024-01-11T10:00:00+00:00")
    return root


def _oid(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev).strip()
