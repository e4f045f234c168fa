"""Translation of configs written for the older tool into phased-cpt's layout, keeping what the
older code *did*, not what its keys seem to say.

The older layout kept phases under `phased_training.phases[]` with `dataset_file` relative to
`dataset.output_dir`, chunking settings under `dataset`, and precision flags under `training`.
Every key it had is listed in `LEGACY_KEYS` with where it goes; `translate_legacy_config`
returns the new-layout dict and one note per key whose place or meaning changed, each saying
the old meaning and the new one. Behaviour of the older code (`train_phased.py`) that no key
showed is kept too, each with a note:

- it hard-coded `TrainingArguments(deepspeed="deepspeed_configs/zero3.json")`: the translation
  sets `deepspeed:` to that file when it sits next to the config, else to the packaged zero3;
- it trained every chunk with labels = input_ids, overlap included: `context.overlap_loss: true`;
- it read `training.sample_packing` but never packed: `context.sample_packing: false`, with a
  note on what packing (which works now) would change.

A key of an older section that is not listed is handed on unchanged, so validation reports it
with a did-you-mean, as for any config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from phased_cpt.errors import ConfigError

LEGACY_TOP_LEVEL = {"phased_training", "dataset"}
TRANSLATED = (
    "this config uses the older tool's layout; it was translated "
    "(`phased-cpt validate CONFIG --print-translated` prints the new layout)"
)
OLDER_ZERO3 = Path("deepspeed_configs") / "zero3.json"
"""Where the older tool's code read its DeepSpeed config, relative to its working directory."""

# Keys whose meaning is the same in both layouts: older path -> new path.
SAME_MEANING: dict[str, str] = {
    "wandb.project": "wandb.project",
    "wandb.enabled": "wandb.enabled",
    "model.name": "model.name",
    "model.size": "model.size",
    "training.lora.r": "training.lora.r",
    "training.lora.alpha": "training.lora.alpha",
    "training.lora.dropout": "training.lora.dropout",
    "training.lora.target_modules": "training.lora.target_modules",
    "training.micro_batch_size": "training.micro_batch_size",
    "training.gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "training.learning_rate": "training.learning_rate",
    "training.lr_scheduler": "training.lr_scheduler",
    "training.warmup_ratio": "training.warmup_ratio",
    "training.weight_decay": "training.weight_decay",
    "training.max_grad_norm": "training.max_grad_norm",
    "training.logging_steps": "training.logging_steps",
    "training.save_steps": "training.save_steps",
    "training.save_total_limit": "training.save_total_limit",
    "training.gradient_checkpointing": "training.gradient_checkpointing",
    "training.eval_batch_size": "evaluation.batch_size",
    "training.eval_steps": "evaluation.eval_steps",
    "dataset.max_tokens": "context.max_tokens",
    "dataset.overlap_tokens": "context.overlap_tokens",
    "dataset.chunk_long_samples": "context.chunk_long_samples",
    "dataset.val_split": "data.eval_ratio",
    "dataset.random_seed": "training.seed",
}
# Keys that need more than a move; each is handled in `translate_legacy_config`.
SPECIAL = (
    "wandb.api_key",
    "wandb.entity",
    "model.type",
    "training.bf16",
    "training.fp16",
    "training.tf32",
    "training.sample_packing",
    "dataset.output_dir",
    "dataset.train_split",
    "phased_training.phases",
)
LEGACY_KEYS = tuple(SAME_MEANING) + SPECIAL
"""Every key of the older tool's config.yaml (its README's tables and its code's reads)."""
PHASE_KEYS = ("name", "dataset_file", "epochs", "description")

SAME_NOTES = {
    "training.eval_batch_size": "rows per forward pass when evaluating, as before",
    "training.eval_steps": "every N optimizer steps on the current phase's held-out documents, and at each phase end",
    "dataset.val_split": "the share of each phase's documents held out, split by document before chunking",
    "dataset.random_seed": "one seed for the split and for training",
}


def is_legacy_config(data: dict[str, Any]) -> bool:
    return bool(LEGACY_TOP_LEVEL & set(data)) or "type" in (data.get("model") or {})


def phase_dir_name(index: int, name: str) -> str:
    """'PR Mastery' (3rd phase) -> 'phase3_pr_mastery'; 'phase1_foundation' stays as it is."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if re.match(r"^phase\d+(_|$)", slug):
        return slug
    return f"phase{index}_{slug}" if slug else f"phase{index}"


def _take(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    """Remove `path` (dotted) from nested dicts; (found, value)."""
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False, None
    if last not in node:
        return False, None
    return True, node.pop(last)


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def translate_legacy_config(old: dict[str, Any], config_dir: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """(the config in phased-cpt's layout, notes). `config_dir`: where the older config lives
    (its `deepspeed_configs/zero3.json` is looked for there). Contradictions the older tool could
    not run either are a ConfigError."""
    import copy

    rest = copy.deepcopy(old)
    new: dict[str, Any] = {}
    notes: list[str] = []

    for old_path, new_path in SAME_MEANING.items():
        found, value = _take(rest, old_path)
        if found:
            _put(new, new_path, value)
            if old_path != new_path:
                meaning = SAME_NOTES.get(old_path)
                notes.append(f"{old_path} -> {new_path}" + (f" ({meaning})" if meaning else ""))

    # wandb: empty strings were the older template's "not set"
    for key, what in (
        ("api_key", "set WANDB_API_KEY in the environment, or api_key: ${WANDB_API_KEY}"),
        ("entity", "W&B uses your default entity"),
    ):
        found, value = _take(rest, f"wandb.{key}")
        if found:
            if value in ("", None):
                _put(new, f"wandb.{key}", None)
                notes.append(f'wandb.{key}: "" (not set) -> null: {what}')
            else:
                _put(new, f"wandb.{key}", value)

    found, value = _take(rest, "model.type")
    if found:
        notes.append(
            f"model.type ({value!r}) dropped: informational in the older tool; phased-cpt reads the "
            "architecture from the model's own config.json"
        )

    translate_precision(rest, new, notes)

    found, value = _take(rest, "training.sample_packing")
    _put(new, "context.sample_packing", False)
    if found and value:
        notes.append(
            "training.sample_packing: true -> context.sample_packing: false: the older tool read this key "
            "but never packed (one chunk per row), so the translation keeps one chunk per row and the same "
            "number of rows and optimizer steps. Packing works in phased-cpt: context.sample_packing: true "
            "puts several documents in a row (on one phase of a real repository, 162 rows became 22, and "
            "optimizer steps 81 became 9); `phased-cpt plan` shows the counts either way"
        )
    _put(new, "context.overlap_loss", True)
    notes.append(
        "context.overlap_loss: true: the older tool trained every chunk with labels = input_ids, so the "
        "overlap tokens shared by consecutive chunks were trained twice; kept. false trains each token once "
        "(the overlap is context only)"
    )

    translate_dataset_and_phases(rest, new, notes)
    translate_deepspeed(new, notes, config_dir)

    reject_unknown_keys(rest)
    for key, value in rest.items():  # wandb/model/training leftovers and new-layout sections: validation judges them
        if isinstance(value, dict) and not value:
            continue
        if isinstance(new.get(key), dict) and isinstance(value, dict):
            new[key] = merge(value, new[key])
        else:
            new[key] = value
    return new, notes


def merge(base: dict[str, Any], wins: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in wins.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
        )
    return merged


def reject_unknown_keys(rest: dict[str, Any]) -> None:
    """Keys left in the older-only sections (`dataset`, `phased_training`) have no place in the new
    layout: an error naming each, with the section's known keys."""
    import difflib

    problems = []
    for section in ("dataset", "phased_training"):
        leftover = rest.pop(section, None)
        if not isinstance(leftover, dict):
            continue
        known = sorted(k.split(".", 1)[1] for k in LEGACY_KEYS if k.startswith(section + "."))
        for key in leftover:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = str(key) if str(key).isprintable() else repr(str(key))  # a key with a newline stays one line
            problems.append(
                f"{section}.{shown}: not a key of the older tool's layout{hint}; its {section} keys are "
                f"{', '.join(known)}"
            )
    if problems:
        raise ConfigError(problems)


def translate_precision(rest: dict[str, Any], new: dict[str, Any], notes: list[str]) -> None:
    """training.bf16 / fp16 / tf32 -> model.dtype; each note says what the flag did and what runs now."""
    _, bf16 = _take(rest, "training.bf16")
    _, fp16 = _take(rest, "training.fp16")
    found_tf32, tf32 = _take(rest, "training.tf32")
    if bf16 and fp16:
        raise ConfigError(
            [
                "training.bf16 and training.fp16 are both true: the older tool could not run this either "
                "(the HF Trainer refuses both); keep the one you mean"
            ]
        )
    if bf16:
        new.setdefault("model", {})["dtype"] = "bfloat16"
        notes.append(
            "training.bf16: true (bf16 mixed precision) -> model.dtype: bfloat16: weights and compute in "
            "bfloat16, the LoRA adapter and its optimizer in float32, as before"
        )
    elif fp16:
        new.setdefault("model", {})["dtype"] = "float16"
        notes.append(
            "training.fp16: true (fp16 mixed precision) -> model.dtype: float16: weights and compute in "
            "float16, the LoRA adapter and its optimizer in float32"
        )
    if fp16 is False and bf16:
        notes.append("training.fp16: false: nothing to translate (float16 was off, and stays off)")
    elif bf16 is False and fp16:
        notes.append("training.bf16: false: nothing to translate (bfloat16 was off, and stays off)")
    elif bf16 is False and fp16 is False:
        notes.append(
            "training.bf16: false and training.fp16: false -> model.dtype: auto: bfloat16 on GPUs that "
            "support it (the older tool trained in float32 there); set model.dtype: float32 to keep float32"
        )
    if found_tf32:
        meaning = (
            "as tf32: true did"
            if tf32
            else "tf32: false is not kept; it only changes float32 matmuls, which bfloat16 training does not run"
        )
        notes.append(
            f"training.tf32: {str(bool(tf32)).lower()} dropped: phased-cpt enables TF32 on every GPU that "
            f"has it (Ampere and newer), {meaning}"
        )


def translate_dataset_and_phases(rest: dict[str, Any], new: dict[str, Any], notes: list[str]) -> None:
    found, train_split = _take(rest, "dataset.train_split")
    if found:
        eval_ratio = new.get("data", {}).get("eval_ratio")
        same = (
            isinstance(train_split, (int, float))
            and isinstance(eval_ratio, (int, float))
            and abs(train_split + eval_ratio - 1) < 1e-9
        )
        notes.append(
            f"dataset.train_split ({train_split}) dropped: the documents not held out by data.eval_ratio are "
            "trained on"
            + (
                ""
                if same or eval_ratio is None
                else f" ({1 - eval_ratio:g} of them, not {train_split}: the older tool's two splits "
                "did not add up to 1)"
            )
        )
    _, output_dir = _take(rest, "dataset.output_dir")
    output_dir = str(output_dir if output_dir is not None else "dataset").rstrip("/")

    found, old_phases = _take(rest, "phased_training.phases")
    if not found:
        return
    if not isinstance(old_phases, list):
        new["phases"] = old_phases  # validation says what is wrong with it
        return
    phases = []
    for index, item in enumerate(old_phases, start=1):
        if not isinstance(item, dict):
            phases.append(item)
            continue
        item = dict(item)
        phase: dict[str, Any] = {}
        if "name" in item:
            old_name = str(item.pop("name"))
            phase["name"] = phase_dir_name(index, old_name)
            if phase["name"] != old_name:
                notes.append(
                    f"phased_training.phases.{index - 1}.name {old_name!r} -> phases.{index - 1}.name "
                    f"{phase['name']!r} (also its directory in the run, as the older tool named it)"
                )
        if "dataset_file" in item:
            phase["file"] = f"{output_dir}/{item.pop('dataset_file')}"
        phase.update(item)  # epochs, description, and anything unknown for validation
        phases.append(phase)
    new["phases"] = phases
    notes.append(
        f"phased_training.phases[].dataset_file -> phases[].file, under dataset.output_dir ({output_dir}), "
        "relative to the config file"
    )


def translate_deepspeed(new: dict[str, Any], notes: list[str], config_dir: Path | None) -> None:
    """The older code always trained with DeepSpeed ZeRO-3 (its own JSON, hard-coded)."""
    older_json = (config_dir / OLDER_ZERO3) if config_dir is not None else None
    if older_json is not None and older_json.is_file():
        new["deepspeed"] = str(OLDER_ZERO3)
        notes.append(
            f"deepspeed: {OLDER_ZERO3}: the older tool always trained with this file (hard-coded in its "
            "code, not in config.yaml); kept as it is"
        )
        return
    new["deepspeed"] = "zero3"
    notes.append(
        f"deepspeed: zero3: the older tool always trained with DeepSpeed ZeRO-3 from {OLDER_ZERO3} "
        "(hard-coded in its code, not in config.yaml). That file is not next to this config, so the "
        "packaged zero3 is used: the same stage, no offload, overlap_comm and contiguous gradients, with "
        'bucket sizes sized to the model ("auto") instead of a fixed 5e8, and at most 1e9 gathered '
        "parameters instead of 5e9. To keep the older file, put it at "
        f"{OLDER_ZERO3} next to the config, or set deepspeed: to its path"
    )
