"""General code that every machine has: the running interpreter's Python standard library.

One document per top-level function or class (with a `# path:` header), in sorted file order:
real code of mixed length, much like a repository's files. Files are split between general
training and general evaluation by a hash of their path (`EVAL_EVERY`: one file in 20 is
held out), so the split does not move when files are added or removed.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])
EVAL_EVERY = 20


def stdlib_files(limit_files: int | None = None) -> list[Path]:
    """The stdlib's Python files (site-packages left out), sorted; the first `limit_files`."""
    files = []
    for directory, subdirectories, names in os.walk(STDLIB):
        subdirectories[:] = [d for d in subdirectories if d != "site-packages"]
        files.extend(Path(directory) / name for name in names if name.endswith(".py"))
    return sorted(files)[:limit_files]


def file_documents(path: Path, root: Path = STDLIB) -> Iterator[str]:
    """Source of every top-level def/class of one module, headed by its path under `root`; nothing
    for a file that does not parse."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (UnicodeDecodeError, SyntaxError, ValueError):
        return  # a few test fixtures are deliberately broken
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            text = "".join(lines[start : node.end_lineno])
            if text.strip():
                yield f"# path: {path.relative_to(root)}\n{text}"


def stdlib_documents(limit_files: int | None = None) -> list[str]:
    """Every top-level def/class of every stdlib module (the first `limit_files` files), in order."""
    return [doc for path in stdlib_files(limit_files) for doc in file_documents(path)]


def is_eval_file(path: Path) -> bool:
    return zlib.crc32(str(path.relative_to(STDLIB)).encode("utf-8")) % EVAL_EVERY == 0


def write_general_corpus(
    out_dir: Path, limit_files: int | None = None, text_field: str = "training_content"
) -> tuple[Path, Path]:
    """(train.jsonl, eval.jsonl) of the stdlib's documents, split by file (see module docstring).

    `limit_files`: only the first N training files and the first N/20 (at least one) held-out files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = stdlib_files()
    held_out_files = [p for p in files if is_eval_file(p)]
    train_files = [p for p in files if not is_eval_file(p)]
    if limit_files is not None:
        train_files, held_out_files = train_files[:limit_files], held_out_files[: math.ceil(limit_files / EVAL_EVERY)]
    paths = {"train": out_dir / "train.jsonl", "eval": out_dir / "eval.jsonl"}
    for split, chosen in (("train", train_files), ("eval", held_out_files)):
        with open(paths[split], "w", encoding="utf-8") as f:
            for path in chosen:
                f.writelines(json.dumps({text_field: text}) + "\n" for text in file_documents(path))
    return paths["train"], paths["eval"]
