"""quickstart/tiny_model.py: the tiny offline models every test builds on: each tokenizer convention
it promises (pad == EOS, BOS or not, FIM tokens, SentencePiece) and a config that matches it."""

from __future__ import annotations

from transformers import AutoConfig, AutoTokenizer

from phased_cpt.quickstart.tiny_model import BOS, EOS, FIM_TOKENS


def test_the_qwen2_style_tokenizer_pads_with_eos_and_adds_no_bos(tiny_model_dir, tokenizer):
    assert tokenizer.eos_token == tokenizer.pad_token == EOS
    assert tokenizer("def f(): pass")["input_ids"][0] != tokenizer.bos_token_id or tokenizer.bos_token_id is None
    assert tokenizer("def f(): pass")["input_ids"] == tokenizer("def f(): pass", add_special_tokens=False)["input_ids"]
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.model_type == "qwen2"
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (len(tokenizer), 32, 2)
    assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_the_llama_style_tokenizer_prepends_bos(tiny_llama_bos_dir, llama_tokenizer):
    ids = llama_tokenizer("def f(): pass")["input_ids"]
    assert llama_tokenizer.bos_token == BOS and ids[0] == llama_tokenizer.bos_token_id
    assert AutoConfig.from_pretrained(tiny_llama_bos_dir).model_type == "llama"


def test_the_fim_tokens_are_single_special_tokens(fim_tokenizer, tokenizer):
    for token in FIM_TOKENS:
        (token_id,) = fim_tokenizer(token, add_special_tokens=False)["input_ids"]
        assert fim_tokenizer.convert_ids_to_tokens(token_id) == token
        assert token not in tokenizer.get_vocab()


def test_the_sentencepiece_tokenizer_is_a_tokenizer_model_file(tiny_sentencepiece_llama_dir):
    assert (tiny_sentencepiece_llama_dir / "tokenizer.model").is_file()
    loaded = AutoTokenizer.from_pretrained(tiny_sentencepiece_llama_dir)
    text = "def f(x):\n    return  x"
    assert loaded.decode(loaded(text, add_special_tokens=False)["input_ids"]) == text  # whitespace kept as is
