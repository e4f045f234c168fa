"""config/loading.py: YAML, `${VAR}` interpolation, `--set` overrides, relative paths, and every
problem reported together, each naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from phased_cpt.config import dump_config, load_config, model_short_name
from phased_cpt.config.legacy import phase_dir_name
from phased_cpt.errors import ConfigError
from tests.conftest import config_problems, write_yaml
from tests.unit.config.conftest import PHASES, problems


@pytest.fixture
def data_files(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"training_content": "x"}\n')
    return tmp_path


def minimal(**sections) -> dict:
    data = {"phases": [{"name": "p1", "file": "a.jsonl", "epochs": 1}, {"name": "p2", "file": "b.jsonl"}]}
    data.update(sections)
    return data


def test_defaults_match_the_documented_ones(data_files):
    cfg, warnings = load_config(write_yaml(data_files / "config.yaml", minimal()))
    assert warnings == []
    assert (cfg.training.micro_batch_size, cfg.training.gradient_accumulation_steps) == (1, 6)
    assert cfg.training.learning_rate == 1e-4 and cfg.training.lr_scheduler == "cosine"
    assert (cfg.training.warmup_ratio, cfg.training.weight_decay, cfg.training.max_grad_norm) == (0.03, 0.1, 1.0)
    assert (cfg.training.lora.r, cfg.training.lora.alpha, cfg.training.lora.dropout) == (128, 256, 0.05)
    assert len(cfg.training.lora.target_modules) == 7
    assert (cfg.context.max_tokens, cfg.context.overlap_tokens) == (32768, 2048)
    assert cfg.context.chunk_long_samples and not cfg.context.sample_packing
    assert cfg.data.text_field == "training_content"
    assert cfg.run_name == "phased-kat-dev-lora"


def test_default_phases_are_the_three_curriculum_phases(tmp_path):
    cfg, _ = load_config(None, base_data={}, check_files=False)
    assert [(p.name, p.file.name, p.epochs) for p in cfg.phases] == [
        ("phase1_foundation", "phase1_foundation.jsonl", 3),
        ("phase2_evolution", "phase2_evolution.jsonl", 2),
        ("phase3_pr_mastery", "phase3_pr_mastery.jsonl", 2),
    ]


def test_relative_data_paths_resolve_against_the_config_directory(data_files, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal()))
    assert cfg.phases[0].file == data_files / "a.jsonl"


def test_unknown_key_names_its_path_and_suggests_the_right_one(data_files):
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal()), ["training.lora.rnak=8"])
    assert len(problems) == 1
    assert problems[0].startswith("training.lora.rnak: unknown key (did you mean 'r'?)")


def test_unknown_top_level_key_lists_valid_keys(data_files):
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal(trainig={"seed": 1})))
    assert problems[0].startswith("trainig: unknown key (did you mean 'training'?)")


def test_all_problems_are_reported_together(data_files):
    data = minimal(
        training={"micro_batch_size": "big", "lora": {"rnak": 8}},
        context={"max_tokens": 1024, "overlap_tokens": 4096},
        model={"dtype": "int4"},
    )
    data["phases"].append({"name": "p1", "file": "missing.jsonl"})
    problems = config_problems(write_yaml(data_files / "config.yaml", data))
    joined = "\n".join(problems)
    assert "training.micro_batch_size:" in joined
    assert "training.lora.rnak: unknown key" in joined
    assert "context.overlap_tokens (4096) must be smaller than context.max_tokens (1024)" in joined
    assert "model.dtype:" in joined
    assert "phases.2.file: data file" in joined and "missing.jsonl" in joined
    assert len(problems) == 5  # duplicate name is checked once the phase list itself is valid


@pytest.mark.parametrize(
    "phases, expected",
    [
        ([], "no phases"),
        ([{"name": "p", "file": "a.jsonl"}, {"name": "p", "file": "b.jsonl"}], "duplicate phase name 'p'"),
        ([{"name": "bad/name", "file": "a.jsonl"}], "phases.0.name"),
        ([{"file": "a.jsonl"}], "phases.0.name: required key is missing"),
    ],
)
def test_phase_list_rules(data_files, phases, expected):
    problems = config_problems(write_yaml(data_files / "config.yaml", {"phases": phases}))
    assert any(expected in p for p in problems), problems


def test_overlap_equal_to_max_tokens_is_a_contradiction(data_files):
    problems = config_problems(
        write_yaml(data_files / "config.yaml", minimal(context={"max_tokens": 512, "overlap_tokens": 512}))
    )
    assert problems == [
        "context.overlap_tokens (512) must be smaller than context.max_tokens (512); "
        "lower overlap_tokens or raise max_tokens"
    ]


def test_sample_packing_true_is_accepted(data_files):
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal(context={"sample_packing": True})))
    assert cfg.context.sample_packing


def test_data_pipeline_keys_have_defaults_and_limits(data_files):
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal()))
    assert (cfg.data.on_bad_record, cfg.data.dedup, cfg.data.cache_dir) == ("error", "none", None)
    assert [p.replay_ratio for p in cfg.phases] == [0.0, 0.0]
    cfg, _ = load_config(
        write_yaml(data_files / "config.yaml", minimal()),
        ["data.on_bad_record=skip", "data.dedup=exact", "data.cache_dir=/tmp/c", "phases.p2.replay_ratio=0.2"],
    )
    assert (cfg.data.on_bad_record, cfg.data.dedup, str(cfg.data.cache_dir)) == ("skip", "exact", "/tmp/c")
    assert cfg.phases[1].replay_ratio == 0.2
    problems = config_problems(
        write_yaml(data_files / "config.yaml", minimal()),
        ["data.on_bad_record=ignore", "data.dedup=fuzzy", "phases.p2.replay_ratio=1.0"],
    )
    assert sorted(p.split(":")[0] for p in problems) == ["data.dedup", "data.on_bad_record", "phases.1.replay_ratio"]


def test_first_phase_cannot_replay(data_files):
    (problem,) = config_problems(write_yaml(data_files / "config.yaml", minimal()), ["phases.p1.replay_ratio=0.1"])
    assert problem.startswith("phases.0.replay_ratio (0.1): the first phase has no earlier phase")


@pytest.mark.parametrize("value", [None, "zero2", "zero3", "auto"])
def test_deepspeed_accepts_null_and_the_named_configs(data_files, value):
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal(deepspeed=value)))
    assert cfg.deepspeed == value


def test_deepspeed_json_path_resolves_against_the_config_directory(data_files):
    (data_files / "ds.json").write_text("{}")
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal(deepspeed="ds.json")))
    assert cfg.deepspeed == str(data_files / "ds.json")


def test_deepspeed_unknown_name_or_missing_file_is_an_error(data_files):
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal(deepspeed="zero9")))
    assert problems[0].startswith(
        "deepspeed: 'zero9' is neither null, zero2, zero3, auto nor an existing DeepSpeed JSON file"
    )


@pytest.mark.parametrize(
    "deepspeed,offload,expected",
    [
        (None, "optimizer", "deepspeed_offload: optimizer needs DeepSpeed"),
        ("zero2", "optimizer_and_params", "deepspeed_offload: optimizer_and_params needs ZeRO-3"),
        ("ds.json", "optimizer", "deepspeed_offload: optimizer cannot be combined with the DeepSpeed file"),
    ],
)
def test_deepspeed_offload_contradictions_are_errors(data_files, deepspeed, offload, expected):
    (data_files / "ds.json").write_text("{}")
    problems = config_problems(
        write_yaml(data_files / "config.yaml", minimal(deepspeed=deepspeed, deepspeed_offload=offload))
    )
    assert problems[0].startswith(expected), problems


def test_deepspeed_offload_values_are_checked(data_files):
    problems = config_problems(
        write_yaml(data_files / "config.yaml", minimal(deepspeed="zero3", deepspeed_offload="nvme"))
    )
    assert problems[0].startswith("deepspeed_offload: ")


def test_set_overrides_by_index_and_by_phase_name(data_files):
    cfg, _ = load_config(
        write_yaml(data_files / "config.yaml", minimal()),
        ["phases.0.epochs=4", "phases.p2.learning_rate=5e-5", "training.lora.r=8", "model.name=/x/y"],
    )
    assert cfg.phases[0].epochs == 4
    assert cfg.phases[1].learning_rate == 5e-5
    assert cfg.training.lora.r == 8
    assert cfg.model.name == "/x/y"


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("training.lora.r", "expected key.path=value"),
        ("phases.7.epochs=1", "no list item '7'"),
        ("training..r=1", "empty key"),
    ],
)
def test_bad_set_overrides(data_files, assignment, expected):
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal()), [assignment])
    assert expected in problems[0]


def test_phase_overrides_apply_only_to_their_phase(data_files):
    data = minimal(training={"learning_rate": 1e-4, "max_steps": 10})
    data["phases"][1].update(learning_rate=3e-5, warmup_ratio=0.5, max_steps=2)
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", data))
    first, second = (p.training_for(cfg.training) for p in cfg.phases)
    assert (first.learning_rate, first.warmup_ratio, first.max_steps) == (1e-4, 0.03, 10)
    assert (second.learning_rate, second.warmup_ratio, second.max_steps) == (3e-5, 0.5, 2)


def test_env_interpolation_in_any_string(data_files, monkeypatch):
    monkeypatch.setenv("MY_MODEL", "/models/m")
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    data = minimal(
        model={"name": "${MY_MODEL}"}, wandb={"api_key": "${WANDB_API_KEY}"}, output={"dir": "${UNSET_DIR:-out}"}
    )
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", data))
    assert cfg.model.name == "/models/m"
    assert cfg.wandb.api_key.get_secret_value() == "secret-key-123"
    assert str(cfg.output.dir) == "out"
    assert "secret-key-123" not in dump_config(cfg)
    assert "secret-key-123" not in repr(cfg)


def test_env_interpolation_in_a_set_value(data_files, monkeypatch):
    """`${VAR}` works in any string, a --set value included (issue 19 item 7)."""
    monkeypatch.setenv("LORA_RANK", "8")
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    monkeypatch.delenv("UNSET_NAME", raising=False)
    cfg, _ = load_config(
        write_yaml(data_files / "config.yaml", minimal()),
        ["training.lora.r=${LORA_RANK}", "output.run_name=run-${UNSET_NAME:-x}", "wandb.api_key=${WANDB_API_KEY}"],
    )
    assert cfg.training.lora.r == 8 and cfg.output.run_name == "run-x"
    assert cfg.wandb.api_key.get_secret_value() == "secret-key-123"
    assert "secret-key-123" not in dump_config(cfg)


def test_a_secret_expanded_from_a_set_value_is_never_shown(data_files, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    problems = config_problems(
        write_yaml(data_files / "config.yaml", minimal()),
        ["training.lora.r=${WANDB_API_KEY}", "model.name=${NOPE_NOT_SET}"],
    )
    assert "secret-key-123" not in "\n".join(problems)
    assert any(p.startswith("training.lora.r:") and "<value of $WANDB_API_KEY>" in p for p in problems)
    assert any(p.startswith("model.name: environment variable NOPE_NOT_SET is not set") for p in problems)


def test_eval_ratio_zero_with_the_forgetting_matrix_is_refused(data_files):
    """Nothing held out gives a forgetting matrix of "—" (issue 19 item 5): refused at validate."""
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal(data={"eval_ratio": 0})))
    assert len(problems) == 1 and problems[0].startswith("data.eval_ratio is 0 and p1, p2 have no eval_file")
    assert "evaluation.forgetting_matrix: false" in problems[0]
    off = minimal(data={"eval_ratio": 0}, evaluation={"forgetting_matrix": False})
    assert load_config(write_yaml(data_files / "config.yaml", off))[0].data.eval_ratio == 0
    with_files = minimal(data={"eval_ratio": 0})
    for item in with_files["phases"]:
        item["eval_file"] = "b.jsonl" if item["file"] == "a.jsonl" else "a.jsonl"
    assert load_config(write_yaml(data_files / "config.yaml", with_files))[0].data.eval_ratio == 0


def test_unset_env_variable_is_a_problem_with_its_key_path(data_files, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    problems = config_problems(write_yaml(data_files / "config.yaml", minimal(model={"name": "${NOPE_NOT_SET}"})))
    assert problems[0].startswith("model.name: environment variable NOPE_NOT_SET is not set")


def test_empty_default_means_no_api_key(data_files, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg, _ = load_config(write_yaml(data_files / "config.yaml", minimal(wandb={"api_key": "${WANDB_API_KEY:-}"})))
    assert cfg.wandb.api_key is None


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: x\n  size: [unclosed\n")
    problems = config_problems(path)
    assert problems[0].startswith(f"{path}:")
    assert "invalid YAML" in problems[0]


def test_missing_config_file(tmp_path):
    assert "does not exist" in config_problems(tmp_path / "nope.yaml")[0]


def test_model_short_name():
    assert model_short_name("Kwaipilot/KAT-Dev") == "kat-dev"
    assert model_short_name("/tmp/models/tiny-llama/") == "tiny-llama"


# --- configs written for the older tool ---------------------------------------------------

LEGACY = {
    "wandb": {"api_key": "${WANDB_API_KEY:-}", "project": "old", "entity": None, "enabled": False},
    "model": {"name": "Kwaipilot/KAT-Dev", "size": "32B", "type": "qwen2"},
    "training": {
        "lora": {"r": 64, "alpha": 128, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 4,
        "eval_batch_size": 1,
        "learning_rate": 2e-4,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.05,
        "weight_decay": 0.0,
        "max_grad_norm": 0.5,
        "bf16": True,
        "fp16": False,
        "tf32": True,
        "logging_steps": 5,
        "save_steps": 100,
        "save_total_limit": 2,
        "eval_steps": 50,
        "gradient_checkpointing": True,
        "sample_packing": False,
    },
    "phased_training": {
        "phases": [
            {"name": "Foundation", "dataset_file": "phase1_foundation.jsonl", "epochs": 3, "description": "code"},
            {"name": "Evolution", "dataset_file": "phase2_evolution.jsonl", "epochs": 2},
            {"name": "PR Mastery", "dataset_file": "phase3_pr_mastery.jsonl", "epochs": 2},
        ]
    },
    "dataset": {
        "output_dir": "./data",
        "train_split": 0.98,
        "val_split": 0.02,
        "random_seed": 7,
        "max_tokens": 8192,
        "overlap_tokens": 512,
        "chunk_long_samples": True,
    },
}


def test_legacy_config_is_translated_with_warnings(tmp_path):
    for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"training_content": "x"}\n')
    cfg, warnings = load_config(write_yaml(tmp_path / "config.yaml", LEGACY))
    assert [p.name for p in cfg.phases] == ["phase1_foundation", "phase2_evolution", "phase3_pr_mastery"]
    assert cfg.phases[2].file == (tmp_path / "data" / "phase3_pr_mastery.jsonl").resolve()
    assert cfg.phases[0].description == "code"
    assert cfg.model.dtype == "bfloat16"
    assert (cfg.context.max_tokens, cfg.context.overlap_tokens) == (8192, 512)
    assert cfg.training.seed == 7 and cfg.training.lora.r == 64 and cfg.training.micro_batch_size == 2
    assert cfg.wandb.project == "old"
    joined = "\n".join(warnings)
    assert "older tool" in warnings[0]
    for dropped in (
        "model.type",
        "training.tf32",
        "training.eval_steps",
        "training.eval_batch_size",
        "dataset.val_split",
    ):
        assert dropped in joined


def test_legacy_typo_is_still_reported(tmp_path):
    data = {
        "dataset": {"max_tokens": 100, "overlap_tokens": 10},
        "training": {"learning_rat": 1e-4},
        "phased_training": {"phases": []},
    }
    problems = config_problems(write_yaml(tmp_path / "config.yaml", data))
    assert any(p.startswith("training.learning_rat: unknown key (did you mean 'learning_rate'?)") for p in problems)
    assert any("no phases" in p for p in problems)


@pytest.mark.parametrize(
    "index, name, expected",
    [
        (3, "PR Mastery", "phase3_pr_mastery"),
        (1, "Foundation", "phase1_foundation"),
        (2, "phase2_evolution", "phase2_evolution"),
        (2, "Code  Evolution!", "phase2_code_evolution"),
    ],
)
def test_phase_dir_name(index, name, expected):
    assert phase_dir_name(index, name) == expected


SECRET = "wandb-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("model.name.x=1", "--set 'model.name.x=1': model.name holds a value, not a section of keys"),
        ("phases.0.file.x.y=2", "--set 'phases.0.file.x.y=2': phases.0.file holds a value, not a section of keys"),
        ("training.seed.x=1", "--set 'training.seed.x=1': training.seed holds a value, not a section of keys"),
        ("training={a: 1, a: 2}", "duplicate key 'a'"),
    ],
)
def test_set_into_a_value_is_a_config_error(config_dir, assignment, expected):
    text = "model: {name: m}\ntraining: {seed: 1}\n" + PHASES
    assert expected in problems(text, config_dir, [assignment])[0]


def test_a_misplaced_secret_is_never_echoed(config_dir, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    found = problems("wandb: {enabled: '${WANDB_API_KEY}'}\n" + PHASES, config_dir)
    assert found == [
        "wandb.enabled: Input should be a valid boolean, unable to interpret input (got '<value of $WANDB_API_KEY>')"
    ]
    monkeypatch.setenv("HF_TOKEN", "hf_" + SECRET)
    found = problems("model: {name: {x: '${HF_TOKEN}'}}\n" + PHASES, config_dir)
    assert SECRET not in " ".join(found) and "<value of $HF_TOKEN>" in found[0]


@pytest.mark.parametrize(
    "assignment", [f"wandb.api_key={SECRET}", f"wandb.entity={SECRET}", f"wandb.api_key.x={SECRET}"]
)
def test_a_secret_on_the_command_line_is_refused_without_echoing_it(config_dir, monkeypatch, assignment):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    (problem,) = problems(PHASES, config_dir, [assignment])
    assert SECRET not in problem
    assert "a secret on the command line" in problem or "holds a value" in problem


def test_an_env_reference_on_the_command_line_is_not_a_secret(config_dir, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    (config_dir / "c.yaml").write_text(PHASES)
    load_config(config_dir / "c.yaml", ["wandb.api_key=${WANDB_API_KEY}", "wandb.project=mine"])


def test_a_directory_given_as_the_config(config_dir):
    with pytest.raises(ConfigError, match="is a directory; name a YAML file"):
        load_config(config_dir)


def test_a_secret_interpolated_into_a_key_that_is_not_secret_is_masked_in_every_dump(config_dir, monkeypatch):
    """config.resolved.yaml and the W&B run config (`public_config`) never hold a secret-looking
    variable's value, wherever it was interpolated (issue 29)."""
    from phased_cpt.config import dump_config, public_config

    monkeypatch.setenv("HF_TOKEN", SECRET)
    (config_dir / "c.yaml").write_text(PHASES.replace("file: a.jsonl", "file: a.jsonl, description: 'tok ${HF_TOKEN}'"))
    cfg, _ = load_config(config_dir / "c.yaml", ["output.run_name=run-${HF_TOKEN}"])
    assert cfg.phases[0].description == f"tok {SECRET}"  # the value itself is what the user asked for
    dumped = dump_config(cfg)
    assert SECRET not in dumped and SECRET not in str(public_config(cfg))
    assert "tok <value of $HF_TOKEN>" in dumped and "run-<value of $HF_TOKEN>" in dumped


def test_a_digit_phase_name_equal_to_another_index_is_ambiguous_in_set(config_dir):
    two = "phases: [{name: '1', file: a.jsonl}, {name: '0', file: a.jsonl}]\n"
    (problem,) = problems(two, config_dir, ["phases.1.epochs=3"])
    assert "'1' is both the index of item 1 and the name of item 0" in problem
    (config_dir / "c.yaml").write_text("phases: [{name: '0', file: a.jsonl}, {name: b, file: a.jsonl}]\n")
    cfg, _ = load_config(
        config_dir / "c.yaml", ["phases.0.epochs=3", "phases.b.epochs=2"]
    )  # item 0 named '0': no doubt
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
def test_nested_defaults_and_the_escape_for_a_literal_reference(config_dir, monkeypatch, text, expected):
    monkeypatch.setenv("SET_B", "bee")
    monkeypatch.delenv("UNSET_A", raising=False)
    monkeypatch.delenv("UNSET_C", raising=False)
    (config_dir / "c.yaml").write_text(PHASES.replace("file: a.jsonl", f"file: a.jsonl, description: '{text}'"))
    assert load_config(config_dir / "c.yaml")[0].phases[0].description == expected
