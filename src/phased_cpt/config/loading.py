"""Loading a config: YAML text (read strictly: `strict_yaml.py`) -> older-tool translation
(`legacy.py`) -> `--set key.path=value` overrides -> `${VAR}` interpolation (in the file's strings
and in `--set` values alike) -> validation against `schema.py`. Every problem is collected and
reported together (`ConfigError`). Relative data paths resolve against the config file's directory.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from phased_cpt.config.legacy import TRANSLATED, is_legacy_config, translate_legacy_config
from phased_cpt.config.schema import RunConfig, default_phases
from phased_cpt.config.strict_yaml import ConfigLoader, YamlProblem, parse_yaml
from phased_cpt.errors import ConfigError, is_secret_name, redact_data, secret_values


def interpolate_env(data: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string (`interpolate_text`); unset variables
    without a default are problems."""
    problems = [] if problems is None else problems
    if isinstance(data, dict):
        return {k: interpolate_env(v, _join(path, k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_env(v, _join(path, str(i)), problems) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def lookup(var: str) -> str | None:
        if var in os.environ:
            return os.environ[var]
        problems.append(
            f"{path}: environment variable {var} is not set; export it or write "
            f"${{{var}:-default}} to allow it to be missing"
        )
        return None

    value = interpolate_text(data, lookup)
    if value == "" and data != "":
        return None  # `${WANDB_API_KEY:-}` with the variable unset means "no value"
    return value


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-)")
ESCAPED_REFERENCE = "$${"
"""Stands for a literal `${` (written as is, never looked up)."""


def interpolate_text(text: str, lookup: Callable[[str], str | None], environ: Mapping[str, str] | None = None) -> str:
    """`text` with each `${VAR}` replaced by `lookup(VAR)` (None: a problem it recorded; empty
    text) and each `${VAR:-default}` by the variable when it is set, else by `default`,
    itself interpolated (`${A:-${B}}`, `${A:-${B:-x}}`). `$${` is a literal `${`; anything
    else, an unclosed `${A:-` included, stays as written. `environ`: where a default's variable
    is looked for (the process environment)."""
    environ = os.environ if environ is None else environ
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith(ESCAPED_REFERENCE, i):
            out.append("${")
            i += len(ESCAPED_REFERENCE)
            continue
        match = _REFERENCE.match(text, i)
        if match is None:
            out.append(text[i])
            i += 1
            continue
        var = match.group(1)
        if match.group(2) == "}":
            out.append(lookup(var) or "")
            i = match.end()
            continue
        end = _closing_brace(text, match.end())
        if end is None:
            out.append(text[i:])
            break
        default = text[match.end() : end]
        out.append(environ[var] if var in environ else interpolate_text(default, lookup, environ))
        i = end + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """Where the `}` closing a `${` opened before `start` stands, counting nested `${...}`."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith(ESCAPED_REFERENCE, i):
            i += len(ESCAPED_REFERENCE)
        elif text.startswith("${", i):
            depth, i = depth + 1, i + 2
        else:
            if text[i] == "}":
                depth -= 1
                if depth == 0:
                    return i
            i += 1
    return None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `key.path=value` override in place; the value is parsed as a YAML scalar.

    List items are addressed by index (`phases.0.epochs=1`) or, for phases, by name
    (`phases.phase1_foundation.epochs=1`). A secret (a secret-looking key such as
    `wandb.api_key`, or the value of a secret-looking environment variable) is refused: the
    command line ends up in shell history, process lists, the printed resume command and W&B's
    record of the run.
    """
    if "=" not in assignment:
        raise ConfigError([f"--set {assignment!r}: expected key.path=value"])
    key_path, raw_value = assignment.split("=", 1)
    keys = key_path.strip().split(".")
    shown = f"--set {key_path.strip()}" if any(map(is_secret_name, keys)) else f"--set {assignment!r}"
    if not all(keys):
        raise ConfigError([f"{shown}: empty key in {key_path!r}"])
    refuse_secret_override(key_path.strip(), keys, raw_value)
    try:
        value = yaml.load(raw_value, Loader=ConfigLoader) if raw_value.strip() else ""  # noqa: S506
    except YamlProblem as err:  # duplicate keys, alias bombs: refused as in a file
        raise ConfigError([f"{shown}: {err}"]) from None
    except (yaml.YAMLError, RecursionError):
        value = raw_value  # not YAML: the text itself
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, ".".join(keys[: depth + 1]), shown)
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key_path, shown)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError([f"{shown}: {'.'.join(keys[:-1])} holds a value, not a section of keys"])


def refuse_secret_override(key_path: str, keys: list[str], raw_value: str) -> None:
    """A secret given with --set is refused (the value is never echoed); `${VAR}` references are fine."""
    literal = interpolate_text(raw_value, lambda var: "", environ={}).strip()  # defaults are literal text
    if not literal:
        return
    if is_secret_name(keys[-1]):
        raise ConfigError(
            [
                f"--set {key_path}: a secret on the command line is kept in shell history, process lists, the printed "
                "resume command and W&B's record of the run; export it instead (e.g. export WANDB_API_KEY=...) and "
                "refer to it as ${VAR} in the config"
            ]
        )
    for value, name in secret_values().items():
        if value in raw_value:
            raise ConfigError(
                [
                    f"--set {key_path}: the value holds the secret of the environment variable {name}; a secret on the "
                    "command line is kept in shell history, process lists, the printed resume command and W&B's record "
                    f"of the run; write ${{{name}}} in the config instead"
                ]
            )


def _child(node: Any, key: str, path: str, shown: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, path, shown)]
    if not isinstance(node, dict):
        parent = path.rsplit(".", 1)[0]
        raise ConfigError([f"{shown}: {parent} holds a value, not a section of keys"])
    if key not in node or node[key] is None:
        if key == "phases":
            node[key] = default_phases()
        else:
            node[key] = {}
    return node[key]


def _list_index(items: list[Any], key: str, path: str, shown: str) -> int:
    names = [str(item["name"]) if isinstance(item, dict) and item.get("name") is not None else None for item in items]
    by_name = [i for i, name in enumerate(names) if name == key]
    by_index = int(key) if key.isdigit() and int(key) < len(items) else None
    if by_index is not None and by_name and by_name != [by_index]:
        raise ConfigError(
            [
                f"{shown}: {path}: {key!r} is both the index of item {by_index} and the name of item {by_name[0]}; "
                "rename the phase so that its name is not a number"
            ]
        )
    if by_index is not None:
        return by_index
    if by_name:
        return by_name[0]
    raise ConfigError([f"{shown}: {path}: no list item {key!r} (use an index below {len(items)} or a phase name)"])


def read_yaml(path: Path) -> dict[str, Any]:
    if Path(path).is_dir():
        raise ConfigError([f"config file {str(path)!r} is a directory; name a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"cannot read config file {str(path)!r}: {err}"]) from None
    data = parse_yaml(text, str(path))
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
    data = base_data if base_data is not None else (read_yaml(path) if path else {})
    warnings: list[str] = []
    if is_legacy_config(data):
        data, notes = translate_legacy(data, path.resolve().parent if path else None)
        warnings.append(TRANSLATED)
        warnings.extend(notes)
    for assignment in overrides:
        apply_override(data, assignment)
    problems: list[str] = []
    data = interpolate_env(data, problems=problems)  # after the overrides: `${VAR}` works in a --set value too
    base_dir = path.resolve().parent if path else Path.cwd()
    try:
        cfg = RunConfig.model_validate(data, context={"base_dir": base_dir, "check_files": check_files})
    except ValidationError as err:
        problems.extend(describe_validation_error(err))
    source = str(path) if path else None
    if problems:
        raise ConfigError(problems, source)
    return cfg, warnings + repeated_file_notes(cfg) + cfg.evaluation.future.absent_notes()


def repeated_file_notes(cfg: RunConfig) -> list[str]:
    """A warning for each data file name left out as another name of a file already read."""
    notes = [n for i, p in enumerate(cfg.phases) for n in p.source_expansion()[1].notes(f"phases.{i}.file")]
    return notes + cfg.general.expansion().notes("general.file")


def describe_validation_error(err: ValidationError) -> list[str]:
    """One line per pydantic error: `key.path: what is wrong; what to do`. A key that takes one
    of several types (a phase's `file`: a path or a list of paths and `{path, weight}` items)
    gets the errors of the type the value was meant as, not one per alternative (`config_errors`)."""
    lines = []
    for loc, e in config_errors(err):
        path = ".".join(part if part.isprintable() else repr(part) for part in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key{_did_you_mean(loc)}")
        elif e["type"] in ("value_error", "assertion_error"):
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"{path}: {msg}" if loc and not msg.startswith(path) else msg)  # top level: msg names its keys
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: {e['msg']} (got {_shorten(repr(e.get('input')))})")
    return list(dict.fromkeys(lines))


def config_errors(err: ValidationError) -> list[tuple[list[str], dict[str, Any]]]:
    """pydantic's errors with their key paths as the user wrote them. pydantic names the
    alternative of a union it tried in the path (`file.list[union[...]].0.SourceConfig.weight`):
    such parts are dropped, and of the alternatives tried for one key only the errors that got
    deepest into the value are kept (a `{path, weight: -1}` item: the weight's error, not also
    "not a valid path")."""
    found = []
    for e in err.errors(include_url=False):
        loc, through_union = _user_path([str(part) for part in e["loc"]], keep_last=e["type"] == "extra_forbidden")
        found.append((loc, through_union, e))
    union_paths = [loc for loc, through_union, _ in found if through_union]
    return [
        (loc, e)
        for loc, through_union, e in found
        if not (through_union and any(len(other) > len(loc) and other[: len(loc)] == loc for other in union_paths))
    ]


def _user_path(loc: list[str], keep_last: bool) -> tuple[list[str], bool]:
    """`loc` without the union-alternative parts pydantic adds (parts that are neither a list
    index nor a key of the model at that point); and whether there were any."""
    model: type[BaseModel] | None = RunConfig
    kept: list[str] = []
    dropped = False
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if part.isdigit() or model is None or (keep_last and last):
            kept.append(part)
            continue
        field = model.model_fields.get(part)
        if field is None:
            dropped = True
            continue
        kept.append(part)
        model = _model_of(field.annotation)
    return kept, dropped


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


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


def translate_legacy(data: dict[str, Any], config_dir: Path | None) -> tuple[dict[str, Any], list[str]]:
    """`translate_legacy_config`, with a section that is not a mapping (or another shape the
    translation cannot read) reported as a config problem instead of an exception."""
    for key in ("model", "training", "dataset", "phased_training", "wandb", "tensorboard"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError([f"{key}: must be a section of keys (a mapping), got {type(data[key]).__name__}"])
    try:
        return translate_legacy_config(data, config_dir)
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        raise ConfigError(
            [
                "this config looks like the older tool's layout (phased_training / dataset sections) but cannot be "
                f"translated: {type(err).__name__}: {err}; check those sections against the older tool's README"
            ]
        ) from None


def _join(path: str, key: Any) -> str:
    key = str(key) if str(key).isprintable() else repr(key)
    return f"{path}.{key}" if path else key


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML, without secrets (`public_config`)."""
    return yaml.safe_dump(public_config(cfg), sort_keys=False)


def public_config(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain data for files and trackers (config.resolved.yaml, the W&B run
    config): the W&B key left out, and the value of every secret-looking environment variable
    masked wherever it stands, such as a `${HF_TOKEN}` interpolated into a key that is not secret."""
    data = cfg.model_dump(mode="json")
    for phase, dumped in zip(cfg.phases, data["phases"]):  # the resolved value, as runs have always stored it
        dumped["general_ratio"] = phase.general_ratio_for(cfg.general)
    data["wandb"].pop("api_key", None)
    return redact_data(data)
