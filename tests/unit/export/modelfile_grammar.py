"""A parser for Ollama's Modelfile grammar, as documented (https://docs.ollama.com/modelfile,
docs/modelfile.mdx in ollama/ollama): `# comment` lines and `INSTRUCTION arguments` lines;
instructions are case-insensitive; an argument is a bare value, a "quoted" string or a
\"\"\"triple-quoted\"\"\" string that may span lines; FROM is required; PARAMETER takes a name from
the documented table and a value of its type. Used to check the Modelfiles export writes."""

from __future__ import annotations

import json
import re

INSTRUCTIONS = {"FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE", "REQUIRES", "CAPABILITY"}
PARAMETERS = {
    "mirostat": int,
    "mirostat_eta": float,
    "mirostat_tau": float,
    "num_ctx": int,
    "repeat_last_n": int,
    "repeat_penalty": float,
    "temperature": float,
    "seed": int,
    "stop": str,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
}


class ModelfileError(ValueError):
    pass


def parse_string(text: str, line: int) -> str:
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            raise ModelfileError(f"line {line}: bad quoted string {text!r}") from None
        if not isinstance(value, str):
            raise ModelfileError(f"line {line}: not a string: {text!r}")
        return value
    return text


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs in order; ModelfileError on anything the grammar rejects."""
    commands, lines, index = [], text.split("\n"), 0
    while index < len(lines):
        line, number = lines[index].strip(), index + 1
        index += 1
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(\w+)\s+(.*)", line, re.DOTALL)
        if not match:
            raise ModelfileError(f"line {number}: expected INSTRUCTION arguments, got {line!r}")
        instruction, argument = match[1].upper(), match[2]
        if instruction not in INSTRUCTIONS:
            raise ModelfileError(f"line {number}: unknown instruction {match[1]!r}")
        if argument.startswith('"""'):
            body = argument[3:]
            while '"""' not in body:
                if index >= len(lines):
                    raise ModelfileError(f'line {number}: unterminated """ string')
                body += "\n" + lines[index]
                index += 1
            value, rest = body.split('"""', 1)
            if rest.strip():
                raise ModelfileError(f'line {number}: text after the closing """: {rest!r}')
            argument = value
        if instruction == "PARAMETER":
            name, _, raw = argument.partition(" ")
            if name not in PARAMETERS:
                raise ModelfileError(f"line {number}: unknown parameter {name!r}")
            value = parse_string(raw.strip(), number)
            try:
                PARAMETERS[name](value)
            except ValueError:
                raise ModelfileError(
                    f"line {number}: {name} takes a {PARAMETERS[name].__name__}, got {raw!r}"
                ) from None
            argument = f"{name} {value}"
        commands.append((instruction, argument))
    if not any(instruction == "FROM" for instruction, _ in commands):
        raise ModelfileError("no FROM instruction (required)")
    return commands
