"""data/rows.py: rows assembled from views of one token array: labels, position ids restarting at
each packed chunk, FIM tokens never targets, and the memory-mapped token file."""

from __future__ import annotations

import numpy as np
import pytest

from phased_cpt.data.chunking import IGNORE_INDEX
from phased_cpt.data.rows import RowDataset, open_tokens

TOKENS = np.arange(1000, dtype=np.int32)
# (start, length, context). The docstring draws its second chunk as (250, 4, 1) with two untrained
# tokens; a context of 1 leaves one (`untrained_tokens`), so its drawing is of (250, 4, 2).
CHUNKS = np.array([(100, 3, 0), (250, 4, 2), (500, 2, 0)], dtype=np.int64)


def test_two_chunks_packed_into_one_row_as_the_module_docstring_draws_it():
    """A chunk's first token and the rest of its context are not targets; positions restart."""
    rows = RowDataset(TOKENS, CHUNKS, np.array([0, 2, 3]), packed=True)
    assert len(rows) == 2
    assert rows[0] == {
        "input_ids": [100, 101, 102, 250, 251, 252, 253],
        "labels": [IGNORE_INDEX, 101, 102, IGNORE_INDEX, IGNORE_INDEX, 252, 253],
        "position_ids": [0, 1, 2, 0, 1, 2, 3],
    }
    assert rows[1] == {"input_ids": [500, 501], "labels": [IGNORE_INDEX, 501], "position_ids": [0, 1]}


def test_unpacked_rows_have_no_position_ids_and_indexes_are_checked():
    rows = RowDataset(TOKENS, CHUNKS, np.array([0, 1, 2, 3]), packed=False)
    assert [row["input_ids"] for row in rows] == [[100, 101, 102], [250, 251, 252, 253], [500, 501]]
    assert all("position_ids" not in row for row in rows)
    for index in (-1, 3):
        with pytest.raises(IndexError):
            rows[index]


def test_a_never_target_token_is_no_label_anywhere():
    rows = RowDataset(TOKENS, CHUNKS, np.array([0, 2]), packed=True, never_targets=(101, 253))
    assert rows[0]["labels"] == [IGNORE_INDEX, IGNORE_INDEX, 102, IGNORE_INDEX, IGNORE_INDEX, 252, IGNORE_INDEX]
    assert rows[0]["input_ids"] == [100, 101, 102, 250, 251, 252, 253]  # the input keeps them


def test_the_token_file_is_memory_mapped_and_an_empty_one_is_an_empty_array(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(5, dtype=np.int32).tofile(path)
    tokens = open_tokens(path)
    assert isinstance(tokens, np.memmap) and tokens.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises((ValueError, TypeError)):
        tokens[0] = 9  # read-only
    (tmp_path / "empty.bin").write_bytes(b"")
    empty = open_tokens(tmp_path / "empty.bin")
    assert empty.dtype == np.int32 and len(empty) == 0


def test_a_context_of_one_token_leaves_only_the_first_token_untrained():
    rows = RowDataset(TOKENS, np.array([(250, 4, 1)], dtype=np.int64), np.array([0, 1]), packed=False)
    assert rows[0]["labels"] == [IGNORE_INDEX, 251, 252, 253]
