"""gpus.py: the GPU table, looked up by the name a driver reports or a user types."""

from __future__ import annotations

import pytest

from phased_cpt.gpus import GPUS, gpu_by_name, gpu_spec, known_gpu_names


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM 80GB"),
        ("h200", "H200 141GB"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        ("NVIDIA L4", "L4 24GB"),
        ("NVIDIA L40S", "L40S 48GB"),
        ("NVIDIA A10", "A10 24GB"),
        ("NVIDIA GH200 480GB", "H200 141GB"),
        ("NVIDIA GeForce GTX 1080", None),
    ],
)
def test_gpu_names_match_whole_words(name, expected):
    spec = gpu_spec(name)
    assert (spec.name if spec else None) == expected


def test_a_user_names_a_gpu_by_a_whole_alias_or_its_full_name_never_by_a_fragment():
    h200 = gpu_spec("h200")
    assert h200 is not None
    assert gpu_by_name("h200") is gpu_by_name(" H200 ") is gpu_by_name(h200.name.upper()) is h200
    a100_40 = gpu_by_name("A100-40GB")
    assert a100_40 is gpu_by_name("a100_40gb") is gpu_by_name("a100 40gb")
    assert gpu_by_name("NVIDIA H200 141GB") is None  # a driver's name is gpu_spec's job, not --gpu-model's
    assert gpu_by_name("h2") is None and gpu_by_name("") is None


def test_the_known_names_list_every_gpu_once_by_its_first_alias():
    names = known_gpu_names().split(", ")
    assert names == [spec.aliases[0].upper() for spec in GPUS]
    assert all(gpu_by_name(name) is spec for name, spec in zip(names, GPUS))
