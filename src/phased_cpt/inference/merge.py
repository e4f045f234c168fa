"""Merging a phase's adapter into the base weights and exporting a plain transformers model.

The export (safetensors weights, config, generation config, tokenizer) loads with
`AutoModelForCausalLM.from_pretrained` and so with vLLM, TGI, llama.cpp converters and others,
without peft. Before anything is reported as done, the export is loaded back and its logits on a
few probe prompts are compared with those of base + adapter (unmerged). It is written to a
temporary directory beside `out` and renamed into place only after that check, so a failure
never leaves a half-written model at `out`.

Merging runs in `model.dtype` (the run's, unless `merge --dtype` replaces it; on CPU `auto` is
float32).
The check is on the relative logit error `||merged - reference|| / ||reference||` (Frobenius, over
all probe positions): at most 1e-4 in float32, where only rounding differs (1.6e-6 measured); 1e-2 in
float16 and 5e-2 in bfloat16, where rounding `W + BA` to 11 or 8 significant bits gives an error
of the same size as computing base + adapter in that dtype at all (measured on the quickstart
model: 0.0025 and 0.021, against 0.0022 and 0.017 for base + adapter vs float32). Merge in
float32 for a tight check.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from phased_cpt.config import ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.modeling import load_adapter, load_base_model, load_tokenizer, resolve_dtype

logger = logging.getLogger(__name__)

PROBE_PROMPTS = ("def main():\n    ", "import ", "The quick brown fox", "class Item:\n")
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass
class MergeReport:
    out_dir: Path
    dtype: torch.dtype
    relative_error: float
    """||merged logits - base + adapter logits|| / ||base + adapter logits|| over the probes."""
    allowed: float
    probes: int


def merge_adapter(model: ModelConfig, adapter_dir: Path, out_dir: Path, force: bool = False) -> MergeReport:
    """Merge `adapter_dir` into `model`'s weights; save to `out_dir` after checking its logits."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    tokenizer = load_tokenizer(model)
    peft_model = load_adapter(load_base_model(model), adapter_dir)
    peft_model.eval()
    dtype = resolve_dtype(model.dtype)
    probes = [tokenizer(p, return_tensors="pt")["input_ids"] for p in PROBE_PROMPTS]
    reference = probe_logits(peft_model, probes)

    merged = peft_model.merge_and_unload(safe_merge=True)
    merged.config.use_cache = True  # training turned it off; users of the export want it on
    if merged.generation_config is not None:
        merged.generation_config.use_cache = True
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.merging-"))
    try:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        del merged, peft_model
        gc.collect()
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=dtype)
        reloaded.eval()
        exported = probe_logits(reloaded, probes)
        del reloaded
        report = compare_logits(reference, exported, dtype, out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)  # empty, or non-empty with force (checked above)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.is_file():
        raise UserError(f"--out {out_dir} is a file; name a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UserError(f"--out {out_dir} is not empty; choose another directory or pass --force to replace it")


def probe_logits(model: PreTrainedModel, probes: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(input_ids=ids.to(model.device)).logits[0].float().cpu() for ids in probes]


def compare_logits(
    reference: list[torch.Tensor], exported: list[torch.Tensor], dtype: torch.dtype, out_dir: Path
) -> MergeReport:
    allowed = RELATIVE_TOLERANCE.get(dtype, RELATIVE_TOLERANCE[torch.bfloat16])
    ref, got = torch.cat([r.flatten() for r in reference]), torch.cat([e.flatten() for e in exported])
    error = float((got - ref).norm() / ref.norm().clamp_min(1e-12))
    if not error <= allowed:  # also catches NaN
        name = str(dtype).removeprefix("torch.")
        hint = "" if dtype == torch.float32 else "; merge with --dtype float32 for an exact check"
        raise UserError(
            f"the merged model's logits differ from base + adapter by {error:.3g} (relative; allowed "
            f"{allowed:.3g} in {name}); nothing was written to {out_dir}{hint}"
        )
    return MergeReport(out_dir=out_dir, dtype=dtype, relative_error=error, allowed=allowed, probes=len(reference))
