from collections import Counter

import pytest
import torch

from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
from phased_cpt.data.chunking import IGNORE_INDEX
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import DataSettings, build_phase_data, build_run_data, tokenize_documents
from phased_cpt.errors import DataError
from tests.conftest import bundled_texts, write_jsonl

NO_EVAL = DataConfig(eval_ratio=0.0)


def build(tmp_path, texts, tokenizer, data=NO_EVAL, name="p", **context):
    path = write_jsonl(tmp_path / f"{name}.jsonl", texts)
    return build_phase_data(PhaseConfig(name=name, file=path), data, tokenizer, ContextConfig(**context), seed=1)


def trained_tokens(rows) -> Counter:
    """Tokens that are training targets: labels after the model's causal shift."""
    return Counter(t for row in rows.dataset for t in row["labels"][1:] if t != IGNORE_INDEX)


def test_tiny_tokenizer_has_pad_equal_to_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id is not None


def test_eos_is_appended_once_after_the_last_token(tokenizer):
    (ids,) = tokenize_documents(["def f():\n    return 1\n"], tokenizer)
    assert ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids[:-1]) == "def f():\n    return 1\n"


def test_bos_follows_the_tokenizer_convention(llama_tokenizer, tokenizer):
    (with_bos,) = tokenize_documents(["hello"], llama_tokenizer)
    assert with_bos[0] == llama_tokenizer.bos_token_id and with_bos[-1] == llama_tokenizer.eos_token_id
    (without_bos,) = tokenize_documents(["hello"], tokenizer)
    assert tokenizer.bos_token_id is None or without_bos[0] != tokenizer.bos_token_id


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("max_tokens, overlap", [(64, 16), (32, 0), (512, 100)])
def test_trained_targets_are_the_documents_tokens_plus_one_eos_each(
    tmp_path, llama_tokenizer, packing, max_tokens, overlap
):
    """The Llama tokenizer prepends BOS: every text token and one EOS per document is a target once."""
    texts = bundled_texts("phase1_foundation", 8)
    data = build(
        tmp_path, texts, llama_tokenizer, sample_packing=packing, max_tokens=max_tokens, overlap_tokens=overlap
    )
    expected = Counter()
    for text in texts:
        ids = llama_tokenizer(text, add_special_tokens=False)["input_ids"]
        expected.update(ids + [llama_tokenizer.eos_token_id])
    trained = trained_tokens(data.train)
    assert trained == expected
    assert trained[llama_tokenizer.eos_token_id] == data.train.stats["eos_tokens"] == len(texts)
    assert data.train.target_tokens == sum(expected.values())
    assert all(len(row["input_ids"]) <= max_tokens for row in data.train.dataset)
    assert data.train.documents == 8 and data.train.stats["chunks"] >= 8


def test_overlap_loss_trains_the_overlap_again(tmp_path, tokenizer):
    texts = bundled_texts("phase1_foundation", 4)
    once = build(tmp_path, texts, tokenizer, max_tokens=64, overlap_tokens=16)
    twice = build(tmp_path, texts, tokenizer, max_tokens=64, overlap_tokens=16, overlap_loss=True)
    extra_chunks = once.train.stats["chunks"] - once.train.documents
    assert twice.train.target_tokens == once.train.target_tokens + 15 * extra_chunks


def test_document_of_exactly_max_tokens_is_not_split(tmp_path, tokenizer):
    text = "alpha beta gamma delta"
    n = len(tokenize_documents([text], tokenizer)[0])
    assert len(build(tmp_path, [text], tokenizer, max_tokens=n, overlap_tokens=1).train) == 1
    assert len(build(tmp_path, [text], tokenizer, max_tokens=n - 1, overlap_tokens=1).train) == 2


def test_long_documents_are_an_error_when_chunking_is_off(tmp_path, tokenizer):
    with pytest.raises(DataError) as err:
        build(
            tmp_path,
            ["short", "a much longer document " * 20, "short again"],
            tokenizer,
            max_tokens=16,
            overlap_tokens=0,
            chunk_long_samples=False,
        )
    message = str(err.value)
    path = tmp_path / "p.jsonl"
    assert f"{path}:2:" in message and f"{path}:1:" not in message and f"{path}:3:" not in message
    assert "chunk_long_samples" in message


def test_padded_batches_keep_eos_labels_when_pad_equals_eos(tmp_path, tokenizer):
    context = ContextConfig(max_tokens=64, overlap_tokens=0)
    data = build(tmp_path, ["short", "a somewhat longer document here"], tokenizer, max_tokens=64, overlap_tokens=0)
    rows = [data.train.dataset[0], data.train.dataset[1]]
    batch = make_collator(tokenizer, context)(rows)
    eos = tokenizer.eos_token_id
    for row in range(2):
        real = int(batch["attention_mask"][row].sum())
        assert batch["labels"][row, real - 1] == eos  # the document's EOS is a target
        assert torch.all(batch["labels"][row, real:] == IGNORE_INDEX)  # padding is not
        assert torch.all(batch["input_ids"][row, real:] == eos)  # padded with pad == eos
    assert batch["input_ids"].shape[1] == max(len(r["input_ids"]) for r in rows)  # longest, not max_tokens
    assert "position_ids" not in rows[0]


def test_packed_rows_restart_positions_and_batches_have_no_attention_mask(tmp_path, tokenizer):
    texts = ["one two", "three four five", "six", "seven eight nine ten"]
    data = build(tmp_path, texts, tokenizer, max_tokens=64, overlap_tokens=0, sample_packing=True)
    (row,) = list(data.train.dataset)  # everything fits in one row
    lengths = sorted((len(ids) for ids in tokenize_documents(texts, tokenizer)), reverse=True)
    expected_positions = [p for n in lengths for p in range(n)]
    assert row["position_ids"] == expected_positions
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
    assert [row["labels"][i] for i in starts] == [IGNORE_INDEX] * 4  # never predicted across documents
    batch = make_collator(tokenizer, ContextConfig(max_tokens=64, overlap_tokens=0, sample_packing=True))([row, row])
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask
    assert batch["input_ids"].shape == (1, 2 * len(row["input_ids"]))  # flattened, batch size 1
    assert batch["position_ids"][0].tolist() == expected_positions * 2


def test_packing_fills_rows(tmp_path, tokenizer):
    texts = bundled_texts("phase2_evolution")
    packed = build(tmp_path, texts, tokenizer, max_tokens=1024, overlap_tokens=32, sample_packing=True)
    single = build(tmp_path, texts, tokenizer, max_tokens=1024, overlap_tokens=32)
    assert packed.train.stats["packing_efficiency"] > 0.9 > single.train.stats["packing_efficiency"]
    assert len(packed.train) < len(single.train) / 3
    assert packed.train.target_tokens == single.train.target_tokens


def test_eval_documents_are_held_out_whole_before_chunking(tmp_path, tokenizer):
    texts = [f"document number {i} " * (5 + i) for i in range(10)]
    data = build(tmp_path, texts, tokenizer, DataConfig(eval_ratio=0.2), max_tokens=16, overlap_tokens=4)
    assert (data.train.documents, data.eval.documents) == (8, 2)
    train_rows = {tuple(r["input_ids"]) for r in data.train.dataset}
    eval_rows = {tuple(r["input_ids"]) for r in data.eval.dataset}
    assert not train_rows & eval_rows
    again = build(tmp_path, texts, tokenizer, DataConfig(eval_ratio=0.2), max_tokens=16, overlap_tokens=4)
    assert list(again.eval.dataset) == list(data.eval.dataset)  # deterministic for a seed


def test_eval_file_replaces_the_ratio(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", ["a b c", "d e f", "g h i"])
    held = write_jsonl(tmp_path / "e.jsonl", ["held out text"])
    phase = PhaseConfig(name="p", file=path, eval_file=held)
    data = build_phase_data(
        phase, DataConfig(eval_ratio=0.5), tokenizer, ContextConfig(max_tokens=16, overlap_tokens=0), seed=0
    )
    assert (data.train.documents, data.eval.documents) == (3, 1)
    assert data.eval.dataset[0]["input_ids"] == tokenize_documents(["held out text"], tokenizer)[0]


def test_skip_policy_records_rejected_lines_and_error_policy_caches_nothing(tmp_path, tokenizer):
    path = tmp_path / "p.jsonl"
    path.write_text('{"training_content": "good one"}\nnot json\n{"training_content": "good one"}\n')
    phase = PhaseConfig(name="p", file=path)
    context = ContextConfig(max_tokens=16, overlap_tokens=0)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"{path}:2: invalid JSON"):
        build_phase_data(phase, NO_EVAL, tokenizer, context, 0, cache)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []
    data = build_phase_data(
        phase, DataConfig(eval_ratio=0.0, on_bad_record="skip", dedup="exact"), tokenizer, context, 0, cache
    )
    assert data.train.documents == 1 and (data.meta["rejected"], data.meta["duplicates"]) == (2, 1)
    assert [(r.source, r.reason) for r in data.rejected()] == [
        (f"{path}:2", "invalid JSON: Expecting value (column 1)"),
        (f"{path}:3", f"duplicate of {path}:1"),
    ]


def test_second_build_reuses_the_cache_and_any_change_invalidates_it(tmp_path, tokenizer, llama_tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", bundled_texts("phase1_foundation", 5))
    phase = PhaseConfig(name="p", file=path)
    context = ContextConfig(max_tokens=32, overlap_tokens=4)
    cache = tmp_path / "cache"
    first = build_phase_data(phase, NO_EVAL, tokenizer, context, 0, cache)
    again = build_phase_data(phase, NO_EVAL, tokenizer, context, 0, cache)
    assert (first.cache_hit, again.cache_hit) == (False, True) and again.entry == first.entry
    assert list(again.train.dataset) == list(first.train.dataset)
    changes = [
        dict(context=ContextConfig(max_tokens=32, overlap_tokens=5)),
        dict(context=ContextConfig(max_tokens=32, overlap_tokens=4, sample_packing=True)),
        dict(data=DataConfig(eval_ratio=0.0, dedup="exact")),
        dict(data=DataConfig(eval_ratio=0.5)),
        dict(seed=1),
        dict(tokenizer=llama_tokenizer),
    ]
    entries = {first.entry}
    for change in changes:
        args = dict(data=NO_EVAL, tokenizer=tokenizer, context=context, seed=0) | change
        built = build_phase_data(phase, args["data"], args["tokenizer"], args["context"], args["seed"], cache)
        assert not built.cache_hit, change
        entries.add(built.entry)
    write_jsonl(path, bundled_texts("phase1_foundation", 4))  # the file changed
    assert not build_phase_data(phase, NO_EVAL, tokenizer, context, 0, cache).cache_hit
    assert len(entries) == len(changes) + 1


@pytest.mark.parametrize("packing", [False, True])
def test_replay_draws_the_ratio_of_tokens_from_earlier_training_chunks(tmp_path, tokenizer, packing):
    first = write_jsonl(tmp_path / "a.jsonl", bundled_texts("phase1_foundation"))
    second = write_jsonl(tmp_path / "b.jsonl", bundled_texts("phase3_pr_mastery"))
    phases = [PhaseConfig(name="a", file=first), PhaseConfig(name="b", file=second, replay_ratio=0.25)]
    context = ContextConfig(max_tokens=64, overlap_tokens=8, sample_packing=packing)
    data = build_run_data(phases, DataSettings(DataConfig(eval_ratio=0.1), context, 3), tokenizer, tmp_path / "c")
    stats = data["b"].train.stats
    own = sum(int(u[1]) for u in data["b"].own_chunks)
    assert stats["replay_tokens"] / (own + stats["replay_tokens"]) == pytest.approx(0.25, abs=0.03)
    # replayed chunks are phase a's training chunks (never its eval documents)
    a_train = Counter(
        tuple(r["input_ids"])
        for r in build_run_data(
            phases[:1],
            DataSettings(DataConfig(eval_ratio=0.1), context.model_copy(update={"sample_packing": False}), 3),
            tokenizer,
        )["a"].train.dataset
    )
    a_eval = {tuple(r["input_ids"]) for r in data["a"].eval.dataset}
    ds = data["b"].train.dataset
    chunks = [tuple(ds.tokens[s : s + n]) for s, n, _ in ds.chunks]
    replayed = [c for c in chunks if c in a_train]
    assert sum(len(p) for p in replayed) == stats["replay_tokens"] and not set(replayed) & a_eval
    assert data["a"].train.stats["replay_tokens"] == 0
    again = build_run_data(phases, DataSettings(DataConfig(eval_ratio=0.1), context, 3), tokenizer)
    assert list(again["b"].train.dataset) == list(data["b"].train.dataset)  # deterministic for a seed


def test_a_lone_surrogate_is_quarantined_under_skip_even_with_dedup(tmp_path, tokenizer):
    """`plan`/`train` crashed on it (TypeError; UnicodeEncodeError with dedup: exact)."""
    path = tmp_path / "p.jsonl"
    path.write_bytes(
        b'{"training_content": "good one"}\n{"training_content": "bad \\ud800 escape"}\n'
        b'{"training_content": "good two"}\n'
    )
    data = build_phase_data(
        PhaseConfig(name="p", file=path),
        DataConfig(eval_ratio=0.0, on_bad_record="skip", dedup="exact"),
        tokenizer,
        ContextConfig(max_tokens=64, overlap_tokens=8),
        seed=1,
        cache_dir=tmp_path / "c",
    )
    assert data.train.documents == 2
    (rejected,) = data.rejected()
    assert rejected.source == f"{path}:2" and "lone surrogate" in rejected.reason
    assert rejected.line == '{"training_content": "bad \\ud800 escape"}'


def test_an_eval_file_with_the_training_files_content_is_refused(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", ["one document", "another one"])
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(train.read_bytes())
    with pytest.raises(DataError, match="the eval_file has the same content as the training file"):
        build_phase_data(
            PhaseConfig(name="p", file=train, eval_file=copy),
            NO_EVAL,
            tokenizer,
            ContextConfig(max_tokens=64, overlap_tokens=8),
            seed=1,
            cache_dir=tmp_path / "c",
        )
    reordered = write_jsonl(tmp_path / "reordered.jsonl", ["another one", "one document"])
    with pytest.raises(DataError, match="every document of the eval_file also appears in the training file"):
        build_phase_data(
            PhaseConfig(name="p", file=train, eval_file=reordered),
            DataConfig(eval_ratio=0.0, dedup="exact"),
            tokenizer,
            ContextConfig(max_tokens=64, overlap_tokens=8),
            seed=1,
            cache_dir=tmp_path / "c",
        )
