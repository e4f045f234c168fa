"""Benchmark corpus: the Python standard library, one document per top-level function or class.

Real code of mixed length (median ~150 tokens, a few classes over 30K), much like commit and PR
data. Also builds the benchmark tokenizer and tiny model offline (no hub): a byte-level BPE
trained on part of the corpus (`phased_cpt.quickstart.tiny_model.build_tiny_model`).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

STDLIB = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def stdlib_documents(limit_files: int | None = None) -> list[str]:
    """Source of every top-level def/class of every stdlib module, in sorted file order."""
    files = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)
    documents = []
    for path in files[:limit_files]:
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue  # a few test fixtures are deliberately broken
        lines = source.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                text = "".join(lines[start : node.end_lineno])
                if text.strip():
                    documents.append(f"# path: {path.relative_to(STDLIB)}\n{text}")
    return documents


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
    from phased_cpt.quickstart.tiny_model import build_tiny_model

    if (out_dir / "config.json").is_file():
        return out_dir
    return build_tiny_model(out_dir, [sample], architecture="qwen2", vocab_size=vocab_size,
                            hidden_size=hidden_size, num_layers=num_layers)
