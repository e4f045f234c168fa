"""Each LoRA variant (rsLoRA, DoRA, embeddings trained in full or with LoRA) trains through two
phases, resumes bit-identically (mid-phase and at a phase boundary), merges with its logits
checked, and chats with the base model's logits intact. The CLI runs in this process: a subprocess
would cost more than the training of this tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from phased_cpt.cli import main
from phased_cpt.inference.generation import Generator
from phased_cpt.modeling import load_base_model
from tests.conftest import bundled_texts, tiny_model_config, write_jsonl
from tests.e2e.cli import tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PHASES = ("p1", "p2")
VARIANTS = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "embeddings-full": {"embeddings": "full"},
    "embeddings-lora": {"embeddings": "lora"},
}


def train(config: Path, *extra: str) -> None:
    assert main(["train", str(config), *extra]) == 0


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("variant-data")
    return {
        "p1": write_jsonl(root / "p1.jsonl", bundled_texts("phase1_foundation", 12)),
        "p2": write_jsonl(root / "p2.jsonl", bundled_texts("phase2_evolution", 16)),
    }


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant_run(request, data, tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp(request.param)
    cfg = tiny_run_config(
        tiny_model_dir,
        [(name, data[name], 1) for name in PHASES],
        training={
            "max_steps": 4,
            "save_steps": 2,
            "learning_rate": 1e-2,
            "gradient_checkpointing": False,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.1, **VARIANTS[request.param]},
        },
        data={"eval_ratio": 0.0},
        evaluation={"forgetting_matrix": False},
        tensorboard={"enabled": False},
        output={"dir": str(work / "outputs")},
    )
    config = write_yaml(work / "config.yaml", cfg)
    train(config)
    (run_dir,) = (work / "outputs").iterdir()
    return request.param, config, run_dir


def adapter_of(run_dir: Path, phase: str = "p2") -> dict[str, torch.Tensor]:
    return load_file(run_dir / phase / "adapter" / "adapter_model.safetensors")


def test_the_variant_is_what_was_trained_and_carried_across_phases(variant_run, tiny_model_dir):
    name, _, run_dir = variant_run
    saved = adapter_of(run_dir)
    config = json.loads((run_dir / "p2" / "adapter" / "adapter_config.json").read_text())
    base = load_file(tiny_model_dir / "model.safetensors")
    if name == "rslora":
        assert config["use_rslora"] is True
    if name == "dora":
        assert config["use_dora"] is True and any("lora_magnitude_vector" in k for k in saved)
    if name == "embeddings-full":
        assert sorted(config["modules_to_save"]) == ["embed_tokens", "lm_head"]
        trained = saved["base_model.model.lm_head.weight"]
        assert not torch.equal(trained, base["lm_head.weight"])  # trained in full
    if name == "embeddings-lora":
        assert {"embed_tokens", "lm_head"} <= set(config["target_modules"])
        assert any("embed_tokens.lora_embedding_B" in k for k in saved) and any("lm_head.lora_B" in k for k in saved)
    events = {
        (r["event"], r.get("phase")): r
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "event" in r
    }
    assert events[("phase_start", "p2")]["adapter_fingerprint"] == events[("phase_end", "p1")]["adapter_fingerprint"]


def interrupted_copy(run_dir: Path, dest: Path, keep_checkpoint: int | None) -> Path:
    """The run as a crash during phase p2 leaves it: p2 unfinished, its checkpoints after
    `keep_checkpoint` (all, for None) gone, no p2 adapter."""
    shutil.copytree(run_dir, dest)
    state = json.loads((dest / "state.json").read_text())
    state["finished_phases"] = [p for p in state["finished_phases"] if p["name"] != "p2"]
    (dest / "state.json").write_text(json.dumps(state))
    shutil.rmtree(dest / "p2" / "adapter")
    for checkpoint in (dest / "p2").glob("checkpoint-*"):
        if keep_checkpoint is None or int(checkpoint.name.split("-")[1]) > keep_checkpoint:
            shutil.rmtree(checkpoint)
    return dest


@pytest.mark.parametrize("keep_checkpoint", [2, None], ids=["mid-phase", "phase-boundary"])
def test_resume_ends_bit_identical(variant_run, tmp_path, keep_checkpoint):
    _, config, run_dir = variant_run
    copy = interrupted_copy(run_dir, tmp_path / "run", keep_checkpoint)
    train(config, "--resume", str(copy))
    resumed, uninterrupted = adapter_of(copy), adapter_of(run_dir)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_merge_checks_and_writes_base_plus_adapter(variant_run, tiny_model_dir, tmp_path, capsys):
    _, _, run_dir = variant_run
    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(out)]) == 0
    assert "relative logit error" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(out)
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir / "p2" / "adapter"
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("def main():\n    return", return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(merged(**ids).logits, reference(**ids).logits, atol=1e-4, rtol=1e-4)


def test_chat_answers_with_both_and_the_base_side_is_the_base_model(variant_run, tiny_model_dir, capsys):
    _, _, run_dir = variant_run
    assert main(["chat", str(run_dir), "--prompt", "def main(", "--max-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "--- base ---" in out and "--- ft ---" in out and out.count("stop: max_tokens") + out.count("stop: eos") == 2
    model_cfg = tiny_model_config(tiny_model_dir)
    generator = Generator(
        load_base_model(model_cfg),
        AutoTokenizer.from_pretrained(tiny_model_dir),
        {"p2": run_dir / "p2" / "adapter"},
        "p2",
    )
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.inference_mode():
        expected = plain(input_ids=torch.tensor([generator.encode("def main(")])).logits[0]
    torch.testing.assert_close(generator.prompt_logits("def main(", adapter=False), expected)
    assert (generator.prompt_logits("def main(", adapter=True) - expected).abs().max() > 1e-3
