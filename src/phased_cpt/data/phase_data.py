"""A phase's rows: read its documents, hold out eval documents, tokenize, append EOS, chunk.

EOS goes only after a document's true last token (never at a chunk boundary). BOS follows the
tokenizer's own convention: whatever `tokenizer(text)` adds with `add_special_tokens=True`
(Llama tokenizers prepend BOS, Qwen2 tokenizers add nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
from phased_cpt.data.chunking import IGNORE_INDEX, chunk_document
from phased_cpt.data.jsonl import Document, read_documents
from phased_cpt.data.split import split_documents
from phased_cpt.errors import DataError, UserError

TOKENIZE_BATCH_DOCUMENTS = 512


@dataclass
class Rows:
    """Training rows of a set of documents, with their token counts."""

    dataset: Dataset
    """Rows with `input_ids` and `labels` (-100 where a token is context only)."""
    documents: int
    document_tokens: int
    """Tokens of all documents, EOS included, before chunking."""
    target_tokens: int
    """Tokens that are training targets once per epoch (labels != -100, first token of a row excluded)."""
    longest_document_tokens: int

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class PhaseData:
    train: Rows
    eval: Rows | None
    """Held-out documents (phase `eval_file`, or `data.eval_ratio` of the phase file); None if none."""

    @property
    def rows(self) -> int:
        return len(self.train)


def tokenize_documents(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each text, with EOS appended after its last token."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(
            f"the tokenizer of {tokenizer.name_or_path!r} has no EOS token; set one in its "
            "tokenizer_config.json (eos_token) so the model can learn where documents end"
        )
    all_ids: list[list[int]] = []
    for start in range(0, len(texts), TOKENIZE_BATCH_DOCUMENTS):
        batch = texts[start : start + TOKENIZE_BATCH_DOCUMENTS]
        for ids in tokenizer(batch, add_special_tokens=True, verbose=False)["input_ids"]:
            if not ids or ids[-1] != eos:  # some tokenizers (T5-style) already add EOS
                ids = list(ids) + [eos]
            all_ids.append(ids)
    return all_ids


def build_phase_data(
    phase: PhaseConfig, data: DataConfig, tokenizer: PreTrainedTokenizerBase, context: ContextConfig, seed: int
) -> PhaseData:
    """Read, split (by document, before chunking), tokenize and chunk one phase's data."""
    documents = read_documents(phase.file, data.text_field)
    if phase.eval_file is not None:
        train_docs, eval_docs = documents, read_documents(phase.eval_file, data.text_field)
    else:
        train_docs, eval_docs = split_documents(documents, data.eval_ratio, seed, phase.name)
    return PhaseData(
        train=build_rows(train_docs, tokenizer, context),
        eval=build_rows(eval_docs, tokenizer, context) if eval_docs else None,
    )


def build_rows(documents: list[Document], tokenizer: PreTrainedTokenizerBase, context: ContextConfig) -> Rows:
    token_ids = tokenize_documents([d.text for d in documents], tokenizer)
    if not context.chunk_long_samples:
        reject_long_documents(documents, token_ids, context.max_tokens)
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    for ids in token_ids:
        for chunk in chunk_document(ids, context.max_tokens, context.overlap_tokens, context.overlap_loss):
            input_ids.append(chunk.input_ids)
            labels.append(chunk.labels)
    target_tokens = sum(sum(1 for t in row[1:] if t != IGNORE_INDEX) for row in labels)
    return Rows(
        dataset=Dataset.from_dict({"input_ids": input_ids, "labels": labels}),
        documents=len(documents),
        document_tokens=sum(len(ids) for ids in token_ids),
        target_tokens=target_tokens,
        longest_document_tokens=max(len(ids) for ids in token_ids),
    )


def reject_long_documents(documents: list[Document], token_ids: list[list[int]], max_tokens: int) -> None:
    too_long = [
        f"{doc.source}: {len(ids)} tokens (EOS included) > context.max_tokens {max_tokens}"
        for doc, ids in zip(documents, token_ids)
        if len(ids) > max_tokens
    ]
    if too_long:
        shown = too_long[:20]
        more = [f"... and {len(too_long) - 20} more"] if len(too_long) > 20 else []
        raise DataError(
            "\n".join(
                [f"{len(too_long)} document(s) longer than context.max_tokens and "
                 "context.chunk_long_samples is false (nothing is truncated silently):", *shown, *more,
                 "set context.chunk_long_samples: true to split them into overlapping chunks, "
                 "or raise context.max_tokens"]
            )
        )
