import random
from collections import Counter

import pytest

from phased_cpt.data.chunking import IGNORE_INDEX, chunk_document

EOS = 0


def targets(chunks) -> Counter:
    """Tokens the model is trained to predict: labels after the causal shift (position 0 never is)."""
    return Counter(t for c in chunks for t in c.labels[1:] if t != IGNORE_INDEX)


def test_empty_document_gives_no_chunk():
    assert chunk_document([], 8, 2) == []


def test_document_of_exactly_max_tokens_is_one_chunk():
    ids = list(range(1, 8)) + [EOS]
    (chunk,) = chunk_document(ids, 8, 2)
    assert chunk.input_ids == ids and chunk.labels == ids


def test_one_token_over_max_tokens_gives_a_second_chunk_with_overlap_as_context():
    ids = list(range(1, 9)) + [EOS]  # 9 ids, max 8, overlap 2 -> stride 6
    first, second = chunk_document(ids, 8, 2)
    assert first.input_ids == ids[:8] and first.labels == ids[:8]
    assert second.input_ids == ids[6:]
    assert second.labels == [IGNORE_INDEX, IGNORE_INDEX, EOS]


def test_overlap_zero_still_repeats_one_token_so_the_boundary_token_is_predicted():
    ids = list(range(1, 8)) + [EOS]
    chunks = chunk_document(ids, 4, 0)
    assert [c.input_ids for c in chunks] == [ids[0:4], ids[3:7], ids[6:8]]
    assert [c.labels[0] for c in chunks[1:]] == [IGNORE_INDEX, IGNORE_INDEX]
    assert targets(chunks) == Counter(ids[1:])


def test_eos_only_at_the_end_of_the_document_even_at_a_chunk_boundary():
    ids = list(range(1, 8)) + [EOS]  # 8 ids; with max 5 / overlap 1 the first window ends mid-document
    chunks = chunk_document(ids, 5, 1)
    assert [EOS in c.input_ids for c in chunks] == [False, True]
    assert chunks[-1].input_ids[-1] == EOS and chunks[-1].labels[-1] == EOS
    (single,) = chunk_document(ids, 8, 1)  # EOS exactly at the block boundary: still one chunk
    assert single.input_ids[-1] == EOS and single.input_ids.count(EOS) == 1


def test_overlap_loss_true_trains_the_overlap_again():
    ids = list(range(1, 12)) + [EOS]
    chunks = chunk_document(ids, 8, 3, overlap_loss=True)
    assert all(c.labels == c.input_ids for c in chunks)


def test_overlap_must_be_smaller_than_max_tokens():
    with pytest.raises(ValueError):
        chunk_document([1, 2, 3], 4, 4)


@pytest.mark.parametrize("seed", range(20))
def test_every_token_is_a_target_exactly_once(seed):
    rng = random.Random(seed)
    max_tokens = rng.randint(2, 40)
    overlap = 0 if seed % 4 == 0 else rng.randint(0, max_tokens - 1)
    n = rng.randint(1, 300)
    ids = [rng.randint(1, 10_000) + 1000 * i for i in range(n)]  # unique ids
    chunks = chunk_document(ids, max_tokens, overlap)
    assert all(len(c.input_ids) <= max_tokens for c in chunks)
    # every token except the document's first (nothing precedes it) is predicted exactly once
    assert targets(chunks) == Counter(ids[1:])
    # and every chunk boundary keeps its overlap as context
    for previous, current in zip(chunks, chunks[1:]):
        assert current.input_ids[0] == previous.input_ids[-max(overlap, 1)]
        assert current.input_ids[:overlap] == previous.input_ids[len(previous.input_ids) - overlap:]


def test_spans_describe_the_same_windows_as_chunks():
    from phased_cpt.data.chunking import Span, chunk_spans

    assert chunk_spans(9, 8, 2) == [Span(0, 8, 0), Span(6, 3, 2)]
    assert chunk_spans(9, 8, 2, overlap_loss=True) == [Span(0, 8, 0), Span(6, 3, 0)]
    assert chunk_spans(0, 8, 2) == []
