"""Benchmark corpus: the Python standard library, one document per top-level function or class
(`phased_cpt.quickstart.stdlib`).

Real code of mixed length (median ~150 tokens, a few classes over 30K), much like commit and PR
data. Also builds the benchmark tokenizer and tiny model offline (no hub): a byte-level BPE
trained on part of the corpus (`phased_cpt.quickstart.tiny_model.build_tiny_model`).
"""

from __future__ import annotations

import json
from pathlib import Path

from phased_cpt.quickstart.stdlib import stdlib_documents


def write_corpus(out_dir: Path, limit_files: int | None) -> tuple[Path, Path]:
    """(corpus.jsonl, tokenizer_sample.jsonl): all documents, and every 8th one for the BPE."""
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = stdlib_documents(limit_files)
    corpus, sample = out_dir / "corpus.jsonl", out_dir / "tokenizer_sample.jsonl"
    with open(corpus, "w", encoding="utf-8") as f, open(sample, "w", encoding="utf-8") as g:
        for i, text in enumerate(documents):
            line = json.dumps({"training_content": text}) + "\n"
            f.write(line)
            if i % 8 == 0:
                g.write(line)
    return corpus, sample


def build_model(out_dir: Path, sample: Path, vocab_size: int, hidden_size: int = 128, num_layers: int = 4) -> Path:
    from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

    if (out_dir / "config.json").is_file():
        return out_dir
    return build_tiny_model(
        out_dir,
        [sample],
        TinyModelSpec(architecture="qwen2", vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers),
    )
