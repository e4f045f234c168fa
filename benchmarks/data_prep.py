"""Data preparation throughput: phased-cpt's pipeline against the older tool's approach.

Baseline (a), the older tool: per document, tokenize, cut overlapping windows, decode each
window back to text and re-tokenize it padded to `max_tokens`. phased-cpt: stream, validate,
tokenize in batches once (fast tokenizer, all cores), split, chunk on token ids, pack, and write
the cache; then the same call again, served from the cache.

    python benchmarks/data_prep.py            # full stdlib corpus (minutes)
    python benchmarks/data_prep.py --tiny     # a few files, seconds (CI smoke test)

Prints one JSON object with the numbers and ratios (timings are never test assertions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stdlib_corpus import build_model, write_corpus  # noqa: E402

from phased_cpt.config import ContextConfig, DataConfig, ModelConfig, PhaseConfig  # noqa: E402
from phased_cpt.data.phase_data import DataSettings, build_run_data  # noqa: E402
from phased_cpt.modeling import load_tokenizer  # noqa: E402


def older_tool_prepare(texts: list[str], tokenizer, max_tokens: int, overlap_tokens: int) -> int:
    """Baseline (a); returns the document tokens it processed. Rows are built and dropped."""
    stride = max_tokens - overlap_tokens
    processed = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        processed += len(ids)
        for start in range(0, max(len(ids) - overlap_tokens, 1), stride):
            window = tokenizer.decode(ids[start : start + max_tokens])
            tokenizer(window, padding="max_length", truncation=True, max_length=max_tokens)
    return processed


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the tokenizer worker pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    with contextlib.redirect_stdout(sys.stderr):  # libraries print notices; stdout is the result only
        result = run()
    print(json.dumps(result, indent=2))


def run() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few stdlib files: runs in seconds")
    parser.add_argument(
        "--work", type=Path, default=None, help="where corpus, tokenizer and cache go (default: a temp dir)"
    )
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--overlap-tokens", type=int, default=256)
    parser.add_argument(
        "--baseline-documents",
        type=int,
        default=None,
        help="documents (every k-th) the slow baseline processes; its rate is tokens/s",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="phased-cpt-bench-"))
    corpus, sample = write_corpus(work / "corpus", 12 if args.tiny else None)
    model_dir = build_model(work / ("model-tiny" if args.tiny else "model"), sample, 1024 if args.tiny else 8192)
    tokenizer = load_tokenizer(ModelConfig(name=str(model_dir)))
    texts = [
        json.loads(line)["training_content"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()
    ]

    phase = PhaseConfig(name="stdlib", file=corpus)
    data = DataConfig(eval_ratio=0.02)
    context = ContextConfig(max_tokens=args.max_tokens, overlap_tokens=args.overlap_tokens, sample_packing=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    wall, cpu = time.perf_counter(), cpu_seconds()
    first = build_run_data([phase], DataSettings(data, context, 0), tokenizer, cache)["stdlib"]
    first_seconds, first_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    wall = time.perf_counter()
    again = build_run_data([phase], DataSettings(data, context, 0), tokenizer, cache)["stdlib"]
    cached_seconds = time.perf_counter() - wall
    assert again.cache_hit and not first.cache_hit
    tokens = first.meta["tokens"]

    sample_every = max(1, len(texts) // (args.baseline_documents or (len(texts) if args.tiny else 1500)))
    baseline_texts = texts[::sample_every]
    wall, cpu = time.perf_counter(), cpu_seconds()
    baseline_tokens = older_tool_prepare(baseline_texts, tokenizer, args.max_tokens, args.overlap_tokens)
    baseline_seconds, baseline_cpu = time.perf_counter() - wall, cpu_seconds() - cpu

    ours_rate = tokens / first_seconds
    baseline_rate = baseline_tokens / baseline_seconds
    result = {
        "corpus": {
            "documents": len(texts),
            "bytes": corpus.stat().st_size,
            "tokens": tokens,
            "longest_document_tokens": max(
                first.train.longest_document_tokens, first.eval.longest_document_tokens if first.eval else 0
            ),
        },
        "max_tokens": args.max_tokens,
        "overlap_tokens": args.overlap_tokens,
        "phased_cpt": {
            "seconds": round(first_seconds, 3),
            "tokens_per_second": round(ours_rate),
            "cpu_seconds": round(first_cpu, 3),
            "cores_used": round(first_cpu / first_seconds, 2),
            "packing_efficiency": round(first.train.stats["packing_efficiency"], 4),
        },
        "phased_cpt_cached": {"seconds": round(cached_seconds, 3)},
        "baseline_a": {
            "documents": len(baseline_texts),
            "tokens": baseline_tokens,
            "seconds": round(baseline_seconds, 3),
            "tokens_per_second": round(baseline_rate),
            "cpu_seconds": round(baseline_cpu, 3),
        },
        "ratios": {
            "tokens_per_second_vs_a": round(ours_rate / baseline_rate, 2),
            "tokens_per_cpu_second_vs_a": round((tokens / first_cpu) / (baseline_tokens / baseline_cpu), 2),
            "cached_over_first_run": round(cached_seconds / first_seconds, 4),
        },
    }
    return result


if __name__ == "__main__":
    main()
