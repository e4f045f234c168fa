"""Translation of configs written for the older tool into phased-cpt's layout.

The older layout kept phases under `phased_training.phases[]` with `dataset_file` relative to
`dataset.output_dir`, chunking settings under `dataset`, and precision flags under `training`.
`translate_legacy_config` returns the new-layout dict plus one note per key that changed meaning
or has no equivalent, so nothing is dropped without the user being told.
"""

from __future__ import annotations

import re
from typing import Any

LEGACY_TOP_LEVEL = {"phased_training", "dataset"}

_TRAINING_SAME = (
    "micro_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler",
    "warmup_ratio", "weight_decay", "max_grad_norm", "logging_steps", "save_steps",
    "save_total_limit", "gradient_checkpointing", "lora", "seed", "max_steps",
)
_DATASET_TO_CONTEXT = ("max_tokens", "overlap_tokens", "chunk_long_samples")


def is_legacy_config(data: dict[str, Any]) -> bool:
    return bool(LEGACY_TOP_LEVEL & set(data)) or "type" in (data.get("model") or {})


def phase_dir_name(index: int, name: str) -> str:
    """'PR Mastery' (3rd phase) -> 'phase3_pr_mastery'; 'phase1_foundation' stays as it is."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if re.match(r"^phase\d+(_|$)", slug):
        return slug
    return f"phase{index}_{slug}" if slug else f"phase{index}"


def translate_legacy_config(old: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    unknown_top = set(old) - {"wandb", "model", "training", "phased_training", "dataset", "tensorboard"}
    new: dict[str, Any] = {}
    for key in sorted(unknown_top):
        new[key] = old[key]  # not an older-tool key: leave it for validation to judge

    if "wandb" in old:
        new["wandb"] = old["wandb"]
    if "tensorboard" in old:
        new["tensorboard"] = old["tensorboard"]

    model = dict(old.get("model") or {})
    if "type" in model:
        notes.append(
            f"model.type ({model.pop('type')!r}) dropped: the architecture is read from the model's own config"
        )
    training_old = dict(old.get("training") or {})
    if training_old.get("bf16"):
        model.setdefault("dtype", "bfloat16")
    elif training_old.get("fp16"):
        model.setdefault("dtype", "float16")
    if model:
        new["model"] = model

    training: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for key, value in training_old.items():
        if key in _TRAINING_SAME:
            training[key] = value
        elif key == "sample_packing":
            context["sample_packing"] = value
        elif key in ("bf16", "fp16"):
            notes.append(f"training.{key} -> model.dtype ({model.get('dtype', 'auto')})")
        elif key == "tf32":
            notes.append("training.tf32 dropped: TF32 matmuls are enabled automatically on GPUs that support them")
        elif key == "eval_steps":
            new.setdefault("evaluation", {})["eval_steps"] = value
            notes.append("training.eval_steps -> evaluation.eval_steps")
        elif key == "eval_batch_size":
            new.setdefault("evaluation", {})["batch_size"] = value
            notes.append("training.eval_batch_size -> evaluation.batch_size")
        else:
            training[key] = value  # unknown: validation reports it with a did-you-mean
    if training:
        new["training"] = training

    dataset = dict(old.get("dataset") or {})
    for key in _DATASET_TO_CONTEXT:
        if key in dataset:
            context[key] = dataset.pop(key)
    if context:
        new["context"] = context
    if "random_seed" in dataset:
        new.setdefault("training", {})["seed"] = dataset.pop("random_seed")
        notes.append("dataset.random_seed -> training.seed")
    if "val_split" in dataset:
        new.setdefault("data", {})["eval_ratio"] = dataset.pop("val_split")
        notes.append("dataset.val_split -> data.eval_ratio (held out by document, before chunking)")
    if "train_split" in dataset:
        dataset.pop("train_split")
        notes.append("dataset.train_split dropped: the documents not held out by data.eval_ratio are trained on")
    output_dir = str(dataset.pop("output_dir", "dataset")).rstrip("/")
    for key in dataset:
        notes.append(f"dataset.{key} dropped: no equivalent in phased-cpt")

    phased = old.get("phased_training") or {}
    old_phases = phased.get("phases") if isinstance(phased, dict) else None
    if isinstance(old_phases, list):
        phases = []
        for index, item in enumerate(old_phases, start=1):
            if not isinstance(item, dict):
                phases.append(item)
                continue
            item = dict(item)
            phase: dict[str, Any] = {}
            if "name" in item:
                phase["name"] = phase_dir_name(index, str(item.pop("name")))
            if "dataset_file" in item:
                phase["file"] = f"{output_dir}/{item.pop('dataset_file')}"
            phase.update(item)  # epochs, description, and anything unknown for validation
            phases.append(phase)
        new["phases"] = phases
    return new, notes
