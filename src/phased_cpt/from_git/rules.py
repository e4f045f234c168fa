"""Selection rules: which paths and which file contents become training text.

A path is checked in this order; the first rule that matches gives the skip *reason* (and the
*rule* that matched, for the report):

1. `secret`     - a secret-store file name (`secrets.is_secret_path`); always on, `--include`
                  cannot bring it back.
2. `excluded`   - a glob the user gave with `--exclude`.
3. (kept)       - a glob the user gave with `--include`: the default rules below do not apply.
4. `vendored`, `lock`, `generated`, `data` - a default glob of `DEFAULT_EXCLUDES`.
5. `vendored`, `generated` - marked `linguist-vendored` / `linguist-generated` in a
                  `.gitattributes` (`vendored.LinguistAttributes`).
6. `vendored`   - below a directory detected as a copy of another project
                  (`vendored.detect_vendored_dirs`).

Rules 3 to 6 are the *default rules*; `--no-default-excludes` turns them all off (and the
content quality rules of `quality.py` with them).

Glob semantics: `fnmatch` (case-sensitive; `*` also crosses `/`), tried against the whole path,
against each leading directory of the path and against each single path component. So
`node_modules` excludes `web/node_modules/x/index.js`, `*.lock` excludes `a/b/poetry.lock`,
`docs/api` excludes `docs/api/index.md`, and `docs/*.md` excludes `docs/a.md` but not
`sub/docs/a.md` (a glob with a `/` is anchored at the repository root, as in `.gitignore`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import NamedTuple

from phased_cpt.from_git.git import GitRepo, TreeEntry
from phased_cpt.from_git.secrets import is_secret_path
from phased_cpt.from_git.vendored import LinguistAttributes, VendoredDir, detect_vendored_dirs

VENDORED_GLOBS: tuple[str, ...] = (
    "vendor",
    "vendors",
    "vendored",
    "_vendor",
    "third_party",
    "third-party",
    "thirdparty",
    "3rdparty",
    "3rd_party",
    "3rd-party",
    "extern",
    "externals",
    "node_modules",
    "bower_components",
    "jspm_packages",
    ".venv",
    "venv",
    "site-packages",
    ".yarn",
    "Pods",
    "Carthage",
    "Godeps",
)
LOCK_GLOBS: tuple[str, ...] = (
    "*.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "go.sum",
    "packages.lock.json",
    "*.lockb",
)
GENERATED_GLOBS: tuple[str, ...] = (
    "*.min.*",
    "*-min.js",
    "*.map",
    "*_pb2.py",
    "*_pb2_grpc.py",
    "*.pb.go",
    "*.pb.cc",
    "*.pb.h",
    "*.generated.*",
    "__generated__",
    "dist",
    "*.snap",
)
DATA_GLOBS: tuple[str, ...] = (
    "*.svg",
    "*.ai",
    "*.eps",
    "*.ps",
    "*.pdf",
    "*.csv",
    "*.tsv",
    "*.jsonl",
    "*.ndjson",
    "*.geojson",
    "*.log",
    "*.har",
    "*.dat",
    "*.asc",
    "*.sig",
)
DEFAULT_EXCLUDES: dict[str, tuple[str, ...]] = {
    "vendored": VENDORED_GLOBS,
    "lock": LOCK_GLOBS,
    "generated": GENERATED_GLOBS,
    "data": DATA_GLOBS,
}
"""Skip reason -> default globs; `--no-default-excludes` turns every group off."""


class Skip(NamedTuple):
    """Why something is left out: the reason counted in the summary, and the rule that matched."""

    reason: str
    rule: str


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
    """The path rules in force for one run; `classify(path)` gives a `Skip` or None."""

    def __init__(
        self,
        excludes: Iterable[str] = (),
        use_default_excludes: bool = True,
        *,
        includes: Iterable[str] = (),
        attributes: LinguistAttributes | None = None,
        vendored_dirs: dict[str, VendoredDir] | None = None,
    ) -> None:
        self.use_default_excludes = use_default_excludes
        self._excluded = GlobSet(excludes)
        self._included = GlobSet(includes)
        self._globs = [(reason, GlobSet(globs)) for reason, globs in DEFAULT_EXCLUDES.items()]
        self._attributes = attributes
        self.vendored_dirs = vendored_dirs or {}

    def classify(self, path: str) -> Skip | None:
        """Why `path` is left out (see the module docstring), or None to keep it."""
        if is_secret_path(path):
            return Skip("secret", "secret file name")
        if self._excluded.matches(path):
            return Skip("excluded", "--exclude")
        if not self.applies_defaults(path):
            return None
        for reason, globs in self._globs:
            if globs.matches(path):
                return Skip(reason, f"default {reason} glob")
        marked = self._attributes.classify(path) if self._attributes is not None else None
        if marked is not None:
            return Skip(marked, f".gitattributes linguist-{marked}")
        parts = path.split("/")
        for depth in range(1, len(parts)):
            found = self.vendored_dirs.get("/".join(parts[:depth]))
            if found is not None:
                return Skip("vendored", f"{found.path}/: {found.why}")
        return None

    def applies_defaults(self, path: str) -> bool:
        """False when the default rules (path and content quality) are off for `path`."""
        return self.use_default_excludes and not self._included.matches(path)


def repository_rules(
    git: GitRepo,
    commit: str,
    entries: list[TreeEntry],
    *,
    excludes: Iterable[str],
    includes: Iterable[str],
    use_default_excludes: bool,
) -> PathRules:
    """The path rules for `commit`: the globs, plus, under the default rules, the linguist marks
    of its `.gitattributes` files and the vendored directories of its tree and history."""
    if not use_default_excludes:
        return PathRules(excludes, False, includes=includes)
    with git.open_objects() as objects:
        attributes = {
            entry.path_bytes.decode("utf-8", "replace"): objects.read(entry.oid).decode("utf-8", "replace")
            for entry in entries
            if entry.path_bytes.rsplit(b"/", 1)[-1] == b".gitattributes" and entry.kind == "blob"
        }
        files = [(entry.path_bytes, entry.mode, entry.oid) for entry in entries if entry.kind == "blob"]
        files += list(git.iter_added_files(commit))
        decoded = [(path.decode("utf-8", "replace"), mode, oid) for path, mode, oid in files]
        vendored = detect_vendored_dirs(decoded, objects.read)
    return PathRules(
        excludes, True, includes=includes, attributes=LinguistAttributes(attributes), vendored_dirs=vendored
    )


def _compile(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))
