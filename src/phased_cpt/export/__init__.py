"""`phased-cpt export`: a phase's adapter in the forms people run code models with, each checked
to answer like the trained adapter.

One class per target: `hf.HfTarget` (merged transformers model), `gguf.GgufTarget` (llama.cpp),
`ollama.OllamaTarget` (GGUF + Modelfile), `vllm.VllmTarget` (the adapter directory after vLLM's
preflight); `target.ExportTarget` is their interface and `flow` runs them: out-dir checks,
preflight, write into a staging directory, parity check (`parity`), then the swap into `--out`.
This module imports nothing heavy, so the command line can name the targets without torch.
The reference for users is docs/export.md.
"""

from __future__ import annotations

TARGET_NAMES = ("hf", "gguf", "ollama", "vllm")
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
"""The converter's --outtype values offered (llama.cpp's convert_hf_to_gguf.py)."""
