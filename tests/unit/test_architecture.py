"""The layers of docs/architecture.md: no module imports (even lazily) from a layer it may not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "phased_cpt"

ALLOWED = {
    "errors": set(),
    "distributed": set(),
    "interrupt": set(),
    "crash_points": set(),
    "contamination": set(),
    "config": {"errors"},
    "run_dir": {"config", "distributed", "errors"},
    "memory": {"config", "errors"},
    "gpus": set(),
    "flops": {"gpus", "memory"},
    "modeling": {"config", "errors", "tokenizer_check"},
    "tokenizer_check": set(),
    "data": {"config", "contamination", "crash_points", "errors", "distributed", "modeling", "tokenizer_check"},
    "evaluation": {"config", "contamination", "crash_points", "data", "run_dir", "distributed", "errors"},
    "training": {
        "config",
        "contamination",
        "crash_points",
        "data",
        "distributed",
        "errors",
        "evaluation",
        "flops",
        "gpus",
        "interrupt",
        "memory",
        "modeling",
        "run_dir",
    },
    "inference": {"config", "errors", "modeling", "run_dir"},
    "export": {"config", "errors", "modeling", "run_dir", "inference"},
    "doctor": {"config", "data", "errors", "launch", "memory", "modeling", "training"},
    "planning": {"config", "data", "distributed", "errors", "flops", "gpus", "memory", "training"},
    "launch": {"config", "errors"},
    "from_git": {"contamination", "errors"},
    "quickstart": set(),
    "pretrain": {"config", "data", "errors", "evaluation", "modeling", "quickstart"},
}


def layer_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        layer = parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module == "phased_cpt":  # from phased_cpt import interrupt
                targets = {alias.name for alias in node.names}
            elif node.module.startswith("phased_cpt."):
                targets = {layer_of(node.module)}
            else:
                continue
            found.setdefault(layer, set()).update(targets - {layer})
    return found


def test_every_layer_imports_only_what_docs_architecture_allows():
    found = imports()
    crossings = {
        layer: sorted(targets - ALLOWED[layer])
        for layer, targets in found.items()
        if layer in ALLOWED and targets - ALLOWED[layer]
    }
    assert crossings == {}
    assert {layer for layer in found if found[layer]} - set(ALLOWED) <= {
        "cli",
        "__main__",
    }  # every other module has a row
