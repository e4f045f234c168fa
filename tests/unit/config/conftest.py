"""The config tests' directory: one data file `a.jsonl`, the working directory, and configs written
there as YAML text (the hostile inputs are text: duplicate keys, aliases, `.inf`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import config_problems

PHASES = "phases: [{name: p, file: a.jsonl}]\n"


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "a.jsonl").write_text('{"training_content": "x"}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(text: str, config_dir: Path, overrides=()) -> list[str]:
    """The problems of the config `text` written to config_dir/c.yaml."""
    path = config_dir / "c.yaml"
    path.write_text(text)
    return config_problems(path, overrides)
