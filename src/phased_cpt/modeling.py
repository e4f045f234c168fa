"""Loading the tokenizer and base model, and attaching or loading the LoRA adapter.

Uses only the public APIs of transformers (`Auto*.from_pretrained`) and peft (`get_peft_model`,
`PeftModel.from_pretrained`, `load_peft_weights`, `set_peft_model_state_dict`), so a hub id and a
local directory load the same way. Nothing here downloads unless the user names a hub id and has network access.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from phased_cpt.config import LoraConfig, ModelConfig, training_dtype
from phased_cpt.errors import UserError
from phased_cpt.tokenizer_check import PROBE_TEXT, first_line, tokenizer_files_note, tokenizer_problem

logger = logging.getLogger(__name__)


def resolve_dtype(name: str) -> torch.dtype:
    """auto: bfloat16 on a GPU that supports it, else float32 (CPU, or GPUs without bf16); the
    rule is `config.training_dtype`, which the memory estimate uses too."""
    return getattr(torch, training_dtype(name, torch.cuda.is_available() and torch.cuda.is_bf16_supported()))


def resolve_attn_implementation(name: str) -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def require_eos_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """The EOS id that ends every document; a tokenizer without one is a UserError (the model
    could not learn where documents end)."""
    if tokenizer.eos_token_id is None:
        raise UserError(
            f"the tokenizer of {tokenizer.name_or_path!r} has no EOS token; set eos_token in its "
            "tokenizer_config.json so the model can learn where documents end"
        )
    return tokenizer.eos_token_id


class TokenizerError(UserError):
    """The tokenizer is here but cannot be used: its files are damaged, it loses text, or its ids
    do not fit the model. Unlike a tokenizer that is not here, nothing can be estimated without it."""


def require_usable_tokenizer(tokenizer: PreTrainedTokenizerBase, model: ModelConfig) -> None:
    """`tokenizer_check.tokenizer_problem` on a loaded tokenizer (a `TokenizerError` when it has
    one), against the model's `vocab_size` from its config (no weights are read)."""
    try:
        config = AutoConfig.from_pretrained(model.name, trust_remote_code=model.trust_remote_code)
        rows = getattr(config.get_text_config(), "vocab_size", None)
    except Exception:  # no config here (a hub id offline): the embedding is checked when it loads
        rows = None
    problem = tokenizer_problem(
        model.name,
        len(tokenizer),
        tokenizer.encode(PROBE_TEXT, add_special_tokens=False),
        tokenizer.unk_token_id,
        rows if isinstance(rows, int) else None,
    )
    if problem:
        raise TokenizerError(problem)


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer, refused (a `UserError`) when it cannot be loaded, has no EOS, or
    fails `require_usable_tokenizer`."""
    try:
        # trust_remote_code is always passed: left unset, transformers asks y/N on a terminal and
        # "y" runs the model directory's code.
        tokenizer = AutoTokenizer.from_pretrained(model.name, trust_remote_code=model.trust_remote_code)
    except Exception as err:  # a damaged tokenizer.json raises KeyError, TypeError, the Rust library's Exception
        local = Path(model.name).expanduser().is_dir() and "trust_remote_code" not in str(err)
        raise (TokenizerError if local else UserError)(_load_failure("tokenizer", model.name, err)) from None
    require_eos_token(tokenizer)
    require_usable_tokenizer(tokenizer, model)
    if tokenizer.pad_token_id is None:
        # Padding positions carry label -100 and attention 0, so reusing EOS as pad is harmless here.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def flash_attention_problem(model: ModelConfig) -> str | None:
    """Why `attn_implementation: flash_attention_2` cannot run here (None: it can, or is not asked for)."""
    if model.attn_implementation != "flash_attention_2":
        return None
    missing = [
        what
        for what, absent in (
            ("the flash-attn package", importlib.util.find_spec("flash_attn") is None),
            ("a CUDA GPU", not torch.cuda.is_available()),
        )
        if absent
    ]
    if not missing:
        return None
    return (
        f"model.attn_implementation: flash_attention_2 needs {' and '.join(missing)}, missing here; install it "
        "(pip install flash-attn --no-build-isolation) on the GPU machine, or set auto (flash-attn when it can "
        "run, else sdpa) or sdpa"
    )


def missing_target_modules(base: torch.nn.Module, lora: LoraConfig) -> str | None:
    """Why `lora.target_modules` does not fit `base` (None: every name is one of its modules)."""
    present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if not missing:
        return None
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)})
    return f"training.lora.target_modules: {missing} not found in the model; its linear layers are named {linear}"


def check_model_settings(model: ModelConfig, lora: LoraConfig) -> list[str]:
    """What can be checked of the model and LoRA settings before any weight is loaded (`validate`,
    and `train` before it creates the run directory): flash-attn where it is asked for, and the
    LoRA target modules against the architecture, built on the meta device from the model's
    config.json when it is on this machine (no weights are read; a hub id not here is skipped)."""
    problems = [p for p in [flash_attention_problem(model)] if p]
    try:
        config = AutoConfig.from_pretrained(model.name, trust_remote_code=model.trust_remote_code)
        with torch.device("meta"):
            base = AutoModelForCausalLM.from_config(config, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError, ImportError, KeyError):
        return problems  # config.json not here, or code it would need to run: loading reports it
    problems += [p for p in [missing_target_modules(base, lora)] if p]
    return problems


def load_base_model(model: ModelConfig) -> PreTrainedModel:
    problem = flash_attention_problem(model)
    if problem:
        raise UserError(problem)
    dtype = resolve_dtype(model.dtype)
    attn = resolve_attn_implementation(model.attn_implementation)
    try:
        base = AutoModelForCausalLM.from_pretrained(
            model.name, dtype=dtype, attn_implementation=attn, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError, ImportError) as err:
        raise UserError(_load_failure("model", model.name, err)) from None
    base.config.use_cache = False  # training never uses the KV cache
    logger.info("loaded %s (%s, attention %s)", model.name, str(dtype).removeprefix("torch."), attn)
    return base


def attach_lora(base: PreTrainedModel, lora: LoraConfig) -> PeftModel:
    """Wrap the base model with a fresh, trainable LoRA adapter: rsLoRA scaling and DoRA when
    asked, and the input embedding and LM head trained in full (PEFT `modules_to_save`, saved
    with the adapter) or with LoRA on them (`lora.embeddings`)."""
    problem = missing_target_modules(base, lora)
    if problem:
        raise UserError(problem)
    embeddings = list(embedding_module_names(base))
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) + (embeddings if lora.embeddings == "lora" else []),
        modules_to_save=embeddings if lora.embeddings == "full" else None,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        # A model whose LM head shares the embedding's weight keeps sharing it when both are trained.
        ensure_weight_tying=lora.embeddings != "frozen" and bool(getattr(base.config, "tie_word_embeddings", False)),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, peft_config)


ADAPTER_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)
"""What a missing, truncated or garbage adapter (or one for another model) raises while loading."""


def embedding_module_names(model: PreTrainedModel) -> tuple[str, ...]:
    """The names of the input embedding and the LM head modules (`embed_tokens`, `lm_head` for
    Llama and Qwen2), as `target_modules` / `modules_to_save` take them."""
    wanted = [m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None]
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name}
    return tuple(names[id(m)] for m in wanted if id(m) in names)


def embedding_parameter_names(model: PeftModel) -> set[str]:
    """Trainable parameters that belong to the input embedding or the LM head (their full copies
    under `modules_to_save`, or their LoRA weights): they get their own learning rate."""
    modules = embedding_module_names(model.get_base_model())
    return {
        name for name, p in model.named_parameters() if p.requires_grad and any(f".{m}." in f".{name}" for m in modules)
    }


def load_adapter(
    base: PreTrainedModel, adapter_dir: Path, trainable: bool = False, adapter_name: str = "default"
) -> PeftModel:
    try:
        return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable, adapter_name=adapter_name)
    except ADAPTER_LOAD_ERRORS as err:
        raise UserError(adapter_load_failure(adapter_dir, err)) from None


def adapter_load_failure(adapter_dir: Path, err: Exception) -> str:
    detail = str(err).splitlines()[0] if str(err) else ""
    return (
        f"cannot load the LoRA adapter in {adapter_dir}: {type(err).__name__}: {detail}; its files are missing, "
        "truncated or damaged (or it was trained on another model): copy it again, or pick another phase "
        "(--phase) or a checkpoint (--adapter)"
    )


def read_adapter_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved adapter (PEFT's own loader: safetensors or the older .bin)."""
    if not Path(adapter_dir).is_dir():
        raise UserError(f"cannot resume: the adapter {adapter_dir} is missing; the run directory is damaged")
    try:
        return load_peft_weights(str(adapter_dir), device="cpu")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the adapter in {adapter_dir}: {err}") from None


def set_adapter_weights(model: PeftModel, weights: dict[str, torch.Tensor], source: str) -> None:
    """Copy `weights` (an adapter's tensors as PEFT saves them) into the trainable adapter."""
    result = set_peft_model_state_dict(model, weights)
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"{source} does not match training.lora (unexpected keys: {result.unexpected_keys[:3]} ...)")


def build_trainable_model(
    model: ModelConfig, lora: LoraConfig, adapter: dict[str, torch.Tensor] | Path | None = None
) -> PeftModel:
    """The base model with a trainable LoRA adapter: fresh, or holding `adapter`'s weights (a
    saved adapter directory, or tensors gathered from a running model)."""
    peft_model = attach_lora(load_base_model(model), lora)
    if isinstance(adapter, Path):
        set_adapter_weights(peft_model, read_adapter_weights(adapter), str(adapter))
        logger.info("restored the adapter of %s", adapter.parent.name)
    elif adapter is not None:
        set_adapter_weights(peft_model, adapter, "the adapter carried over")
    return peft_model


def adapter_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The adapter's own tensors, as saved (LoRA weights, DoRA magnitudes, `modules_to_save`
    copies), without the base embedding and LM head weights that PEFT also saves when they carry
    LoRA (`embeddings: lora`): those are the base model's, unchanged, and partitioned under ZeRO-3."""
    return get_peft_model_state_dict(model, save_embedding_layers=False)


def adapter_fingerprint(model: PeftModel) -> str:
    """sha256 over the adapter tensors (`adapter_state`: sorted names, float32 bytes): a hash of
    the weights, not of any file (`run_dir.adapter_file_sha256` is the saved file's).

    Logged at the start and end of each phase (`adapter_fingerprint`) so a run shows that phase
    k+1 starts from exactly the weights phase k ended with.
    """
    return fingerprint_tensors(adapter_state(model))


def fingerprint_tensors(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _load_failure(what: str, name: str, err: Exception) -> str:
    if "trust_remote_code" in str(err):
        return (
            f"cannot load the {what} of model.name {name!r}: it needs the Python code shipped with it, which "
            "phased-cpt does not run unless model.trust_remote_code: true (dangerous: that code runs with your "
            "permissions; set it only for a model whose code you have read)"
        )
    if Path(name).expanduser().is_dir():
        hint = f"its {what} files are missing or damaged: copy them again"
    elif Path(name).expanduser().exists() or name.startswith(("/", ".", "~")):
        hint = "check the path"
    else:
        hint = "check the model id, your network access, or point model.name at a local directory"
    files = tokenizer_files_note(name) if what == "tokenizer" else ""
    return f"cannot load the {what} of model.name {name!r}: {first_line(err)}{files}; {hint}"
