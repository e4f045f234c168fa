import random

import pytest

from phased_cpt.data.packing import pack_best_fit_decreasing, packing_efficiency


def test_docstring_example():
    assert pack_best_fit_decreasing([5, 4, 3, 2, 2], 8) == [[0, 2], [1, 3, 4]]


def test_no_chunks_no_rows():
    assert pack_best_fit_decreasing([], 8) == []


def test_chunk_of_exactly_max_tokens_fills_a_row_alone():
    assert pack_best_fit_decreasing([8, 1, 8], 8) == [[0], [2], [1]]


def test_best_fit_picks_the_fullest_row_that_fits():
    # after 6 and 5 are placed (free 2 and 3), a 2 goes to the row with free 2, not 3
    rows = pack_best_fit_decreasing([6, 5, 2], 8)
    assert rows == [[0, 2], [1]]


def test_chunk_longer_than_max_tokens_is_refused():
    with pytest.raises(ValueError, match="chunks must have 1..8"):
        pack_best_fit_decreasing([3, 9], 8)


@pytest.mark.parametrize("seed", range(10))
def test_every_chunk_once_rows_within_capacity_and_deterministic(seed):
    rng = random.Random(seed)
    max_tokens = rng.randint(8, 300)
    lengths = [min(max_tokens, int(rng.paretovariate(1.2) * 5)) for _ in range(rng.randint(1, 500))]
    rows = pack_best_fit_decreasing(lengths, max_tokens)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= max_tokens for row in rows)
    assert rows == pack_best_fit_decreasing(lengths, max_tokens)
    # no two rows could be merged: best-fit never leaves two rows both at most half full
    assert sum(1 for row in rows if sum(lengths[i] for i in row) <= max_tokens // 2) <= 1


def test_packing_efficiency():
    assert packing_efficiency(12, 2, 8) == 0.75
    assert packing_efficiency(0, 0, 8) == 0.0
