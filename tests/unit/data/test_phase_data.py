from collections import Counter

import pytest
import torch

from phased_cpt.config import ContextConfig, DataConfig, ModelConfig, PhaseConfig
from phased_cpt.data.chunking import IGNORE_INDEX
from phased_cpt.data.collate import make_collator
from phased_cpt.data.phase_data import build_phase_data, build_rows, tokenize_documents
from phased_cpt.data.jsonl import read_documents
from phased_cpt.errors import DataError
from phased_cpt.modeling import load_tokenizer
from tests.conftest import bundled_texts, write_jsonl


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(ModelConfig(name=str(tiny_model_dir)))


def test_tiny_tokenizer_has_pad_equal_to_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id is not None


def test_eos_is_appended_once_after_the_last_token(tokenizer):
    (ids,) = tokenize_documents(["def f():\n    return 1\n"], tokenizer)
    assert ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids[:-1]) == "def f():\n    return 1\n"


def test_bos_follows_the_tokenizer_convention(tiny_llama_bos_dir, tokenizer):
    llama = load_tokenizer(ModelConfig(name=str(tiny_llama_bos_dir)))
    (with_bos,) = tokenize_documents(["hello"], llama)
    assert with_bos[0] == llama.bos_token_id and with_bos[-1] == llama.eos_token_id
    (without_bos,) = tokenize_documents(["hello"], tokenizer)
    assert tokenizer.bos_token_id is None or without_bos[0] != tokenizer.bos_token_id


def test_rows_cover_every_document_token_once_plus_one_eos_each(tmp_path, tokenizer):
    texts = bundled_texts("phase1_foundation", 6)
    path = write_jsonl(tmp_path / "p.jsonl", texts)
    context = ContextConfig(max_tokens=64, overlap_tokens=16)
    rows = build_rows(read_documents(path, "training_content"), tokenizer, context)
    trained = Counter(t for row in rows.dataset["labels"] for t in row[1:] if t != IGNORE_INDEX)
    expected = Counter()
    for ids in tokenize_documents(texts, tokenizer):
        expected.update(ids[1:])  # a document's first token has nothing before it to predict from
    assert trained == expected
    assert trained[tokenizer.eos_token_id] == len(texts)
    assert rows.target_tokens == sum(trained.values())
    assert all(len(row) <= 64 for row in rows.dataset["input_ids"])
    assert rows.documents == 6 and len(rows) > 6


def test_document_of_exactly_max_tokens_is_not_split(tmp_path, tokenizer):
    text = "alpha beta gamma delta"
    n = len(tokenize_documents([text], tokenizer)[0])
    path = write_jsonl(tmp_path / "p.jsonl", [text])
    docs = read_documents(path, "training_content")
    assert len(build_rows(docs, tokenizer, ContextConfig(max_tokens=n, overlap_tokens=1))) == 1
    assert len(build_rows(docs, tokenizer, ContextConfig(max_tokens=n - 1, overlap_tokens=1))) == 2


def test_long_documents_are_an_error_when_chunking_is_off(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", ["short", "a much longer document " * 20, "short again"])
    context = ContextConfig(max_tokens=16, overlap_tokens=0, chunk_long_samples=False)
    with pytest.raises(DataError) as err:
        build_rows(read_documents(path, "training_content"), tokenizer, context)
    message = str(err.value)
    assert f"{path}:2:" in message and f"{path}:1:" not in message and f"{path}:3:" not in message
    assert "chunk_long_samples" in message


def test_collator_keeps_eos_labels_when_pad_equals_eos(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", ["short", "a somewhat longer document here"])
    rows = build_rows(read_documents(path, "training_content"), tokenizer, ContextConfig(max_tokens=64, overlap_tokens=0))
    collator = make_collator(tokenizer, ContextConfig(max_tokens=64, overlap_tokens=0))
    batch = collator([rows.dataset[0], rows.dataset[1]])
    eos = tokenizer.eos_token_id
    for row in range(2):
        real = int(batch["attention_mask"][row].sum())
        assert batch["labels"][row, real - 1] == eos  # the document's EOS is a target
        assert torch.all(batch["labels"][row, real:] == IGNORE_INDEX)  # padding is not
        assert torch.all(batch["input_ids"][row, real:] == eos)  # padded with pad == eos
    assert batch["input_ids"].shape[1] == max(len(r) for r in rows.dataset["input_ids"])  # longest, not max_tokens


def test_eval_documents_are_held_out_whole_before_chunking(tmp_path, tokenizer):
    texts = [f"document number {i} " * (5 + i) for i in range(10)]
    path = write_jsonl(tmp_path / "p.jsonl", texts)
    phase = PhaseConfig(name="p", file=path)
    data = build_phase_data(phase, DataConfig(eval_ratio=0.2), tokenizer, ContextConfig(max_tokens=16, overlap_tokens=4), seed=1)
    assert (data.train.documents, data.eval.documents) == (8, 2)
    train_rows = {tuple(r) for r in data.train.dataset["input_ids"]}
    eval_rows = {tuple(r) for r in data.eval.dataset["input_ids"]}
    assert not train_rows & eval_rows
    again = build_phase_data(phase, DataConfig(eval_ratio=0.2), tokenizer, ContextConfig(max_tokens=16, overlap_tokens=4), seed=1)
    assert again.eval.dataset["input_ids"] == data.eval.dataset["input_ids"]  # deterministic for a seed


def test_eval_file_replaces_the_ratio(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", ["a b c", "d e f", "g h i"])
    held = write_jsonl(tmp_path / "e.jsonl", ["held out text"])
    phase = PhaseConfig(name="p", file=path, eval_file=held)
    data = build_phase_data(phase, DataConfig(eval_ratio=0.5), tokenizer, ContextConfig(max_tokens=16, overlap_tokens=0), seed=0)
    assert (data.train.documents, data.eval.documents) == (3, 1)
