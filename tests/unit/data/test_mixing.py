"""Mixing by tokens: weighted sources, replay, general data; shares as configured, eval sets untouched."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from phased_cpt.config import GENERAL_COLUMN, ContextConfig, DataConfig, PhaseConfig
from phased_cpt.config.loading import dump_config, load_config
from phased_cpt.data.mixing import draw_chunks, mixed_tokens, weight_sources
from phased_cpt.data.phase_data import DataSettings, EvaluatedData, build_run_data
from phased_cpt.errors import ConfigError
from tests.conftest import write_jsonl


def test_draw_chunks_repeats_whole_passes_then_stops_nearest_to_the_tokens_asked_for():
    lengths = np.array([10, 20, 30, 40])
    rng = np.random.default_rng(0)
    chosen = draw_chunks(lengths, 250, rng, repeat=True)  # two passes (200) and ~50 more
    counts = np.bincount(chosen, minlength=4)
    assert (counts >= 2).all() and abs(int(lengths[chosen].sum()) - 250) <= 20
    once = draw_chunks(lengths, 1000, np.random.default_rng(1), repeat=False)
    assert sorted(once.tolist()) == [0, 1, 2, 3]  # without repeat: every unit at most once
    assert draw_chunks(lengths, 0, rng, repeat=True).size == 0
    for wanted in range(0, 101, 7):  # one pass: the total is the nearest reachable along the drawn order
        picked = draw_chunks(lengths, wanted, np.random.default_rng(wanted), repeat=False)
        assert abs(int(lengths[picked].sum()) - wanted) <= 20


def test_replay_and_general_shares_of_the_training_tokens():
    replay, general = mixed_tokens(600, 0.2, 0.2)
    assert (replay, general) == (200, 200) and 600 + replay + general == 1000
    assert mixed_tokens(600, 0.0, 0.0) == (0, 0)


def documents(marker: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"def {marker}_{i}(x):\n"
        + "".join(f"    {marker} = x + {rng.randint(0, 99)}\n" for _ in range(rng.randint(1, 4)))
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tokenizer):
    work = tmp_path_factory.mktemp("mixing")
    alpha = write_jsonl(work / "alpha.jsonl", documents("alpha", 60, 1))
    write_jsonl(work / "b" / "beta-1.jsonl", documents("beta", 12, 2))
    write_jsonl(work / "b" / "beta-2.jsonl", documents("beta", 8, 3))
    general = write_jsonl(work / "general.jsonl", documents("gamma", 40, 4))
    first = write_jsonl(work / "first.jsonl", documents("delta", 30, 5))
    cfg = {
        "model": {"name": str(tokenizer.name_or_path)},
        "context": {"max_tokens": 128, "overlap_tokens": 8},
        "phases": [
            {"name": "first", "file": str(first), "general_ratio": 0.0},
            {
                "name": "second",
                "file": [{"path": str(alpha), "weight": 3}, {"path": str(work / "b" / "*.jsonl"), "weight": 1}],
                "replay_ratio": 0.1,
            },
        ],
        "general": {"file": str(general), "ratio": 0.2},
        "data": {"eval_ratio": 0.1},
    }
    config, _ = load_config(None, base_data=cfg)
    data = build_run_data(
        config.phases,
        DataSettings(config.data, config.context, 7, config.general),
        tokenizer,
        work / "cache",
        EvaluatedData(config.evaluation.general_file),
    )
    return data


def texts_by_marker(rows, tokenizer) -> dict[str, int]:
    """Training tokens per marker: each unpacked row is one whole document (none is chunked at 128)."""
    found: dict[str, int] = {}
    for row in rows.dataset:
        text = tokenizer.decode(row["input_ids"])
        markers = [m for m in ("alpha", "beta", "gamma", "delta") if m in text]
        assert len(markers) == 1, repr(text)
        marker = markers[0]
        found[marker] = found.get(marker, 0) + len(row["input_ids"])
    return found


def test_weights_replay_and_general_give_the_configured_token_shares(mixed, tokenizer):
    tokens = texts_by_marker(mixed["second"].train, tokenizer)
    total = sum(tokens.values())
    own = 1 - 0.1 - 0.2
    assert tokens["alpha"] / total == pytest.approx(own * 3 / 4, abs=0.02)
    assert tokens["beta"] / total == pytest.approx(own * 1 / 4, abs=0.02)
    assert tokens["delta"] / total == pytest.approx(0.1, abs=0.02)  # replay of the first phase
    assert tokens["gamma"] / total == pytest.approx(0.2, abs=0.02)  # general
    stats = mixed["second"].train.stats
    assert [s["source"].rsplit("/", 1)[-1] for s in stats["sources"]] == ["alpha.jsonl", "*.jsonl"]
    assert stats["sources"][0]["tokens"] == tokens["alpha"] and stats["general_tokens"] == tokens["gamma"]
    assert stats["replay_tokens"] == tokens["delta"]
    assert texts_by_marker(mixed["first"].train, tokenizer) == {"delta": mixed["first"].train.stats["tokens"]}


def test_eos_counts_every_document_end_trained_on_mixed_ones_included(mixed):
    """The plan's EOS column (issue 19 item 6): one per training document with one source and
    nothing mixed in; weighted repeats, replay and general data add their document ends. No
    document is chunked at 128 tokens and nothing is packed, so every row ends one document."""
    first, second = mixed["first"].train.stats, mixed["second"].train.stats
    assert first["eos_tokens"] == first["documents"] == first["rows"]
    assert second["eos_tokens"] == second["rows"] > second["documents"]
    planning = (Path(__file__).resolve().parents[3] / "docs" / "planning.md").read_text()
    assert "(equal to `docs` for a phase with one source and nothing mixed in;" in planning


def test_the_beta_source_reads_every_file_of_its_glob(mixed):
    (beta,) = [s for s in mixed["second"].train.stats["sources"] if s["source"].endswith("*.jsonl")]
    held_out = mixed["second"].eval.documents
    assert 20 - held_out <= beta["documents"] <= 20


def test_mixing_never_touches_eval_sets(mixed, tokenizer):
    for name in ("first", "second"):
        eval_markers = set(texts_by_marker(mixed[name].eval, tokenizer))
        assert eval_markers <= {"first": {"delta"}, "second": {"alpha", "beta"}}[name]
    general = mixed[GENERAL_COLUMN]
    held_out = {tokenizer.decode(row["input_ids"]) for row in general.eval.dataset}
    assert held_out and all("gamma" in text for text in held_out)
    trained = {tokenizer.decode(row["input_ids"]) for name in ("first", "second") for row in mixed[name].train.dataset}
    assert not held_out & trained  # no general eval document is ever mixed into training
    assert mixed[GENERAL_COLUMN].eval.documents == 4  # data.eval_ratio of the 40 general documents


def test_a_general_eval_file_alone_is_held_out_whole(tmp_path, tokenizer):
    general_eval = write_jsonl(tmp_path / "general-eval.jsonl", documents("gamma", 5, 9))
    phase = write_jsonl(tmp_path / "p.jsonl", documents("delta", 5, 8))
    data = build_run_data(
        [PhaseConfig(name="p", file=phase)],
        DataSettings(DataConfig(eval_ratio=0.0), ContextConfig(max_tokens=64, overlap_tokens=8), 1),
        tokenizer,
        tmp_path / "cache",
        EvaluatedData(general_eval),
    )
    assert data[GENERAL_COLUMN].eval.documents == 5 and len(data[GENERAL_COLUMN].train) == 0
    assert data["p"].train.stats["general_tokens"] == 0


def config_problems(tmp_path, **sections) -> list[str]:
    data = write_jsonl(tmp_path / "d.jsonl", ["x = 1"])
    base = {"phases": [{"name": "p", "file": str(data)}, {"name": "q", "file": str(data)}], **sections}
    try:
        load_config(None, base_data=base)
    except ConfigError as err:
        return err.problems
    return []


def test_config_rules_of_sources_and_general(tmp_path):
    data = str(write_jsonl(tmp_path / "d.jsonl", ["x = 1"]))
    (problem,) = config_problems(tmp_path, phases=[{"name": "p", "file": [{"path": data, "weight": 2}, data]}])
    assert problem.startswith("phases.0.file: give every source a weight, or none")
    (problem,) = config_problems(tmp_path, phases=[{"name": "p", "file": str(tmp_path / "none-*.jsonl")}])
    assert "matches no file" in problem
    (problem,) = config_problems(tmp_path, phases=[{"name": "p", "file": data, "general_ratio": 0.1}])
    assert problem.startswith("phases.0.general_ratio (0.1) needs general.file")
    (problem,) = config_problems(tmp_path, general={"file": data}, phases=[{"name": "general", "file": data}])
    assert "phase name 'general' is taken" in problem
    (problem,) = config_problems(
        tmp_path,
        general={"file": data, "ratio": 0.5},
        phases=[{"name": "p", "file": data}, {"name": "q", "file": data, "replay_ratio": 0.5}],
    )
    assert "replay_ratio (0.5) + general ratio (0.5) must stay below 1" in problem


def test_each_phase_gets_its_effective_general_ratio_and_keeps_its_own_setting(tmp_path):
    data = str(write_jsonl(tmp_path / "d.jsonl", ["x = 1"]))
    general = str(write_jsonl(tmp_path / "g.jsonl", ["y = 1"]))  # never a phase's file (issue 29)
    phases = [{"name": "p", "file": data, "general_ratio": 0.0}, {"name": "q", "file": data}]
    cfg, _ = load_config(None, base_data={"phases": phases, "general": {"file": general, "ratio": 0.05}})
    assert [p.general_ratio_for(cfg.general) for p in cfg.phases] == [0.0, 0.05]
    assert [p.general_ratio for p in cfg.phases] == [0.0, None]  # what the user wrote, never overwritten
    stored = yaml.safe_load(dump_config(cfg))  # the run directory's config holds the resolved share, as it always has
    assert [p["general_ratio"] for p in stored["phases"]] == [0.0, 0.05]
    cfg, _ = load_config(None, base_data={"phases": phases})
    assert [p.general_ratio_for(cfg.general) for p in cfg.phases] == [0.0, 0.0]  # no general.file: nothing to mix
    cfg, _ = load_config(None, base_data={"phases": phases[1:], "general": {"file": general}})
    assert cfg.phases[0].general_ratio_for(cfg.general) == 0.05  # the default share, once there is a general file


def test_source_weights_of_any_finite_size_share_out_the_tokens():
    """Before: weight 1e308 overflowed (own tokens x weight = inf) with an OverflowError in `plan`."""
    a = np.array([[0, 100, 0]] * 3)
    b = np.array([[0, 100, 0]])
    _, tokens = weight_sources([a, b], [1e308, 1e308 / 3], np.random.default_rng(0))
    assert tokens == [300, 100]
    _, tokens = weight_sources([a, b], [3.0, 1.0], np.random.default_rng(0))
    assert tokens == [300, 100]
