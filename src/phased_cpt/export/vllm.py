"""The `vllm` target: the adapter directory as vLLM serves it (`--enable-lora --lora-modules`),
after a preflight that reads only the adapter's files (and the base model's config.json for its
architecture), refusing what vLLM would reject at load time with the fix:

- `modules_to_save` (`embeddings: full`) or LoRA on the embedding / LM head (`embeddings: lora`):
  vLLM does not load trained embeddings in an adapter (vllm #9280): export `--to hf` (merged);
- DoRA (`use_dora`): vLLM has no DoRA kernels: export `--to hf`; rsLoRA is served as is;
- a rank above `--max-lora-rank` (vLLM's default 16): the flag to pass is printed;
- target modules vLLM has no LoRA layer for in the architecture (`VLLM_LORA_MODULES`);
- weights that are not float16, bfloat16 or float32 (vLLM casts those to the model's dtype).

The parity check loads the exported directory with peft onto the same base next to the trained
adapter and compares both: what it shows is that the files vLLM will read hold the trained
adapter, not vLLM's own kernels (vLLM does not run here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors import SafetensorError, safe_open

from phased_cpt.errors import UserError
from phased_cpt.export.parity import ParityReport, compare_outputs
from phased_cpt.export.target import ExportTarget, Source, Trained
from phased_cpt.inference.merge import probe_logits

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's --max-lora-rank accepts."""
DECODER_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
VLLM_LORA_MODULES = {
    "LlamaForCausalLM": DECODER_MODULES,
    "MistralForCausalLM": DECODER_MODULES,
    "Qwen2ForCausalLM": DECODER_MODULES,
    "Qwen3ForCausalLM": DECODER_MODULES,
}
"""Per architecture, the modules vLLM has LoRA layers for (q/k/v and gate/up are packed in vLLM;
an adapter on some of them is served with zeros for the others)."""
SERVED_DTYPES = ("F16", "BF16", "F32")
EXPORT_HF = "export --to hf (the adapter merged into the weights) and serve that with `vllm serve OUT`"


def smallest_rank_flag(rank: int) -> int | None:
    return next((value for value in VLLM_MAX_LORA_RANKS if value >= rank), None)


def vllm_problems(adapter_config: dict, architectures: list[str], max_lora_rank: int, dtypes: set[str]) -> list[str]:
    """Why vLLM would refuse this adapter (empty: it serves it)."""
    problems = []
    targets = adapter_config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    if adapter_config.get("modules_to_save"):
        problems.append(
            f"it trains {sorted(adapter_config['modules_to_save'])} in full (modules_to_save, `embeddings: full`), "
            f"which vLLM does not load from an adapter; {EXPORT_HF}"
        )
    embedded = sorted(set(targets) & {"embed_tokens", "lm_head", "wte", "embed_out"})
    if embedded:
        problems.append(f"it has LoRA on {embedded} (`embeddings: lora`), which vLLM does not serve; {EXPORT_HF}")
    if adapter_config.get("use_dora"):
        problems.append(f"it is a DoRA adapter (use_dora), which vLLM does not serve; {EXPORT_HF}")
    if adapter_config.get("bias", "none") != "none":
        problems.append(f"it trains biases (bias: {adapter_config['bias']}), which vLLM does not serve; {EXPORT_HF}")
    rank = max([int(adapter_config.get("r", 0)), *map(int, (adapter_config.get("rank_pattern") or {}).values())])
    if rank > max_lora_rank:
        flag = smallest_rank_flag(rank)
        fix = (
            f"pass --max-lora-rank {flag} here and to `vllm serve`"
            if flag
            else f"vLLM serves ranks up to {VLLM_MAX_LORA_RANKS[-1]}: {EXPORT_HF}"
        )
        problems.append(f"its rank r={rank} is above --max-lora-rank {max_lora_rank} (vLLM's default: 16); {fix}")
    for architecture in architectures:
        supported = VLLM_LORA_MODULES.get(architecture)
        unsupported = sorted(set(targets) - (supported or set()) - {"embed_tokens", "lm_head", "wte", "embed_out"})
        if supported is not None and unsupported:
            problems.append(
                f"vLLM has no LoRA layer for {unsupported} in {architecture} (it has {sorted(supported)}); {EXPORT_HF}"
            )
    odd = sorted(dtypes - set(SERVED_DTYPES))
    if odd:
        problems.append(f"its weights are {odd}, vLLM loads adapter weights in {', '.join(SERVED_DTYPES)}; {EXPORT_HF}")
    return problems


def read_adapter(adapter_dir: Path) -> tuple[dict, set[str]]:
    """adapter_config.json and the dtypes of the saved tensors (the safetensors header only)."""
    try:
        config = json.loads((adapter_dir / ADAPTER_FILES[0]).read_text(encoding="utf-8"))
        with safe_open(str(adapter_dir / ADAPTER_FILES[1]), framework="np") as weights:
            dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (OSError, ValueError, SafetensorError) as err:
        raise UserError(f"cannot read the adapter in {adapter_dir}: {err}") from None
    return config, dtypes


def base_architectures(source: Source) -> list[str]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source.model.name, trust_remote_code=source.model.trust_remote_code)
    except (OSError, ValueError):
        return []  # not on this machine: vLLM will read it where it runs
    return list(config.architectures or [])


class VllmTarget(ExportTarget):
    kind = "vllm"

    def preflight(self, source: Source) -> None:
        if self.options.max_lora_rank not in VLLM_MAX_LORA_RANKS:
            raise UserError(f"--max-lora-rank {self.options.max_lora_rank}: vLLM accepts one of {VLLM_MAX_LORA_RANKS}")
        config, dtypes = read_adapter(source.adapter_dir)
        problems = vllm_problems(config, base_architectures(source), self.options.max_lora_rank, dtypes)
        if problems:
            raise UserError(f"vLLM would not serve the adapter in {source.adapter_dir}: " + "; and ".join(problems))

    def write(self, trained: Trained, staging: Path) -> dict:
        for name in ADAPTER_FILES:
            shutil.copyfile(trained.source.adapter_dir / name, staging / name)
        config, _ = read_adapter(staging)
        return {"rank": int(config.get("r", 0)), "max_lora_rank": self.options.max_lora_rank}

    def check(self, trained: Trained, out_dir: Path, written: dict) -> ParityReport:
        import torch

        references = trained.references
        model = trained.model
        model.load_adapter(str(out_dir), adapter_name="exported")
        try:
            model.set_adapter("exported")
            logits = probe_logits(model, [torch.tensor([ref.token_ids]) for ref in references])
        finally:
            model.set_adapter("default")
            model.delete_adapter("exported")
        what = f"the vllm adapter in {out_dir}"
        return compare_outputs(references, [x.numpy() for x in logits], "adapter", trained.tokenizer.decode, what)

    def usage(self, source: Source, out_dir: Path, written: dict) -> list[str]:
        name = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.label)
        flag = smallest_rank_flag(max(written["rank"], 1))
        rank = f" --max-lora-rank {max(flag, written['max_lora_rank'])}" if flag and flag > 16 else ""
        return [f"serve it: vllm serve {source.model.name} --enable-lora --lora-modules {name}={out_dir}{rank}"]
