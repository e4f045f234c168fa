"""Fill-in-the-middle: token layout, masks, rate, and where it is (never) applied."""

from __future__ import annotations

import numpy as np
import pytest

from phased_cpt.config import ContextConfig, DataConfig, ModelConfig, PhaseConfig
from phased_cpt.data.chunking import IGNORE_INDEX
from phased_cpt.data.fim import FimSetup, FimTokens, fim_permute, find_fim_tokens, require_fim_tokens
from phased_cpt.data.phase_data import build_phase_data
from phased_cpt.errors import UserError
from phased_cpt.modeling import load_tokenizer
from phased_cpt.quickstart.tiny_model import build_tokenizer
from tests.conftest import bundled_texts, write_jsonl

TEXT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def tokenizer(fim_tokenizer):
    """This module's tokenizer is the one with fill-in-the-middle tokens."""
    return fim_tokenizer


@pytest.fixture(scope="module")
def fim(tokenizer) -> FimTokens:
    return find_fim_tokens(tokenizer)


def encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_finds_qwen_and_starcoder_spellings_and_explains_when_there_are_none(tokenizer, tiny_model_dir):
    found = find_fim_tokens(tokenizer)
    assert found.family == "Qwen2.5-Coder"
    assert tokenizer.convert_ids_to_tokens(list(found.ids)) == ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
    starcoder = build_tokenizer(iter([TEXT] * 20), 300, bos=False)
    starcoder.add_special_tokens({"additional_special_tokens": ["<fim_prefix>", "<fim_middle>", "<fim_suffix>"]})
    assert find_fim_tokens(starcoder).family == "StarCoder"
    assert find_fim_tokens(starcoder).suffix == starcoder.convert_tokens_to_ids("<fim_suffix>")
    plain = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    assert find_fim_tokens(plain) is None
    with pytest.raises(UserError, match=r"context\.fim_rate needs fill-in-the-middle tokens.*<\|fim_prefix\|>"):
        require_fim_tokens(plain, "context.fim_rate")


def permute(tokenizer, fim, text, spm, seed=0, lead=0, context=0, prefix_ids=(), max_tokens=10_000):
    ids = np.array([*prefix_ids, *encode(tokenizer, text), tokenizer.eos_token_id])
    return fim_permute(ids, lead, context, FimSetup(fim, tokenizer, max_tokens), np.random.default_rng(seed), spm)


def split_at(ids: list[int], *markers: int) -> list[list[int]]:
    """The pieces of `ids` between the given marker tokens, in order (each marker once)."""
    pieces, rest = [], ids
    for marker in markers:
        i = rest.index(marker)
        pieces.append(rest[:i])
        rest = rest[i + 1 :]
    return pieces + [rest]


@pytest.mark.parametrize("seed", range(5))
def test_psm_layout_cuts_the_text_into_prefix_suffix_middle_and_moves_eos_behind_the_middle(tokenizer, fim, seed):
    unit = permute(tokenizer, fim, TEXT, spm=False, seed=seed)
    ids = unit.ids.tolist()
    lead, prefix, suffix, middle = split_at(ids, fim.prefix, fim.suffix, fim.middle)
    assert lead == [] and middle[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
    pre, suf, mid = (tokenizer.decode(x) for x in (prefix, suffix, middle[:-1]))
    assert pre + mid + suf == TEXT
    assert (
        prefix == encode(tokenizer, pre) and suffix == encode(tokenizer, suf) and middle[:-1] == encode(tokenizer, mid)
    )
    assert unit.context_tokens == 0


def test_spm_layout_puts_the_suffix_first(tokenizer, fim):
    ids = permute(tokenizer, fim, TEXT, spm=True, seed=3).ids.tolist()
    assert ids[:2] == [fim.prefix, fim.suffix]
    suffix, rest = split_at(ids[2:], fim.middle)
    assert tokenizer.decode(rest[:-1]) + tokenizer.decode(suffix) == TEXT and rest[-1] == tokenizer.eos_token_id


def test_lead_tokens_stay_in_front_and_a_unit_with_context_is_always_psm(tokenizer, fim):
    context_ids = encode(tokenizer, "# overlap\n")
    unit = permute(
        tokenizer, fim, TEXT, spm=True, lead=len(context_ids), context=len(context_ids), prefix_ids=context_ids
    )
    ids = unit.ids.tolist()
    assert ids[: len(context_ids)] == context_ids and ids[len(context_ids)] == fim.prefix  # PSM despite spm=True
    assert unit.context_tokens == len(context_ids)


def test_a_chunk_without_eos_gets_none_and_a_unit_too_long_for_the_row_stays_as_it_is(tokenizer, fim):
    ids = np.array(encode(tokenizer, TEXT))  # not a document's last chunk
    unit = fim_permute(ids, 0, 0, FimSetup(fim, tokenizer, 10_000), np.random.default_rng(0), False)
    assert tokenizer.eos_token_id not in unit.ids.tolist() and len(unit.ids) >= len(ids) + 3
    assert permute(tokenizer, fim, TEXT, spm=False, max_tokens=len(ids) + 2) is None


def build(tmp_path, tokenizer, texts, eval_ratio=0.0, **context):
    path = write_jsonl(tmp_path / "p.jsonl", texts)
    return build_phase_data(
        PhaseConfig(name="p", file=path), DataConfig(eval_ratio=eval_ratio), tokenizer, ContextConfig(**context), seed=1
    )


@pytest.mark.parametrize("packing", [False, True])
def test_fim_rows_mask_the_fim_tokens_and_keep_every_document_token(tmp_path, tokenizer, fim, packing):
    texts = bundled_texts("phase1_foundation", 12)
    data = build(tmp_path, tokenizer, texts, max_tokens=96, overlap_tokens=16, fim_rate=1.0, sample_packing=packing)
    assert data.train.stats["fim_chunks"] > 0.8 * data.train.stats["chunks"]
    targets = sentinels = 0
    for row in data.train.dataset:
        ids, labels = np.array(row["input_ids"]), np.array(row["labels"])
        assert len(ids) <= 96
        sentinel = np.isin(ids, fim.ids)
        assert (labels[sentinel] == IGNORE_INDEX).all()
        trained = labels != IGNORE_INDEX
        assert (labels[trained] == ids[trained]).all()
        targets += int(trained.sum())
        sentinels += int(sentinel.sum())
    assert sentinels == 3 * data.train.stats["fim_chunks"]  # each rearranged chunk holds [P], [S], [M] once
    assert data.train.target_tokens == targets  # the plan's `targets` excludes the FIM tokens
    assert data.train.stats["eos_tokens"] == len(texts)


def test_fim_rate_is_the_share_of_units_rearranged_and_eval_rows_are_never_rearranged(tmp_path, tokenizer, fim):
    texts = bundled_texts("phase2_evolution", 120)
    data = build(tmp_path, tokenizer, texts, eval_ratio=0.2, max_tokens=256, overlap_tokens=16, fim_rate=0.5)
    share = data.train.stats["fim_chunks"] / data.train.stats["chunks"]
    assert 0.4 < share < 0.6
    assert all(not np.isin(row["input_ids"], fim.ids).any() for row in data.eval.dataset)
    rows_with_fim = sum(bool(np.isin(row["input_ids"], fim.ids).any()) for row in data.train.dataset)
    assert rows_with_fim == data.train.stats["fim_chunks"]
    none = build(tmp_path, tokenizer, texts, eval_ratio=0.2, max_tokens=256, overlap_tokens=16)
    assert none.train.stats["fim_chunks"] == 0
    assert not any(np.isin(row["input_ids"], fim.ids).any() for row in none.train.dataset)


def test_fim_without_fim_tokens_is_a_clear_error(tmp_path, tiny_model_dir):
    plain = load_tokenizer(ModelConfig(name=str(tiny_model_dir)))
    with pytest.raises(UserError, match="context.fim_rate needs fill-in-the-middle tokens"):
        build(tmp_path, plain, bundled_texts("phase1_foundation", 3), max_tokens=96, overlap_tokens=16, fim_rate=0.1)


def test_overlap_must_leave_room_for_the_fim_tokens():
    with pytest.raises(ValueError, match="overlap_tokens .* must be smaller than context.max_tokens - 8"):
        ContextConfig(max_tokens=64, overlap_tokens=60, fim_rate=0.5)
    assert ContextConfig(max_tokens=64, overlap_tokens=60).train_window_tokens() == 64


@pytest.mark.parametrize("spm_rate, spm_share", [(0.0, 0.0), (1.0, 1.0)])
def test_fim_spm_rate_chooses_the_layout(tmp_path, tokenizer, fim, spm_rate, spm_share):
    texts = bundled_texts("phase2_evolution", 40)
    data = build(tmp_path, tokenizer, texts, max_tokens=256, overlap_tokens=16, fim_rate=1.0, fim_spm_rate=spm_rate)
    starts = [row["input_ids"][:2] for row in data.train.dataset if fim.prefix in row["input_ids"]]
    assert starts and sum(s == [fim.prefix, fim.suffix] for s in starts) / len(starts) == spm_share
