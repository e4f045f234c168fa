"""The `ollama` target: the GGUF of the `gguf` target plus a Modelfile that `ollama create` reads.

The Modelfile holds (Ollama's documented syntax: https://docs.ollama.com/modelfile):

- `FROM ./model-<type>.gguf`, relative to the Modelfile;
- `TEMPLATE`: a model without a chat template was trained on raw text, so the prompt goes in
  as is (`{{ .Prompt }}`). A chat template is written as a Go template only where the conversion
  is exact: when the tokenizer's Jinja template renders the probe conversations (`PROBE_CHATS`)
  exactly as ChatML does, the ChatML Go template is written. Any other chat template is left
  out, with a note, and Ollama then picks its template from the GGUF's `tokenizer.chat_template`;
- `PARAMETER stop` for the EOS token(s) and the chat's end token (`<|im_end|>` for ChatML);
- the sampling parameters of `phased-cpt chat`'s defaults (`GenerationParams`), each under its
  Ollama name (`Param.ollama`): temperature 0 (greedy), top_p, top_k, num_predict for max_tokens,
  repeat_penalty, seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phased_cpt.export.gguf import GgufTarget
from phased_cpt.export.target import Source, Trained
from phased_cpt.inference.params import PARAMS, GenerationParams

MODELFILE = "Modelfile"
RAW_TEMPLATE = "{{ .Prompt }}"
CHATML_END = "<|im_end|>"
CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
PROBE_CHATS = (
    [{"role": "user", "content": "Write a function."}],
    [{"role": "system", "content": "You review code."}, {"role": "user", "content": "def f(): pass"}],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c\nd"},
    ],
)


def render_chatml(messages: list[dict]) -> str:
    """What `CHATML_GO_TEMPLATE` renders for `messages` (with the assistant turn opened)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


@dataclass
class Template:
    text: str | None
    """The Go template, or None when none is written."""
    stop: list[str]
    """Chat end tokens to stop at, besides EOS."""
    note: str | None = None


def ollama_template(tokenizer) -> Template:
    """The TEMPLATE for `tokenizer`'s chat template (see the module docstring)."""
    if not getattr(tokenizer, "chat_template", None):
        return Template(RAW_TEMPLATE, [])
    try:
        exact = all(
            tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == render_chatml(chat)
            for chat in PROBE_CHATS
        )
    except Exception:  # a template that raises on a probe (e.g. no system role) is not ChatML
        exact = False
    if exact:
        return Template(CHATML_GO_TEMPLATE, [CHATML_END])
    return Template(
        None,
        [],
        note="the tokenizer's chat template is not plain ChatML, and phased-cpt converts only that to a Go template "
        "exactly: the Modelfile has no TEMPLATE, so Ollama takes it from the GGUF's tokenizer.chat_template; check it "
        "with `ollama show --template`",
    )


def quote(value: str) -> str:
    """A Modelfile string: JSON-style double quotes with \\ and \" escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_modelfile(model_file: str, template: Template, stop: list[str], params: GenerationParams) -> str:
    lines = [
        "# Written by phased-cpt export --to ollama; `ollama create NAME -f Modelfile` reads it.",
        f"FROM ./{model_file}",
    ]
    if template.text is not None:
        lines.append(f'TEMPLATE """{template.text}"""')
    for token in dict.fromkeys(stop):
        lines.append(f"PARAMETER stop {quote(token)}")
    lines += [f"PARAMETER {spec.ollama} {getattr(params, name)}" for name, spec in PARAMS.items() if spec.ollama]
    return "\n".join(lines) + "\n"


class OllamaTarget(GgufTarget):
    kind = "ollama"

    def write(self, trained: Trained, staging: Path) -> dict:
        tokenizer = trained.tokenizer
        config_eos = getattr(trained.model.generation_config, "eos_token_id", None)
        eos_ids = {tokenizer.eos_token_id, *(config_eos if isinstance(config_eos, list) else [config_eos])}
        written = super().write(trained, staging)
        template = ollama_template(tokenizer)
        stop = [tokenizer.convert_ids_to_tokens(i) for i in sorted(i for i in eos_ids if i is not None)] + template.stop
        (staging / MODELFILE).write_text(
            render_modelfile(written["model_file"], template, stop, GenerationParams()), encoding="utf-8"
        )
        return {**written, "template_note": template.note}

    def usage(self, source: Source, out_dir: Path, written: dict) -> list[str]:
        name = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.label.lower())
        lines = [f"run it: ollama create {name} -f {Path(out_dir) / MODELFILE} && ollama run {name}"]
        if written.get("template_note"):
            lines.append(f"note: {written['template_note']}")
        return lines
