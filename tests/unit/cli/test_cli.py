"""The command line stays light where it can: `--help`, `validate` and `data from-git --help`
import neither torch nor transformers (they are what makes a command take seconds to start)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import bundled_texts, write_jsonl

HEAVY = ("torch", "transformers", "peft", "deepspeed")
PROBE = """
import json, sys
from phased_cpt.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def imported_by(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["chat", "--help"], ["data", "from-git", "--help"], ["export", "--help"]]
)
def test_help_imports_no_ml_library(argv):
    assert imported_by(*argv) == {"code": 0, "heavy": []}


def test_validate_imports_no_ml_library(tmp_path):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 3))
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  name: /nowhere/model\nphases:\n  - {{name: p1, file: {data}}}\n")
    assert imported_by("validate", str(config)) == {"code": 0, "heavy": []}


def test_validate_of_a_local_model_with_known_targets_imports_no_ml_library(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 3))
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  name: {tiny_model_dir}\nphases:\n  - {{name: p1, file: {data}}}\n")
    assert imported_by("validate", str(config)) == {"code": 0, "heavy": []}
    # a target the architecture may not have: the model is built (on the meta device) to check it
    config.write_text(config.read_text() + "training:\n  lora:\n    target_modules: [q_proj, qkv]\n")
    assert imported_by("validate", str(config))["code"] == 2


def test_future_warnings_are_silenced_for_transformers_only():
    probe = (
        "import warnings\n"
        "from phased_cpt.cli import setup_logging\n"
        "setup_logging()\n"
        "for module in ('transformers.modeling_utils', 'phased_cpt.data', 'numpy'):\n"
        "    warnings.warn_explicit('old', FutureWarning, 'f.py', 1, module=module)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stderr.count("FutureWarning: old") == 2, result.stderr
