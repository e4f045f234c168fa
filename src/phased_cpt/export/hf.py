"""The `hf` target: the adapter merged into the base weights, a plain transformers model
(safetensors, config, generation config, tokenizer files): today's `merge`, and the model the
GGUF targets convert."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from phased_cpt.export.parity import ParityReport, check_tokenizer, compare_outputs
from phased_cpt.export.target import ExportTarget, Source, Trained
from phased_cpt.inference.merge import probe_logits, save_merged
from phased_cpt.modeling import resolve_dtype


class HfTarget(ExportTarget):
    kind = "hf"

    def write(self, trained: Trained, staging: Path) -> dict:
        trained.references  # noqa: B018  (taken before the merge changes the weights in place)
        save_merged(trained.model, trained.tokenizer, trained.source.model, staging)
        return {"dtype": str(resolve_dtype(trained.source.model.dtype)).removeprefix("torch.")}

    def check(self, trained: Trained, out_dir: Path, written: dict) -> ParityReport:
        import torch

        model_config = trained.source.model
        tokenizer = AutoTokenizer.from_pretrained(str(out_dir), trust_remote_code=model_config.trust_remote_code)
        what = f"the hf export in {out_dir}"
        check_tokenizer(lambda text: tokenizer(text)["input_ids"], trained.references, what)
        dtype = getattr(torch, written["dtype"])
        model = AutoModelForCausalLM.from_pretrained(
            str(out_dir), dtype=dtype, trust_remote_code=model_config.trust_remote_code
        )
        model.eval()
        logits = probe_logits(model, [torch.tensor([ref.token_ids]) for ref in trained.references])
        return compare_outputs(
            trained.references, [x.numpy() for x in logits], written["dtype"], tokenizer.decode, what
        )

    def usage(self, source: Source, out_dir: Path, written: dict) -> list[str]:
        return [
            f"load it: AutoModelForCausalLM.from_pretrained({str(out_dir)!r})",
            f"serve it: vllm serve {out_dir}",
        ]
