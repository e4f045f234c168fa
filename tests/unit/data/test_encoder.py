"""The encoders data preparation runs with: the tokenizer, or the byte estimate `plan` uses
without one. Both run the same preparation, so only the token counts may differ."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from phased_cpt.config import ContextConfig, DataConfig, GeneralConfig, PhaseConfig, SourceConfig
from phased_cpt.data.encoder import ByteEstimate, TokenizerEncoder, as_encoder
from phased_cpt.data.phase_data import DataSettings, build_run_data
from phased_cpt.data.plan import PhaseRows
from tests.conftest import write_jsonl


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per UTF-8 byte, EOS its own token, no BOS: counts exactly what the byte estimate at
    1 byte per token estimates."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))} | {"<eos>": len(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


def test_the_byte_estimate_counts_utf8_bytes_and_ends_each_document_with_eos():
    encoder = ByteEstimate(3.5)
    ids = encoder.encode(["x" * 350, "", "\u00e9" * 7])  # 100 tokens; nothing; 14 bytes -> 4 tokens
    assert [len(x) for x in ids] == [101, 1, math.ceil(14 / 3.5) + 1]
    assert all(int(x[-1]) == encoder.eos_token_id and encoder.eos_token_id not in x[:-1] for x in ids)
    assert encoder.fim_setup(64, "context.fim_rate") is None and encoder.estimated
    assert ByteEstimate(3.0).identity != encoder.identity  # another rate, another cache entry


def test_a_tokenizer_becomes_its_encoder_and_an_encoder_stays_itself():
    tokenizer = byte_tokenizer()
    assert [len(x) for x in as_encoder(tokenizer).encode(["ab\u00e9"])] == [5]  # 4 bytes + EOS
    assert isinstance(as_encoder(tokenizer), TokenizerEncoder)
    estimate = ByteEstimate(1.0)
    assert as_encoder(estimate) is estimate


@pytest.mark.parametrize("packing", [False, True])
def test_plan_statistics_with_the_byte_estimate_and_the_tokenizer_agree_on_the_same_documents(tmp_path, packing):
    """Where the tokenizer counts one token per byte, the byte estimate at 1 byte per token gets
    every statistic the same: EOS targets, chunks (the window), rows and packing, replay, general
    mixing and source weights. Before, the estimate ran a second pipeline that counted one EOS per
    document, chunked at max_tokens even with FIM's headroom, and left replay and weights out."""
    rng = np.random.default_rng(0)

    def texts(stem: str, count: int) -> list[str]:
        return [f"{stem} {i} " + "x" * int(rng.integers(5, 150)) for i in range(count)]

    first = write_jsonl(tmp_path / "first.jsonl", texts("first", 20))
    code = write_jsonl(tmp_path / "code.jsonl", texts("code", 12))
    notes = write_jsonl(tmp_path / "notes.jsonl", texts("notes", 9))
    general = write_jsonl(tmp_path / "general.jsonl", texts("general", 15))
    phases = [
        PhaseConfig(name="first", file=first),
        PhaseConfig(
            name="second",
            file=[SourceConfig(path=code, weight=3), SourceConfig(path=notes, weight=1)],
            replay_ratio=0.2,
            general_ratio=0.1,
        ),
    ]
    context = ContextConfig(max_tokens=96, overlap_tokens=16, sample_packing=packing)
    settings = DataSettings(DataConfig(eval_ratio=0.1), context, 5, GeneralConfig(file=general))
    counted = build_run_data(phases, settings, byte_tokenizer(), tmp_path / "cache")
    estimated = build_run_data(phases, settings, ByteEstimate(1.0))
    assert set(counted) == set(estimated)
    for name in ("first", "second"):
        real, estimate = PhaseRows.of(counted[name]), PhaseRows.of(estimated[name], estimated=True)
        assert real.statistics == estimate.statistics, name
        assert (real.eval_documents, real.eval_tokens) == (estimate.eval_documents, estimate.eval_tokens)
        assert real.chunk_lengths.tolist() == estimate.chunk_lengths.tolist()
    second = estimated["second"].train.stats
    assert second["replay_tokens"] > 0 and second["general_tokens"] > 0  # mixing is in the estimate too
    assert second["eos_tokens"] > second["documents"]  # weights repeat documents: their EOS too


def test_the_estimate_chunks_at_the_window_training_uses(tmp_path):
    """With FIM on, training chunks leave room for the FIM tokens; the estimate chunks the same way."""
    path = write_jsonl(tmp_path / "p.jsonl", ["y" * 1000])
    context = ContextConfig(max_tokens=128, overlap_tokens=16, fim_rate=0.5)
    data = build_run_data(
        [PhaseConfig(name="p", file=path)], DataSettings(DataConfig(eval_ratio=0.0), context, 0), ByteEstimate(1.0)
    )["p"]
    longest = int(np.asarray(data.train.dataset.chunks)[:, 1].max())
    assert longest == context.train_window_tokens() < context.max_tokens
    assert data.train.stats["fim_chunks"] == 0  # the estimate cannot rearrange text: said in the plan's notes
