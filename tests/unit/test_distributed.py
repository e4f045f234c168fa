"""DeepSpeed config resolution (zero2/zero3/auto/path, offload), rank helpers, rank-0-only
writing, and the launcher commands."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

from phased_cpt.config import load_config
from phased_cpt.distributed import (
    AUTO_ZERO3_MAX_TOKENS,
    NAMED_CONFIGS,
    apply_offload,
    choose_zero_stage,
    fingerprint_adapter,
    is_main_process,
    plan_deepspeed,
    rank_zero_run_dir,
    world_size,
)
from phased_cpt.errors import ConfigError, UserError
from phased_cpt.launch import plan_launch, read_hostfile
from phased_cpt.run_dir import RunDir
from phased_cpt.training.metrics import SilentSink, open_sink
from tests.conftest import write_jsonl

GiB = 2**30


@pytest.fixture
def data_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "p1.jsonl", ["def f():\n    return 1\n"])


def config(data_file: Path, *overrides: str, path: Path | None = None):
    base = {"phases": [{"name": "p1", "file": str(data_file)}]}
    cfg, _ = load_config(path, list(overrides), base_data=base)
    return cfg


# --- auto: ZeRO-2 or ZeRO-3 ------------------------------------------------------------------

def test_auto_picks_zero3_for_long_rows_whatever_the_memory():
    name, reason = choose_zero_stage(AUTO_ZERO3_MAX_TOKENS + 1, zero2_bytes_per_gpu=1, gpu_bytes=80 * GiB)
    assert name == "zero3"
    assert "16384" in reason


def test_auto_keeps_zero2_at_exactly_16384_tokens_without_a_gpu():
    name, reason = choose_zero_stage(AUTO_ZERO3_MAX_TOKENS, None, None)
    assert name == "zero2"
    assert "not checked" in reason


def test_auto_picks_zero3_when_zero2_would_not_fit_a_gpu():
    name, reason = choose_zero_stage(8192, zero2_bytes_per_gpu=90 * GiB, gpu_bytes=80 * GiB)
    assert name == "zero3"
    assert "90.0 GiB" in reason and "80.0 GiB" in reason


def test_auto_picks_zero2_when_it_fits():
    assert choose_zero_stage(8192, zero2_bytes_per_gpu=30 * GiB, gpu_bytes=80 * GiB)[0] == "zero2"


def test_plan_auto_on_cpu_follows_max_tokens(data_file):
    short = plan_deepspeed(config(data_file, "deepspeed=auto", "context.max_tokens=8192", "context.overlap_tokens=0"))
    long = plan_deepspeed(config(data_file, "deepspeed=auto", "context.max_tokens=32768"))
    assert (short.source, short.zero_stage) == ("zero2", 2)
    assert (long.source, long.zero_stage) == ("zero3", 3)
    assert "32768" in long.reason


def test_plan_auto_with_parameter_offload_is_zero3(data_file):
    plan = plan_deepspeed(config(data_file, "deepspeed=auto", "deepspeed_offload=optimizer_and_params",
                                 "context.max_tokens=1024", "context.overlap_tokens=0"))
    assert plan.zero_stage == 3
    assert plan.config["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_plan_none_without_deepspeed(data_file):
    assert plan_deepspeed(config(data_file)) is None


# --- the config files ------------------------------------------------------------------------

@pytest.mark.parametrize("name,stage", [("zero2", 2), ("zero3", 3)])
def test_named_configs_have_their_stage_and_no_offload(data_file, name, stage):
    plan = plan_deepspeed(config(data_file, f"deepspeed={name}"))
    assert plan.zero_stage == stage
    assert plan.config == json.loads(NAMED_CONFIGS[name].read_text())
    assert plan.config["zero_optimization"]["offload_optimizer"]["device"] == "none"
    assert "optimizer" not in plan.config  # the Trainer's AdamW, as without DeepSpeed


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_every_auto_value_is_filled_by_the_trainer(name):
    """HF fills "auto" from TrainingArguments; an "auto" it does not know would reach DeepSpeed."""
    config = apply_offload(json.loads(NAMED_CONFIGS[name].read_text()), "optimizer")
    args = SimpleNamespace(
        world_size=2, per_device_train_batch_size=3, gradient_accumulation_steps=4, max_grad_norm=0.5,
        learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.1,
        save_on_each_node=False, fp16=False, fp16_full_eval=False, bf16=True, bf16_full_eval=False,
        get_warmup_steps=lambda steps: 0,
    )
    hf = HfTrainerDeepSpeedConfig(config)
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=64)), num_training_steps=10)
    assert "auto" not in json.dumps(hf.config)
    assert hf.config["train_batch_size"] == 2 * 3 * 4
    assert hf.config["gradient_clipping"] == 0.5
    assert hf.config["bf16"]["enabled"] is True
    assert hf.config["optimizer"]["params"]["lr"] == 1e-4


def test_user_json_file_is_used_as_is_and_resolved_against_the_config_dir(tmp_path, data_file):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_batch_size": "auto"}))
    (tmp_path / "run.yaml").write_text(f"deepspeed: ds.json\nphases: [{{name: p1, file: {data_file}}}]\n")
    cfg, _ = load_config(tmp_path / "run.yaml")
    assert cfg.deepspeed == str(tmp_path / "ds.json")
    plan = plan_deepspeed(cfg)
    assert plan.zero_stage == 1
    assert plan.config["train_batch_size"] == "auto"


# --- offload ---------------------------------------------------------------------------------

def test_offload_optimizer_moves_adam_states_and_uses_deepspeed_cpu_adam():
    base = json.loads(NAMED_CONFIGS["zero3"].read_text())
    offloaded = apply_offload(base, "optimizer")
    assert offloaded["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offloaded["zero_optimization"]["offload_param"]["device"] == "none"
    assert offloaded["optimizer"]["type"] == "AdamW"
    assert base["zero_optimization"]["offload_optimizer"]["device"] == "none"  # the input is untouched


def test_offload_params_also_moves_the_weights():
    offloaded = apply_offload(json.loads(NAMED_CONFIGS["zero3"].read_text()), "optimizer_and_params")
    assert offloaded["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_offload_none_changes_nothing():
    base = json.loads(NAMED_CONFIGS["zero2"].read_text())
    assert apply_offload(base, "none") == base


def test_plan_applies_the_offload_key_and_says_so(data_file):
    plan = plan_deepspeed(config(data_file, "deepspeed=zero2", "deepspeed_offload=optimizer"))
    assert plan.config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload: optimizer" in plan.reason


# --- ranks and rank-0-only writing ------------------------------------------------------------

def test_rank_helpers_read_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not is_main_process()
    assert world_size() == 2
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_single_process_creates_the_run_directory(tmp_path):
    run = rank_zero_run_dir(RunDir.create, tmp_path / "outputs", "r")
    assert run.path.is_dir() and run.writer


def test_a_read_only_run_directory_writes_no_state_config_or_metrics(tmp_path):
    run = RunDir(tmp_path, writer=False)
    run.write_state({"finished_phases": []})
    run.write_config("a: 1\n")
    sink = open_sink(run, SimpleNamespace(enabled=True), SimpleNamespace(enabled=True), {}, None)
    sink.log(1, "p1", {"loss": 1.0})
    sink.event("phase_start", phase="p1")
    sink.close()
    assert isinstance(sink, SilentSink)
    assert list(tmp_path.iterdir()) == []


def test_fingerprint_without_deepspeed_is_the_plain_fingerprint(tiny_model_dir):
    from phased_cpt.config import LoraConfig, ModelConfig
    from phased_cpt.modeling import adapter_fingerprint, attach_lora, load_base_model

    model = attach_lora(load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32")), LoraConfig(r=4, alpha=8))
    assert fingerprint_adapter(model) == adapter_fingerprint(model)


# --- launch ----------------------------------------------------------------------------------

def test_hostfile_is_read_per_host(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode1 slots=8\nnode2 slots=8  # second\n\n")
    assert read_hostfile(hostfile) == {"node1": 8, "node2": 8}


def test_bad_hostfile_line_names_file_and_line(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 8\n")
    with pytest.raises(UserError, match=r"hostfile:2: expected 'hostname slots=N'"):
        read_hostfile(hostfile)


def test_torchrun_command_starts_n_train_processes(tmp_path):
    plan = plan_launch(tmp_path / "c.yaml", ["--set", "a.b=1"], gpus=4, launcher="torchrun", master_port=1234)
    command = plan.command
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "4"
    assert command[-6:] == ["-m", "phased_cpt", "train", str(tmp_path / "c.yaml"), "--set", "a.b=1"]


def test_deepspeed_command_with_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    plan = plan_launch(tmp_path / "c.yaml", [], gpus=8, launcher="deepspeed", hostfile=hostfile, master_port=1234)
    command = plan.command
    assert Path(command[0]).name == "deepspeed"
    assert command[command.index("--hostfile") + 1] == str(hostfile)
    assert command[command.index("--num_gpus") + 1] == "8"
    assert command[-4:] == ["--module", "phased_cpt", "train", str(tmp_path / "c.yaml")]


def test_cpu_processes_get_one_thread_each(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_launch(tmp_path / "c.yaml", [], gpus=2, launcher="deepspeed", on_gpu=False)
    assert plan.env["OMP_NUM_THREADS"] == "1"
    assert plan.env["LOCAL_SIZE"] == "2"


def test_hostfile_with_torchrun_is_refused(tmp_path):
    with pytest.raises(UserError, match="--hostfile needs --launcher deepspeed"):
        plan_launch(tmp_path / "c.yaml", [], gpus=2, launcher="torchrun", hostfile=tmp_path / "h")


def test_zero_processes_is_refused(tmp_path):
    with pytest.raises(UserError, match="--gpus 0"):
        plan_launch(tmp_path / "c.yaml", [], gpus=0, launcher="torchrun")


def test_config_rejects_unknown_deepspeed_value(data_file):
    with pytest.raises(ConfigError, match="deepspeed: 'zero4' is neither null, zero2, zero3, auto nor an existing"):
        config(data_file, "deepspeed=zero4")


def test_launch_and_doctor_arguments():
    from phased_cpt.cli import build_parser

    args = build_parser().parse_args(
        ["launch", "c.yaml", "--gpus", "8", "--hostfile", "hosts", "--launcher", "deepspeed", "--set", "a=1", "--resume"]
    )
    assert (args.gpus, str(args.hostfile), args.launcher, args.overrides, args.resume) == (8, "hosts", "deepspeed", ["a=1"], "latest")
    assert build_parser().parse_args(["doctor", "c.yaml", "--json"]).json is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["launch", "c.yaml", "--launcher", "mpirun"])
