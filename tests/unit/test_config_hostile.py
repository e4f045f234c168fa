"""Configs a hostile or careless user writes: each is one clear config problem at load time, never
a run that crashes or diverges later (issue 12 items 5, 7, 8, 12, 15, 16, 19, 23; issue 19 item 1)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from phased_cpt.config import load_config
from phased_cpt.errors import ConfigError

SECRET = "wandb-secret-0123456789abcdef"


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "a.jsonl").write_text('{"training_content": "x"}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(text: str, work: Path, overrides=()) -> list[str]:
    path = work / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    assert all("\n" not in p for p in err.value.problems)
    return err.value.problems


PHASES = "phases: [{name: p, file: a.jsonl}]\n"


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
def test_non_finite_numbers_are_config_errors(work, text, expected):
    (problem,) = problems(text, work)
    assert problem.startswith(expected)


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (-1, "training.seed: Input should be greater than or equal to 0 (got -1)"),
        (99999999999999, "training.seed: Input should be less than 4294967296 (got 99999999999999)"),
    ],
)
def test_seed_outside_what_the_seeding_accepts(work, seed, expected):
    assert problems(f"training: {{seed: {seed}}}\n" + PHASES, work) == [expected]
    load_config(work / "c.yaml", ["training.seed=4294967295"])  # the largest one is fine


@pytest.mark.parametrize(
    "name", ["state.json", "metrics.jsonl", "config.resolved.yaml", "eval", "Rejected", "tensorboard", "wandb"]
)
def test_phase_named_like_a_file_of_the_run_layout(work, name):
    (problem,) = problems(f"phases: [{{name: '{name}', file: a.jsonl}}]\n", work)
    assert problem.startswith(f"phases.0.name: '{name}' is a file or directory of the run directory itself")


def test_the_reserved_phase_names_are_the_run_layouts():
    from phased_cpt.config.schema import RUN_ENTRY_NAMES
    from phased_cpt.run_dir import RUN_LAYOUT_NAMES

    assert set(RUN_ENTRY_NAMES) == set(RUN_LAYOUT_NAMES)


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "x" * 101, "name with space", "ü"])
def test_phase_name_that_is_not_a_safe_directory_name(work, name):
    (problem,) = problems(yaml.safe_dump({"phases": [{"name": name, "file": "a.jsonl"}]}), work)
    assert problem.startswith("phases.0.name: String should match pattern")


def test_duplicate_keys_name_both_lines(work):
    text = "training:\n  seed: 1\n" + PHASES + "training:\n  seed: 2\n"
    assert problems(text, work) == [
        f"{work / 'c.yaml'}:4: duplicate key 'training' (first at line 1, again at line 4); YAML would keep only "
        "the last one: merge them into one"
    ]
    nested = "training:\n  seed: 1\n  seed: 2\n" + PHASES
    assert problems(nested, work)[0].startswith(f"{work / 'c.yaml'}:3: duplicate key 'seed' (first at line 2")


def test_merge_keys_are_not_duplicates(work):
    path = work / "c.yaml"
    path.write_text("training:\n  <<: {seed: 1, logging_steps: 5}\n  seed: 2\n" + PHASES)
    cfg, _ = load_config(path)
    assert (cfg.training.seed, cfg.training.logging_steps) == (2, 5)  # the mapping's own key overrides the merged


def test_alias_bomb_is_refused_quickly(work):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
    ]
    started = time.perf_counter()
    (problem,) = problems("\n".join(levels) + "\n", work)
    assert time.perf_counter() - started < 2  # was 40 s and 1.4 GB at depth 7
    assert "expand to more than 10,000 values" in problem and "alias bomb" in problem


def test_recursive_alias_and_deep_nesting(work):
    assert "a recursive alias" in problems("a: &a [1, *a]\n", work)[0]
    assert "nested too deeply" in problems("a: " + "[" * 5000 + "]" * 5000 + "\n", work)[0]


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("model.name.x=1", "--set 'model.name.x=1': model.name holds a value, not a section of keys"),
        ("phases.0.file.x.y=2", "--set 'phases.0.file.x.y=2': phases.0.file holds a value, not a section of keys"),
        ("training.seed.x=1", "--set 'training.seed.x=1': training.seed holds a value, not a section of keys"),
        ("training={a: 1, a: 2}", "duplicate key 'a'"),
    ],
)
def test_set_into_a_value_is_a_config_error(work, assignment, expected):
    text = "model: {name: m}\ntraining: {seed: 1}\n" + PHASES
    assert expected in problems(text, work, [assignment])[0]


def test_a_misplaced_secret_is_never_echoed(work, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    found = problems("wandb: {enabled: '${WANDB_API_KEY}'}\n" + PHASES, work)
    assert found == [
        "wandb.enabled: Input should be a valid boolean, unable to interpret input (got '<value of $WANDB_API_KEY>')"
    ]
    monkeypatch.setenv("HF_TOKEN", "hf_" + SECRET)
    found = problems("model: {name: {x: '${HF_TOKEN}'}}\n" + PHASES, work)
    assert SECRET not in " ".join(found) and "<value of $HF_TOKEN>" in found[0]


@pytest.mark.parametrize(
    "assignment", [f"wandb.api_key={SECRET}", f"wandb.entity={SECRET}", f"wandb.api_key.x={SECRET}"]
)
def test_a_secret_on_the_command_line_is_refused_without_echoing_it(work, monkeypatch, assignment):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    (problem,) = problems(PHASES, work, [assignment])
    assert SECRET not in problem
    assert "a secret on the command line" in problem or "holds a value" in problem


def test_an_env_reference_on_the_command_line_is_not_a_secret(work, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    (work / "c.yaml").write_text(PHASES)
    load_config(work / "c.yaml", ["wandb.api_key=${WANDB_API_KEY}", "wandb.project=mine"])


def test_a_directory_given_as_a_data_file(work):
    (work / "data").mkdir()
    (problem,) = problems("phases: [{name: p, file: data}]\n", work)
    assert (
        problem == f"phases.0.file: data file '{work / 'data'}' is a directory, not a regular file; point the phase at "
        "an existing JSONL file"
    )
    (problem,) = problems("phases: [{name: p, file: missing.jsonl}]\n", work)
    assert "does not exist" in problem


def test_a_directory_given_as_the_config(work):
    with pytest.raises(ConfigError, match="is a directory; name a YAML file"):
        load_config(work)


def test_eval_file_that_is_the_training_file(work):
    os.symlink(work / "a.jsonl", work / "link.jsonl")
    for eval_file in ("a.jsonl", "./a.jsonl", str(work / "a.jsonl"), "link.jsonl"):
        (problem,) = problems(f"phases: [{{name: p, file: a.jsonl, eval_file: '{eval_file}'}}]\n", work)
        assert problem.startswith("phases.0: eval_file ") and "is a training file itself" in problem


def test_trust_remote_code_is_off_unless_the_config_turns_it_on(work):
    (work / "c.yaml").write_text(PHASES)
    assert load_config(work / "c.yaml")[0].model.trust_remote_code is False
    assert load_config(work / "c.yaml", ["model.trust_remote_code=true"])[0].model.trust_remote_code is True


def test_a_secret_interpolated_into_a_key_that_is_not_secret_is_masked_in_every_dump(work, monkeypatch):
    """config.resolved.yaml and the W&B run config (`public_config`) never hold a secret-looking
    variable's value, wherever it was interpolated (issue 29)."""
    from phased_cpt.config import dump_config, public_config

    monkeypatch.setenv("HF_TOKEN", SECRET)
    (work / "c.yaml").write_text(PHASES.replace("file: a.jsonl", "file: a.jsonl, description: 'tok ${HF_TOKEN}'"))
    cfg, _ = load_config(work / "c.yaml", ["output.run_name=run-${HF_TOKEN}"])
    assert cfg.phases[0].description == f"tok {SECRET}"  # the value itself is what the user asked for
    dumped = dump_config(cfg)
    assert SECRET not in dumped and SECRET not in str(public_config(cfg))
    assert "tok <value of $HF_TOKEN>" in dumped and "run-<value of $HF_TOKEN>" in dumped


def test_a_digit_phase_name_equal_to_another_index_is_ambiguous_in_set(work):
    two = "phases: [{name: '1', file: a.jsonl}, {name: '0', file: a.jsonl}]\n"
    (problem,) = problems(two, work, ["phases.1.epochs=3"])
    assert "'1' is both the index of item 1 and the name of item 0" in problem
    (work / "c.yaml").write_text("phases: [{name: '0', file: a.jsonl}, {name: b, file: a.jsonl}]\n")
    cfg, _ = load_config(work / "c.yaml", ["phases.0.epochs=3", "phases.b.epochs=2"])  # item 0 named '0': no doubt
    assert [p.epochs for p in cfg.phases] == [3, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${UNSET_A:-${SET_B}}", "bee"),
        ("${UNSET_A:-${UNSET_C:-x}}", "x"),
        ("${SET_B:-${UNSET_C}}", "bee"),  # the default is not looked at when the variable is set
        ("$${SET_B}", "${SET_B}"),
        ("a$${b}c-${SET_B}", "a${b}c-bee"),
        ("${UNSET_A:-${SET_B}", "${UNSET_A:-${SET_B}"),  # unclosed: as written
    ],
)
def test_nested_defaults_and_the_escape_for_a_literal_reference(work, monkeypatch, text, expected):
    monkeypatch.setenv("SET_B", "bee")
    monkeypatch.delenv("UNSET_A", raising=False)
    monkeypatch.delenv("UNSET_C", raising=False)
    (work / "c.yaml").write_text(PHASES.replace("file: a.jsonl", f"file: a.jsonl, description: '{text}'"))
    assert load_config(work / "c.yaml")[0].phases[0].description == expected
