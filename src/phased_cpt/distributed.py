"""Multi-process training: which rank this is, the DeepSpeed config a run uses, and the setup that
must happen before the model is built.

- Ranks come from the environment the launcher sets (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`), so
  `phased-cpt launch`, `deepspeed train_phased.py` and `torchrun train_phased.py` all work.
- `deepspeed:` null | zero2 | zero3 | auto | <path to a JSON file>. zero2/zero3 are the files in
  `deepspeed_configs/`, whose `"auto"` values the HF Trainer fills from the training settings of
  each phase. `auto` picks ZeRO-3 when `context.max_tokens` > 16384 or the model would not fit
  one GPU under ZeRO-2 (see `memory.py`), else ZeRO-2, and logs why.
- `deepspeed_offload:` none | optimizer | optimizer_and_params moves Adam states (and, with
  ZeRO-3, the frozen weights) to CPU memory.
- Rank 0 owns the run directory: it creates it and the other ranks learn its path by broadcast.
- One DeepSpeed engine per phase: the previous phase's engine is destroyed before the next is
  built, and after a ZeRO-3 phase the next phase gets a freshly loaded model with the adapter
  carried over (`model_for_next_phase`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from phased_cpt.config import LoraConfig, ModelConfig, RunConfig
from phased_cpt.errors import UserError
from phased_cpt.run_dir import RunDir

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "deepspeed_configs"
NAMED_CONFIGS = {"zero2": CONFIG_DIR / "zero2.json", "zero3": CONFIG_DIR / "zero3.json"}
AUTO_ZERO3_MAX_TOKENS = 16384
"""Above this row length, `deepspeed: auto` picks ZeRO-3 whatever the memory estimate says:
activations of such rows leave little room for unpartitioned weights."""


# --- ranks -----------------------------------------------------------------------------------

def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the only process that logs, writes the run directory's files, reports and plots."""
    return rank() == 0


# --- the DeepSpeed config --------------------------------------------------------------------

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


def choose_zero_stage(max_tokens: int, zero2_bytes_per_gpu: int | None, gpu_bytes: int | None) -> tuple[str, str]:
    """`deepspeed: auto`: ZeRO-3 for rows over 16384 tokens or when ZeRO-2 would not fit a GPU.

    `zero2_bytes_per_gpu` is the estimated need under ZeRO-2, `gpu_bytes` the memory of one GPU
    (None: no GPU here, memory not checked). Returns the config name and the reason.
    """
    if max_tokens > AUTO_ZERO3_MAX_TOKENS:
        return "zero3", f"context.max_tokens ({max_tokens}) > {AUTO_ZERO3_MAX_TOKENS}"
    if gpu_bytes is None or zero2_bytes_per_gpu is None:
        return "zero2", (f"context.max_tokens ({max_tokens}) <= {AUTO_ZERO3_MAX_TOKENS}; "
                         "no GPU or model size known here, so memory was not checked")
    need, have = zero2_bytes_per_gpu / 2**30, gpu_bytes / 2**30
    if zero2_bytes_per_gpu > gpu_bytes:
        return "zero3", f"the model would need ~{need:.1f} GiB per GPU under ZeRO-2, more than the {have:.1f} GiB a GPU has"
    return "zero2", (f"context.max_tokens ({max_tokens}) <= {AUTO_ZERO3_MAX_TOKENS} and ZeRO-2 needs "
                     f"~{need:.1f} GiB of the {have:.1f} GiB per GPU")


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
    config.setdefault("optimizer", {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
    })
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


def plan_deepspeed(cfg: RunConfig, processes: int | None = None) -> DeepSpeedPlan | None:
    """Resolve `deepspeed` and `deepspeed_offload` into the config the Trainer gets (None: no DeepSpeed).

    `processes`: how many the run will have (default: this run's WORLD_SIZE); `auto` needs it.
    """
    if cfg.deepspeed is None:
        return None
    if cfg.deepspeed == "auto" and cfg.deepspeed_offload == "optimizer_and_params":
        name, reason = "zero3", "deepspeed_offload: optimizer_and_params needs ZeRO-3"
        logger.info("deepspeed: auto picked %s: %s", name, reason)
    elif cfg.deepspeed == "auto":
        name, reason = choose_zero_stage(cfg.context.max_tokens, *auto_memory_inputs(cfg, processes or world_size()))
        logger.info("deepspeed: auto picked %s: %s", name, reason)
    elif cfg.deepspeed in NAMED_CONFIGS:
        name, reason = cfg.deepspeed, "set in the config"
    else:
        return DeepSpeedPlan(read_deepspeed_json(Path(cfg.deepspeed)), cfg.deepspeed, "set in the config")
    config = apply_offload(read_deepspeed_json(NAMED_CONFIGS[name]), cfg.deepspeed_offload)
    if cfg.deepspeed_offload != "none":
        reason += f"; offload: {cfg.deepspeed_offload} to CPU"
    return DeepSpeedPlan(config, name, reason)


def auto_memory_inputs(cfg: RunConfig, processes: int) -> tuple[int | None, int | None]:
    """(estimated bytes per GPU under ZeRO-2, bytes of one GPU), None where unknown.

    Without the model's config.json, the weights alone (from `model.size`) stand for the need.
    """
    from phased_cpt.memory import estimate_memory, model_shape, parameters_from_size

    if not torch.cuda.is_available():
        return None, None
    gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    weight_bytes = 2 if torch.cuda.is_bf16_supported() else 4
    shape = model_shape(cfg.model)
    if shape is None:
        params = parameters_from_size(cfg.model.size)
        return (params * weight_bytes if params else None), gpu_bytes
    estimate = estimate_memory(shape, cfg.training, cfg.context.max_tokens, zero_stage=2,
                               world_size=processes, weight_bytes=weight_bytes)
    return estimate.total_bytes, gpu_bytes


# --- process setup ---------------------------------------------------------------------------

def init_distributed(plan: DeepSpeedPlan | None) -> None:
    """Join the process group before anything else: rank 0 shares the run directory through it,
    and every rank builds the same model afterwards.

    gloo on CPU, nccl on GPUs. A single process (WORLD_SIZE unset or 1) does nothing.
    """
    if world_size() == 1 or torch.distributed.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    if plan is None:
        torch.distributed.init_process_group(backend=backend)
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, verbose=False)


def rank_zero_run_dir(open_run: Callable[..., RunDir], *args: Any) -> RunDir:
    """Rank 0 calls `open_run(*args)` (start or resume the run directory) and shares its path;
    the other ranks get a read-only view of it. One process: just `open_run(*args)`.

    A `UserError` on rank 0 (e.g. a resume that does not match) is raised on every rank, so no
    rank waits forever for a path that never comes.
    """
    if world_size() == 1 or not torch.distributed.is_initialized():
        return open_run(*args)
    run, payload = None, [None]
    if is_main_process():
        try:
            run = open_run(*args)
            payload = [("path", str(run.path))]
        except UserError as err:
            payload = [("error", str(err))]
            torch.distributed.broadcast_object_list(payload, src=0)
            raise
    torch.distributed.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise UserError(value)
    return run or RunDir(Path(value), writer=False)


@contextlib.contextmanager
def gathered_adapter(model: torch.nn.Module) -> Iterator[None]:
    """Inside this block the trainable (LoRA) weights are whole on every rank, also under ZeRO-3.

    Outside, ZeRO-3 keeps only each rank's shard (a 0-size tensor in place of the weight), so
    anything that reads the adapter (a fingerprint, a copy) must read it here. A no-op otherwise.
    """
    params = [p for p in model.parameters() if p.requires_grad and hasattr(p, "ds_id")]
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield


def fingerprint_adapter(model: torch.nn.Module) -> str:
    """`modeling.adapter_fingerprint` of the whole adapter, also under ZeRO-3 (every rank calls it)."""
    from phased_cpt.modeling import adapter_fingerprint

    with gathered_adapter(model):
        return adapter_fingerprint(model)


# --- one DeepSpeed engine per phase ----------------------------------------------------------

_ENGINES: dict[int, Any] = {}


def keep_engine(model: torch.nn.Module, engine: Any) -> None:
    """Remember the DeepSpeed engine a phase trained `model` with (None: no DeepSpeed).

    It stays alive after the phase: under ZeRO-3 its hooks gather the weights for the
    evaluation that follows the phase.
    """
    if engine is not None and hasattr(engine, "destroy"):
        _ENGINES[id(model)] = engine


def release_engine(model: torch.nn.Module) -> None:
    """Destroy the previous phase's engine (its module hooks and gradient handlers) before the
    next phase builds one on the same model: two live engines on one model would both reduce,
    then drop, each gradient."""
    engine = _ENGINES.pop(id(model), None)
    if engine is not None:
        engine.destroy()


def model_for_next_phase(model: PeftModel, model_cfg: ModelConfig, lora: LoraConfig) -> PeftModel:
    """The model the next phase trains: `model` itself, except after a ZeRO-3 phase.

    A ZeRO-3 engine leaves the weights partitioned, and a second engine on the same partitioned
    model does not gather them again in the recomputation of gradient checkpointing. So after a
    ZeRO-3 phase the base model is loaded afresh, and the adapter the phase ended with (gathered
    whole from every rank's shard) is loaded into a new LoRA adapter on it.
    """
    engine = _ENGINES.get(id(model))
    if engine is None or engine.zero_optimization_stage() != 3:
        return model
    from peft import set_peft_model_state_dict

    from phased_cpt.modeling import adapter_state, attach_lora, load_base_model

    with gathered_adapter(model):
        adapter = {name: tensor.detach().clone() for name, tensor in adapter_state(model).items()}
    release_engine(model)
    fresh = attach_lora(load_base_model(model_cfg), lora)
    result = set_peft_model_state_dict(fresh, adapter)
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"adapter carry-over: unexpected keys {result.unexpected_keys[:3]}")
    return fresh
