"""`phased-cpt plan`: steps, warm-up, evaluation and checkpoint points as the HF Trainer will run
them for a world size given as a flag, warnings, and memory and time without the real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from transformers import TrainingArguments

from phased_cpt.cli import main
from phased_cpt.config import ContextConfig, DataConfig, EvaluationConfig, PhaseConfig, TrainingConfig
from phased_cpt.data.encoder import ByteEstimate
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.data.plan import (
    PhaseRows,
    optimizer_steps,
    plan_phases,
    plan_warnings,
    warmup_steps,
)
from tests.conftest import write_jsonl
from tests.unit.config.test_legacy import OLDER

QWEN25_32B = Path(__file__).resolve().parents[2] / "fixtures" / "model_configs" / "qwen2.5-32b"


def rows_of(count: int, tokens: int = 100, eval_documents: int = 1) -> PhaseRows:
    statistics = {
        "documents": count,
        "document_tokens": count * tokens,
        "longest_document_tokens": tokens,
        "chunks": count,
        "rows": count,
        "tokens": count * tokens,
        "target_tokens": count * (tokens - 1),
        "eos_tokens": count,
        "replay_tokens": 0,
        "packing_efficiency": 1.0,
    }
    return PhaseRows(statistics, np.full(count, tokens), eval_documents, eval_documents * tokens)


def phase(name: str, epochs: float = 1) -> PhaseConfig:
    return PhaseConfig.model_validate(
        {"name": name, "file": f"{name}.jsonl", "epochs": epochs}, context={"check_files": False}
    )


def training(**overrides) -> TrainingConfig:
    return TrainingConfig(
        **(
            {"micro_batch_size": 1, "gradient_accumulation_steps": 6, "warmup_ratio": 0.03, "save_steps": 200}
            | overrides
        )
    )


# --- counts as the HF Trainer makes them --------------------------------------------------------


def test_steps_count_a_last_partial_accumulation_as_the_trainer_does(tiny_model_dir, tmp_path):
    """transformers 5 counts ceil(micro-batches / accumulation) steps per epoch; run the real
    Trainer on 10 rows, micro-batch 2, accumulation 2, 1.5 epochs: 5 micro-batches, 3 steps per
    epoch, ceil(4.5) = 5 steps."""
    from phased_cpt.config import LoraConfig, ModelConfig
    from phased_cpt.modeling import attach_lora, load_base_model
    from phased_cpt.training.phase import PhaseTrainer, training_arguments

    settings = TrainingConfig(
        micro_batch_size=2,
        gradient_accumulation_steps=2,
        gradient_checkpointing=False,
        logging_steps=100,
        save_steps=100,
    )
    model = attach_lora(load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32")), LoraConfig(r=2))
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]} for _ in range(10)]
    args = training_arguments(settings, epochs=1.5, phase_dir=tmp_path)
    trainer = PhaseTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        max_nonfinite_losses=3,
        data_collator=lambda batch: {k: __import__("torch").tensor([r[k] for r in batch]) for k in batch[0]},
    )
    trainer.train()
    assert trainer.state.max_steps == trainer.state.global_step == optimizer_steps(10, settings, 1.5) == 5


@pytest.mark.parametrize("steps, ratio", [(3, 0.03), (9, 0.03), (100, 0.03), (100, 0.0), (7, 0.5)])
def test_warmup_steps_are_the_trainers(steps, ratio):
    args = TrainingArguments(output_dir="unused", warmup_steps=ratio, report_to="none", use_cpu=True)
    assert warmup_steps(steps, ratio) == args.get_warmup_steps(steps)


def test_eight_gpus_divide_the_micro_batches_and_the_points_follow(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    phases = [phase("p1", epochs=3)]
    evaluation = EvaluationConfig(eval_steps=4)
    (one,) = plan_phases(phases, training(save_steps=5), ContextConfig(), {"p1": rows_of(162)}, 1, evaluation)
    (eight,) = plan_phases(phases, training(save_steps=5), ContextConfig(), {"p1": rows_of(162)}, 8, evaluation)
    assert (one.micro_batches, one.steps_per_epoch, one.steps) == (3 * 162, 27, 81)
    # 162 rows on 8 GPUs: 21 micro-batches each per epoch, 4 steps (the 4th over 3 micro-batches)
    assert (eight.micro_batches, eight.steps_per_epoch, eight.steps) == (63, 4, 12)
    assert eight.warmup_steps == 1  # ceil(12 x 0.03)
    assert eight.evaluation_steps == [4, 8, 12] and eight.checkpoint_steps == [5, 10]


def test_world_size_from_the_launcher_when_no_flag(monkeypatch):
    phases = [phase("p1")]
    monkeypatch.setenv("WORLD_SIZE", "4")
    (plan,) = plan_phases(phases, training(gradient_accumulation_steps=1), ContextConfig(), {"p1": rows_of(40)})
    assert plan.steps == 10


def test_warnings_name_every_setting_that_trains_differently_than_it_reads():
    phases = [phase("short"), phase("long")]
    settings = training(warmup_ratio=0.0, gradient_accumulation_steps=6, save_steps=50)
    evaluation = EvaluationConfig(eval_steps=200)
    plans = plan_phases(
        phases, settings, ContextConfig(), {"short": rows_of(20), "long": rows_of(8 * 6 * 60)}, 8, evaluation
    )
    warnings = "\n".join(plan_warnings(plans, settings, evaluation))
    assert "short: 1 optimizer step(s), fewer than 50" in warnings
    assert "short: 0 warm-up steps" in warnings and "long: 0 warm-up steps" in warnings
    assert (
        "short: 3 micro-batch(es) per process, fewer than one accumulation (gradient_accumulation_steps 6)" in warnings
    )
    assert "short: evaluation.eval_steps (200) is never reached in 1 step(s)" in warnings
    assert "short: no checkpoint inside the phase" in warnings
    assert "long: 60 optimizer step(s)" not in warnings and "long: evaluation.eval_steps (200) is never" in warnings
    assert "long: no checkpoint" not in warnings  # 60 steps, one save at step 50


def test_a_phase_with_no_held_out_documents_is_a_warning():
    """One document, or eval_ratio 0 without the forgetting matrix: no eval loss (issue 19 item 5)."""
    settings = training(save_steps=1)
    plans = plan_phases(
        [phase("none"), phase("some")],
        settings,
        ContextConfig(),
        {"none": rows_of(1, eval_documents=0), "some": rows_of(10)},
        1,
        EvaluationConfig(),
    )
    warnings = plan_warnings(plans, settings, EvaluationConfig())
    assert [w for w in warnings if "held out" in w] == [
        "none: no document held out for evaluation (data.eval_ratio, or the phase's eval_file): no eval loss is "
        "logged for it and its forgetting-matrix column stays empty"
    ]


def test_without_the_tokenizer_tokens_come_from_bytes_through_the_same_chunking(tmp_path):
    texts = ["x" * 350, "y" * 35, "z" * 7000]  # 100, 10 and 2000 tokens at 3.5 bytes per token, + EOS
    write_jsonl(tmp_path / "p.jsonl", texts)
    context = ContextConfig(max_tokens=512, overlap_tokens=64)
    data = build_phase_data(
        PhaseConfig(name="p", file=tmp_path / "p.jsonl"), DataConfig(eval_ratio=0.0), ByteEstimate(3.5), context, 0
    )
    rows = PhaseRows.of(data, estimated=True)
    assert rows.estimated and rows.statistics["document_tokens"] == 101 + 11 + 2001
    from phased_cpt.data.chunking import chunk_document

    chunks = 1 + 1 + len(chunk_document(2001, 512, 64))
    assert rows.statistics["chunks"] == rows.statistics["rows"] == chunks
    assert int(rows.chunk_lengths.sum()) == 101 + 11 + sum(s.length for s in chunk_document(2001, 512, 64))


# --- the older tool's real config, planned for 8 GPUs without the model ----------------------------


@pytest.fixture
def older_config(tmp_path) -> Path:
    for name, count in (("phase1_foundation", 40), ("phase2_evolution", 60), ("phase3_pr_mastery", 30)):
        write_jsonl(
            tmp_path / "dataset" / f"{name}.jsonl",
            [f"def f{i}(x):\n    return x + {i}\n" * (20 + 37 * i) for i in range(count)],
        )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(OLDER))
    return config


def test_plan_8_gpus_of_the_older_config_gives_steps_memory_and_time_without_weights(older_config, capsys):
    assert (
        main(
            [
                "plan",
                str(older_config),
                "--gpus",
                "8",
                "--gpu-model",
                "h200",
                "--json",
                "--model-config",
                str(QWEN25_32B),
            ]
        )
        == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert (plan["world_size"], plan["gpu"]) == (8, "H200 141GB")
    assert plan["deepspeed"].startswith("zero3")  # kept from the older code
    # 38, 57 and 28 training rows (5% held out) over 8 GPUs: 5, 8 and 4 micro-batches each per epoch,
    # 1, 2 and 1 steps of up to 6 micro-batches; 3, 2 and 2 epochs
    assert [p["steps"] for p in plan["phases"]] == [3, 4, 2]
    assert all(p["estimated"] for p in plan["phases"])
    assert any("estimated at 3.5 bytes per token" in note for note in plan["notes"])
    low, mid, high = plan["seconds"]
    assert 0 < low < mid < high
    memory = plan["memory"]
    assert memory["no_liger"]["gpu_bytes"] < memory["gpu_memory_bytes"]  # ZeRO-3 on 8 H200s fits a 32B at 32K
    assert memory["liger"]["gpu_bytes"] < memory["no_liger"]["gpu_bytes"]
    warnings = "\n".join(plan["warnings"])
    assert "phase1_foundation: 3 optimizer step(s), fewer than 50" in warnings
    assert "evaluation.eval_steps (50) is never reached" in warnings and "no checkpoint inside the phase" in warnings


def test_plan_table_says_where_memory_and_time_come_from(older_config, capsys):
    assert main(["plan", str(older_config), "--gpus", "4", "--nodes", "2", "--model-config", str(QWEN25_32B)]) == 0
    out = capsys.readouterr().out
    assert "processes: 8 (4 GPU(s) x 2 node(s))" in out
    assert "memory per GPU (H100 SXM 80GB, 79.2 GiB; rows of " in out and "with Liger" in out
    assert "time on 8 x H100 SXM 80GB (matrix work at 24% of its 989 TFLOP/s, measured on this GPU model): ~" in out
    assert "note: memory and time are for H100 SXM 80GB GPUs" in out
    assert "warning: phase1_foundation:" in out


def test_plan_without_config_json_says_how_to_give_one(older_config, capsys):
    assert main(["plan", str(older_config), "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "memory and time unknown: no config.json for Kwaipilot/KAT-Dev" in out and "--model-config" in out


@pytest.mark.parametrize("name", ["Voodoo5", "H100; rm -rf /", "nvidia h100 80gb hbm3", "a100 80"])
def test_unknown_gpu_model_is_one_error_line_with_the_known_names(older_config, capsys, name):
    """Only a whole known name counts: a text that merely contains one ('H100; rm -rf /') is refused."""
    with pytest.raises(SystemExit) as exit:
        main(["plan", str(older_config), "--gpu-model", name])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: argument --gpu-model: unknown GPU {name!r}; known: H100 PCIE, H100 NVL, H100, H200")


@pytest.mark.parametrize(
    ("name", "spec"), [("h200", "H200 141GB"), ("A100-40GB", "A100 40GB"), ("H100_sxm 80gb", "H100 SXM 80GB")]
)
def test_gpu_model_takes_an_alias_or_the_full_name(name, spec):
    from phased_cpt.gpus import gpu_by_name

    assert gpu_by_name(name).name == spec


def test_the_replay_cap_warning_comes_from_the_plan_so_a_cache_hit_shows_it_too(tiny_model_dir, tmp_path, capsys):
    """Earlier phases hold fewer tokens than replay_ratio asks for: warned on every plan (and
    train: the same `plan_warnings`), not only when the cache entry is built (issue 29)."""
    from tests.conftest import bundled_texts

    write_jsonl(tmp_path / "p1.jsonl", bundled_texts("phase1_foundation", 2))
    write_jsonl(tmp_path / "p2.jsonl", bundled_texts("phase2_evolution", 40))
    config = {
        "model": {"name": str(tiny_model_dir)},
        "data": {"cache_dir": str(tmp_path / "cache")},
        "phases": [{"name": "p1", "file": "p1.jsonl"}, {"name": "p2", "file": "p2.jsonl", "replay_ratio": 0.9}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    for _ in range(2):  # built, then read from the cache
        assert main(["plan", str(tmp_path / "c.yaml"), "--gpus", "1"]) == 0
        output = "".join(capsys.readouterr())
        assert "p2: replay: earlier phases hold only" in output and "its replay_ratio asks for" in output
    assert len(list((tmp_path / "cache").iterdir())) >= 2


def test_plan_shows_each_evaluation_sets_contamination_and_warns_on_recall(tmp_path, capsys):
    seen_line = "def load_settings(path: str) -> dict:"
    write_jsonl(tmp_path / "p1.jsonl", [f"{seen_line}\n    return json.loads(Path(path).read_text())\n"])
    write_jsonl(tmp_path / "p1_eval.jsonl", [f"{seen_line}\nclass SettingsError(RuntimeError): pass\n"])
    write_jsonl(tmp_path / "future_evolution.jsonl", ["def merge_settings(a: dict, b: dict) -> dict:\n"])
    data = {
        "model": {"name": str(tmp_path / "no-model-here")},
        "phases": [{"name": "p1", "file": "p1.jsonl", "eval_file": "p1_eval.jsonl"}],
        "evaluation": {"future": {"documents": ["future_evolution.jsonl"]}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert main(["plan", str(tmp_path / "config.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    final = plan["contamination"]["rows"][-1]
    assert final["after"] == "p1"
    assert (final["results"]["p1"]["seen"], final["results"]["p1"]["lines"]) == (1, 2)
    assert final["results"]["future_evolution"]["share"] == 0.0
    assert any(w.startswith("p1: 50.0%") and "recall rather than learning" in w for w in plan["warnings"])
    assert main(["plan", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "contamination (lines >= 25 chars" in out and "p1 50.0% (recall), future_evolution 0.0%" in out


def test_without_the_tokenizer_replay_weights_and_general_text_are_planned_and_only_fim_is_not(tmp_path):
    """The byte estimate runs the real preparation: replay, source weights and general mixing are
    in its counts; only FIM (it rearranges text through the tokenizer) is left out, and said so."""
    from phased_cpt.config import load_config
    from phased_cpt.data.plan import prepare_plan_rows

    files = {
        name: write_jsonl(tmp_path / f"{name}.jsonl", [f"{name} {i} " + "x" * 90 for i in range(12)]) for name in "abcg"
    }
    phases = [
        {"name": "one", "file": str(files["a"])},
        {
            "name": "two",
            "file": [{"path": str(files["b"]), "weight": 2}, {"path": str(files["c"]), "weight": 1}],
            "replay_ratio": 0.2,
        },
    ]
    cfg, _ = load_config(
        None,
        base_data={
            "model": {"name": "nobody/not-on-this-machine"},
            "phases": phases,
            "general": {"file": str(files["g"]), "ratio": 0.1},
            "context": {"max_tokens": 128, "overlap_tokens": 16, "fim_rate": 0.5},
            "data": {"cache_dir": str(tmp_path / "cache")},
        },
    )
    rows, notes = prepare_plan_rows(cfg)
    two = rows["two"].statistics
    assert rows["two"].estimated and two["replay_tokens"] > 0 and two["general_tokens"] > 0
    assert two["eos_tokens"] > two["documents"]  # weights repeat documents, and their EOS
    assert any(note.startswith("FIM: not in the estimated counts") for note in notes)
    assert not any("replay" in note for note in notes)
    assert not (tmp_path / "cache").exists()  # an estimate is never written to the data cache
