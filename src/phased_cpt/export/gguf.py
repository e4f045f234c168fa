"""The `gguf` target: the merged model converted by llama.cpp's own converter into one GGUF file
(`model-<type>.gguf`, at f32, f16, bf16 or q8_0), checked by running it with llama.cpp on the CPU.

The adapter is merged first (`hf`'s merge), so every LoRA variant that merges exports: rsLoRA,
DoRA, and trained embeddings (`embeddings: full|lora`), which llama.cpp would reject as a LoRA-GGUF
adapter. The merged transformers model lives in the staging directory only while it is converted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from transformers import AutoConfig

from phased_cpt.errors import UserError
from phased_cpt.export import GGUF_TYPES, llama_cpp
from phased_cpt.export.parity import ParityReport, check_tokenizer, compare_outputs
from phased_cpt.export.target import ExportTarget, Source, Trained
from phased_cpt.inference.merge import TOKENIZER_SOURCE_FILES, local_path, save_merged
from phased_cpt.modeling import load_tokenizer


class GgufTarget(ExportTarget):
    kind = "gguf"

    @property
    def model_file(self) -> str:
        return f"model-{self.options.gguf_type}.gguf"

    def check_preflight(self) -> None:
        llama_cpp.require_runtime()

    def preflight(self, source: Source) -> None:
        if self.options.gguf_type not in GGUF_TYPES:
            raise UserError(f"--gguf-type {self.options.gguf_type}: one of {', '.join(GGUF_TYPES)}")
        converter = llama_cpp.find_converter(self.options.llama_cpp_dir)
        self.check_preflight()
        try:
            config = AutoConfig.from_pretrained(source.model.name, trust_remote_code=source.model.trust_remote_code)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read the config of the base model {source.model.name!r}: {err}") from None
        for architecture in config.architectures or []:
            if not converter.converts(architecture):
                raise UserError(
                    f"llama.cpp's converter ({converter.script}) cannot convert {architecture} (the base model's "
                    "architecture); export --to hf or --to vllm instead, or update llama.cpp"
                )
        self.try_vocabulary(source, converter, config)

    def try_vocabulary(self, source: Source, converter: llama_cpp.Converter, config: object) -> None:
        """Run the converter on the tokenizer alone (`--vocab-only`): a tokenizer it cannot take
        (e.g. a byte-level BPE whose pre-tokenizer it does not recognize) is refused now."""
        tokenizer = load_tokenizer(source.model)
        with tempfile.TemporaryDirectory(prefix="phased-cpt-vocab-") as tmp:
            config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            base = local_path(source.model.name)
            for name in TOKENIZER_SOURCE_FILES:
                if base is not None and (base / name).is_file():
                    shutil.copyfile(base / name, Path(tmp) / name)
            llama_cpp.run_converter(converter, Path(tmp), Path(tmp) / "vocab.gguf", "f32", vocab_only=True)

    def write(self, trained: Trained, staging: Path) -> dict:
        trained.references  # noqa: B018  (taken before the merge changes the weights in place)
        merged = staging / ".merged-hf"
        save_merged(trained.model, trained.tokenizer, trained.source.model, merged)
        converter = llama_cpp.find_converter(self.options.llama_cpp_dir)
        llama_cpp.run_converter(converter, merged, staging / self.model_file, self.options.gguf_type)
        shutil.rmtree(merged)
        return {"model_file": self.model_file, "gguf_type": self.options.gguf_type}

    def check(self, trained: Trained, out_dir: Path, written: dict) -> ParityReport:
        references = trained.references
        what = f"the GGUF {Path(out_dir) / written['model_file']}"
        runner = llama_cpp.GgufRunner(
            Path(out_dir) / written["model_file"], max(len(r.token_ids) for r in references) + 8
        )
        try:
            check_tokenizer(runner.encode, references, what)
            logits = [runner.logits(ref.token_ids) for ref in references]
        finally:
            runner.close()
        return compare_outputs(references, logits, f"gguf-{written['gguf_type']}", trained.tokenizer.decode, what)

    def usage(self, source: Source, out_dir: Path, written: dict) -> list[str]:
        path = Path(out_dir) / written["model_file"]
        return [f"run it: llama-cli -m {path}   (or llama-server -m {path})"]
