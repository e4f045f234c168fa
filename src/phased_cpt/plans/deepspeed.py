"""The DeepSpeed config a run trains with, and why it was chosen.

- `deepspeed:` null | zero2 | zero3 | auto | <path to a JSON file>. zero2/zero3 are the JSON files
  shipped inside the package (`phased_cpt/deepspeed/`, read with `importlib.resources`, so a wheel
  install works like a checkout), whose `"auto"` values the HF Trainer fills from the training
  settings of each phase. `auto` picks ZeRO-3 when `context.max_tokens` > 16384 or the model would
  not fit one GPU under ZeRO-2 (the estimate of `memory.py`), else ZeRO-2, and logs why.
- `deepspeed_offload:` none | optimizer | optimizer_and_params moves Adam states (and, with
  ZeRO-3, the frozen weights) to CPU memory.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from phased_cpt.config import RunConfig
from phased_cpt.distributed import world_size
from phased_cpt.errors import UserError

logger = logging.getLogger(__name__)

NAMED_CONFIGS = ("zero2", "zero3")
"""`deepspeed:` values that name a config shipped in `phased_cpt/deepspeed/<name>.json`."""
AUTO_ZERO3_MAX_TOKENS = 16384
"""Above this row length, `deepspeed: auto` picks ZeRO-3 whatever the memory estimate says:
activations of such rows leave little room for unpartitioned weights."""


@dataclass(frozen=True)
class DeepSpeedPlan:
    """The DeepSpeed config of a run (with `"auto"` values for the Trainer) and why it was chosen."""

    config: dict[str, Any]
    source: str
    """zero2, zero3 or the user's JSON file."""
    reason: str

    @property
    def zero_stage(self) -> int:
        return int(self.config.get("zero_optimization", {}).get("stage", 0))


def named_config(name: str) -> dict[str, Any]:
    """The packaged config `zero2` or `zero3`, as a fresh dict."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"no packaged DeepSpeed config {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    text = resources.files("phased_cpt").joinpath("deepspeed", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def choose_zero_stage(max_tokens: int, zero2_bytes_per_gpu: int | None, gpu_bytes: int | None) -> tuple[str, str]:
    """`deepspeed: auto`: ZeRO-3 for rows over 16384 tokens or when ZeRO-2 would not fit a GPU.

    `zero2_bytes_per_gpu` is the estimated need under ZeRO-2, `gpu_bytes` the memory of one GPU
    (None: no GPU here, memory not checked). Returns the config name and the reason.
    """
    if max_tokens > AUTO_ZERO3_MAX_TOKENS:
        return "zero3", f"context.max_tokens ({max_tokens}) > {AUTO_ZERO3_MAX_TOKENS}"
    if gpu_bytes is None:
        return "zero2", (
            f"context.max_tokens ({max_tokens}) <= {AUTO_ZERO3_MAX_TOKENS}; no GPU here, so memory "
            "was not checked (--gpu-memory GiB checks it against the GPUs you will use)"
        )
    if zero2_bytes_per_gpu is None:
        return "zero2", (
            f"context.max_tokens ({max_tokens}) <= {AUTO_ZERO3_MAX_TOKENS}; the model's size is unknown "
            "(no config.json found, no model.size), so memory was not checked (--model-config PATH)"
        )
    need, have = zero2_bytes_per_gpu / 2**30, gpu_bytes / 2**30
    if zero2_bytes_per_gpu > gpu_bytes:
        return (
            "zero3",
            f"the model would need ~{need:.1f} GiB per GPU under ZeRO-2, more than the {have:.1f} GiB a GPU has",
        )
    return "zero2", (
        f"context.max_tokens ({max_tokens}) <= {AUTO_ZERO3_MAX_TOKENS} and ZeRO-2 needs "
        f"~{need:.1f} GiB of the {have:.1f} GiB per GPU"
    )


def apply_offload(config: dict[str, Any], offload: str) -> dict[str, Any]:
    """A copy of `config` with Adam states (and under ZeRO-3 the weights) in CPU memory.

    Offloading uses DeepSpeed's CPU Adam (an `optimizer` section with `"auto"` values), compiled on
    first use; pinned memory makes the copies faster.
    """
    config = copy.deepcopy(config)
    if offload == "none":
        return config
    zero = config.setdefault("zero_optimization", {})
    zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload == "optimizer_and_params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config.setdefault(
        "optimizer",
        {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        },
    )
    return config


def read_deepspeed_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"deepspeed: {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"deepspeed: cannot read {path}: {err}") from None
    if not isinstance(config, dict):
        raise UserError(f"deepspeed: {path} must hold a JSON object")
    return config


def plan_deepspeed(
    cfg: RunConfig,
    processes: int | None = None,
    gpu_bytes: int | None = None,
    model_config: Path | None = None,
) -> DeepSpeedPlan | None:
    """Resolve `deepspeed` and `deepspeed_offload` into the config the Trainer gets (None: no DeepSpeed).

    `processes`: how many the run will have (default: this run's WORLD_SIZE); `auto` needs it.
    `gpu_bytes`: the memory of the GPUs the run is planned for (`plan --gpu-model`, `doctor --gpu-memory`;
    default: the GPU here); `model_config`: the model's config.json when model.name's is not on this
    machine (`--model-config`).
    """
    if cfg.deepspeed is None:
        return None
    if cfg.deepspeed == "auto" and cfg.deepspeed_offload == "optimizer_and_params":
        name, reason = "zero3", "deepspeed_offload: optimizer_and_params needs ZeRO-3"
        logger.info("deepspeed: auto picked %s: %s", name, reason)
    elif cfg.deepspeed == "auto":
        name, reason = choose_zero_stage(
            cfg.context.max_tokens, *auto_memory_inputs(cfg, processes or world_size(), gpu_bytes, model_config)
        )
        logger.info("deepspeed: auto picked %s: %s", name, reason)
    elif cfg.deepspeed in NAMED_CONFIGS:
        name, reason = cfg.deepspeed, "set in the config"
    else:
        return DeepSpeedPlan(read_deepspeed_json(Path(cfg.deepspeed)), cfg.deepspeed, "set in the config")
    config = apply_offload(named_config(name), cfg.deepspeed_offload)
    if cfg.deepspeed_offload != "none":
        reason += f"; offload: {cfg.deepspeed_offload} to CPU"
    return DeepSpeedPlan(config, name, reason)


def auto_memory_inputs(
    cfg: RunConfig,
    processes: int,
    gpu_bytes: int | None = None,
    model_config: Path | None = None,
) -> tuple[int | None, int | None]:
    """(bytes a GPU needs under ZeRO-2, bytes of one GPU), None where unknown: the estimate of
    `memory.py`, the one `plan` and `doctor` show, for the GPU here or one of `gpu_bytes`
    (`plans/target.target_gpus`). Without the model's config.json, the weights alone (from
    `model.size`) stand for the need."""
    from phased_cpt.config import training_dtype
    from phased_cpt.memory import DTYPE_BYTES, Parallelism, estimate_run
    from phased_cpt.model_shape import model_shape, parameters_from_size
    from phased_cpt.plans.target import target_gpus

    gpu = target_gpus(cfg.training.performance.liger_kernel, gpu_bytes)[0]
    if gpu.memory_bytes is None:
        return None, None
    shape = model_shape(cfg.model, model_config)
    if shape is None:
        params = parameters_from_size(cfg.model.size)
        return (params * DTYPE_BYTES[training_dtype(cfg.model.dtype, gpu.bf16)] if params else None), gpu.memory_bytes
    estimate = estimate_run(cfg, shape, gpu, Parallelism(2, processes, cfg.deepspeed_offload))
    return estimate.memory.gpu_bytes, gpu.memory_bytes
