"""quickstart/stdlib.py: the general corpus from the interpreter's standard library: one document
per top-level def or class headed by its path, split into training and held-out files by a hash of
the path."""

from __future__ import annotations

import json

from phased_cpt.quickstart.stdlib import (
    EVAL_EVERY,
    STDLIB,
    file_documents,
    is_eval_file,
    stdlib_files,
    write_general_corpus,
)


def test_one_document_per_top_level_def_or_class_with_its_decorators(tmp_path):
    module = tmp_path / "pkg" / "m.py"
    module.parent.mkdir()
    module.write_text(
        "import os\n\nX = 1\n\n@decorate\ndef f():\n    return X\n\n\nclass C:\n    def g(self):\n        pass\n"
    )
    assert list(file_documents(module, root=tmp_path)) == [
        "# path: pkg/m.py\n@decorate\ndef f():\n    return X\n",
        "# path: pkg/m.py\nclass C:\n    def g(self):\n        pass\n",
    ]
    (tmp_path / "broken.py").write_text("def (:\n")
    assert list(file_documents(tmp_path / "broken.py", root=tmp_path)) == []


def test_the_files_are_sorted_and_leave_out_site_packages():
    files = stdlib_files(limit_files=50)
    assert len(files) == 50 and files == sorted(files)
    assert all(f.suffix == ".py" and "site-packages" not in f.parts and f.is_relative_to(STDLIB) for f in files)


def test_the_held_out_files_are_about_one_in_twenty_and_never_trained_on(tmp_path):
    files = stdlib_files()
    held_out = [f for f in files if is_eval_file(f)]
    assert 0.5 / EVAL_EVERY < len(held_out) / len(files) < 2 / EVAL_EVERY
    train, held = write_general_corpus(tmp_path, limit_files=20)

    def paths(jsonl):
        return {json.loads(line)["training_content"].split("\n", 1)[0] for line in jsonl.read_text().splitlines()}

    train_paths, held_paths = paths(train), paths(held)
    assert train_paths and held_paths and not train_paths & held_paths
    assert all(is_eval_file(STDLIB / p.removeprefix("# path: ")) for p in held_paths)
    assert not any(is_eval_file(STDLIB / p.removeprefix("# path: ")) for p in train_paths)
