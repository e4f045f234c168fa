"""The run configuration: strict pydantic models and `load_config(path, overrides) -> RunConfig`.

Every key is declared here with its default; unknown keys, wrong types and contradictions are
collected and reported together (`ConfigError`), each with its dotted key path and what to do.
Loading goes: YAML text -> older-tool translation (see `legacy.py`) -> `${VAR}` interpolation ->
`--set key.path=value` overrides -> validation. Relative data paths resolve against the config
file's directory.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from phased_cpt.errors import ConfigError

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2"]
LrScheduler = Literal[
    "cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
]
PHASE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DEEPSPEED_NAMES = ("zero2", "zero3", "auto")
DeepSpeedOffload = Literal["none", "optimizer", "optimizer_and_params"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelConfig(StrictModel):
    name: str = "Kwaipilot/KAT-Dev"
    """Hugging Face model id or local directory holding a causal LM and its tokenizer."""
    size: str | None = "32B"
    """Informational: shown in logs and the resolved config; nothing is derived from it."""
    dtype: Dtype = "auto"
    """Weights dtype. auto: bfloat16 on a GPU that supports it, float32 on CPU."""
    attn_implementation: AttnImplementation = "auto"
    """auto: flash_attention_2 when installed on a GPU, else sdpa."""


class LoraConfig(StrictModel):
    r: PositiveInt = 128
    alpha: PositiveFloat = 256
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
        ],
        min_length=1,
    )


class PerformanceConfig(StrictModel):
    """Speed and memory options; none changes what is learned beyond floating-point rounding.
    What each does, and which path is active on this machine: `training/throughput.py`."""

    liger_kernel: Literal["auto", True, False] = "auto"
    """Liger Triton kernels (fused linear cross-entropy, RMSNorm, SwiGLU, RoPE). auto: on when
    liger-kernel is installed and training runs on a CUDA GPU; true: required (error otherwise)."""
    optimizer: Literal["adamw_torch_fused", "adamw_torch"] = "adamw_torch_fused"
    """adamw_torch_fused: one fused kernel per step (falls back to adamw_torch, with a log line,
    where torch has no fused AdamW for the device)."""
    torch_compile: bool = False
    """torch.compile the model (the Trainer's `torch_compile`)."""
    checkpoint_every_n_layers: PositiveInt = 1
    """With training.gradient_checkpointing: recompute only every n-th decoder layer (1: all);
    the others keep their activations, trading memory back for speed."""
    checkpoint_offload: bool = False
    """With training.gradient_checkpointing: keep the activations saved for the recompute in
    pinned CPU memory instead of on the GPU (less GPU memory at long rows, slower steps)."""

    @field_validator("liger_kernel")
    @classmethod
    def _check_liger_installed(cls, value: str | bool) -> str | bool:
        if value is True and importlib.util.find_spec("liger_kernel") is None:
            raise ValueError(
                "true needs liger-kernel, which is not installed; pip install 'phased-cpt[gpu]' "
                "(on a CUDA machine) or set it to auto"
            )
        return value


class TrainingConfig(StrictModel):
    micro_batch_size: PositiveInt = 1
    gradient_accumulation_steps: PositiveInt = 6
    learning_rate: PositiveFloat = 1e-4
    lr_scheduler: LrScheduler = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: NonNegativeFloat = 0.1
    max_grad_norm: NonNegativeFloat = 1.0
    """0 disables gradient clipping."""
    gradient_checkpointing: bool = True
    seed: int = 42
    logging_steps: PositiveInt = 10
    save_steps: PositiveInt = 200
    save_total_limit: PositiveInt | None = 3
    max_steps: PositiveInt | None = None
    """Cap on optimizer steps per phase (smoke runs); null trains every epoch."""
    max_nonfinite_losses: PositiveInt = 3
    """Consecutive micro-batches with a NaN/inf loss (each contributes no gradient) before the
    phase stops with an error; checkpoints written before stay as they are."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)

    @model_validator(mode="after")
    def _check_checkpointing(self) -> TrainingConfig:
        performance = self.performance
        if not self.gradient_checkpointing and (
            performance.checkpoint_every_n_layers != 1 or performance.checkpoint_offload
        ):
            raise ValueError(
                "training.performance.checkpoint_every_n_layers / checkpoint_offload need "
                "training.gradient_checkpointing: true; turn it on or leave them at 1 / false"
            )
        return self


class ContextConfig(StrictModel):
    max_tokens: PositiveInt = 32768
    overlap_tokens: NonNegativeInt = 2048
    chunk_long_samples: bool = True
    """false: a document longer than max_tokens is an error (never silently truncated)."""
    overlap_loss: bool = False
    """false: the overlap at the start of a later chunk is context only (label -100), so each
    document token is a training target once per epoch."""
    sample_packing: bool = False
    """true: pack documents and chunks into rows of up to max_tokens (best-fit decreasing), with
    position ids restarting and attention isolated per document; false: one per row, a batch
    padded to its longest row."""

    @model_validator(mode="after")
    def _check(self) -> ContextConfig:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"context.overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"context.max_tokens ({self.max_tokens}); lower overlap_tokens or raise max_tokens"
            )
        return self


class PhaseConfig(StrictModel):
    name: str = Field(pattern=PHASE_NAME_PATTERN)
    """Also the phase's directory name in the run directory."""
    file: Path
    """JSONL training data; relative paths resolve against the config file's directory."""
    epochs: PositiveFloat = 1
    eval_file: Path | None = None
    """Held-out JSONL for this phase's evaluation; without it, `data.eval_ratio` of `file`'s
    documents are held out."""
    description: str | None = None
    learning_rate: PositiveFloat | None = None
    warmup_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    max_steps: PositiveInt | None = None
    lr_scheduler: LrScheduler | None = None
    weight_decay: NonNegativeFloat | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    micro_batch_size: PositiveInt | None = None
    replay_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of this phase's training tokens drawn (seeded) from earlier phases' training
    chunks, against forgetting; must be 0 for the first phase."""

    @field_validator("file", "eval_file")
    @classmethod
    def _resolve_and_check_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is not None and not value.is_absolute():
            value = Path(base_dir) / value
        if (info.context or {}).get("check_files", True) and not value.is_file():
            raise ValueError(
                f"data file {str(value)!r} does not exist; create it or point the phase at an "
                "existing JSONL file"
            )
        return value

    def training_for(self, training: TrainingConfig) -> TrainingConfig:
        """The training settings of this phase: the global ones with this phase's overrides."""
        overrides = {
            key: getattr(self, key)
            for key in PHASE_OVERRIDE_KEYS
            if getattr(self, key) is not None
        }
        return training.model_copy(update=overrides)


PHASE_OVERRIDE_KEYS = (
    "learning_rate", "warmup_ratio", "max_steps", "lr_scheduler", "weight_decay",
    "gradient_accumulation_steps", "micro_batch_size",
)


def default_phases() -> list[dict[str, Any]]:
    return [
        {"name": "phase1_foundation", "file": "dataset/phase1_foundation.jsonl", "epochs": 3},
        {"name": "phase2_evolution", "file": "dataset/phase2_evolution.jsonl", "epochs": 2},
        {"name": "phase3_pr_mastery", "file": "dataset/phase3_pr_mastery.jsonl", "epochs": 2},
    ]


class DataConfig(StrictModel):
    text_field: str = Field("training_content", min_length=1)
    eval_ratio: float = Field(0.02, ge=0.0, lt=1.0)
    """Fraction of each phase's documents held out for evaluation (split by document, before
    chunking; at least one when a phase has two or more). Ignored for a phase with `eval_file`."""
    on_bad_record: Literal["error", "skip"] = "error"
    """error: any bad line stops the run before training, listing file:line: reason; skip: bad
    lines are left out and written with their reason to <run>/rejected/<phase>.jsonl."""
    dedup: Literal["none", "exact"] = "none"
    """exact: a document whose text equals an earlier one (in the phase file or its eval file)
    is left out and recorded in <run>/rejected/<phase>.jsonl."""
    cache_dir: Path | None = None
    """Prepared (tokenized, chunked, packed) data, reused by later runs; null:
    ${XDG_CACHE_HOME:-~/.cache}/phased-cpt/data."""


class OutputConfig(StrictModel):
    dir: Path = Path("outputs")
    """Parent of every run directory; relative to the current working directory."""
    run_name: str | None = Field(None, pattern=PHASE_NAME_PATTERN)
    """Default: phased-<model short name>-lora. A timestamp is appended per run."""


class EvaluationConfig(StrictModel):
    eval_steps: PositiveInt | None = 200
    """Evaluate on the current phase's held-out documents every N optimizer steps (null: only at
    each phase end)."""
    batch_size: PositiveInt = 1
    """Rows per forward pass during evaluation."""
    forgetting_matrix: bool = True
    """Before training and after each phase, evaluate on every phase's held-out documents."""


class WandbConfig(StrictModel):
    enabled: bool = False
    project: str = "phased-cpt"
    entity: str | None = None
    api_key: SecretStr | None = None
    """Use ${WANDB_API_KEY}; never written to the run directory or logs. Without a key W&B
    runs offline."""


class TensorboardConfig(StrictModel):
    enabled: bool = True


class RunConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    phases: list[PhaseConfig] = Field(default_factory=default_phases)
    data: DataConfig = Field(default_factory=DataConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    tensorboard: TensorboardConfig = Field(default_factory=TensorboardConfig)
    deepspeed: str | None = None
    """null (one process, or DDP through torchrun) | zero2 | zero3 | auto | a DeepSpeed JSON file
    (relative paths resolve against the config file's directory). See docs/multi-gpu.md."""
    deepspeed_offload: DeepSpeedOffload = "none"
    """none | optimizer (Adam states in CPU memory) | optimizer_and_params (also the weights;
    ZeRO-3 only). For zero2, zero3 and auto; a JSON file says its own offload."""

    @field_validator("phases")
    @classmethod
    def _check_phases(cls, phases: list[PhaseConfig]) -> list[PhaseConfig]:
        if not phases:
            raise ValueError("no phases: list at least one phase with a name, file and epochs")
        seen: set[str] = set()
        for phase in phases:
            if phase.name in seen:
                raise ValueError(f"duplicate phase name {phase.name!r}: phase names must be unique")
            seen.add(phase.name)
        if phases[0].replay_ratio > 0:
            raise ValueError(
                f"phases.0.replay_ratio ({phases[0].replay_ratio}): the first phase has no earlier "
                "phase to replay from; set it to 0"
            )
        return phases

    @field_validator("deepspeed")
    @classmethod
    def _check_deepspeed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value in DEEPSPEED_NAMES:
            return value
        path = Path(value).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise ValueError(
                f"{value!r} is neither null, {', '.join(DEEPSPEED_NAMES)} nor an existing DeepSpeed "
                f"JSON file ({path} does not exist)"
            )
        return str(path)

    @field_validator("deepspeed_offload")
    @classmethod
    def _check_offload(cls, offload: str, info: ValidationInfo) -> str:
        deepspeed = info.data.get("deepspeed")
        if offload == "none" or "deepspeed" not in info.data:
            return offload
        if deepspeed is None:
            raise ValueError(f"{offload} needs DeepSpeed; set deepspeed: zero2, zero3 or auto")
        if deepspeed not in DEEPSPEED_NAMES:
            raise ValueError(
                f"{offload} cannot be combined with the DeepSpeed file {deepspeed}; set "
                "offload_optimizer/offload_param in that file, or deepspeed_offload: none"
            )
        if offload == "optimizer_and_params" and deepspeed == "zero2":
            raise ValueError(
                "optimizer_and_params needs ZeRO-3 (ZeRO-2 cannot offload weights); set deepspeed: "
                "zero3 or auto, or deepspeed_offload: optimizer"
            )
        return offload

    @property
    def run_name(self) -> str:
        return self.output.run_name or f"phased-{model_short_name(self.model.name)}-lora"


def model_short_name(name: str) -> str:
    """'Kwaipilot/KAT-Dev' -> 'kat-dev'; '/tmp/models/tiny-llama/' -> 'tiny-llama'."""
    last = name.rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-") or "model"


# --- loading ---------------------------------------------------------------------------------

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(data: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; unset variables are problems."""
    problems = [] if problems is None else problems
    if isinstance(data, dict):
        return {k: interpolate_env(v, _join(path, k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_env(v, _join(path, str(i)), problems) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        problems.append(
            f"{path}: environment variable {var} is not set; export it or write "
            f"${{{var}:-default}} to allow it to be missing"
        )
        return ""

    value = _ENV_PATTERN.sub(substitute, data)
    if value == "" and data != "":
        return None  # `${WANDB_API_KEY:-}` with the variable unset means "no value"
    return value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `key.path=value` override in place; the value is parsed as a YAML scalar.

    List items are addressed by index (`phases.0.epochs=1`) or, for phases, by name
    (`phases.phase1_foundation.epochs=1`).
    """
    if "=" not in assignment:
        raise ConfigError([f"--set {assignment!r}: expected key.path=value"])
    key_path, raw_value = assignment.split("=", 1)
    keys = [k for k in key_path.strip().split(".")]
    if not all(keys):
        raise ConfigError([f"--set {assignment!r}: empty key in {key_path!r}"])
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, ".".join(keys[: depth + 1]), create=True, assignment=assignment)
    last = keys[-1]
    if isinstance(node, list):
        index = _list_index(node, last, key_path, assignment)
        node[index] = value
    else:
        node[last] = value


def _child(node: Any, key: str, path: str, create: bool, assignment: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, path, assignment)]
    if not isinstance(node, dict):
        raise ConfigError([f"--set {assignment!r}: {path} is not a section"])
    if key not in node or node[key] is None:
        if key == "phases":
            node[key] = default_phases()
        else:
            node[key] = {}
    return node[key]


def _list_index(items: list[Any], key: str, path: str, assignment: str) -> int:
    if key.isdigit() and int(key) < len(items):
        return int(key)
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return i
    raise ConfigError(
        [f"--set {assignment!r}: {path}: no list item {key!r} (use an index below {len(items)} "
         "or a phase name)"]
    )


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"cannot read config file {str(path)!r}: {err}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def load_config(
    path: Path | None,
    overrides: list[str] = (),
    *,
    base_data: dict[str, Any] | None = None,
    check_files: bool = True,
) -> tuple[RunConfig, list[str]]:
    """Load, translate, interpolate, override and validate a config.

    Returns the config and the warnings to show (e.g. an older-tool config was translated).
    `base_data` stands in for the file's contents (the embedded quickstart config).
    """
    from phased_cpt.legacy import is_legacy_config, translate_legacy_config

    data = base_data if base_data is not None else (read_yaml(path) if path else {})
    warnings: list[str] = []
    if is_legacy_config(data):
        data, notes = translate_legacy_config(data)
        warnings.append(
            "this config uses the older tool's layout; it was translated "
            "(`phased-cpt validate CONFIG --print-translated` prints the new layout)"
        )
        warnings.extend(notes)
    problems: list[str] = []
    data = interpolate_env(data, problems=problems)
    for assignment in overrides:
        apply_override(data, assignment)
    base_dir = path.resolve().parent if path else Path.cwd()
    try:
        cfg = RunConfig.model_validate(data, context={"base_dir": base_dir, "check_files": check_files})
    except ValidationError as err:
        problems.extend(describe_validation_error(err))
    source = str(path) if path else None
    if problems:
        raise ConfigError(problems, source)
    return cfg, warnings


def describe_validation_error(err: ValidationError) -> list[str]:
    """One line per pydantic error: `key.path: what is wrong; what to do`."""
    lines = []
    for e in err.errors(include_url=False):
        loc = [str(part) for part in e["loc"]]
        path = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key{_did_you_mean(loc)}")
        elif e["type"] in ("value_error", "assertion_error"):
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"{path}: {msg}" if not msg.startswith(path) else msg)
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: {e['msg']} (got {e.get('input')!r})")
    return lines


def _did_you_mean(loc: list[str]) -> str:
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        if model is None:
            break
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field else None
    if model is None:
        return ""
    options = list(model.model_fields)
    key = loc[-1]
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    # A typo after a short key ('rnak' for 'r') is too far for difflib's ratio: try prefixes.
    prefixes = sorted((o for o in options if key.startswith(o) or o.startswith(key)), key=len, reverse=True)
    suggestion = close[0] if close else (prefixes[0] if prefixes else None)
    valid = f"valid keys here: {', '.join(options)}"
    return f" (did you mean {suggestion!r}?); {valid}" if suggestion else f"; {valid}"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found:
            return found
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML, without secrets (the W&B key is never written)."""
    data = cfg.model_dump(mode="json")
    data["wandb"].pop("api_key", None)
    return yaml.safe_dump(data, sort_keys=False)
