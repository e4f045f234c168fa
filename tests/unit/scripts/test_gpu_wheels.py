"""The wheels folder for the bare GPU machine (`scripts/gpu_wheels.py`, `make gpu-wheels`): its
size limit, checked before anything is downloaded and on the folder made."""

import io
import zipfile
from pathlib import Path

import pytest

from scripts.gpu_wheels import (
    LIMIT_BYTES,
    PHASED_CPT_WHEEL_BYTES,
    PINS,
    check_size,
    download_command,
    planned_bytes,
    version_of_checkout,
)

REPO = Path(__file__).resolve().parents[3]


def test_the_pinned_wheels_and_our_own_stay_under_60_mib():
    assert LIMIT_BYTES == 60 * 2**20
    assert planned_bytes() == sum(pin.wheel_bytes for pin in PINS) + PHASED_CPT_WHEEL_BYTES
    assert planned_bytes() < LIMIT_BYTES


def test_our_own_wheel_fits_its_bound():
    """phased-cpt's wheel is its package files deflated: zip them as a wheel would."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted((REPO / "src" / "phased_cpt").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                wheel.write(path, path.relative_to(REPO / "src"))
    assert len(buffer.getvalue()) < PHASED_CPT_WHEEL_BYTES


def test_a_folder_over_the_limit_is_refused_in_one_line(tmp_path):
    (tmp_path / "small.whl").write_bytes(b"x" * 1000)
    assert check_size(tmp_path) == 1000
    with open(tmp_path / "huge.whl", "wb") as handle:  # sparse: no disk is used
        handle.truncate(LIMIT_BYTES)
    with pytest.raises(SystemExit) as refused:
        check_size(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "more than the 60 MiB" in message and "scripts/gpu_wheels.py" in message


def test_the_download_is_binary_only_without_dependencies_for_the_gpu_machines_python(tmp_path):
    command = download_command(tmp_path)
    assert command[3:7] == ["download", "--no-deps", "--only-binary", ":all:"]
    assert command[command.index("--python-version") + 1] == "3.12"
    for pin in PINS:
        assert f"{pin.name}=={pin.version}" in command
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    for pin in PINS:  # where the project pins a package, the GPU machine gets the same version
        pinned = [line for line in requirements if line.lower().startswith(f"{pin.name}==")]
        assert pinned in ([], [f"{pin.name}=={pin.version}"]), pin


def test_the_version_is_read_from_pyproject():
    assert version_of_checkout() == "0.1.0"
