"""Merging a phase's adapter into the base weights and exporting a plain transformers model.

The export (safetensors weights, config, generation config, tokenizer) loads with
`AutoModelForCausalLM.from_pretrained` and so with vLLM, TGI, llama.cpp converters and others,
without peft. Before anything is reported as done, the export is loaded back and its logits on a
few probe prompts are compared with those of base + adapter (unmerged). It is written to a
temporary directory beside `out` and renamed into place only after that check, so a failure
(a full disk included) never leaves a half-written model at `out`. Files and directories get
the modes the user's umask gives (not the 0700 of a temporary directory).

`out` is never a directory that is, contains or lies inside the source run, the adapter or the
base model, nor one that is or contains the working directory. A non-empty `out` is replaced
(`--force`) only if an earlier merge wrote it and it holds nothing else (`check_replaceable`:
`MERGE_MARKER` lists every file of the export): the new export is written beside it, the old one
is renamed aside, the new one renamed in, then the old one deleted.

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
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from phased_cpt.config import ModelConfig
from phased_cpt.errors import UserError
from phased_cpt.modeling import load_adapter, load_base_model, load_tokenizer, resolve_dtype

logger = logging.getLogger(__name__)

PROBE_PROMPTS = ("def main():\n    ", "import ", "The quick brown fox", "class Item:\n")
MERGE_MARKER = ".phased-cpt-merge"
"""Written into every export: `--force` replaces only a directory holding it."""


@dataclass(frozen=True)
class OutputKind:
    """What a command writes into `--out`, for its messages and for recognizing an earlier output
    that `--force` may replace: a directory holding `marker` (whose JSON `kind` field equals
    `kind`, when one is given)."""

    noun: str
    command: str
    marker: str
    kind: str | None = None

    def wrote(self, directory: Path) -> bool:
        path = directory / self.marker
        if not path.is_file():
            return False
        if self.kind is None:
            return True
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("kind") == self.kind
        except (OSError, ValueError, AttributeError):
            return False


MERGED = OutputKind(noun="merged model", command="merge", marker=MERGE_MARKER)
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass
class MergeReport:
    out_dir: Path
    dtype: torch.dtype
    relative_error: float
    """||merged logits - base + adapter logits|| / ||base + adapter logits|| over the probes."""
    allowed: float
    probes: int


def merge_adapter(
    model: ModelConfig, adapter_dir: Path, out_dir: Path, force: bool = False, run_dir: Path | None = None
) -> MergeReport:
    """Merge `adapter_dir` into `model`'s weights; save to `out_dir` after checking its logits.
    `run_dir`: the run the adapter belongs to (never overwritten, like the adapter and base model)."""
    out_dir = Path(out_dir)
    protected = {"source run": run_dir, "adapter": Path(adapter_dir), "base model": local_path(model.name)}
    check_out_dir(out_dir, force, {what: path for what, path in protected.items() if path is not None})
    tokenizer = load_tokenizer(model)
    peft_model = load_adapter(load_base_model(model), adapter_dir)
    peft_model.eval()
    dtype = resolve_dtype(model.dtype)
    probes = [tokenizer(p, return_tensors="pt")["input_ids"] for p in PROBE_PROMPTS]
    reference = probe_logits(peft_model, probes)

    with staged_output(out_dir, MERGED.noun) as tmp:
        save_merged(peft_model, tokenizer, model, tmp)
        del peft_model
        gc.collect()
        reloaded = AutoModelForCausalLM.from_pretrained(
            str(tmp), dtype=dtype, trust_remote_code=model.trust_remote_code
        )
        reloaded.eval()
        exported = probe_logits(reloaded, probes)
        del reloaded
        report = compare_logits(reference, exported, dtype, out_dir)
        write_marker(tmp, {"adapter": str(adapter_dir), "base_model": model.name})
    return report


TOKENIZER_SOURCE_FILES = ("tokenizer.model",)
"""Tokenizer files `save_pretrained` does not write back (transformers 5 saves `tokenizer.json`
only) but that readers of the export need: llama.cpp's converter reads a SentencePiece
`tokenizer.model` first. Copied from the base model's directory when it has them."""


def save_merged(peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, model: ModelConfig, dest: Path) -> None:
    """Merge the adapter into the base weights (in place) and save model, generation config and
    tokenizer files into `dest`."""
    merged = peft_model.merge_and_unload(safe_merge=True)
    merged.config.use_cache = True  # training turned it off; users of the export want it on
    if merged.generation_config is not None:
        merged.generation_config.use_cache = True
    merged.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    base = local_path(model.name)
    for name in TOKENIZER_SOURCE_FILES:
        if base is not None and (base / name).is_file() and not (dest / name).exists():
            shutil.copyfile(base / name, dest / name)


def local_path(name: str) -> Path | None:
    """`name` as a local directory, or None for a hub id."""
    path = Path(name).expanduser()
    return path if path.exists() else None


def check_out_dir(out_dir: Path, force: bool, protected: dict[str, Path], output: OutputKind = MERGED) -> None:
    """Refuse an `--out` whose replacement could delete something that is not an earlier output of
    the same kind (`output`)."""
    out = out_dir.resolve()
    kept = {what: path.resolve() for what, path in {**protected, "working directory": Path.cwd()}.items()}
    for what, path in kept.items():
        if out == path or out in path.parents:
            relation = "is" if out == path else "contains"
            raise UserError(
                f"--out {out_dir} {relation} the {what} ({path}); choose a new directory for the {output.noun}"
            )
    for what in protected:
        if kept[what] in out.parents:
            raise UserError(f"--out {out_dir} is inside the {what} ({kept[what]}); write the {output.noun} outside it")
    check_replaceable(out_dir, force, output)


def check_replaceable(out_dir: Path, force: bool, output: OutputKind = MERGED) -> None:
    """The output-directory guarantee: `out_dir` may be written (new or empty), or replaced with
    `force` when it holds exactly what an earlier run of the command wrote (`output.wrote`, every
    file listed in its marker, see `write_marker`), and nothing else: a model card or eval results
    added since are never deleted. A UserError names what is in the way."""
    marker = output.marker
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; name a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not force:
        raise UserError(f"--out {out_dir} is not empty; choose another directory or pass --force to replace it")
    if not output.wrote(out_dir):
        raise UserError(
            f"--out {out_dir} is not a directory an earlier {output.command} wrote (no {marker} in it"
            f"{'' if output.kind is None else f' saying kind {output.kind}'}): --force replaces "
            "only those; choose another directory, or empty it yourself"
        )
    others = unlisted_entries(out_dir, marker)
    if others is None:
        raise UserError(
            f"--out {out_dir}: its {marker} does not list the files the earlier {output.command} wrote (an older phased-cpt "
            "wrote it), so --force cannot tell them from files added since; choose another directory, or empty "
            "it yourself"
        )
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise UserError(
            f"--out {out_dir} holds {len(others)} file(s) the earlier {output.command} did not write ({shown}); --force would "
            "delete them: move them out of the directory, or choose another --out"
        )


def write_marker(directory: Path, info: dict, marker: str = MERGE_MARKER) -> None:
    """Write `marker` into `directory` with `info` and the list of every file in it (relative
    paths): what a later `--force` may replace (`check_replaceable`)."""
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())
    (directory / marker).write_text(json.dumps({**info, "files": files}) + "\n")


def unlisted_entries(directory: Path, marker: str = MERGE_MARKER) -> list[str] | None:
    """Files, links and directories under `directory` that its `marker` does not list (a directory
    holding listed files is listed); None when the marker has no readable file list."""
    try:
        listed = json.loads((directory / marker).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        return None
    allowed = {marker, *listed} | {str(parent) for name in listed for parent in Path(name).parents if name}
    found = []
    for root, directories, files in os.walk(directory):  # links are entries, never followed
        for name in [*directories, *files]:
            relative = str((Path(root) / name).relative_to(directory))
            if relative not in allowed:
                found.append(relative)
    return sorted(found)


@contextmanager
def staged_output(out_dir: Path, noun: str) -> Iterator[Path]:
    """A staging directory beside `out_dir` for the block to fill; when the block ends without an
    error, it gets the user's umask and is swapped into place (`swap_into_place`). A full disk or
    another write error is a UserError saying nothing at `out_dir` changed; the staging directory
    is always removed. The one atomic write of `merge` and `export`."""
    staging = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
        yield staging
        apply_umask(staging)
        swap_into_place(staging, out_dir)
    except (OSError, SafetensorError) as err:
        raise UserError(
            f"cannot write the {noun} to {out_dir}: {err}; nothing at {out_dir} was changed "
            "(free some space, or choose another --out)"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def swap_into_place(new: Path, out_dir: Path) -> None:
    """Rename `new` to `out_dir`; an existing `out_dir` (empty, or an earlier export) is renamed
    aside first and deleted only once the new one is in place."""
    if not out_dir.exists():
        os.replace(new, out_dir)
        return
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.replaced-"))
    os.replace(out_dir, old)
    try:
        os.replace(new, out_dir)
    except OSError:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def apply_umask(root: Path) -> None:
    """Give `root` and everything in it the modes a plain `mkdir`/`open` would: 0777/0666 less
    the umask (a temporary directory starts at 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(directory) / name, 0o666 & ~umask)


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
