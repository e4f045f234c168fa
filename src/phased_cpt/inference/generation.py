"""Generation from one base model with phase adapters on it: base answers and fine-tuned answers.

The base model is loaded once. `PeftModel.from_pretrained` injects the LoRA layers into it in
place, so "the base model" afterwards is only reachable through peft's `disable_adapter()`
context, which is how every base answer here is produced; fine-tuned answers go through the
active adapter. Further phases are loaded next to the first (`load_adapter`) and switched with
`set_adapter`, without reloading the base.

Prompts are raw completions by default (the model was continually pre-trained on raw text);
with `chat_template=True` the tokenizer's chat template wraps the prompt as one user turn.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from phased_cpt.errors import UserError
from phased_cpt.inference.params import PARAMS, GenerationParams, ParamError, text_problem
from phased_cpt.modeling import ADAPTER_LOAD_ERRORS, adapter_load_failure, load_adapter

if TYPE_CHECKING:
    from phased_cpt.inference.discovery import Target


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    seconds: float
    stop: str
    """'eos' when the model ended the answer, 'max_tokens' when the limit cut it, 'context' when
    the model's context (max_position_embeddings) was full first."""

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def stats(self, label: str) -> str:
        """One parseable line, e.g. `[ft] prompt 12 tok | generated 32 tok | 0.41 s | 78.0 tok/s | stop: max_tokens`."""
        return (
            f"[{label}] prompt {self.prompt_tokens} tok | generated {self.generated_tokens} tok | "
            f"{self.seconds:.2f} s | {self.tokens_per_s:.1f} tok/s | stop: {self.stop}"
        )

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "stop": self.stop,
        }


class DeltaStreamer(BaseStreamer):
    """Calls `on_text` with each new piece of decoded text as tokens arrive.

    Decodes everything generated so far and emits the part not yet emitted, so a character that
    spans several byte-level tokens is emitted once complete (never as U+FFFD halves).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.emitted = ""
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() pushes the prompt first
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        if text.startswith(self.emitted) and len(text) > len(self.emitted):
            self.on_text(text[len(self.emitted) :])
        self.emitted = text


class Generator:
    """One base model with the phase adapters on it; answers with or without the adapter."""

    def __init__(
        self,
        base: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        adapters: dict[str, Path],
        active: str,
        chat_template: bool = False,
    ) -> None:
        if chat_template and not tokenizer.chat_template:
            raise UserError(
                "--chat-template: this tokenizer has no chat template; leave the flag off for raw completion"
            )
        self.tokenizer = tokenizer
        self.adapters = dict(adapters)
        self.chat_template = chat_template
        self._names: dict[str, str] = {}  # label -> peft adapter name (labels may hold '/' or '.')
        base.config.use_cache = True  # training turns the KV cache off; generation wants it
        self.model = load_adapter(base, self.adapters[active], adapter_name=self._adapter_name(active))
        self.model.eval()
        self.active = active
        self.eos_ids = eos_token_ids(base, tokenizer)

    def use_phase(self, label: str) -> None:
        """Make `label`'s adapter the fine-tuned one, loading it next to the others if needed."""
        if label not in self.adapters:
            raise ParamError(f"unknown phase {label!r}; one of: {', '.join(self.adapters)}")
        name = self._adapter_name(label)
        if name not in self.model.peft_config:
            try:
                self.model.load_adapter(str(self.adapters[label]), adapter_name=name)
            except ADAPTER_LOAD_ERRORS as err:
                raise ParamError(adapter_load_failure(self.adapters[label], err)) from None
        self.model.set_adapter(name)
        self.model.eval()
        self.active = label

    def encode(self, prompt: str) -> list[int]:
        if self.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    @property
    def context_tokens(self) -> int | None:
        """The model's context length (`max_position_embeddings`), when its config says."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids; ParamError when it is empty or fills the model's context (checked
        before generating: a too-long prompt would otherwise run for minutes, then fail)."""
        problem = text_problem(prompt)
        if problem is not None:
            raise ParamError(problem)
        ids = self.encode(prompt)
        if not ids:
            raise ParamError("the prompt is empty after tokenization")
        limit = self.context_tokens
        if limit is not None and len(ids) >= limit:
            raise ParamError(
                f"the prompt is {len(ids):,} tokens, but the model's context is {limit:,} tokens "
                "(max_position_embeddings), leaving no room for an answer; shorten the prompt"
            )
        return ids

    def generate(
        self, prompt: str, params: GenerationParams, adapter: bool, on_text: Callable[[str], None] | None = None
    ) -> Completion:
        """One answer, through the active adapter or (adapter=False) the base model alone; at most
        `params.max_tokens` new tokens, fewer where the model's context ends first."""
        ids = self.prompt_ids(prompt)
        limit = self.context_tokens
        max_new_tokens = params.max_tokens if limit is None else min(params.max_tokens, limit - len(ids))
        input_ids = torch.tensor([ids], device=self.model.device)
        streamer = DeltaStreamer(self.tokenizer, on_text) if on_text else None
        torch.manual_seed(params.seed)
        start = time.perf_counter()
        with torch.inference_mode(), self._adapter(adapter):
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=generation_config(
                    dataclasses.replace(params, max_tokens=max_new_tokens), self.eos_ids, self.tokenizer.pad_token_id
                ),
                streamer=streamer,
            )
        seconds = time.perf_counter() - start
        new_ids = output[0, len(ids) :].tolist()
        if new_ids and new_ids[-1] in self.eos_ids:
            stop = "eos"
        else:
            stop = "context" if max_new_tokens < params.max_tokens and len(new_ids) >= max_new_tokens else "max_tokens"
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=new_ids, prompt_tokens=len(ids), seconds=seconds, stop=stop)

    def prompt_logits(self, prompt: str, adapter: bool) -> torch.Tensor:
        """The logits at every prompt position, with or without the adapter."""
        input_ids = torch.tensor([self.encode(prompt)], device=self.model.device)
        with torch.inference_mode(), self._adapter(adapter):
            return self.model(input_ids=input_ids).logits[0].float().cpu()

    def _adapter(self, enabled: bool) -> AbstractContextManager:
        return nullcontext() if enabled else self.model.disable_adapter()

    def _adapter_name(self, label: str) -> str:
        if label not in self._names:
            safe = re.sub(r"\W", "_", label)
            self._names[label] = f"{safe}_{len(self._names)}" if safe in self._names.values() else safe
        return self._names[label]


def generation_config(params: GenerationParams, eos_ids: list[int], pad_id: int | None) -> GenerationConfig:
    """transformers' settings for one answer: every parameter with a `generation_config` name
    (`PARAMS`), the sampling ones only when sampling (temperature > 0)."""
    sampling = params.temperature > 0
    settings = {
        spec.generation_config: getattr(params, name)
        for name, spec in PARAMS.items()
        if spec.generation_config is not None and (sampling or not spec.sampling_only)
    }
    return GenerationConfig(
        do_sample=sampling,
        eos_token_id=eos_ids,
        pad_token_id=pad_id if pad_id is not None else eos_ids[0],
        **settings,
    )


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokens that end an answer: the tokenizer's EOS and the model's generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def load_generator(target: Target, chat_template: bool) -> Generator:
    """The base model of `target` with its adapters, ready to answer (on the GPU when there is one).
    `phased-cpt chat` logs what it loads before importing this module (torch)."""
    from phased_cpt.modeling import load_base_model, load_tokenizer

    try:
        tokenizer = load_tokenizer(target.model)
        base = load_base_model(target.model)
    except UserError as err:
        raise UserError(f"{err}\n(pass --base-model NAME_OR_DIR if the base model is elsewhere)") from None
    if torch.cuda.is_available():
        base.to("cuda")  # the whole model on one GPU; chat does not shard over several
    return Generator(base, tokenizer, target.adapters, target.active, chat_template=chat_template)
