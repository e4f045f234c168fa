"""Pretraining the tiny base on the standard library: a few steps on a slice of it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from phased_cpt.config import ModelConfig
from phased_cpt.data.fim import find_fim_tokens
from phased_cpt.modeling import load_base_model, load_tokenizer
from phased_cpt.pretrain import (
    PretrainSettings,
    general_files,
    pretrain_tiny_model,
    pretrained_model_dir,
    pretrained_model_path,
)
from phased_cpt.quickstart.stdlib import STDLIB, is_eval_file, stdlib_files
from tests.conftest import tiny_model_config

TINY = PretrainSettings(
    steps=3, rows_per_step=2, max_tokens=64, vocab_size=300, hidden_size=32, num_layers=2, limit_files=12
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A model this small trains far slower on two threads of a busy 2-core machine than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def pretrained(cache_home):
    return pretrained_model_dir(TINY)


def test_the_general_corpus_is_split_by_file_and_held_out_files_are_not_trained_on(pretrained):
    train, held_out = general_files(pretrained)
    paths = {
        kind: {json.loads(line)["training_content"].split("\n", 1)[0] for line in f.open()}
        for kind, f in (("train", train), ("eval", held_out))
    }
    assert paths["train"] and paths["eval"] and not paths["train"] & paths["eval"]
    eval_files = {f"# path: {p.relative_to(STDLIB)}" for p in stdlib_files() if is_eval_file(p)}
    assert paths["eval"] <= eval_files
    assert len({p.split("/")[0] for p in paths["train"]}) <= 12  # the slice: 12 training files, one held out


def test_pretraining_trains_every_weight_and_records_what_it_did(pretrained, tmp_path):
    record = json.loads((pretrained / "pretrain.json").read_text())
    assert record["steps"] == 3 and record["tokens"] > 0 and record["general_eval_documents"] > 0
    assert record["general_eval_perplexity"] > 1
    model = load_base_model(tiny_model_config(pretrained))
    assert model.config.model_type == "qwen2"
    tokenizer = load_tokenizer(ModelConfig(name=str(pretrained)))
    assert find_fim_tokens(tokenizer).family == "Qwen2.5-Coder"
    from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

    random = load_file(
        build_tiny_model(
            tmp_path,
            [general_files(pretrained)[0]],
            TinyModelSpec(
                architecture="qwen2", vocab_size=300, hidden_size=32, num_layers=2, fim=True, initializer_range=0.02
            ),
        )
        / "model.safetensors"
    )
    trained = load_file(pretrained / "model.safetensors")
    assert set(random) == set(trained)
    assert all(not trained[name].equal(random[name]) for name in trained if "norm" not in name)


def test_pretraining_is_deterministic(pretrained, tmp_path):
    again = pretrain_tiny_model(tmp_path / "again", TINY)
    first, second = load_file(pretrained / "model.safetensors"), load_file(again / "model.safetensors")
    assert all(first[name].equal(second[name]) for name in first)


def test_the_pretrained_model_is_built_once_and_cached(pretrained, cache_home):
    assert pretrained == pretrained_model_path(TINY)
    assert pretrained.parent == cache_home / "phased-cpt" and pretrained.name.startswith("pretrained-tiny-")
    assert [p.name for p in pretrained.parent.iterdir()] == [pretrained.name]  # no leftover temporary directory
    stamp = (pretrained / "model.safetensors").stat().st_mtime_ns
    assert pretrained_model_dir(TINY) == pretrained and (pretrained / "model.safetensors").stat().st_mtime_ns == stamp
    assert pretrained_model_path(PretrainSettings(**{**TINY.__dict__, "seed": 1})) != pretrained
