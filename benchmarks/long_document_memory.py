"""Peak memory of preparing a phase whose only document is one long line, per document size.

Each size runs in a fresh process: the tiny quickstart tokenizer prepares (tokenize, chunk,
write the cache entry) a phase file holding one document of N MB of code; printed is the peak
resident memory above the process's size just before, in the process itself and in the
tokenizer workers it forks for files of 8 MB and more. Side by side with another checkout's
`src` (`--baseline-src`, e.g. the commit before slicing) when given.

    python benchmarks/long_document_memory.py --sizes-mb 4 16 61 [--baseline-src /tmp/old/src --baseline-sizes-mb 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = """
import resource, sys
from pathlib import Path
from transformers import AutoTokenizer
from phased_cpt.config import ContextConfig, DataConfig, PhaseConfig
from phased_cpt.data.phase_data import build_phase_data

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

model_dir, data_file, cache_dir = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
data = build_phase_data(PhaseConfig(name="p", file=Path(data_file)), DataConfig(eval_ratio=0.0), tokenizer,
                        ContextConfig(max_tokens=32768, overlap_tokens=2048), seed=0, cache_dir=Path(cache_dir))
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(status("VmHWM") - before, max(children - before, 0), data.train.stats["longest_document_tokens"])
"""


def document(size_bytes: int) -> str:
    from phased_cpt.quickstart import DATA_DIR

    lines = (DATA_DIR / "phase1_foundation.jsonl").read_text(encoding="utf-8").splitlines()
    code = "\n".join(json.loads(line)["training_content"] for line in lines)
    return (code * (size_bytes // len(code) + 1))[:size_bytes]


def measure(src: str | None, model_dir: Path, size_mb: float, work: Path) -> tuple[int, int, int, float]:
    data_file = work / f"doc-{size_mb}.jsonl"
    if not data_file.exists():
        data_file.write_text(json.dumps({"training_content": document(int(size_mb * 1e6))}) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if src:
        env["PYTHONPATH"] = src
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model_dir), str(data_file), tempfile.mkdtemp(dir=work)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    own, workers, tokens = map(int, out.stdout.split())
    return own, workers, tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[4, 16])
    parser.add_argument("--baseline-src", help="another checkout's src directory to compare with")
    parser.add_argument("--baseline-sizes-mb", type=float, nargs="*", default=None)
    args = parser.parse_args()
    from phased_cpt.quickstart import quickstart_model_dir

    model_dir = quickstart_model_dir()
    work = Path(tempfile.mkdtemp(prefix="long-doc-"))
    print("checkout   doc MB   tokens      peak above baseline (process / tokenizer workers)   per doc byte   seconds")
    runs = [("this", None, args.sizes_mb)]
    if args.baseline_src:
        runs.append(("baseline", args.baseline_src, args.baseline_sizes_mb or args.sizes_mb))
    for label, src, sizes in runs:
        for size in sizes:
            own, workers, tokens, seconds = measure(src, model_dir, size, work)
            peak = max(own, workers)
            print(
                f"{label:9s} {size:7.1f} {tokens:11,d}   {own / 2**20:8.0f} MiB / {workers / 2**20:8.0f} MiB"
                f"{'':22s}{peak / (size * 1e6):8.1f}x   {seconds:7.1f}"
            )


if __name__ == "__main__":
    main()
