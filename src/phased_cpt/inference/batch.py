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
