"""errors.py: which names look secret, how their values are masked in every message, and which
write errors become a StorageError that says the disk is full or a directory is not writable."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from phased_cpt.errors import (
    ConfigError,
    StorageError,
    TrainingDiverged,
    UserError,
    existing,
    is_secret_name,
    redact,
    redact_data,
    secret_values,
    storage_errors,
    storage_problem,
)

ENV = {"WANDB_API_KEY": "k" * 20, "HF_TOKEN": "hf_" + "t" * 12, "MY_PASSWORD": "short", "HOME": "/home/someone"}


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("WANDB_API_KEY", True),
        ("wandb.api_key", True),
        ("hf-token", True),
        ("DB_PASSWORD", True),
        ("TOKENIZERS_PARALLELISM", False),
        ("KEYBOARD", False),
        ("HOME", False),
    ],
)
def test_a_name_is_secret_when_one_of_its_words_is(name, secret):
    assert is_secret_name(name) is secret


def test_only_secret_names_with_values_of_8_characters_or_more_are_masked():
    assert secret_values(ENV) == {"k" * 20: "WANDB_API_KEY", "hf_" + "t" * 12: "HF_TOKEN"}
    text = f"key {'k' * 20}, token {'hf_' + 't' * 12}, password short, home /home/someone"
    assert (
        redact(text, ENV)
        == "key <value of $WANDB_API_KEY>, token <value of $HF_TOKEN>, password short, home /home/someone"
    )


def test_the_longest_secret_is_masked_first():
    env = {"A_KEY": "abcdefgh", "B_KEY": "abcdefghijkl"}
    assert redact("x abcdefghijkl y abcdefgh", env) == "x <value of $B_KEY> y <value of $A_KEY>"


def test_nested_data_is_masked_in_keys_and_values_and_other_types_are_kept():
    secret = "k" * 20
    data = {"wandb": {"api_key": secret, secret: [secret, 3, None]}, "n": 1.5}
    assert redact_data(data, ENV) == {
        "wandb": {
            "api_key": "<value of $WANDB_API_KEY>",
            "<value of $WANDB_API_KEY>": ["<value of $WANDB_API_KEY>", 3, None],
        },
        "n": 1.5,
    }


def test_a_user_error_never_shows_a_secret_of_the_environment(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s" * 16)
    assert str(UserError(f"bad key {'s' * 16}")) == "bad key <value of $WANDB_API_KEY>"
    err = ConfigError([f"wandb.project: {'s' * 16} is not a project"], source="c.yaml")
    assert err.problems == ["wandb.project: <value of $WANDB_API_KEY> is not a project"]
    assert str(err) == "c.yaml: 1 config problem:\n  - wandb.project: <value of $WANDB_API_KEY> is not a project"


def test_exit_codes():
    assert UserError("x").exit_code == 2
    assert UserError("x", exit_code=5).exit_code == 5
    assert TrainingDiverged("x").exit_code == 3
    assert str(ConfigError(["a", "b"])).startswith("2 config problems:")


def test_a_full_disk_or_a_refused_write_is_a_storage_problem_any_other_error_is_not(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f"))
    assert storage_problem(full, tmp_path).startswith(f"no space left on the device of {tmp_path / 'f'} (")
    refused = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))
    assert storage_problem(refused, tmp_path) == f"{tmp_path / 'ro'} is not writable (Permission denied)"
    assert storage_problem(ValueError("not a disk problem"), tmp_path) is None
    # a writer that lost the errno counts only where the disk is in fact (nearly) full
    assert storage_problem(RuntimeError("[enforce fail] unexpected pos 10 vs 20"), tmp_path) is None


def test_the_cause_chain_is_searched(tmp_path):
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert storage_problem(outer, tmp_path) == f"{tmp_path} is not writable (Read-only file system)"


def test_storage_errors_turns_only_storage_problems_into_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="is not writable") as caught, storage_errors(tmp_path, run_path=tmp_path):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / "x"))
    assert caught.value.run_path == tmp_path and caught.value.exit_code == 2
    with pytest.raises(ValueError), storage_errors(tmp_path):
        raise ValueError("a bug keeps its traceback")
    with pytest.raises(UserError, match="kept as it is"), storage_errors(tmp_path):
        raise UserError("kept as it is")


def test_existing_is_the_nearest_existing_parent(tmp_path):
    assert existing(tmp_path / "a" / "b" / "c") == tmp_path
    assert existing(Path("/")) == Path("/")
