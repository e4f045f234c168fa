"""config/schema.py: the strict models: every key, its default and its limits, each problem
naming its key path; config.yaml and the README document every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from phased_cpt.config import RunConfig, load_config
from phased_cpt.config.schema import PhaseConfig
from phased_cpt.errors import ConfigError
from tests.conftest import REPO, config_problems, no_liger, write_yaml
from tests.unit.config.conftest import PHASES, problems


def config(tmp_path: Path, evaluation: dict) -> Path:
    for name in ("a", "p1", "future_evolution", "future_pr_mastery", "future_tasks"):
        (tmp_path / f"{name}.jsonl").write_text('{"training_content": "x"}\n')
    return write_yaml(
        tmp_path / "config.yaml", {"phases": [{"name": "p1", "file": "a.jsonl"}], "evaluation": evaluation}
    )


def test_future_files_resolve_and_name_their_columns(tmp_path):
    path = config(
        tmp_path,
        {"future": {"documents": ["future_evolution.jsonl", "future_pr_mastery.jsonl"], "tasks": "future_tasks.jsonl"}},
    )
    cfg, _ = load_config(path)
    future = cfg.evaluation.future
    assert future.document_columns() == {
        "future_evolution": tmp_path / "future_evolution.jsonl",
        "future_pr_mastery": tmp_path / "future_pr_mastery.jsonl",
    }
    assert future.task_columns() == {
        "future_tasks.next_line": "next_line",
        "future_tasks.scope": "scope",
        "future_tasks.fim": "fim",
    }


def test_an_absent_future_file_is_left_out_with_a_warning(tmp_path):
    """config.yaml names the future files; `data from-git` writes them only when it holds out a future."""
    path = config(tmp_path, {"future": {"documents": ["future_evolution.jsonl", "gone.jsonl"], "tasks": "gone2.jsonl"}})
    cfg, warnings = load_config(path)
    assert cfg.evaluation.future.documents == [tmp_path / "future_evolution.jsonl"]
    assert cfg.evaluation.future.tasks is None and cfg.evaluation.future.task_columns() == {}
    assert warnings == [
        f"evaluation.future: {tmp_path / name} does not exist, so the forgetting matrix has no column for it "
        "(`data from-git` writes it when it holds out a future: see --holdout-commits)"
        for name in ("gone.jsonl", "gone2.jsonl")
    ]
    (tmp_path / "adir").mkdir()
    assert "is a directory" in "\n".join(config_problems(config(tmp_path, {"future": {"tasks": "adir"}})))


def test_an_empty_future_file_is_left_out_with_a_warning(tmp_path):
    """`data from-git` writes an empty future_pr_mastery.jsonl when no merge follows the cut (and
    an empty future_evolution.jsonl when the future changed only binary files); config.yaml names
    both, so `validate` once stopped with "no documents (the file is empty); add JSONL lines"."""
    path = config(tmp_path, {"future": {"documents": ["future_evolution.jsonl", "future_pr_mastery.jsonl"]}})
    (tmp_path / "future_pr_mastery.jsonl").write_text("")
    cfg, warnings = load_config(path)
    assert cfg.evaluation.future.documents == [tmp_path / "future_evolution.jsonl"]
    assert warnings == [
        f"evaluation.future: {tmp_path / 'future_pr_mastery.jsonl'} is empty (the held-out future has nothing of its "
        "kind), so the forgetting matrix has no column for it"
    ]


def test_a_future_column_may_not_take_a_phase_name(tmp_path):
    clash = "\n".join(config_problems(config(tmp_path, {"future": {"documents": ["p1.jsonl"]}})))
    assert "evaluation.future.documents.0" in clash and "'p1'" in clash and "rename the file" in clash


def test_humaneval_limits(tmp_path):
    cfg, _ = load_config(config(tmp_path, {}))
    humaneval = cfg.evaluation.humaneval
    assert (humaneval.problems, humaneval.final_problems) == (20, 164)
    assert "evaluation.humaneval.problems" in "\n".join(
        config_problems(config(tmp_path, {"humaneval": {"problems": 165}}))
    )
    smaller = "\n".join(config_problems(config(tmp_path, {"humaneval": {"problems": 30, "final_problems": 10}})))
    assert "final_problems (10) must be at least problems (30)" in smaller


def test_checkpointing_options_need_checkpointing():
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            ["training.gradient_checkpointing=false", "training.performance.checkpoint_every_n_layers=2"],
            check_files=False,
        )
    assert (
        "training.performance.checkpoint_every_n_layers / checkpoint_offload need training.gradient_checkpointing: true"
        in str(err.value)
    )


@no_liger
def test_liger_true_without_liger_kernel_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.performance.liger_kernel=true"], check_files=False)
    assert err.value.problems == [
        "training.performance.liger_kernel: true needs liger-kernel, which is not installed; "
        "pip install 'phased-cpt[gpu]' (on a CUDA machine) or set it to auto"
    ]


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "training: {lora: {alpha: .inf}}\n" + PHASES,
            "training.lora.alpha: Input should be a finite number (got inf)",
        ),
        ("training: {learning_rate: .nan}\n" + PHASES, "training.learning_rate: Input should be a finite number"),
        ("phases: [{name: p, file: a.jsonl, epochs: .inf}]\n", "phases.0.epochs: Input should be a finite number"),
        ("data: {eval_ratio: .nan}\n" + PHASES, "data.eval_ratio: Input should be a finite number"),
    ],
)
def test_non_finite_numbers_are_config_errors(config_dir, text, expected):
    (problem,) = problems(text, config_dir)
    assert problem.startswith(expected)


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (-1, "training.seed: Input should be greater than or equal to 0 (got -1)"),
        (99999999999999, "training.seed: Input should be less than 4294967296 (got 99999999999999)"),
    ],
)
def test_seed_outside_what_the_seeding_accepts(config_dir, seed, expected):
    assert problems(f"training: {{seed: {seed}}}\n" + PHASES, config_dir) == [expected]
    load_config(config_dir / "c.yaml", ["training.seed=4294967295"])  # the largest one is fine


@pytest.mark.parametrize(
    "name", ["state.json", "metrics.jsonl", "config.resolved.yaml", "eval", "Rejected", "tensorboard", "wandb"]
)
def test_phase_named_like_a_file_of_the_run_layout(config_dir, name):
    (problem,) = problems(f"phases: [{{name: '{name}', file: a.jsonl}}]\n", config_dir)
    assert problem.startswith(f"phases.0.name: '{name}' is a file or directory of the run directory itself")


def test_the_reserved_phase_names_are_the_run_layouts():
    from phased_cpt.config.schema import RUN_ENTRY_NAMES
    from phased_cpt.run_dir import RUN_LAYOUT_NAMES

    assert set(RUN_ENTRY_NAMES) == set(RUN_LAYOUT_NAMES)


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "x" * 101, "name with space", "ü"])
def test_phase_name_that_is_not_a_safe_directory_name(config_dir, name):
    (problem,) = problems(yaml.safe_dump({"phases": [{"name": name, "file": "a.jsonl"}]}), config_dir)
    assert problem.startswith("phases.0.name: String should match pattern")


def test_trust_remote_code_is_off_unless_the_config_turns_it_on(config_dir):
    (config_dir / "c.yaml").write_text(PHASES)
    assert load_config(config_dir / "c.yaml")[0].model.trust_remote_code is False
    assert load_config(config_dir / "c.yaml", ["model.trust_remote_code=true"])[0].model.trust_remote_code is True


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
