"""Selection rules: which paths and which file contents become training text.

A path is checked in this order and the first rule that matches gives the skip *reason*:

1. `secret`     - a secret file name (`secrets.is_secret_path`); always on.
2. `vendored`   - a default glob of `VENDORED_GLOBS`   (unless default excludes are off).
3. `lock`       - a default glob of `LOCK_GLOBS`       (unless default excludes are off).
4. `generated`  - a default glob of `GENERATED_GLOBS`  (unless default excludes are off).
5. `excluded`   - a glob the user gave with `--exclude`.

Glob semantics: `fnmatch` (case-sensitive; `*` also crosses `/`), tried against the whole path,
against each leading directory of the path and against each single path component. So
`node_modules` excludes `web/node_modules/x/index.js`, `*.lock` excludes `a/b/poetry.lock`,
`docs/api` excludes `docs/api/index.md`, and `docs/*.md` excludes `docs/a.md` but not
`sub/docs/a.md` (a glob with a `/` is anchored at the repository root, as in `.gitignore`).

Content is checked after the path (`classify_content`): `binary` (a NUL byte in the first 8000
bytes, git's own test), `undecodable` (not valid UTF-8), `empty` (nothing but white space) and
`secret` (a credential pattern in the text).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from phased_cpt.from_git.secrets import find_credential, is_secret_path

VENDORED_GLOBS: tuple[str, ...] = (
    "vendor", "vendors", "_vendor", "third_party", "third-party", "thirdparty",
    "node_modules", "bower_components", "jspm_packages", ".venv", "venv", "site-packages",
    ".yarn", "Pods", "Carthage",
)
LOCK_GLOBS: tuple[str, ...] = (
    "*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "go.sum",
    "packages.lock.json", "*.lockb",
)
GENERATED_GLOBS: tuple[str, ...] = (
    "*.min.js", "*.min.css", "*.map", "*_pb2.py", "*_pb2_grpc.py", "*.pb.go", "*.pb.cc",
    "*.pb.h", "*.generated.*", "__generated__", "dist",
)
DEFAULT_EXCLUDES: dict[str, tuple[str, ...]] = {
    "vendored": VENDORED_GLOBS,
    "lock": LOCK_GLOBS,
    "generated": GENERATED_GLOBS,
}
"""Skip reason -> default globs; `--no-default-excludes` turns all three groups off."""

BINARY_SNIFF_BYTES = 8000


def matches_glob(path: str, glob: str) -> bool:
    """True when `glob` matches `path`, a leading directory of it, or one of its components."""
    return GlobSet((glob,)).matches(path)


class GlobSet:
    """Several globs compiled into two regular expressions, so a path is checked in one pass each."""

    def __init__(self, globs: Iterable[str]) -> None:
        cleaned = [glob.rstrip("/") or glob for glob in globs]
        self._anchored = _compile([glob for glob in cleaned if "/" in glob])
        self._anywhere = _compile([glob for glob in cleaned if "/" not in glob])

    def matches(self, path: str) -> bool:
        """True when any glob matches `path` (see the module docstring for the semantics)."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if self._anywhere is not None and any(self._anywhere.match(c) for c in prefixes + parts):
            return True
        return self._anchored is not None and any(self._anchored.match(c) for c in prefixes)


class PathRules:
    """The exclude globs in force for one run; `classify(path)` gives a skip reason or None."""

    def __init__(self, excludes: Iterable[str] = (), use_default_excludes: bool = True) -> None:
        groups = DEFAULT_EXCLUDES.items() if use_default_excludes else []
        self._globs = [(reason, GlobSet(globs)) for reason, globs in groups]
        self._globs.append(("excluded", GlobSet(excludes)))

    def classify(self, path: str) -> str | None:
        """Skip reason for `path` (see the module docstring), or None to keep it."""
        if is_secret_path(path):
            return "secret"
        return next((reason for reason, globs in self._globs if globs.matches(path)), None)


def classify_content(data: bytes) -> tuple[str | None, str]:
    """Decode a file's bytes: `(None, text)` to keep it, or `(reason, "")` to skip it."""
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return "binary", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable", ""
    if not text.strip():
        return "empty", ""
    if find_credential(text) is not None:
        return "secret", ""
    return None, text


def _compile(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))
