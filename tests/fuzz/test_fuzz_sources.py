"""Property-based fuzzing of the input classes hardening round 3 opened (issue 29), derandomized:

- duplicate and moving sources: random trees of files, file links, directory links (loops
  included) and FIFOs under random lists of paths and globs; and a glob whose match set changes
  between a run's start and its resume;
- tokenizers that are empty or mismatched: random vocabularies and embedding sizes, checked by
  `validate`'s light path and by loading (train, plan, doctor, chat): what validate refuses,
  loading refuses too, and what loading accepts keeps the probe text and fits the embedding;
- files in an output directory that merge did not write.

The properties: every file is read once and every readable match is read; a resume goes on only
on the data it started with; an unusable tokenizer is refused in one line;
`--force` never deletes a file it did not write.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phased_cpt.config import load_config
from phased_cpt.config.files import file_identity
from phased_cpt.errors import ConfigError, UserError
from tests.fuzz.test_fuzz_inputs import fuzz

pytestmark = pytest.mark.fuzz

DIRS = ["", "a", "a/b", "c"]
"""Directories of the random tree, relative to its root (all exist, none hidden)."""

# --- duplicate and moving sources ---------------------------------------------------------------

entries = st.tuples(
    st.sampled_from(["file", "file_link", "dir_link", "fifo", "dangling"]),
    st.sampled_from(DIRS),
    st.sampled_from(["x", "y", "z", "w"]),
    st.sampled_from(DIRS),  # a directory link's target (an ancestor makes a loop)
)
patterns = st.sampled_from(["**/*.jsonl", "*.jsonl", "a/**/*.jsonl", "a/*.jsonl", "x.jsonl", "a/y.jsonl"])


def build_tree(root: Path, spec: list[tuple[str, str, str, str]]) -> None:
    for directory in DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for kind, directory, stem, target in spec:
        path = root / directory / f"{stem}.jsonl"
        if kind == "dir_link":
            path = root / directory / f"{stem}-link"
        if os.path.lexists(path):
            continue
        if kind == "file":
            path.write_text(json.dumps({"training_content": f"{directory}/{stem}"}) + "\n")
            files.append(path)
        elif kind == "file_link" and files:
            os.symlink(files[-1], path)
        elif kind == "dir_link":
            os.symlink(root / target, path, target_is_directory=True)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dangling":
            os.symlink(root / "gone.jsonl", path)


def reference_identities(root: Path, pattern: str) -> set:
    """What `pattern` names, as identities, computed another way: without `**`, Python's `glob`
    (finite without it); with `PREFIX/**/NAME`, every directory reachable from PREFIX through
    subdirectories and directory links, each visited once by identity, and the regular files in
    it whose name matches NAME."""
    import fnmatch
    import glob

    if "**" not in pattern:
        return {file_identity(Path(p)) for p in glob.glob(str(root / pattern)) if Path(p).is_file()}
    prefix, name = pattern.split("**/")
    queue, seen, found = [root / prefix], set(), set()
    while queue:
        directory = queue.pop()
        if file_identity(directory) in seen:
            continue
        seen.add(file_identity(directory))
        for child in directory.iterdir():
            if child.is_dir():
                queue.append(child)
            elif child.is_file() and fnmatch.fnmatchcase(child.name, name):
                found.add(file_identity(child))
    return found


@fuzz(150)
@given(spec=st.lists(entries, max_size=12), chosen=st.lists(patterns, min_size=1, max_size=4))
def test_every_matched_file_is_read_once_whatever_names_it(tmp_path_factory, spec, chosen):
    root = tmp_path_factory.mktemp("tree")
    build_tree(root, spec)
    (root / "c.yaml").write_text(json.dumps({"phases": [{"name": "p", "file": chosen}]}))
    try:
        cfg, notes = load_config(root / "c.yaml")
    except ConfigError as err:
        assert all("\n" not in p for p in err.problems)
        plain = [p for p in chosen if "*" not in p]  # a plain path that is no regular file, or a glob matching none
        globs_empty = [p for p in chosen if "*" in p and not reference_identities(root, p)]
        assert any(not (root / p).is_file() for p in plain) or globs_empty, err.problems
        return
    identities = [file_identity(f) for f in cfg.phases[0].files]
    assert len(identities) == len(set(identities))  # read once
    expected = set().union(*(reference_identities(root, p) for p in chosen))
    assert set(identities) == expected  # and every match read
    assert all("it is read once" in note for note in notes)


@fuzz(40)
@given(
    before=st.sets(st.sampled_from(["a", "b", "c", "d"]), min_size=1),
    change=st.sampled_from(["none", "add", "remove", "rewrite", "link"]),
    victim=st.sampled_from(["a", "b", "c", "d", "e"]),
)
def test_a_resume_goes_on_only_on_the_files_it_started_with(tmp_path_factory, before, change, victim):
    from phased_cpt.training.resume import resume_run, start_run

    root = tmp_path_factory.mktemp("resume")
    data = root / "d"
    data.mkdir()
    for name in before:
        (data / f"{name}.jsonl").write_text(json.dumps({"training_content": name}) + "\n")
    (root / "c.yaml").write_text("model: {name: some/model}\nphases: [{name: p, file: 'd/*.jsonl'}]\n")
    start_run(load_config(root / "c.yaml")[0]).release_lock()
    target = data / f"{victim}.jsonl"
    changed = False
    if change == "add" and not target.exists():
        target.write_text(json.dumps({"training_content": "new"}) + "\n")
        changed = True
    elif change == "remove" and target.exists() and len(before) > 1:
        target.unlink()
        changed = True
    elif change == "rewrite" and target.exists():
        target.write_text(json.dumps({"training_content": "rewritten"}) + "\n")
        changed = True
    elif change == "link" and target.exists():
        os.symlink(target, data / "zz-link.jsonl")  # sorts after: the same file under a second name
    try:
        resume_run(load_config(root / "c.yaml")[0], "latest").release_lock()
        resumed = True
    except UserError as err:
        assert "cannot resume" in str(err) and "Traceback" not in str(err)
        resumed = False
    assert resumed is not changed


# --- tokenizers that are empty or mismatched ----------------------------------------------------


@st.composite
def tokenizer_shapes(draw) -> tuple[int, str, int]:
    words = draw(st.integers(0, 300))
    kind = draw(st.sampled_from(["bytes", "words"]))
    rows_offset = draw(st.sampled_from([-50, -1, 0, 0, 7]))
    return words, kind, rows_offset


def write_tokenizer(directory: Path, words: int, kind: str, tiny_model_dir: Path, rows_offset: int) -> int:
    """A model directory with a random tokenizer: byte-level BPE with `words` merges learned, or
    a word-level vocabulary of `words` words (everything else UNK); config.json's vocab_size is
    the tokenizer's size plus `rows_offset`. Returns the tokenizer's size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.conftest import bundled_texts

    texts = bundled_texts("phase1_foundation", 20)
    if kind == "bytes":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=257 + words,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=words + 2, special_tokens=["<eos>", "<unk>"], show_progress=False
        )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")
    fast.save_pretrained(directory)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["vocab_size"] = max(1, len(fast) + rows_offset)
    (directory / "config.json").write_text(json.dumps(config))
    return len(fast)


@fuzz(30)
@given(shape=tokenizer_shapes())
def test_validate_and_loading_agree_and_a_usable_tokenizer_keeps_the_text(tmp_path_factory, tiny_model_dir, shape):
    from phased_cpt.config import ModelConfig
    from phased_cpt.modeling import load_tokenizer
    from phased_cpt.tokenizer_check import MAX_PROBE_CHARS_PER_TOKEN, PROBE_TEXT, local_tokenizer_problems

    words, kind, rows_offset = shape
    directory = tmp_path_factory.mktemp("tok")
    size = write_tokenizer(directory, words, kind, tiny_model_dir, rows_offset)
    light = local_tokenizer_problems(str(directory))
    try:
        tokenizer = load_tokenizer(ModelConfig(name=str(directory)))
        loaded = True
    except UserError as err:
        assert "\n" not in str(err) and str(directory) in str(err)
        loaded = False
    if light and loaded:
        # validate reads tokenizer.json as the `tokenizers` library does; transformers may rebuild it for the
        # model type (a word-level vocabulary under a Qwen2 config.json loads as a BPE that drops the unknown
        # words) and adds the class's own special tokens (Qwen2's <|endoftext|>). For the byte-level BPE of code
        # models the two agree except at the vocabulary floor, where those added tokens lift the count.
        assert kind == "words" or ("id(s) (fewer than" in light[0] and len(tokenizer) > size), (light, size)
    if rows_offset < 0:
        assert not loaded  # ids past the embedding: always refused
    if loaded:
        ids = tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
        assert len(ids) * MAX_PROBE_CHARS_PER_TOKEN >= len(PROBE_TEXT)
        assert sum(i == tokenizer.unk_token_id for i in ids) * 2 <= len(ids)
        assert max(ids) < size + rows_offset


# --- files in an output directory that merge did not write -------------------------------------

relative_names = st.lists(
    st.tuples(st.sampled_from(["", "sub/", "sub/deep/", "eval/"]), st.sampled_from(["a.json", "README.md", "m.bin"])),
    max_size=5,
)


@fuzz(100)
@given(written=relative_names, added=relative_names, link=st.booleans())
def test_force_replaces_an_export_only_when_it_holds_nothing_else(tmp_path_factory, written, added, link):
    from phased_cpt.inference.merge import check_replaceable, write_marker

    out = tmp_path_factory.mktemp("export") / "merged"
    out.mkdir()
    for folder, name in [("", "config.json"), *written]:
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / name).write_text("export")
    write_marker(out, {"adapter": "a"})
    extra = set()
    for folder, name in added:
        path = out / folder / f"user-{name}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("mine")
            extra.add(path)
    if link:
        (out / "user-link").symlink_to(out / "config.json")
        extra.add(out / "user-link")
    before = sorted((str(p), p.is_symlink()) for p in out.rglob("*"))
    try:
        check_replaceable(out, True)
        replaceable = True
    except UserError as err:
        assert "did not write" in str(err) and "\n" not in str(err)
        replaceable = False
    assert replaceable is not bool(extra)
    assert sorted((str(p), p.is_symlink()) for p in out.rglob("*")) == before  # a check, nothing removed
    shutil.rmtree(out.parent)
