"""Running one export target: the order of its steps and the guarantees around `--out`.

    check --out (never the run, the adapter, the base model, a parent of one, or the cwd; a
        non-empty one only with --force and only when an earlier export of the same kind wrote it)
    target.preflight            cheap refusals before any weight is loaded
    load base + adapter once    the reference: greedy answers and logits on the parity prompts
    target.write -> staging     a temporary directory beside --out
    target.check(staging)       the parity check on the files written
    marker, modes, swap         the marker file last; staging renamed to --out, an earlier
                                export renamed aside first and deleted only after

A failure at any step (a full disk, a failed parity check) leaves `--out` as it was; the staging
directory, which never holds the marker before the check passed, is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phased_cpt.export.gguf import GgufTarget
from phased_cpt.export.hf import HfTarget
from phased_cpt.export.ollama import OllamaTarget
from phased_cpt.export.parity import ParityReport
from phased_cpt.export.target import EXPORT_MARKER, ExportOptions, ExportTarget, Source, Trained, read_marker
from phased_cpt.export.vllm import VllmTarget
from phased_cpt.inference.merge import check_out_dir, staged_output, write_marker

TARGETS: dict[str, type[ExportTarget]] = {
    "hf": HfTarget,
    "gguf": GgufTarget,
    "ollama": OllamaTarget,
    "vllm": VllmTarget,
}


@dataclass
class ExportResult:
    kind: str
    out_dir: Path
    parity: ParityReport
    usage: list[str]


def make_target(kind: str, options: ExportOptions) -> ExportTarget:
    return TARGETS[kind](options)


def export_adapter(
    source: Source, kind: str, out_dir: Path, options: ExportOptions, force: bool = False
) -> ExportResult:
    """Export `source` as `kind` into `out_dir`, checked (see the module docstring)."""
    target = make_target(kind, options)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force, source.protected(), target.output)
    with staged_output(out_dir, target.output.noun) as staging:
        target.preflight(source)
        trained = Trained(source)
        written = target.write(trained, staging)
        report = target.check(trained, staging, written)
        marker = {
            "kind": kind,
            "adapter": str(source.adapter_dir),
            "base_model": source.model.name,
            **written,
            "parity": report.to_json(),
        }
        write_marker(staging, marker, EXPORT_MARKER)  # lists every file: what a later --force may replace
    return ExportResult(kind, out_dir, report, target.usage(source, out_dir, written))


def check_export(source: Source, kind: str, out_dir: Path, options: ExportOptions) -> ExportResult:
    """`export --check`: the parity check alone, on an earlier export of `kind` in `out_dir`."""
    written = read_marker(out_dir, kind)
    target = make_target(kind, options)
    target.check_preflight()
    report = target.check(Trained(source), Path(out_dir), written)
    return ExportResult(kind, Path(out_dir), report, target.usage(source, Path(out_dir), written))
