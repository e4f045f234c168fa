"""The run configuration: `load_config(path, overrides) -> (RunConfig, warnings)`.

- `schema.py`: the strict pydantic models (every key, its default, its limits).
- `loading.py`: YAML, `${VAR}` interpolation, `--set` overrides, error collection, `dump_config`.
- `legacy.py`: translation of configs written for the older tool.
"""

from phased_cpt.config.loading import (
    apply_override,
    describe_validation_error,
    dump_config,
    interpolate_env,
    load_config,
    public_config,
    read_yaml,
)
from phased_cpt.config.schema import (
    DEEPSPEED_NAMES,
    GENERAL_COLUMN,
    PHASE_OVERRIDE_KEYS,
    CompletionConfig,
    ContextConfig,
    DataConfig,
    EvaluationConfig,
    GeneralConfig,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    PerformanceConfig,
    PhaseConfig,
    RunConfig,
    Source,
    SourceConfig,
    TensorboardConfig,
    TrainingConfig,
    WandbConfig,
    default_phases,
    model_short_name,
    training_dtype,
)

__all__ = [
    "DEEPSPEED_NAMES",
    "GENERAL_COLUMN",
    "PHASE_OVERRIDE_KEYS",
    "CompletionConfig",
    "ContextConfig",
    "DataConfig",
    "EvaluationConfig",
    "GeneralConfig",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "PerformanceConfig",
    "PhaseConfig",
    "RunConfig",
    "Source",
    "SourceConfig",
    "TensorboardConfig",
    "TrainingConfig",
    "WandbConfig",
    "apply_override",
    "default_phases",
    "describe_validation_error",
    "dump_config",
    "public_config",
    "interpolate_env",
    "load_config",
    "model_short_name",
    "read_yaml",
    "training_dtype",
]
