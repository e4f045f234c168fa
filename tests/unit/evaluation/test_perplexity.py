import math

import pytest
import torch

from phased_cpt.config import ContextConfig, DataConfig, LoraConfig, ModelConfig, PhaseConfig
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.evaluation.perplexity import evaluate_rows
from phased_cpt.modeling import attach_lora, load_base_model, load_tokenizer
from tests.conftest import bundled_texts, write_jsonl


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    model = attach_lora(
        load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="float32")), LoraConfig(r=4, alpha=8)
    )
    work = tmp_path_factory.mktemp("ev")
    path = write_jsonl(work / "e.jsonl", bundled_texts("phase3_pr_mastery", 5))
    context = ContextConfig(max_tokens=96, overlap_tokens=8)
    phase = PhaseConfig(name="e", file=write_jsonl(work / "t.jsonl", ["training text"]), eval_file=path)
    data = build_phase_data(phase, DataConfig(), tokenizer, context, seed=0)
    setup.keep = data  # the rows are memory-mapped from a directory that lives as long as `data`
    return model, data.eval, make_collator(tokenizer, context)


def reference_loss(model, dataset):
    """Sum of per-token NLL over all rows / number of target tokens, computed by hand."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(dataset)):
            row = dataset[i]
            ids = torch.as_tensor(row["input_ids"]).reshape(1, -1)
            labels = torch.as_tensor(row["labels"])[1:]
            logits = model(input_ids=ids).logits[0, :-1]
            mask = labels != -100
            total += torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum").item()
            count += int(mask.sum())
    return total / count, count


@pytest.mark.parametrize("batch_size", [1, 3])
def test_perplexity_is_token_weighted_over_all_rows(setup, batch_size):
    model, rows, collator = setup
    expected, tokens = reference_loss(model, rows.dataset)
    result = evaluate_rows(model, rows.dataset, collator, batch_size)
    assert result.target_tokens == tokens
    assert result.loss == pytest.approx(expected, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


def test_base_model_evaluation_disables_the_adapter(setup):
    model, rows, collator = setup
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for p in lora_b:
            p.fill_(0.05)
    try:
        tuned = evaluate_rows(model, rows.dataset, collator, 2)
        base = evaluate_rows(model, rows.dataset, collator, 2, base_model=True)
        with model.disable_adapter():
            expected, _ = reference_loss(model, rows.dataset)
        assert base.loss == pytest.approx(expected, rel=1e-5)
        assert abs(tuned.loss - base.loss) > 1e-3
    finally:
        with torch.no_grad():
            for p in lora_b:
                p.zero_()
    model.train()
    evaluate_rows(model, rows.dataset, collator, 2)
    assert model.training
