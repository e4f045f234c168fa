"""llama.cpp's pieces: its converter (`convert_hf_to_gguf.py` with its own `gguf-py`) and its
runtime (llama-cpp-python), which runs a GGUF on the CPU for the parity check.

The converter is found, in order, at `--llama-cpp DIR`, at `$PHASED_CPT_LLAMA_CPP`, and at
`<environment>/share/phased-cpt/llama.cpp` (where `make install` unpacks the one shipped in the
llama-cpp-python source distribution, `scripts/install_llama_cpp.sh`). It runs as its own process
with this Python (its `gguf-py` beside it, as llama.cpp runs it); nothing of it is imported here.
Which architectures it converts is read from its source (`ModelBase.register("...")`) before any
work, and the tokenizer is tried with `--vocab-only` before the model is merged, so a model the
converter cannot take is refused in seconds, with the converter's own reason.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phased_cpt.errors import SHORT_WRITE_PATTERNS, UserError, free_space, nearly_full

CONVERTER = "convert_hf_to_gguf.py"
ENV_VAR = "PHASED_CPT_LLAMA_CPP"
MIN_GGUF_PY = (0, 17, 0)
"""The oldest `gguf-py` whose converter writes every type offered here (bf16 and q8_0 included)."""
MIN_LLAMA_CPP_PYTHON = (0, 3, 16)
HOW_TO_GET = (
    "get llama.cpp's converter: `make install` in a phased-cpt checkout (unpacks it from llama-cpp-python's source "
    "distribution), or `git clone https://github.com/ggml-org/llama.cpp` and pass --llama-cpp DIR (or set "
    f"{ENV_VAR}=DIR)"
)
PROGRESS_LINE = re.compile(r"\d+%\|")
"""A tqdm progress bar in the converter's output (not a message)."""
HOW_TO_RUN = "pip install 'phased-cpt[gguf]' (llama-cpp-python, built from source: a few minutes)"


def installed_llama_cpp_dir() -> Path:
    """Where `make install` puts the converter: inside the Python environment."""
    return Path(sys.prefix) / "share" / "phased-cpt" / "llama.cpp"


@dataclass(frozen=True)
class Converter:
    root: Path
    gguf_py_version: tuple[int, ...]

    @property
    def script(self) -> Path:
        return self.root / CONVERTER

    def supported_architectures_text(self) -> str:
        sources = [self.script, *sorted((self.root / "conversion").glob("*.py"))]
        return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in sources)

    def converts(self, architecture: str) -> bool:
        """Whether a model class of the converter is registered for `architecture` (its
        `ModelBase.register(...)` calls name HF architectures as string literals)."""
        return (
            re.search(rf"register\([^)]*[\"']{re.escape(architecture)}[\"']", self.supported_architectures_text())
            is not None
        )


def find_converter(llama_cpp_dir: Path | None) -> Converter:
    """The converter at `--llama-cpp`, `$PHASED_CPT_LLAMA_CPP` or the installed copy; a one-line
    UserError saying how to get it when none is there or it is too old."""
    candidates = [llama_cpp_dir] if llama_cpp_dir is not None else []
    if llama_cpp_dir is None and os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    if llama_cpp_dir is None:
        candidates.append(installed_llama_cpp_dir())
    for root in candidates:
        root = Path(root).expanduser()
        if (root / CONVERTER).is_file():
            version = gguf_py_version(root)
            if version < MIN_GGUF_PY:
                found = ".".join(map(str, version)) if version else "unknown"
                raise UserError(
                    f"llama.cpp at {root} is too old (gguf-py {found}, need {'.'.join(map(str, MIN_GGUF_PY))} or "
                    f"newer); update it (git pull), or {HOW_TO_GET}"
                )
            return Converter(root, version)
    where = ", ".join(str(c) for c in candidates)
    raise UserError(f"llama.cpp's {CONVERTER} not found (looked in {where}); {HOW_TO_GET}")


def gguf_py_version(root: Path) -> tuple[int, ...]:
    """The version of the `gguf-py` beside the converter (its pyproject.toml), () when unknown."""
    try:
        text = (root / "gguf-py" / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return ()
    match = re.search(r'^version\s*=\s*"(\d+)\.(\d+)\.(\d+)', text, re.MULTILINE)
    return tuple(int(part) for part in match.groups()) if match else ()


def run_converter(
    converter: Converter, model_dir: Path, outfile: Path, gguf_type: str, vocab_only: bool = False
) -> None:
    """Convert the transformers model in `model_dir` to `outfile` (a UserError with the
    converter's last lines when it fails; OSError when the disk filled)."""
    command = [sys.executable, str(converter.script), str(model_dir), "--outtype", gguf_type, "--outfile", str(outfile)]
    if vocab_only:
        command.append("--vocab-only")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if result.returncode == 0:
        return
    lines = [line.strip() for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    tail = [line for line in lines if not PROGRESS_LINE.search(line)][-3:]
    if any("No space left" in line for line in tail) or (
        any(pattern in line for line in tail for pattern in SHORT_WRITE_PATTERNS) and nearly_full(outfile.parent)
    ):
        raise OSError(errno.ENOSPC, f"No space left on device ({free_space(outfile.parent)})", str(outfile))
    reason = " | ".join(tail) or "no message"
    if vocab_only:
        raise UserError(
            f"llama.cpp's converter ({converter.script}) could not read the tokenizer of the model: {reason}; a "
            "tokenizer trained from scratch (the quickstart's byte-level BPE) is not one llama.cpp knows: export "
            "--to hf or --to vllm instead (docs/export.md)"
        )
    raise UserError(f"llama.cpp's converter ({converter.script}) could not convert the model: {reason}")


def require_runtime() -> None:
    """llama-cpp-python, new enough to run what the converter writes; else one line saying how."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(f"the GGUF parity check needs llama-cpp-python, not installed here: {HOW_TO_RUN}") from None
    version = tuple(int(p) for p in re.findall(r"\d+", llama_cpp.__version__)[:3])
    if version < MIN_LLAMA_CPP_PYTHON:
        raise UserError(
            f"llama-cpp-python {llama_cpp.__version__} is too old to run current GGUF files (need "
            f"{'.'.join(map(str, MIN_LLAMA_CPP_PYTHON))}+): {HOW_TO_RUN}"
        )


class GgufRunner:
    """A GGUF loaded by llama.cpp (llama-cpp-python) on the CPU, keeping the logits of every
    position (`logits_all`)."""

    def __init__(self, path: Path, context_tokens: int) -> None:
        require_runtime()
        from llama_cpp import Llama

        try:
            self.model = Llama(
                model_path=str(path), n_ctx=context_tokens, logits_all=True, verbose=False, n_gpu_layers=0, seed=0
            )
        except (ValueError, RuntimeError) as err:
            raise UserError(f"llama.cpp cannot load {path}: {err}") from None

    def encode(self, text: str) -> list[int]:
        """Token ids as llama.cpp's tokenizer gives them, with BOS when the GGUF says to add one."""
        return self.model.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def decode(self, ids: list[int]) -> str:
        return self.model.detokenize(ids).decode("utf-8", errors="replace")

    def logits(self, token_ids: list[int]) -> np.ndarray:
        self.model.reset()
        self.model.eval(token_ids)
        return np.array(self.model.scores[: len(token_ids)], dtype=np.float32)

    def close(self) -> None:
        self.model.close()
