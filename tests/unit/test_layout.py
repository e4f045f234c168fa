"""tests/unit mirrors src/: every module with logic has a test module of its own, and every test
module names a module that exists.

    src/phased_cpt/<package>/<module>.py   ->  tests/unit/<package>/test_<module>.py
    src/phased_cpt/<module>.py             ->  tests/unit/test_<module>.py
    src/phased_cpt/<package>/__init__.py   ->  tests/unit/<package>/test_<package>.py
    benchmarks/<name>.py, scripts/<name>.py ->  tests/unit/benchmarks/test_<name>.py, tests/unit/scripts/test_<name>.py

Tests that check several modules working together through a command belong in tests/e2e/.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "phased_cpt"
UNIT = REPO / "tests" / "unit"

# Source modules without logic of their own, so without a test module. Each says why.
NO_LOGIC = {
    "__init__.py": "the package docstring and __version__",
    "__main__.py": "`python -m phased_cpt` calls cli.main (tests/e2e run the command)",
    "config/__init__.py": "re-exports schema and loading",
    "data/__init__.py": "docstring only",
    "evaluation/__init__.py": "docstring only",
    "inference/__init__.py": "docstring only",
    "training/__init__.py": "docstring only",
    "plans/__init__.py": "docstring only",
    "export/__init__.py": "two name tuples the command line offers",
    "crash_points.py": "one environment check; tests/e2e/test_kill_windows.py and test_resume.py kill runs at each point",
}

# Test modules under tests/unit that check a rule of the whole tree, not one module.
WHOLE_TREE = {
    "test_architecture.py": "the layers of docs/architecture.md",
    "test_layout.py": "this file",
    "test_doc_links.py": "the links of README.md and docs/*.md, and the README's length",
}


def mirror_of(source: Path) -> Path:
    relative = source.relative_to(SRC)
    if relative.name == "__init__.py":
        if relative.parent == Path("."):
            return UNIT / "test_phased_cpt.py"
        return UNIT / relative.parent / f"test_{relative.parent.name}.py"
    return UNIT / relative.parent / f"test_{relative.name}"


def source_for(test: Path) -> Path | None:
    """The module a test module under tests/unit names, or None where it names none."""
    relative = test.relative_to(UNIT)
    name = relative.name.removeprefix("test_")
    if relative.parent.parts[:1] in (("benchmarks",), ("scripts",)):
        return REPO / relative.parent / name
    package = SRC / relative.parent
    if relative.parent != Path(".") and name == f"{relative.parent.name}.py":
        return package / "__init__.py"
    if relative.name == "test_phased_cpt.py":
        return SRC / "__init__.py"
    return package / name


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_with_logic_has_its_own_test_module():
    missing = [
        f"src/phased_cpt/{source.relative_to(SRC)} -> {mirror_of(source).relative_to(REPO)}"
        for source in sources()
        if str(source.relative_to(SRC)) not in NO_LOGIC and not mirror_of(source).is_file()
    ]
    assert not missing, "modules without a test module (write one, or add a reason to NO_LOGIC):\n" + "\n".join(missing)


def test_every_test_module_names_a_module_that_exists():
    orphans = [
        str(test.relative_to(REPO))
        for test in sorted(UNIT.rglob("test_*.py"))
        if str(test.relative_to(UNIT)) not in WHOLE_TREE and not source_for(test).is_file()
    ]
    assert not orphans, "test modules naming no module (rename after the module they test):\n" + "\n".join(orphans)


def test_the_exemptions_are_of_modules_that_exist_and_have_no_test_module():
    for name in NO_LOGIC:
        source = SRC / name
        assert source.is_file(), f"NO_LOGIC names {name}, which src/phased_cpt lacks"
        assert not mirror_of(source).is_file(), f"{name} has a test module: remove it from NO_LOGIC"
    for name in WHOLE_TREE:
        assert (UNIT / name).is_file(), f"WHOLE_TREE names {name}, which tests/unit lacks"


def test_the_mapping_goes_both_ways():
    for source in sources():
        assert source_for(mirror_of(source)) == source
