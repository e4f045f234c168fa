"""What every export target shares: the source (a phase's adapter on its base), the trained model
loaded once as the parity reference, the options, and the interface each target implements.

A target is a class (`hf.HfTarget`, `gguf.GgufTarget`, `ollama.OllamaTarget`, `vllm.VllmTarget`)
with four steps, which `flow.export_adapter` runs in order: `preflight` (cheap checks before any
weight is loaded: a refusal costs seconds), `write` (the files, into a staging directory),
`check` (the parity check on what was written, also run alone by `export --check`) and `usage`
(the lines telling the user how to run the result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from phased_cpt.config import ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.export.parity import ParityReport, PromptReference, reference_outputs
from phased_cpt.inference.merge import OutputKind, local_path
from phased_cpt.modeling import load_adapter, load_base_model, load_tokenizer

EXPORT_MARKER = ".phased-cpt-export"
"""Written last into every export (JSON: kind, adapter, base model, the target's own fields):
`--force` replaces only a directory holding it with the same kind, and `--check` reads it."""


@dataclass(frozen=True)
class ExportOptions:
    gguf_type: str = "f16"
    """gguf, ollama: the converter's --outtype (f32, f16, bf16, q8_0)."""
    llama_cpp_dir: Path | None = None
    """gguf, ollama: a llama.cpp checkout holding convert_hf_to_gguf.py (default: see llama_cpp.find_converter)."""
    max_lora_rank: int = 16
    """vllm: the --max-lora-rank the server will run with (vLLM's default: 16)."""


@dataclass
class Source:
    """The adapter to export, on the base model it was trained on."""

    model: ModelConfig
    adapter_dir: Path
    label: str
    run_dir: Path | None = None

    def protected(self) -> dict[str, Path]:
        """What an export's --out must never be, contain or lie inside."""
        paths = {"source run": self.run_dir, "adapter": self.adapter_dir, "base model": local_path(self.model.name)}
        return {what: path for what, path in paths.items() if path is not None}


@dataclass
class Trained:
    """The trained adapter on its base model (peft, as `chat` runs it), loaded once: the reference
    of every parity check. Targets that merge do so in place, after `references` was taken."""

    source: Source
    tokenizer: object = field(init=False)
    model: object = field(init=False)

    def __post_init__(self) -> None:
        self.tokenizer = load_tokenizer(self.source.model)
        self.model = load_adapter(load_base_model(self.source.model), self.source.adapter_dir)
        self.model.eval()

    @cached_property
    def references(self) -> list[PromptReference]:
        return reference_outputs(self.model, self.tokenizer)


class ExportTarget:
    """One place per target; subclasses set `kind` and implement the steps."""

    kind = ""

    def __init__(self, options: ExportOptions) -> None:
        self.options = options

    @property
    def output(self) -> OutputKind:
        return OutputKind(
            noun=f"{self.kind} export", command=f"export --to {self.kind}", marker=EXPORT_MARKER, kind=self.kind
        )

    def preflight(self, source: Source) -> None:
        """Refuse what cannot be exported, before any weight is loaded."""

    def check_preflight(self) -> None:
        """Refuse a check (`check`, also run alone by `export --check`) that cannot run here,
        before any weight is loaded: a runtime it needs that is missing."""

    def write(self, trained: Trained, staging: Path) -> dict:
        """Write the export into `staging`; return the fields the marker keeps for `check`."""
        raise NotImplementedError

    def check(self, trained: Trained, out_dir: Path, written: dict) -> ParityReport:
        """The parity check of the export in `out_dir` against `trained.references`."""
        raise NotImplementedError

    def usage(self, source: Source, out_dir: Path, written: dict) -> list[str]:
        """How to run the export (printed after it)."""
        return []


def read_marker(out_dir: Path, kind: str) -> dict:
    """The marker of an earlier export of `kind` in `out_dir`; a UserError when there is none."""
    path = Path(out_dir) / EXPORT_MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(
            f"--check: {out_dir} holds no export (no readable {EXPORT_MARKER}); export into it first"
        ) from None
    if not isinstance(marker, dict) or marker.get("kind") != kind:
        found = marker.get("kind") if isinstance(marker, dict) else None
        raise UserError(f"--check --to {kind}: {out_dir} holds a {found} export; pass --to {found}")
    return marker
