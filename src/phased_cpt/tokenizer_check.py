"""Whether a tokenizer can tokenize text for its model: the one rule (`tokenizer_problem`), and
the light check of a local model directory's tokenizer files that `validate` runs without
importing torch or transformers (`local_tokenizer_problems`, with the `tokenizers` library).

A model directory without `tokenizer.json` whose `tokenizer_config.json` names a class such as
`Qwen2Tokenizer` loads under transformers 5 as a tokenizer of one token that encodes any text to
`[]`: every document becomes its EOS alone and training learns nothing. A tokenizer with more ids
than the model's embedding has rows crashes at the first step (an IndexError; a device assert on
CUDA). Both are refused here, before any data is prepared or any run directory is made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

PROBE_TEXT = (
    "def mean(values: list[float]) -> float:\n"
    '    """The arithmetic mean of the values; raises on an empty list."""\n'
    "    return sum(values) / len(values)\n"
)
"""Code and English: any tokenizer for a code model encodes it to dozens of tokens."""
MAX_PROBE_CHARS_PER_TOKEN = 16
"""Byte-level BPE of code models: 3-5 characters per token; more than 16 means text is being lost."""
MIN_VOCABULARY = 64
"""Fewer ids cannot even spell ASCII text."""
TOKENIZER_FILES = ("tokenizer.json", "vocab.json + merges.txt", "tokenizer.model", "vocab.txt")
"""The files a tokenizer is built from (fast, BPE, SentencePiece, WordPiece)."""

FIM_SPELLINGS: tuple[tuple[str, str, str, str], ...] = (
    ("Qwen2.5-Coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("StarCoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("DeepSeek-Coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    ("CodeLlama", "▁<PRE>", "▁<SUF>", "▁<MID>"),
)
"""(family, prefix, suffix, middle) spellings of FIM tokens in the vocabularies of code models."""


def tokenizer_problem(
    name: str, vocabulary: int, probe_ids: Sequence[int], unknown_id: int | None, embedding_rows: int | None
) -> str | None:
    """Why the tokenizer of model `name` cannot be trained with (None: it can).

    `vocabulary`: its number of ids; `probe_ids`: what it encodes `PROBE_TEXT` to (no special
    tokens); `unknown_id`: its UNK id, if any; `embedding_rows`: the model's `vocab_size`, if known.
    Refused: fewer than `MIN_VOCABULARY` ids; a probe encoded to fewer than one token per
    `MAX_PROBE_CHARS_PER_TOKEN` characters, or more than half of it to UNK; an id past the embedding.
    """
    files = tokenizer_files_note(name)
    tokens = len(probe_ids)
    if vocabulary < MIN_VOCABULARY:
        return f"the tokenizer of {name!r} has only {vocabulary} id(s) (fewer than {MIN_VOCABULARY}){files}"
    unknown = sum(i == unknown_id for i in probe_ids) if unknown_id is not None else 0
    if tokens * MAX_PROBE_CHARS_PER_TOKEN < len(PROBE_TEXT) or unknown * 2 > tokens:
        shown = "nothing" if not tokens else f"{tokens} token(s) {list(probe_ids)[:8]}"
        shown += f", {unknown} of them unknown (UNK)" if unknown else ""
        return (
            f"the tokenizer of {name!r} encodes a {len(PROBE_TEXT)}-character probe text to {shown}: it would "
            f"lose the text of every document{files}"
        )
    if embedding_rows is not None:
        top = max([vocabulary - 1, *probe_ids])
        if top >= embedding_rows:
            return (
                f"the tokenizer of {name!r} has ids up to {top}, and the model's embedding has {embedding_rows} rows "
                "(config.json vocab_size): the first step would index past it. Use the tokenizer the model was "
                "trained with"
            )
    return None


def tokenizer_files_note(name: str) -> str:
    """For a local model directory: which tokenizer files it lacks (empty when it has one, or is no directory)."""
    directory = Path(name).expanduser()
    if not directory.is_dir() or present_tokenizer_files(directory):
        return ""
    return (
        f"; {directory} holds none of the tokenizer files ({', '.join(TOKENIZER_FILES)}): copy the tokenizer "
        "files of the model into it"
    )


def present_tokenizer_files(directory: Path) -> list[str]:
    present = []
    for spec in TOKENIZER_FILES:
        if all((directory / part).is_file() for part in spec.split(" + ")):
            present.append(spec)
    return present


def embedding_rows_of(config: Mapping) -> int | None:
    """The `vocab_size` of a model's config.json (of its text model, for a multimodal one)."""
    for candidate in (config, config.get("text_config") or {}):
        rows = candidate.get("vocab_size") if isinstance(candidate, Mapping) else None
        if isinstance(rows, int) and rows > 0:
            return rows
    return None


def fim_family(vocabulary: Mapping[str, int]) -> tuple[str, int, int, int] | None:
    """(family, prefix, suffix, middle ids) of the first `FIM_SPELLINGS` the vocabulary has, or None."""
    for family, *spellings in FIM_SPELLINGS:
        if all(s in vocabulary for s in spellings):
            prefix, suffix, middle = (vocabulary[s] for s in spellings)
            return family, prefix, suffix, middle
    return None


def local_tokenizer_problems(name: str, fim_settings: Sequence[str] = ()) -> list[str]:
    """The tokenizer checks `validate` can make without transformers: for a local model directory,
    its tokenizer files, `tokenizer_problem` on its `tokenizer.json` (read by the `tokenizers`
    library), and the FIM tokens for each of `fim_settings` (the keys asking for them). A hub id,
    or a directory with only slow-tokenizer files, is left to loading."""
    directory = Path(name).expanduser()
    if not directory.is_dir():
        return []
    if not present_tokenizer_files(directory):
        return [f"model.name {name!r}: no tokenizer{tokenizer_files_note(name)}"]
    path = directory / "tokenizer.json"
    if not path.is_file():
        return []
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust library raises a bare Exception for any malformed file
        return [f"model.name {name!r}: {path} cannot be read as a tokenizer ({first_line(err)}); copy it again"]
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    unknown = getattr(tokenizer.model, "unk_token", None)
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    added = [token for token in configured_special_tokens(directory) if token not in vocabulary]
    problem = tokenizer_problem(
        name,
        tokenizer.get_vocab_size(with_added_tokens=True) + len(added),
        tokenizer.encode(PROBE_TEXT, add_special_tokens=False).ids,
        tokenizer.token_to_id(unknown) if isinstance(unknown, str) else None,
        embedding_rows_of(config) if isinstance(config, Mapping) else None,
    )
    if problem and added:  # transformers adds a special token the vocabulary lacks as a new id
        problem += (
            f" ({directory / 'tokenizer_config.json'} names {', '.join(map(repr, added))}, not in its vocabulary)"
        )
    problems = [f"model.name: {problem}"] if problem else []
    if fim_family(vocabulary) is None:
        problems += [fim_missing(setting, name) for setting in fim_settings]
    return problems


def configured_special_tokens(directory: Path) -> list[str]:
    """The special tokens `tokenizer_config.json` names (bos, eos, unk, pad: a string or an
    {"content": ...} object); transformers gives each the vocabulary lacks a new id on loading."""
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    tokens = []
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key) if isinstance(config, Mapping) else None
        value = value.get("content") if isinstance(value, Mapping) else value
        if isinstance(value, str) and value not in tokens:
            tokens.append(value)
    return tokens


def fim_missing(setting: str, name: str) -> str:
    known = "; ".join(f"{family}: {' '.join(s)}" for family, *s in FIM_SPELLINGS)
    return (
        f"{setting} needs fill-in-the-middle tokens, and the tokenizer of {name!r} has "
        f"none (looked for {known}); set it to 0 / false, or use a code model whose tokenizer has them"
    )


def first_line(err: BaseException) -> str:
    """`TypeName: first non-empty line of the message` (many loaders start theirs with a newline)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
