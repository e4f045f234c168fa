"""config.yaml lists every key with its default, and the config reference (docs/configuration.md,
the speed options in docs/performance.md) names them."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel

from phased_cpt.config import RunConfig, load_config
from phased_cpt.config.schema import PhaseConfig

REPO = Path(__file__).resolve().parents[2]


def schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        keys += schema_keys(nested, f"{prefix}{name}.") if nested else [f"{prefix}{name}"]
    return keys


def flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_lists_every_key_with_its_default():
    documented = flat(yaml.safe_load((REPO / "config.yaml").read_text()))
    keys = [k for k in schema_keys(RunConfig) if k != "phases"]
    assert sorted(set(keys) - set(documented)) == []
    cfg, _ = load_config(REPO / "config.yaml", check_files=False)
    defaults = RunConfig.model_construct()  # the schema's defaults, phases aside
    for key in keys:
        section, *rest = key.split(".")
        expected = getattr(defaults, section)
        ours = getattr(cfg, section)
        for part in rest:
            expected, ours = getattr(expected, part), getattr(ours, part)
        # ${WANDB_API_KEY:-}; the future files `data from-git` writes, which config.yaml (the from-git path) names
        if key not in ("wandb.api_key", "evaluation.future.documents", "evaluation.future.tasks"):
            assert ours == expected, key


def test_the_config_reference_names_every_key():
    """In docs/configuration.md's table (`section.key`, or `section.a` / `b` in one row); the speed
    options in docs/performance.md's table (`training.performance`)."""
    reference = (REPO / "docs" / "configuration.md").read_text().split("## Keys")[1].split("\n## ")[0]
    speed = (REPO / "docs" / "performance.md").read_text().split("# Speed and memory on GPUs")[1].split("\n## ")[0]
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    for key in [k for k in schema_keys(RunConfig) if k != "phases"]:
        section, _, last = key.rpartition(".")
        if section == "training.performance":
            assert f"| `{last}` |" in speed, key
            continue
        assert any(f"`{key}`" in row or (section and f"`{section}." in row and f"`{last}`" in row) for row in rows), key
    phases_row = next(row for row in rows if row.startswith("| `phases[]`"))
    for key in PhaseConfig.model_fields:
        assert f"`{key}`" in phases_row, key


def test_the_documented_run_directory_stamp_is_the_one_runs_get(tmp_path):
    """`-YYYYMMDD_HHMMSS`, wherever a doc names it (issue 19 item 11)."""
    from datetime import datetime

    from phased_cpt.run_dir import RunDir

    run = RunDir.create(tmp_path, "name", now=datetime(2026, 1, 2, 3, 4, 5))
    assert run.path.name == "name-20260102_030405"
    for path in [REPO / "config.yaml", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        doc, text = path.name, path.read_text()
        for i in [i for i in range(len(text)) if text.startswith("YYYYMMDD_HHMMSS", i)]:
            assert text[i - 1] == "-", f"{doc}: {text[i - 30 : i + 15]!r}"
