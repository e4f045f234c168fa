"""config/strict_yaml.py: YAML as the config reads it: duplicate keys name both lines, merge keys
are not duplicates, alias bombs and deep nesting are refused quickly."""

from __future__ import annotations

import time

from phased_cpt.config import load_config
from tests.unit.config.conftest import PHASES, problems


def test_duplicate_keys_name_both_lines(config_dir):
    text = "training:\n  seed: 1\n" + PHASES + "training:\n  seed: 2\n"
    assert problems(text, config_dir) == [
        f"{config_dir / 'c.yaml'}:4: duplicate key 'training' (first at line 1, again at line 4); YAML would keep only "
        "the last one: merge them into one"
    ]
    nested = "training:\n  seed: 1\n  seed: 2\n" + PHASES
    assert problems(nested, config_dir)[0].startswith(
        f"{config_dir / 'c.yaml'}:3: duplicate key 'seed' (first at line 2"
    )


def test_merge_keys_are_not_duplicates(config_dir):
    path = config_dir / "c.yaml"
    path.write_text("training:\n  <<: {seed: 1, logging_steps: 5}\n  seed: 2\n" + PHASES)
    cfg, _ = load_config(path)
    assert (cfg.training.seed, cfg.training.logging_steps) == (2, 5)  # the mapping's own key overrides the merged


def test_alias_bomb_is_refused_quickly(config_dir):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
    ]
    started = time.perf_counter()
    (problem,) = problems("\n".join(levels) + "\n", config_dir)
    assert time.perf_counter() - started < 2  # was 40 s and 1.4 GB at depth 7
    assert "expand to more than 10,000 values" in problem and "alias bomb" in problem


def test_recursive_alias_and_deep_nesting(config_dir):
    assert "a recursive alias" in problems("a: &a [1, *a]\n", config_dir)[0]
    assert "nested too deeply" in problems("a: " + "[" * 5000 + "]" * 5000 + "\n", config_dir)[0]
