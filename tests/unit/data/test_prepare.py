"""data/prepare.py: one phase's pipeline: tokenizing in worker processes gives the rows of one process,\nand the stream reads a bounded number of documents ahead."""

from __future__ import annotations

import pytest

from tests.conftest import bundled_texts
from tests.unit.data.test_phase_data import build


def test_tokenizing_in_worker_processes_gives_the_same_rows(tmp_path, tokenizer, monkeypatch):
    from phased_cpt.data import prepare

    texts = bundled_texts("phase2_evolution")
    serial = build(tmp_path, texts, tokenizer, max_tokens=64, overlap_tokens=8)
    monkeypatch.setattr(prepare, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(prepare, "TOKENIZE_BATCH_DOCUMENTS", 7)  # many batches in flight
    assert prepare.tokenizer_processes(tmp_path / "p.jsonl") == min(len(__import__("os").sched_getaffinity(0)), 8)
    parallel = build(tmp_path, texts, tokenizer, max_tokens=64, overlap_tokens=8)
    assert list(parallel.train.dataset) == list(serial.train.dataset)
    assert parallel.meta == serial.meta


@pytest.mark.parametrize("processes", [1, 2])
def test_tokenizing_streams_with_a_bounded_number_of_documents_read_ahead(tmp_path, tokenizer, processes, monkeypatch):
    from phased_cpt.data import prepare
    from phased_cpt.data.jsonl import Document

    monkeypatch.setattr(prepare, "TOKENIZE_BATCH_DOCUMENTS", 5)
    index = prepare.TokenizedDocuments()
    read_ahead = []

    def documents():
        for k in range(200):
            read_ahead.append(k - len(index.lengths))  # read but not yet written to tokens.bin
            yield Document(f"document {k} " * (k % 7 + 1), f"f:{k}")

    with open(tmp_path / "tokens.bin", "wb") as f:
        prepare.tokenize_stream(documents(), tokenizer, prepare.TokenWriter(f), index, 64, processes)
    assert len(index.lengths) == 200
    assert max(read_ahead) < (2 * processes + 1) * 5  # one batch being read + 2 per worker in flight
