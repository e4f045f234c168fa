import pytest

from phased_cpt.data.split import eval_document_count, split_documents


@pytest.mark.parametrize(
    "documents, ratio, expected",
    [
        (0, 0.02, 0),
        (1, 0.02, 0),
        (2, 0.02, 1),
        (100, 0.02, 2),
        (1000, 0.02, 20),
        (10, 0.0, 0),
        (3, 0.9, 2),
    ],
)
def test_eval_document_count(documents, ratio, expected):
    assert eval_document_count(documents, ratio) == expected


def test_split_is_deterministic_disjoint_and_complete():
    items = list(range(200))
    train, held = split_documents(items, 0.1, seed=3, phase_name="p1")
    assert len(held) == 20 and sorted(train + held) == items
    assert split_documents(items, 0.1, seed=3, phase_name="p1") == (train, held)
    assert split_documents(items, 0.1, seed=4, phase_name="p1")[1] != held
    assert split_documents(items, 0.1, seed=3, phase_name="p2")[1] != held
