"""The job a process belongs to: what must be the same in every process of a run (its config,
the sha256 of its data files, its software), and how two such records differ. Training compares
every process with rank 0 at start (`training/processes.check_same_job`) and a resumed run with
its first start (`training/resume.py`); `doctor` shows this node's identity before a multi-node
job, without the recipe.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from phased_cpt.config import RunConfig, dump_config
from phased_cpt.data.cache import file_digest

MAY_DIFFER_BETWEEN_PROCESSES = ("data.cache_dir",)
"""Settings that may differ between the processes of one run: a node-local cache has its own path."""
SOFTWARE = ("phased-cpt", "torch", "transformers", "peft", "accelerate", "deepspeed")
"""Packages whose version must be the same in every process."""


@dataclass(frozen=True)
class JobIdentity:
    """What must be the same in every process of a run: the resolved config (secrets removed;
    `data.cache_dir` may differ), the sha256 of every phase file, the software versions."""

    host: str
    config: dict[str, Any]
    inputs: dict[str, str]
    software: dict[str, str | None] = field(default_factory=dict)

    @property
    def config_sha256(self) -> str:
        compared = {k: v for k, v in flatten(self.config).items() if not may_differ(k, MAY_DIFFER_BETWEEN_PROCESSES)}
        return hashlib.sha256(json.dumps(compared, sort_keys=True).encode("utf-8")).hexdigest()

    @property
    def data_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode("utf-8")).hexdigest()


def job_identity(cfg: RunConfig) -> JobIdentity:
    software = {}
    for package in SOFTWARE:
        try:
            software[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            software[package] = None
    return JobIdentity(socket.gethostname(), yaml.safe_load(dump_config(cfg)), input_fingerprints(cfg), software)


def identity_differences(reference: JobIdentity, other: JobIdentity) -> list[str]:
    """What differs between two processes' identities, one line each (config key, phase file, package)."""
    found = [
        f"{key}: {a!r} on rank 0, {b!r} here"
        for key, a, b in differing_keys(reference.config, other.config, MAY_DIFFER_BETWEEN_PROCESSES)
    ]
    for key in sorted(set(reference.inputs) | set(other.inputs)):
        if reference.inputs.get(key) != other.inputs.get(key):
            found.append(
                f"phases.{key}: the file's content differs (sha256 {str(other.inputs.get(key))[:12]} here, "
                f"{str(reference.inputs.get(key))[:12]} on rank 0)"
            )
    for package in SOFTWARE:
        if reference.software.get(package) != other.software.get(package):
            found.append(f"{package}: {reference.software.get(package)} on rank 0, {other.software.get(package)} here")
    return found


def input_fingerprints(cfg: RunConfig) -> dict[str, str]:
    """sha256 of every data file that shapes training, keyed by `<phase>.file` (one file) or
    `<phase>.file:<path>` (several), `<phase>.eval_file` and `general.file:<path>`."""
    found: dict[str, str] = {}
    for p in cfg.phases:
        files = [f for source in p.sources for f in source.files]
        if len(files) == 1:
            found[f"{p.name}.file"] = file_digest(files[0])
        else:
            found |= {f"{p.name}.file:{f}": file_digest(f) for f in files}
        if p.eval_file:
            found[f"{p.name}.eval_file"] = file_digest(p.eval_file)
    found |= {f"general.file:{f}": file_digest(f) for f in cfg.general.files}
    return found


def differing_keys(a: dict[str, Any], b: dict[str, Any], patterns: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in `a`, value in `b`) for every setting that differs, "<unset>" where
    one side lacks it; keys matching one of `patterns` (`may_differ`) are left out."""
    flat_a, flat_b = flatten(a), flatten(b)
    return [
        (key, flat_a.get(key, "<unset>"), flat_b.get(key, "<unset>"))
        for key in sorted(set(flat_a) | set(flat_b))
        if not may_differ(key, patterns) and flat_a.get(key, "<unset>") != flat_b.get(key, "<unset>")
    ]


def may_differ(key: str, patterns: Sequence[str]) -> bool:
    """A dotted key matches one of `patterns` (fnmatch)."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        items = ((str(i), x) for i, x in enumerate(data))
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat
