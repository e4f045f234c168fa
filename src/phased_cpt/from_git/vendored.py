"""Vendored and generated code that directory names do not give away.

Two sources, both read from git objects (never the working tree):

- **`.gitattributes`** (`LinguistAttributes`): paths marked `linguist-vendored` or
  `linguist-generated` (GitHub's own markers, e.g. `vendor/** linguist-vendored`,
  `src/parser.c linguist-generated=true`) in any `.gitattributes` file at the revision.
  Patterns follow git's rules: a pattern without a slash matches a file name at any depth
  below its `.gitattributes`; one with a slash is anchored there; `*` stays inside one
  directory, `**` crosses them; a later line, or a deeper file, overrides an earlier one, and
  `-attr` or `attr=false` unsets.
- **Copies of other projects** (`detect_vendored_dirs`), looked for among the files at the
  revision *and* every file ever added in its history (a copy that was removed later still
  fills old diffs):
  - a directory below the root that holds its own license file (`LICENSE*`, `LICENCE*`,
    `COPYING*`; not a copy of, or a link to, a root license) next to a package manifest
    (`package.json`, `setup.py`, `pyproject.toml`, `Cargo.toml`, `go.mod`, ...): another
    project's release, copied in;
  - a Python package inside another Python package whose `__init__.py` names its own
    `__version__`, `__license__` or `__author__` (e.g. `requests/packages/urllib3`): a
    distribution copied into the package.

Everything below such a directory is `vendored`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

_LICENSE_NAME = re.compile(r"(?i)(?:licen[cs]e|copying|unlicense)(?:[.\-_].*)?")
MANIFEST_NAMES = frozenset(
    {
        "package.json",
        "bower.json",
        "composer.json",
        "setup.py",
        "setup.cfg",
        "pyproject.toml",
        "Cargo.toml",
        "go.mod",
        "pom.xml",
        "mix.exs",
        "Package.swift",
    }
)
_MANIFEST_SUFFIXES = (".gemspec", ".podspec", ".nuspec", ".cabal")
_PACKAGE_METADATA = re.compile(rb"\b__(?:version|license|author)__\b")
_SYMLINK_MODE = "120000"
_ATTRIBUTES = {"linguist-vendored": "vendored", "linguist-generated": "generated"}


@dataclass(frozen=True)
class VendoredDir:
    """A directory detected as a copy of another project, and why."""

    path: str
    why: str


def detect_vendored_dirs(
    files: Iterable[tuple[str, str, str]], read_blob: Callable[[str], bytes]
) -> dict[str, VendoredDir]:
    """Vendored directories among `files` ((path, mode, blob id) triples), outermost only.

    `read_blob` reads a blob by id; it is called only for the `__init__.py` of Python packages
    nested in other Python packages.
    """
    by_dir: dict[str, dict[str, set[tuple[str, str]]]] = {}
    for path, mode, oid in files:
        parent = PurePosixPath(path).parent.as_posix()
        names = by_dir.setdefault("" if parent == "." else parent, {})
        names.setdefault(PurePosixPath(path).name, set()).add((mode, oid))
    root_licenses = {
        oid for name, versions in by_dir.get("", {}).items() if _LICENSE_NAME.fullmatch(name) for _, oid in versions
    }
    found: dict[str, VendoredDir] = {}
    for directory in sorted(by_dir):
        names = by_dir[directory]
        if not directory or any(directory.startswith(f"{outer}/") for outer in found):
            continue
        own_license = any(
            mode != _SYMLINK_MODE and oid not in root_licenses
            for name, versions in names.items()
            if _LICENSE_NAME.fullmatch(name)
            for mode, oid in versions
        )
        manifest = any(name in MANIFEST_NAMES or name.endswith(_MANIFEST_SUFFIXES) for name in names)
        if own_license and manifest:
            found[directory] = VendoredDir(directory, "own license and package manifest")
            continue
        parent = PurePosixPath(directory).parent.as_posix()
        nested_package = "__init__.py" in names and parent != "." and "__init__.py" in by_dir.get(parent, {})
        if nested_package and any(_PACKAGE_METADATA.search(read_blob(oid)) for _, oid in sorted(names["__init__.py"])):
            found[directory] = VendoredDir(directory, "Python package with its own version inside another package")
    return found


class LinguistAttributes:
    """`linguist-vendored` / `linguist-generated` marks from the `.gitattributes` files of a tree."""

    def __init__(self, files: dict[str, str]) -> None:
        """`files`: path of each `.gitattributes` file -> its text."""
        self._rules: list[tuple[re.Pattern[str], dict[str, bool]]] = []
        for path in sorted(files, key=lambda p: (p.count("/"), p)):  # deeper files override
            parent = PurePosixPath(path).parent.as_posix()
            self._rules += parse_gitattributes("" if parent == "." else parent, files[path])

    def classify(self, path: str) -> str | None:
        """`vendored` or `generated` when the attributes mark `path` so, else None."""
        state: dict[str, bool] = {}
        for pattern, values in self._rules:
            if pattern.fullmatch(path):
                state.update(values)
        return next((_ATTRIBUTES[name] for name in _ATTRIBUTES if state.get(name)), None)


def parse_gitattributes(directory: str, text: str) -> list[tuple[re.Pattern[str], dict[str, bool]]]:
    """The linguist rules of one `.gitattributes` file in `directory` ("" for the root)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", '"', "!")):
            continue
        pattern, *attributes = line.split()
        values: dict[str, bool] = {}
        for attribute in attributes:
            name, _, value = attribute.lstrip("-!").partition("=")
            if name in _ATTRIBUTES and not attribute.startswith("!"):
                values[name] = not attribute.startswith("-") and value.lower() != "false"
        if values and not pattern.endswith("/"):
            rules.append((re.compile(_pattern_regex(directory, pattern)), values))
    return rules


def _pattern_regex(directory: str, pattern: str) -> str:
    """A gitignore-style `pattern` of a `.gitattributes` in `directory` as a full-path regex."""
    anchored = "/" in pattern
    body = _translate(pattern.lstrip("/"))
    prefix = re.escape(f"{directory}/") if directory else ""
    return prefix + body if anchored else f"{prefix}(?:.*/)?{body}"


def _translate(pattern: str) -> str:
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        elif pattern[index] == "[" and (end := pattern.find("]", index + 2)) > 0:
            body = pattern[index + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            index = end + 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return "".join(out)
