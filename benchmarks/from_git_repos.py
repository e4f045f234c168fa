"""`data from-git` on real repositories: wall time, documents and tokens per phase, and the share
of source bytes each rule removed, one row per repository.

    python benchmarks/from_git_repos.py /work/real/requests /work/real/click ... [--out DIR]
        [--since DATE] [--tokenizer DIR] [--validate]

Each repository is built in this process (`build_datasets`, the function the command calls) into
`--out/<name>/`, timed from the call to its return. Tokens are counted with `--tokenizer`
(default: the quickstart tokenizer, a 1024-token byte-level BPE trained on the bundled sample
data, built offline; it splits code into more tokens than a production tokenizer would, so
compare tokens between repositories and phases, not with other tools). The removed share of a
rule is the bytes it removed (file content, diff sections, cut-off diff text) over the bytes
kept plus all removed, per phase. `--validate` also runs `phased-cpt validate` and `plan` on
each output through a generated config. Prints markdown tables, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # `plan` below forks; a parallel tokenizer would hang it

PHASES = ("phase1_foundation.jsonl", "phase2_evolution.jsonl", "phase3_pr_mastery.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/from-git-bench"))
    parser.add_argument("--since")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: the quickstart's)")
    parser.add_argument("--validate", action="store_true", help="also run validate and plan on each output")
    args = parser.parse_args()

    from phased_cpt.from_git import build_datasets

    results = []
    for repo in args.repos:
        out = args.out / repo.name
        started = time.perf_counter()
        summary = build_datasets(repo, out, since=args.since)
        wall_s = time.perf_counter() - started
        results.append(
            {
                "repo": repo.name,
                "commit": summary.commit[:12],
                "wall_s": round(wall_s, 1),
                "commits": _count_commits(repo),
                "phases": _phase_figures(summary),
            }
        )
    _count_tokens(results, args.out, args.tokenizer)
    if args.validate:
        for result in results:
            result["validate_plan"] = _validate_and_plan(args.out / result["repo"])
    _print_tables(results)
    print(json.dumps(results, indent=1))
    return 0


def _phase_figures(summary) -> dict[str, dict]:
    figures = {}
    for stats in summary.outputs:
        removed = dict(stats.removed_bytes)
        total = stats.text_bytes + sum(removed.values())
        figures[stats.name] = {
            "documents": stats.documents,
            "text_bytes": stats.text_bytes,
            "skipped": dict(stats.skipped),
            "dropped_file_diffs": dict(stats.dropped_file_diffs),
            "redactions": sum(stats.redactions.values()),
            "removed_share": {
                reason: round(size / total, 4)
                for reason, size in sorted(removed.items(), key=lambda item: -item[1])
                if size
            }
            if total
            else {},
        }
    return figures


def _count_tokens(results: list[dict], out: Path, tokenizer_dir: Path | None) -> None:
    from phased_cpt.config import ModelConfig
    from phased_cpt.modeling import load_tokenizer

    if tokenizer_dir is None:
        from phased_cpt.quickstart import quickstart_model_dir

        tokenizer_dir = quickstart_model_dir()
    tokenizer = load_tokenizer(ModelConfig(name=str(tokenizer_dir)))
    for result in results:
        for name in PHASES:
            texts = [
                json.loads(line)["training_content"]
                for line in (out / result["repo"] / name).read_text(encoding="utf-8").splitlines()
            ]
            tokens = 0
            for start in range(0, len(texts), 256):
                batch = tokenizer(texts[start : start + 256], add_special_tokens=False)["input_ids"]
                tokens += sum(len(ids) for ids in batch)
            result["phases"][name]["tokens"] = tokens


def _validate_and_plan(out: Path) -> dict:
    from phased_cpt.quickstart import quickstart_config_data, quickstart_model_dir

    config = quickstart_config_data(quickstart_model_dir())
    config["phases"] = [
        {**phase, "file": str(out / name)} for phase, name in zip(config["phases"], PHASES, strict=True)
    ]
    config["output"] = {**config.get("output", {}), "dir": str(out / "runs")}
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    figures = {}
    for command in (["validate", str(path)], ["plan", str(path), "--json"]):
        done = subprocess.run([sys.executable, "-m", "phased_cpt", *command], capture_output=True, text=True)
        figures[command[0]] = {"exit": done.returncode, "tail": (done.stdout + done.stderr).strip().splitlines()[-3:]}
    return figures


def _count_commits(repo: Path) -> int:
    done = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"], capture_output=True, text=True)
    return int(done.stdout.strip() or 0)


def _print_tables(results: list[dict]) -> None:
    print(
        "| repository | commits | wall s | phase 1 docs / tokens | phase 2 docs / tokens | phase 3 docs / tokens | redacted |"
    )
    print("|---|---|---|---|---|---|---|")
    for result in results:
        cells = [f"{p['documents']:,} / {p['tokens']:,}" for p in (result["phases"][name] for name in PHASES)]
        redacted = sum(result["phases"][name]["redactions"] for name in PHASES)
        print(f"| {result['repo']} | {result['commits']:,} | {result['wall_s']} | {' | '.join(cells)} | {redacted} |")
    print()
    print("| repository | phase | share of source bytes removed, by rule |")
    print("|---|---|---|")
    for result in results:
        for name in PHASES:
            shares = result["phases"][name]["removed_share"]
            text = ", ".join(f"{reason} {share:.1%}" for reason, share in shares.items() if share >= 0.0005) or "-"
            print(f"| {result['repo']} | {name.split('_')[0]} | {text} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
