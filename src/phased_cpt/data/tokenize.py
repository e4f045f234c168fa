"""Text to token ids: `tokenizer(text, add_special_tokens=True)`, then EOS once after the last
token; through the Rust backend's fast batch call where it can, and, for a very long document,
slice by slice (`encode_long_text`) with the ids of the whole text and memory of a slice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import numpy as np
from transformers import PreTrainedTokenizerBase

from phased_cpt.modeling import require_eos_token

logger = logging.getLogger(__name__)


def tokenize_documents(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each text, with EOS appended after its last token."""
    return [ids.tolist() for ids in document_ids(texts, tokenizer)]


def document_ids(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[np.ndarray]:
    """Token ids of each text as int32, with EOS appended after its last token."""
    eos = require_eos_token(tokenizer)
    all_ids = []
    for ids in encode_texts(texts, tokenizer):
        ids = np.asarray(ids, dtype=np.int32)
        if not len(ids) or ids[-1] != eos:  # some tokenizers (T5-style) already add EOS
            ids = np.append(ids, np.int32(eos))
        all_ids.append(ids)
    return all_ids


def encode_texts(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int] | np.ndarray]:
    """`tokenizer(texts, add_special_tokens=True)["input_ids"]`; a text longer than
    `LONG_DOCUMENT_CHARS` is tokenized in slices (`encode_long_text`), with the same result."""
    long = {i for i, text in enumerate(texts) if len(text) > LONG_DOCUMENT_CHARS}
    short = encode_plain([t for i, t in enumerate(texts) if i not in long], tokenizer, special_tokens=True)
    if not long:
        return short
    short_ids = iter(short)
    return [encode_long_text(text, tokenizer) if i in long else next(short_ids) for i, text in enumerate(texts)]


def encode_plain(texts: list[str], tokenizer: PreTrainedTokenizerBase, special_tokens: bool) -> list[list[int]]:
    """`tokenizer(texts, add_special_tokens=...)["input_ids"]`, through the Rust backend's
    `encode_batch_fast` (no character offsets: ~15% less CPU) when the backend has no truncation
    or padding configured of its own; otherwise through the tokenizer's usual call."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast") or backend.truncation or backend.padding:
        return tokenizer(texts, add_special_tokens=special_tokens, verbose=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=special_tokens)]


LONG_DOCUMENT_CHARS = 1 << 18
"""Texts longer than this (262,144 characters) are tokenized in slices of at most this size.

A fast tokenizer holds ~450 bytes per token while it encodes (offsets, token strings, ...): a
61 MB one-line document took 15 GB. In slices, preparing a phase (`plan`, `train`) needs at most
10x the longest document's UTF-8 size + 64 MiB above its baseline (the line, its text and its
int32 ids are held whole; the tokenizer's working memory only per slice). Tested in
`tests/unit/data/test_tokenize.py`; measured figures in benchmarks/RESULTS.md.
"""
_SLICE_CUT = re.compile(r"(?<=\n)(?=\S)|(?<=\S)(?= [^\W\d_])")
"""Where a slice may end: after a line end followed by a non-space character, or before a space
followed by a letter (after a non-space). Byte-level BPE pre-tokenizers (GPT-2, Qwen2, Llama 3)
always split there, so tokenizing the slices gives the ids of the whole text."""
_SLICE_PROBE = (
    "def f(x):\n    return x + 1\n\n\nclass A(B):\n\tpass\r\n;\n\n x = [1, 2]  # note: it's 12 34\n"
    "foo bar. Baz, qux?! 'quoted' \"s\"\n\u00e9t\u00e9 \u00fcber na\u00efve \u65e5\u672c\u8a9e\n   indented\n)\n"
)
_slicing_exact: dict[int, bool] = {}


def encode_long_text(text: str, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """The ids of `tokenizer(text, add_special_tokens=True)`, encoding slices of at most
    `LONG_DOCUMENT_CHARS` characters (more only where a run of text has no `_SLICE_CUT` position)
    so memory grows with the slice, not the document. Tokenizers for which slicing would change
    the ids (checked once on a probe text, e.g. SentencePiece's prepended space) get the whole text."""
    if not slicing_is_exact(tokenizer):
        logger.warning(
            "a document of %d characters is tokenized in one piece (this tokenizer cannot be "
            "sliced exactly); memory grows with it",
            len(text),
        )
        return np.asarray(encode_plain([text], tokenizer, special_tokens=True)[0], dtype=np.int32)
    prefix, suffix = special_tokens_around(tokenizer)
    pieces = [np.asarray(prefix, dtype=np.int32)]
    for start, end in slice_bounds(text, LONG_DOCUMENT_CHARS):
        pieces.append(np.asarray(encode_plain([text[start:end]], tokenizer, special_tokens=False)[0], dtype=np.int32))
    pieces.append(np.asarray(suffix, dtype=np.int32))
    return np.concatenate(pieces)


def slice_bounds(text: str, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive slices covering `text`, each ending at a `_SLICE_CUT` position:
    the last one within `size` characters (past half of it), else the first one after."""
    start = 0
    while len(text) - start > size:
        cut = None
        for match in _SLICE_CUT.finditer(text, start + size // 2, start + size + 2):
            if match.start() <= start + size:
                cut = match.start()
        if cut is None:
            match = _SLICE_CUT.search(text, start + size)
            if match is None or match.start() >= len(text):
                break
            cut = match.start()
        yield start, cut
        start = cut
    yield start, len(text)


def slicing_is_exact(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether encoding a text cut at every `_SLICE_CUT` position of a probe text gives the ids of
    the whole text, for this tokenizer (cached per tokenizer object)."""
    key = id(tokenizer)
    if key not in _slicing_exact:
        whole = encode_plain([_SLICE_PROBE], tokenizer, special_tokens=False)[0]
        cuts = [m.start() for m in _SLICE_CUT.finditer(_SLICE_PROBE) if 0 < m.start() < len(_SLICE_PROBE)]
        halves = encode_plain(
            [part for c in cuts for part in (_SLICE_PROBE[:c], _SLICE_PROBE[c:])], tokenizer, special_tokens=False
        )
        _slicing_exact[key] = all(halves[2 * i] + halves[2 * i + 1] == whole for i in range(len(cuts)))
    return _slicing_exact[key]


def special_tokens_around(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids `add_special_tokens=True` puts before and after a text (e.g. Llama's BOS)."""
    plain = encode_plain(["a"], tokenizer, special_tokens=False)[0]
    full = encode_plain(["a"], tokenizer, special_tokens=True)[0]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    return [], []
