"""The model a run trains, phase after phase, and the DeepSpeed engine that trained it last.

One `TrainableModel` per run, owned by the recipe:

- `build` loads the base model and attaches the LoRA adapter (a resumed run's last finished
  adapter restored into it): `modeling.build_trainable_model`.
- One DeepSpeed engine per phase. The engine a phase trained with stays alive after the phase
  (under ZeRO-3 its hooks gather the weights for the evaluation that follows) and is destroyed
  before the next phase builds one: two live engines on one model would both reduce, then drop,
  each gradient.
- After a ZeRO-3 phase the next phase gets a freshly loaded model with the adapter carried over
  (`next_phase`): a ZeRO-3 engine leaves the weights partitioned, and a second engine on the same
  partitioned model does not gather them again in the recomputation of gradient checkpointing.
- `gathered_adapter` / `fingerprint`: the LoRA weights are whole on every rank only inside
  `gathered_adapter`, also under ZeRO-3; anything that reads them must read them there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peft import PeftModel

from phased_cpt.config import LoraConfig, ModelConfig
from phased_cpt.modeling import adapter_fingerprint, adapter_state, build_trainable_model


class TrainableModel:
    def __init__(self, model: PeftModel, model_cfg: ModelConfig, lora: LoraConfig) -> None:
        self.model = model
        self.model_cfg = model_cfg
        self.lora = lora
        self.engine: Any | None = None
        """The DeepSpeed engine of the phase that trained `model` last (None: no DeepSpeed)."""

    @classmethod
    def build(cls, model_cfg: ModelConfig, lora: LoraConfig, adapter_dir: Path | None = None) -> TrainableModel:
        """The base model with a fresh adapter, or with the saved adapter in `adapter_dir`."""
        return cls(build_trainable_model(model_cfg, lora, adapter_dir), model_cfg, lora)

    def keep_engine(self, engine: Any | None) -> None:
        """Remember the DeepSpeed engine a phase trained the model with (None: no DeepSpeed)."""
        if engine is not None and hasattr(engine, "destroy"):
            self.engine = engine

    def release_engine(self) -> None:
        """Destroy the last phase's engine (its module hooks and gradient handlers), if any."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.destroy()

    def next_phase(self) -> PeftModel:
        """The model the next phase trains, with the last phase's engine released: the same model,
        except after a ZeRO-3 phase, when the base model is loaded afresh and the adapter the phase
        ended with (gathered whole from every rank's shard) is loaded into a new LoRA adapter on it."""
        if self.engine is None or self.engine.zero_optimization_stage() != 3:
            self.release_engine()
            return self.model
        with self.gathered_adapter():
            adapter = {name: tensor.detach().clone() for name, tensor in adapter_state(self.model).items()}
        self.release_engine()
        self.model = build_trainable_model(self.model_cfg, self.lora, adapter)
        return self.model

    @contextlib.contextmanager
    def gathered_adapter(self) -> Iterator[None]:
        """Inside this block the trainable (LoRA) weights are whole on every rank, also under ZeRO-3.

        Outside, ZeRO-3 keeps only each rank's shard (a 0-size tensor in place of the weight). A
        no-op without ZeRO-3.
        """
        params = [p for p in self.model.parameters() if p.requires_grad and hasattr(p, "ds_id")]
        if not params:
            yield
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield

    def fingerprint(self) -> str:
        """`modeling.adapter_fingerprint` of the whole adapter, also under ZeRO-3 (every rank calls it)."""
        with self.gathered_adapter():
            return adapter_fingerprint(self.model)
