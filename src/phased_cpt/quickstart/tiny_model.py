"""Build a tiny Llama- or Qwen2-architecture causal LM with random weights, offline.

By default the tokenizer is a byte-level BPE trained with `tokenizers` on the given corpus; its EOS token
`<|endoftext|>` doubles as the pad token (as in Qwen2), which is exactly the case where a careless
collator would mask every EOS label. `bos=True` makes it prepend `<s>` like a Llama tokenizer;
`fim=True` adds Qwen2.5-Coder's fill-in-the-middle tokens as special tokens.

`tokenizer_kind="sentencepiece"` (Llama only) trains a SentencePiece BPE model instead (`tokenizer.model`,
byte fallback, whitespace kept as is, BOS `<s>` prepended, EOS `</s>`, no pad token), as Llama and Mistral ship:
llama.cpp's converter reads such a tokenizer directly, while it refuses a byte-level BPE whose
pre-tokenizer it does not recognize (every byte-level BPE trained here), so the quickstart model and
the GGUF export tests use it.
A larger `initializer_range` than real models use lets a model this small learn visibly in
a few dozen steps.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

EOS = "<|endoftext|>"
BOS = "<s>"
FIM_TOKENS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]


def iter_corpus(corpus_files: list[Path], text_field: str = "training_content") -> Iterator[str]:
    for path in corpus_files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)[text_field]


def build_tokenizer(texts: Iterator[str], vocab_size: int, bos: bool, fim: bool = False) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ([EOS, BOS] if bos else [EOS]) + (FIM_TOKENS if fim else [])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if bos:
        bos_id = tokenizer.token_to_id(BOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=EOS,
        bos_token=BOS if bos else None,
        model_max_length=1_000_000,
    )


SENTENCEPIECE_MODEL = "tokenizer.model"


def build_sentencepiece_tokenizer(texts: Iterator[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerBase:
    """A SentencePiece BPE tokenizer trained on `texts`, written to `out_dir/tokenizer.model` and
    loaded through transformers' LlamaTokenizer (which builds its fast tokenizer from that file)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=texts,
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,  # every byte stays encodable, as in Llama's tokenizer
        character_coverage=1.0,
        normalization_rule_name="identity",  # code: keep whitespace and characters as written
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        user_defined_symbols=["\n"],
        max_sentence_length=1 << 20,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SENTENCEPIECE_MODEL).write_bytes(model.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SENTENCEPIECE_MODEL).write_bytes(model.getvalue())
        config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False}
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(config))
        return AutoTokenizer.from_pretrained(tmp, model_max_length=1_000_000)


@dataclass(frozen=True)
class TinyModelSpec:
    """The shape of a tiny model and its tokenizer (the module docstring says what each option does)."""

    architecture: str = "llama"
    """"llama" or "qwen2"."""
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    bos: bool = False
    fim: bool = False
    seed: int = 0
    initializer_range: float = 0.1
    tokenizer_kind: str = "bpe"
    """"bpe" (byte-level, trained with `tokenizers`) or "sentencepiece" (llama only)."""


def build_tiny_model(out_dir: Path, corpus_files: list[Path], spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Train the tokenizer, build the random model, `save_pretrained` both into `out_dir`."""
    out_dir = Path(out_dir)
    architecture, vocab_size, hidden_size = spec.architecture, spec.vocab_size, spec.hidden_size
    bos, fim, tokenizer_kind = spec.bos, spec.fim, spec.tokenizer_kind
    if tokenizer_kind == "sentencepiece":
        if architecture != "llama" or fim:
            raise ValueError("tokenizer_kind='sentencepiece' is for architecture='llama' without fim")
        tokenizer = build_sentencepiece_tokenizer(iter_corpus(corpus_files), vocab_size, out_dir)
    elif tokenizer_kind == "bpe":
        tokenizer = build_tokenizer(iter_corpus(corpus_files), vocab_size, bos, fim)
    else:
        raise ValueError(f"tokenizer_kind must be 'bpe' or 'sentencepiece', got {tokenizer_kind!r}")
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=65536,
        initializer_range=spec.initializer_range,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        use_cache=False,
    )
    if architecture == "llama":
        config = LlamaConfig(**common)
    elif architecture == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ValueError(f"architecture must be 'llama' or 'qwen2', got {architecture!r}")
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
