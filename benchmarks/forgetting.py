"""Learning vs forgetting on a real codebase, under the settings meant to trade one for the other.

The base is the tiny model pretrained on the Python standard library (`phased_cpt.pretrain`: it
knows general Python); the domain is a real repository cut in time by `phased-cpt data from-git
REPO` (its default time split): three phase files as of the cut (its files, its commits, its
merged pull requests) and the repository's future after the cut (`future_evolution`,
`future_pr_mastery`, `future_tasks`). Every variant trains the same three phases with
`phased-cpt train` (one process each, `--jobs` at a time, one thread each) and is read back from
its run directory's `eval/forgetting.json` and `eval/contamination.json`:

    doc-level change     perplexity after phase 3 vs the base model on the phases' held-out documents
                         (a random choice of each phase file: the old, contaminated split), token-weighted
    future change        the same on the future documents (commits and merges after the cut): learning
    doc-level / future seen  share of those sets' lines (25+ chars) that stand verbatim in the training
                         text of phases 1-3 (`phased_cpt.contamination`), pooled over the sets
    general change       general (held-out stdlib files) perplexity after phase 3 vs the base model
    pass@1 change        HumanEval pass@1 after phase 3 minus the base model's, in points
    future tasks edit sim    next-line / scope / fill-in-the-middle completion of the future's code
    vs baseline          future ppl change and the cut in the general increase, against `baseline`
                         (the doc-level ppl where a run has no future)

The JSON adds each set's perplexity change and contamination, the doc-level sets' final perplexity,
exact match, edit similarity and top-1. A setting "holds" when it cuts the general-perplexity
increase by at least 30% for at most 5% worse final future perplexity than the baseline.

    python benchmarks/forgetting.py --repo /path/to/repo --work /tmp/forgetting     # tens of minutes on 2 cores
    python benchmarks/forgetting.py --tiny                                          # a minute: CI smoke test

`--tiny` cuts a small git repository that it writes from the quickstart's bundled documents.

`wall s`: wall seconds of the variant's `phased-cpt train` process (with `--collect`, which trains
nothing and re-reads the runs under --work: the phases' training seconds from state.json).

Each phase's held-out documents are a seeded choice of `--eval-docs` documents of its file (an
`eval_file`), the general held-out set `--general-eval-docs` documents of the base's held-out
stdlib files, HumanEval the first `--humaneval-problems` problems for every row, the future
documents all (or a seeded `--future-docs` of each file) and the future tasks
`--completion-samples` per kind, so evaluation costs the same in every variant. Results: a
markdown table and JSON on stdout, the runs under --work, the plot at --plot (solid: the
doc-level split, dashed: the future).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402

from phased_cpt.config import GENERAL_COLUMN  # noqa: E402
from phased_cpt.contamination import Contamination  # noqa: E402
from phased_cpt.data.eval_sets import ContaminationTable  # noqa: E402
from phased_cpt.evaluation.forgetting import ForgettingMatrix  # noqa: E402
from phased_cpt.evaluation.learning import LearningRow, learning_summary, plot_learning  # noqa: E402
from phased_cpt.pretrain import PretrainSettings, general_files, pretrained_model_dir  # noqa: E402
from phased_cpt.quickstart import DATA_DIR  # noqa: E402

PHASES = ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery")
VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "replay-0.2": ["phases.1.replay_ratio=0.2", "phases.2.replay_ratio=0.2"],
    "general-0.05": ["general.ratio=0.05"],
    "general-0.25": ["general.ratio=0.25"],
    "wsd": ["training.lr_across_phases=wsd"],
    "rslora": ["training.lora.use_rslora=true"],
    "embeddings-full": ["training.lora.embeddings=full"],
}
"""Each variant: `--set` overrides of the shared config (no mixing, rewarm, plain LoRA r=16)."""
TINY_VARIANTS = ("baseline", "general-0.25")
CUT_WANTED, DOMAIN_COST_ALLOWED = 0.30, 0.05


def run_command(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(args, env=env, capture_output=True, text=True, **kwargs)


def phased_cpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = run_command([sys.executable, "-m", "phased_cpt", *args], cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"phased-cpt {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def split_held_out(source: Path, out_dir: Path, name: str, count: int, seed: int) -> tuple[Path, Path]:
    """(training file, eval file): a seeded choice of `count` documents held out of `source`."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    held = set(random.Random(f"{seed}:{name}").sample(range(len(lines)), min(count, len(lines) // 5)))
    train, held_out = out_dir / f"{name}.jsonl", out_dir / f"{name}.eval.jsonl"
    train.write_text("".join(line for i, line in enumerate(lines) if i not in held), encoding="utf-8")
    held_out.write_text("".join(line for i, line in enumerate(lines) if i in held), encoding="utf-8")
    return train, held_out


FUTURE_DOCUMENTS = ("future_evolution", "future_pr_mastery")
FUTURE_TASKS = "future_tasks"


def domain_files(args: argparse.Namespace, work: Path) -> Path:
    """The directory `phased-cpt data from-git` wrote (default time split) for `--repo`, or (tiny)
    for a small repository written from the bundled documents."""
    out = work / "from-git"
    if not (out / f"{PHASES[0]}.jsonl").is_file():
        repo = tiny_repository(work / "tiny-repo") if args.tiny else args.repo
        phased_cpt("data", "from-git", str(repo), "--out", str(out), cwd=work)
    return out


def tiny_repository(path: Path, commits: int = 24) -> Path:
    """A git repository of `commits` first-parent commits, each rewriting one of six modules with
    the next bundled phase-1 document, every third one a merged side branch (a pull request):
    enough history for the default time split (20+), merges before and after the cut."""
    texts = [json.loads(line)["training_content"] for line in (DATA_DIR / f"{PHASES[0]}.jsonl").open(encoding="utf-8")]
    if (path / ".git").is_dir():
        return path
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    run_command([*git, "init", "-q", "-b", "main"], check=True)
    for i in range(commits):
        date = ["--date", f"2024-01-{i + 1:02d}T12:00:00"]
        merged = i % 3 == 2
        if merged:
            run_command([*git, "checkout", "-q", "-b", f"pr{i}"], check=True)
        (path / f"mod{i % 6}.py").write_text(texts[i % len(texts)], encoding="utf-8")
        run_command([*git, "add", "-A"], check=True)
        run_command([*git, "commit", "-q", "-m", f"Change mod{i % 6}", *date], check=True)
        if merged:
            run_command([*git, "checkout", "-q", "main"], check=True)
            run_command(
                [*git, "merge", "-q", "--no-ff", "-m", f"Merge pull request #{i} from pr{i}", f"pr{i}"], check=True
            )
    return path


def future_documents(source: Path, data_dir: Path, args: argparse.Namespace) -> Path:
    """`source` whole, or a seeded choice of `--future-docs` of its documents (same name, in `data_dir`)."""
    if not args.future_docs:
        return source
    lines = [line for line in source.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    kept = sorted(
        random.Random(f"{args.seed}:{source.stem}").sample(range(len(lines)), min(args.future_docs, len(lines)))
    )
    out = data_dir / source.name
    out.write_text("".join(lines[i] for i in kept), encoding="utf-8")
    return out


def base_config(args: argparse.Namespace, work: Path, model_dir: Path) -> Path:
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    from_git = domain_files(args, work)
    # no file without a time split (a short history), an empty one where the future has no merge
    future = [
        future_documents(path, data_dir, args)
        for path in (from_git / f"{name}.jsonl" for name in FUTURE_DOCUMENTS)
        if path.is_file() and path.stat().st_size
    ]
    phases = []
    for i, name in enumerate(PHASES):
        train, held_out = split_held_out(from_git / f"{name}.jsonl", data_dir, name, args.eval_docs, args.seed)
        phases.append(
            {
                "name": name,
                "file": str(train),
                "eval_file": str(held_out),
                "epochs": 2 if i == 0 else 1,
                "max_steps": args.steps[i],
            }
        )
    general_train, general_eval = general_files(model_dir)
    _, general_held_out = split_held_out(general_eval, data_dir, "general", args.general_eval_docs, args.seed)
    config = {
        "model": {"name": str(model_dir), "dtype": "float32", "attn_implementation": "sdpa"},
        "training": {
            "micro_batch_size": 1,
            "gradient_accumulation_steps": 8,
            "learning_rate": args.learning_rate,
            "lr_scheduler": "cosine",
            "warmup_ratio": 0.1,
            "weight_decay": 0.0,
            "gradient_checkpointing": False,
            "seed": args.seed,
            "logging_steps": 10,
            "save_steps": 100000,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        },
        "context": {"max_tokens": 256, "overlap_tokens": 32, "sample_packing": True},
        "phases": phases,
        "data": {"eval_ratio": 0.0, "cache_dir": str(work / "cache")},
        "general": {"file": str(general_train), "ratio": 0.0},
        "evaluation": {
            "eval_steps": None,
            "batch_size": 8,
            "general_file": str(general_held_out),
            "completion": {"samples": args.completion_samples, "max_new_tokens": 24},
            "future": {"documents": [str(f) for f in future], "tasks": str(from_git / f"{FUTURE_TASKS}.jsonl")},
            "humaneval": {
                "problems": args.humaneval_problems,
                "final_problems": args.humaneval_problems,
                "max_new_tokens": args.humaneval_max_new_tokens,
            },
        },
        "output": {"dir": str(work / "runs")},
        "wandb": {"enabled": False},
        "tensorboard": {"enabled": False},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def train_variant(name: str, overrides: list[str], config: Path, work: Path) -> dict:
    sets = [part for o in overrides + [f"output.run_name={name}"] for part in ("--set", o)]
    started = time.perf_counter()
    phased_cpt("train", str(config), *sets, cwd=work)
    seconds = time.perf_counter() - started
    print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    return read_variant(name, overrides, latest_run(work, name), seconds)


def latest_run(work: Path, name: str) -> Path:
    return sorted((work / "runs").glob(f"{name}-2*"))[-1]


def read_variant(name: str, overrides: list[str], run_dir: Path, seconds: float) -> dict:
    """A variant's numbers from its run directory's forgetting matrix."""
    matrix = ForgettingMatrix.load(run_dir / "eval" / "forgetting.json")
    contamination = ContaminationTable.from_dict(json.loads((run_dir / "eval" / "contamination.json").read_text()))
    final = matrix.rows[-1]["results"]
    domain = [final[c] for c in matrix.group("phases")]
    tokens = sum(c["target_tokens"] for c in domain)
    samples = sum(c.get("samples", 0) for c in domain)
    seen = contamination.final()
    return {
        "name": name,
        "overrides": overrides,
        "seconds": round(seconds, 1),
        "run_dir": str(run_dir),
        "summary": [row.to_dict() for row in learning_summary(matrix)],
        "contamination": {column: seen[column].share for column in contamination.columns},
        "perplexity_change": {
            column: final[column]["perplexity"] / matrix.rows[0]["results"][column]["perplexity"] - 1
            for column in matrix.group("phases") + matrix.group("future") + [GENERAL_COLUMN]
            if column in final
        },
        "doc_level_seen": pooled_share(seen, matrix.group("phases")),
        "future_seen": pooled_share(seen, matrix.group("future")),
        "future_tasks_edit_similarity": samples_weighted(final, matrix.group("tasks"), "edit_similarity"),
        "domain_top1": sum(c["top1_accuracy"] * c["target_tokens"] for c in domain) / tokens,
        "domain_edit_similarity": (
            sum(c["edit_similarity"] * c["samples"] for c in domain) / samples if samples else None
        ),
    }


def pooled_share(seen: dict[str, Contamination], columns: list[str]) -> float | None:
    """Seen lines / counted lines over `columns` (after the last phase)."""
    lines = sum(seen[c].lines for c in columns if c in seen)
    return sum(seen[c].seen for c in columns if c in seen) / lines if lines else None


def samples_weighted(results: dict[str, dict], columns: list[str], key: str) -> float | None:
    cells = [results[c] for c in columns if results.get(c, {}).get("samples")]
    samples = sum(cell["samples"] for cell in cells)
    return sum(cell[key] * cell["samples"] for cell in cells) / samples if samples else None


def run_seconds(run_dir: Path) -> float:
    """Training seconds of a finished run (its phases; without start-up and evaluation)."""
    return sum(p["seconds"] for p in json.loads((run_dir / "state.json").read_text())["finished_phases"])


def compare(results: list[dict]) -> list[dict]:
    """Final numbers per variant, and the baseline comparison (on the future documents where the
    run has them: the doc-level split measures recall too)."""
    final = {r["name"]: r["summary"][-1] for r in results}
    base = final.get("baseline")
    rows = []
    for r in results:
        first, last = r["summary"][0], final[r["name"]]
        row = {
            "variant": r["name"],
            "future_change": last["future_change"],
            "doc_level_change": last["domain_change"],
            "future_seen": r["future_seen"],
            "doc_level_seen": r["doc_level_seen"],
            "general_change": last["general_change"],
            "humaneval_base": first["humaneval_pass_at_1"],
            "humaneval_final": last["humaneval_pass_at_1"],
            "humaneval_change": last["humaneval_change"],
            "future_perplexity": last["future_perplexity"],
            "domain_perplexity": last["domain_perplexity"],
            "future_tasks_exact_match": last["future_exact_match"],
            "future_tasks_edit_similarity": r["future_tasks_edit_similarity"],
            "domain_exact_match": last["domain_exact_match"],
            "domain_edit_similarity": r["domain_edit_similarity"],
            "domain_top1": r["domain_top1"],
            "seconds": r["seconds"],
        }
        key = "future_perplexity" if last["future_perplexity"] is not None else "domain_perplexity"
        if base is not None and base["general_change"]:
            row["learning_vs_baseline"] = last[key] / base[key] - 1
            row["general_increase_cut"] = 1 - last["general_change"] / base["general_change"]
            row["holds"] = (
                row["general_increase_cut"] >= CUT_WANTED and row["learning_vs_baseline"] <= DOMAIN_COST_ALLOWED
            )
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def pct(value):
        return "—" if value is None else f"{value * 100:+.1f}%"

    def share(value):
        return "—" if value is None else f"{value * 100:.1f}%"

    def num(value):
        return "—" if value is None else f"{value:.3f}"

    def points(value):
        return "—" if value is None else f"{value * 100:+.1f}"

    lines = [
        "| variant | future ppl change (learning) | doc-level ppl change (old split) | future seen | doc-level seen | "
        "general ppl change | HumanEval pass@1 base → after | pass@1 change (points) | future ppl vs baseline | "
        "cut in general increase | holds (>=30% cut, <=5% future cost) | future tasks edit sim | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {pct(r['future_change'])} | {pct(r['doc_level_change'])} | "
            f"{share(r['future_seen'])} | {share(r['doc_level_seen'])} | {pct(r['general_change'])} | "
            f"{num(r['humaneval_base'])} → {num(r['humaneval_final'])} | {points(r['humaneval_change'])} | "
            f"{pct(r.get('learning_vs_baseline'))} | {pct(r.get('general_increase_cut'))} | "
            f"{'yes' if r.get('holds') else 'no'} | {num(r['future_tasks_edit_similarity'])} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="the git repository whose history is the domain")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="tiny base, bundled data, two variants, a few steps")
    parser.add_argument("--variants", nargs="*", default=None, help=f"default: all of {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once (one thread each)")
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--steps", type=int, nargs=3, default=[40, 50, 50], help="max optimizer steps of each phase")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-docs", type=int, default=8)
    parser.add_argument("--general-eval-docs", type=int, default=60)
    parser.add_argument("--future-docs", type=int, default=0, help="a seeded choice of N of each future file; 0: all")
    parser.add_argument(
        "--completion-samples", type=int, default=32, help="per held-out set, and future tasks per kind"
    )
    parser.add_argument("--humaneval-problems", type=int, default=20, help="HumanEval problems scored for every row")
    parser.add_argument("--humaneval-max-new-tokens", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None, help="where to draw the learning-vs-forgetting plot")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: read the newest run of each variant under --work/runs (wall s from its state.json)",
    )
    args = parser.parse_args()
    if not args.tiny and args.repo is None:
        parser.error("--repo is needed (or --tiny)")
    if args.tiny:
        args.steps, args.eval_docs, args.general_eval_docs, args.completion_samples = [2, 2, 2], 3, 5, 4
        args.humaneval_problems, args.humaneval_max_new_tokens = 2, 16
    work = (args.work or Path(tempfile.mkdtemp(prefix="phased-cpt-forgetting-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout: the results only
        settings = (
            PretrainSettings(
                steps=3, rows_per_step=2, max_tokens=64, vocab_size=300, hidden_size=32, num_layers=2, limit_files=12
            )
            if args.tiny
            else PretrainSettings(steps=args.pretrain_steps)
        )
        model_dir = pretrained_model_dir(settings)
        pretrain = json.loads((model_dir / "pretrain.json").read_text())
        names = args.variants or (list(TINY_VARIANTS) if args.tiny else list(VARIANTS))
        if args.collect:
            results = [
                read_variant(n, VARIANTS[n], latest_run(work, n), run_seconds(latest_run(work, n))) for n in names
            ]
        else:
            config = base_config(args, work, model_dir)
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                results = list(pool.map(lambda n: train_variant(n, VARIANTS[n], config, work), names))
    rows = compare(results)
    if args.plot is not None:
        curves = {r["name"]: [LearningRow(**row) for row in r["summary"]] for r in results}
        plot_learning(
            curves,
            args.plot,
            title=f"Learning vs forgetting on {(args.repo.name if args.repo else 'a tiny repository')}: solid doc-level split, dashed future",
        )
    print(markdown(rows))
    print(
        json.dumps(
            {
                "base": {
                    "model": str(model_dir),
                    **{
                        k: pretrain[k]
                        for k in ("steps", "tokens", "seconds", "general_eval_perplexity")
                        if k in pretrain
                    },
                },
                "work": str(work),
                "seconds": round(time.perf_counter() - started, 1),
                "variants": rows,
                "runs": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
