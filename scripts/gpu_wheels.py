"""Make the wheels folder a bare GPU machine needs for `benchmarks/gpu_check.py` (`make gpu-wheels`).

The GPU machines lent here have Python 3.12, torch, transformers 5.17, peft, accelerate and triton
but no network (docs/gpu-check.md). What they lack travels in one git-ignored folder, at most
`LIMIT_BYTES`: the pinned wheels in `PINS` (downloaded with `pip download --no-deps
--only-binary :all:` for the GPU machine's Python and platform) and phased-cpt's own wheel
(built from this checkout with `pip wheel --no-deps`). `requirements.txt` in the folder names
each, for `pip install --no-index --no-deps --find-links FOLDER -r FOLDER/requirements.txt`.

    python scripts/gpu_wheels.py .gpu-wheels     # on a machine with the package index
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 60 * 2**20
"""What may travel with the working tree for the check (the device tool carries 64 MiB in all)."""
GPU_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    wheel_bytes: int
    """The wheel's size on PyPI (for the GPU machine's Python where it is binary), so the folder's
    size is known before anything is downloaded; `build` checks the real one."""
    why: str


PINS = (
    Pin("pydantic", "2.14.4", 494_865, "phased-cpt's config; not on the GPU machine"),
    Pin("pydantic-core", "2.50.5", 2_264_846, "pydantic's compiled core (cp312, manylinux x86_64)"),
    Pin("annotated-types", "0.8.0", 13_427, "needed by pydantic"),
    Pin("typing-inspection", "0.4.5", 14_874, "needed by pydantic"),
    Pin("typing-extensions", "4.16.0", 45_571, "pydantic 2.14 needs >= 4.16"),
    Pin("liger-kernel", "0.8.5", 910_117, "Liger kernels (the [gpu] extra); its triton comes with torch"),
    Pin("transformers", "5.24.0", 13_549_890, "the GPU machine has 5.17; the project pins and tests 5.24"),
    Pin("peft", "0.21.2", 835_427, "the version the project pins and tests"),
)
PHASED_CPT_WHEEL_BYTES = 600_000
"""An upper bound for phased-cpt's own wheel (source, quickstart data, DeepSpeed JSON)."""


def planned_bytes() -> int:
    """The folder's size from the pins and the bound on phased-cpt's wheel."""
    return sum(pin.wheel_bytes for pin in PINS) + PHASED_CPT_WHEEL_BYTES


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def check_size(folder: Path) -> int:
    """The folder's size in bytes; SystemExit (one line) when it is over `LIMIT_BYTES`."""
    size = folder_bytes(folder)
    if size > LIMIT_BYTES:
        raise SystemExit(
            f"{folder}: {size / 2**20:.1f} MiB of wheels, more than the {LIMIT_BYTES / 2**20:.0f} MiB that may "
            "travel to the GPU machine; drop a pin from scripts/gpu_wheels.py"
        )
    return size


def download_command(folder: Path) -> list[str]:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--python-version",
        GPU_PYTHON,
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(folder),
        *(f"{pin.name}=={pin.version}" for pin in PINS),
    ]


def own_wheel_command(folder: Path, source: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), str(source)]


def build(folder: Path) -> int:
    """Download the pins, build phased-cpt's wheel (from a copy of the checkout, so the build leaves
    no build/ or egg-info in it), write requirements.txt, check the size."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phased-cpt-wheel-") as tmp:
        source = Path(tmp)
        for name in ("pyproject.toml", "README.md", "src"):
            copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
            copy(
                REPO / name,
                source / name,
                **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if name == "src" else {}),
            )
        for command in (download_command(folder), own_wheel_command(folder, source)):
            done = subprocess.run(command)
            if done.returncode != 0:
                raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    names = [f"{pin.name}=={pin.version}" for pin in PINS] + [f"phased-cpt=={version_of_checkout()}"]
    (folder / "requirements.txt").write_text(
        "# made by scripts/gpu_wheels.py; installed by benchmarks/gpu_check.py --wheels\n" + "\n".join(names) + "\n"
    )
    return check_size(folder)


def version_of_checkout() -> str:
    """pyproject.toml's `version` (tomllib is 3.11+; the project supports 3.10)."""
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit('pyproject.toml: no version = "..." line')
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the wheels go (git-ignored: .gpu-wheels)")
    args = parser.parse_args(argv)
    size = build(args.folder)
    print(f"{args.folder}: {size / 2**20:.1f} MiB of wheels (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
