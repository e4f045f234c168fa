"""Chunks and the label rule, on the real path: `chunk_document` cuts a document, `RowDataset`
assembles the rows training sees (labels by `untrained_tokens`)."""

import random
from collections import Counter

import numpy as np
import pytest

from phased_cpt.data.chunking import (
    IGNORE_INDEX,
    Chunk,
    chunk_document,
    last_token_is_target,
    target_tokens,
)
from phased_cpt.data.rows import RowDataset

EOS = 0


def rows_of(ids: list[int], max_tokens: int, overlap: int, overlap_loss: bool = False) -> list[dict]:
    """The unpacked rows of one document, as training builds them."""
    chunks = chunk_document(len(ids), max_tokens, overlap, overlap_loss)
    table = np.array([(c.start, c.length, c.context_tokens) for c in chunks], dtype=np.int64).reshape(-1, 3)
    dataset = RowDataset(np.asarray(ids, dtype=np.int32), table, np.arange(len(chunks) + 1), packed=False)
    return [dataset[i] for i in range(len(dataset))]


def targets(rows) -> Counter:
    """Tokens the model is trained to predict: labels after the causal shift (position 0 never is)."""
    return Counter(t for row in rows for t in row["labels"][1:] if t != IGNORE_INDEX)


def test_empty_document_gives_no_chunk():
    assert chunk_document(0, 8, 2) == []
    assert target_tokens(np.zeros((0, 3), dtype=np.int64)) == 0


def test_document_of_exactly_max_tokens_is_one_chunk():
    ids = list(range(1, 8)) + [EOS]
    assert chunk_document(len(ids), 8, 2) == [Chunk(0, 8, 0)]
    (row,) = rows_of(ids, 8, 2)
    assert row["input_ids"] == ids and row["labels"] == [IGNORE_INDEX] + ids[1:]


def test_one_token_over_max_tokens_gives_a_second_chunk_with_overlap_as_context():
    ids = list(range(1, 9)) + [EOS]  # 9 ids, max 8, overlap 2 -> stride 6
    assert chunk_document(9, 8, 2) == [Chunk(0, 8, 0), Chunk(6, 3, 2)]
    first, second = rows_of(ids, 8, 2)
    assert first["input_ids"] == ids[:8] and first["labels"] == [IGNORE_INDEX] + ids[1:8]
    assert second["input_ids"] == ids[6:]
    assert second["labels"] == [IGNORE_INDEX, IGNORE_INDEX, EOS]


def test_overlap_zero_still_repeats_one_token_so_the_boundary_token_is_predicted():
    ids = list(range(1, 8)) + [EOS]
    rows = rows_of(ids, 4, 0)
    assert [r["input_ids"] for r in rows] == [ids[0:4], ids[3:7], ids[6:8]]
    assert [r["labels"][0] for r in rows] == [IGNORE_INDEX] * 3
    assert targets(rows) == Counter(ids[1:])


def test_eos_only_at_the_end_of_the_document_even_at_a_chunk_boundary():
    ids = list(range(1, 8)) + [EOS]  # 8 ids; with max 5 / overlap 1 the first window ends mid-document
    rows = rows_of(ids, 5, 1)
    assert [EOS in r["input_ids"] for r in rows] == [False, True]
    assert rows[-1]["input_ids"][-1] == EOS and rows[-1]["labels"][-1] == EOS
    (single,) = rows_of(ids, 8, 1)  # EOS exactly at the block boundary: still one chunk
    assert single["input_ids"][-1] == EOS and single["input_ids"].count(EOS) == 1


def test_overlap_loss_true_trains_the_overlap_again():
    ids = list(range(1, 12)) + [EOS]
    assert all(c.context_tokens == 0 for c in chunk_document(len(ids), 8, 3, overlap_loss=True))
    rows = rows_of(ids, 8, 3, overlap_loss=True)
    assert all(r["labels"][1:] == r["input_ids"][1:] for r in rows)


def test_overlap_must_be_smaller_than_max_tokens():
    with pytest.raises(ValueError):
        chunk_document(3, 4, 4)


@pytest.mark.parametrize("seed", range(20))
def test_every_token_is_a_target_exactly_once(seed):
    rng = random.Random(seed)
    max_tokens = rng.randint(2, 40)
    overlap = 0 if seed % 4 == 0 else rng.randint(0, max_tokens - 1)
    n = rng.randint(1, 300)
    ids = [rng.randint(1, 10_000) + 1000 * i for i in range(n)]  # unique ids
    rows = rows_of(ids, max_tokens, overlap)
    assert all(len(r["input_ids"]) <= max_tokens for r in rows)
    # every token except the document's first (nothing precedes it) is predicted exactly once
    assert targets(rows) == Counter(ids[1:])
    # and every chunk boundary keeps its overlap as context
    for previous, current in zip(rows, rows[1:]):
        assert current["input_ids"][0] == previous["input_ids"][-max(overlap, 1)]
        assert current["input_ids"][:overlap] == previous["input_ids"][len(previous["input_ids"]) - overlap :]


@pytest.mark.parametrize("seed", range(10))
def test_the_table_statistics_count_what_the_rows_label(seed):
    """`target_tokens` and `last_token_is_target` (the plan's targets and EOS columns) agree with
    the labels `RowDataset` builds."""
    rng = random.Random(seed)
    max_tokens = rng.randint(2, 30)
    overlap = rng.randint(0, max_tokens - 1)
    ids = [rng.randint(1, 500) for _ in range(rng.randint(1, 200))]
    chunks = chunk_document(len(ids), max_tokens, overlap, overlap_loss=seed % 3 == 0)
    table = np.array([(c.start, c.length, c.context_tokens) for c in chunks], dtype=np.int64)
    rows = rows_of(ids, max_tokens, overlap, overlap_loss=seed % 3 == 0)
    assert target_tokens(table) == sum(sum(t != IGNORE_INDEX for t in r["labels"]) for r in rows)
    assert last_token_is_target(table).tolist() == [r["labels"][-1] != IGNORE_INDEX for r in rows]
