"""The embedded quickstart: bundled sample data, its config, and a tiny model built offline.

`phased-cpt train` with no config trains `config.yaml` beside this file on the bundled
`data/*.jsonl`, with a tiny random-weight Llama whose SentencePiece tokenizer (BOS `<s>` prepended, EOS `</s>`)
is trained on that same data, the tokenizer kind llama.cpp's converter reads, so every
`phased-cpt export` target works on the quickstart run. The model is built once and cached (`quickstart_model_dir`); it is saved with
`save_pretrained` and loaded through the same `from_pretrained` path a real model uses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

QUICKSTART_DIR = Path(__file__).resolve().parent
DATA_DIR = QUICKSTART_DIR / "data"
CONFIG_FILE = QUICKSTART_DIR / "config.yaml"
BUILDER_VERSION = "3"


def quickstart_config_data(model_dir: Path) -> dict[str, Any]:
    """The embedded config as a dict, pointing at the bundled data and the built tiny model."""
    data = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    data["model"]["name"] = str(model_dir)
    for phase in data["phases"]:
        phase["file"] = str(DATA_DIR / phase["file"])
    return data


def describe_quickstart(model_name: str, phase_files: dict[str, Path], model_dir: Path) -> str:
    """The line `train` and `plan` print when they run the embedded config: which model and
    which data actually run, after any --set (phase name -> its file)."""
    model = "the tiny model built offline" if Path(model_name) == model_dir else f"model {model_name}"
    own = {name: file for name, file in phase_files.items() if Path(file).parent != DATA_DIR}
    if not own:
        data = "the bundled sample data"
    else:
        data = "your files: " + ", ".join(f"{name} <- {file}" for name, file in own.items())
        if len(own) < len(phase_files):
            data += "; the bundled sample data for the other phases"
    return f"no config given: the embedded quickstart config, {model}, {len(phase_files)} phase(s) on {data}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phased-cpt"


def quickstart_model_dir() -> Path:
    """The tiny quickstart model, built on first use and cached, keyed by the bundled data."""
    from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

    files = sorted(DATA_DIR.glob("*.jsonl"))
    digest = hashlib.sha256(BUILDER_VERSION.encode())
    for f in files:
        digest.update(f.read_bytes())
    target = cache_root() / f"quickstart-tiny-llama-{digest.hexdigest()[:12]}"
    return build_cached(target, lambda tmp: build_tiny_model(tmp, files, TinyModelSpec(tokenizer_kind="sentencepiece")))


def build_cached(target: Path, build: Callable[[Path], Any]) -> Path:
    """`target`, built by `build(tmp_dir)` the first time: written to a temporary directory beside
    it and renamed into place, so a half-built model is never found there."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)  # atomic: a concurrent builder may have won; both are equal
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
