"""Scripted comparison: each prompt through the base and the fine-tuned model, printed and
written as one JSON object per prompt.

    {"prompt": "...", "phase": "phase2_evolution", "adapter": "outputs/.../adapter",
     "params": {"temperature": 0.0, ...},
     "base": {"text": "...", "prompt_tokens": 5, "generated_tokens": 32, "seconds": 0.41,
              "tokens_per_s": 78.0, "stop": "max_tokens"},
     "ft": {...}}

`--prompts FILE` is JSONL (`{"prompt": "..."}` per line; multi-line prompts fit) when it ends
in `.jsonl`, else one prompt per non-empty line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from phased_cpt.errors import DataError, UserError
from phased_cpt.inference.params import GenerationParams, ParamError

if TYPE_CHECKING:
    from phased_cpt.inference.generation import Generator


def read_prompts(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--prompts {path}: cannot read it: {err}") from None
    if Path(path).suffix != ".jsonl":
        prompts = [line for line in lines if line.strip()]
    else:
        prompts, problems = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                problems.append(f"{path}:{number}: invalid JSON: {err}")
                continue
            except RecursionError:
                problems.append(f"{path}:{number}: invalid JSON: nested too deeply")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"]:
                problems.append(f'{path}:{number}: expected an object with a non-empty string field "prompt"')
                continue
            prompts.append(record["prompt"])
        if problems:
            raise DataError("\n".join(problems))
    if not prompts:
        raise UserError(f"--prompts {path}: no prompt in the file")
    return prompts


def check_results_file(path: Path, force: bool, protected: dict[str, list[Path]]) -> None:
    """`chat --out`: a new file, or an existing one with `force`; never one of `protected`
    (what -> paths: the run's data files, the prompts file) nor a file inside a protected directory."""
    from phased_cpt.config.files import same_file

    target = path.resolve()
    for what, paths in protected.items():
        for kept in paths:
            if same_file(path, kept) or (kept.is_dir() and kept.resolve() in target.parents):
                raise UserError(f"--out {path} is {'inside ' if kept.is_dir() else ''}{what} ({kept}); name a new file")
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; name a file")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"--out {path} exists; name a new file, or pass --force to replace it")


def compare_prompts(
    generator: Generator, prompts: list[str], params: GenerationParams, out: TextIO, results: Path | None
) -> list[dict]:
    """Answer every prompt with both models; print them to `out`, write `results` (JSONL). Every
    prompt is checked (empty, longer than the model's context) before the first answer."""
    for index, prompt in enumerate(prompts, 1):
        try:
            generator.prompt_ids(prompt)
        except ParamError as err:
            raise UserError(f"prompt {index}/{len(prompts)}: {err}") from None
    records = []
    for index, prompt in enumerate(prompts, 1):
        out.write(f"=== prompt {index}/{len(prompts)} ===\n{prompt}\n")
        record = {
            "prompt": prompt,
            "phase": generator.active,
            "adapter": str(generator.adapters[generator.active]),
            "params": dataclasses.asdict(params),
        }
        for side, adapter in (("base", False), ("ft", True)):
            completion = generator.generate(prompt, params, adapter=adapter)
            out.write(f"--- {side} ---\n{completion.text}\n{completion.stats(side)}\n")
            out.flush()
            record[side] = completion.to_json()
        records.append(record)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return records
