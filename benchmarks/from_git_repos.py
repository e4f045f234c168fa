"""`data from-git` on real repositories: wall time, documents and tokens per phase, and the share
of source bytes each rule removed, one row per repository.

    python benchmarks/from_git_repos.py /work/real/requests /work/real/click ... [--out DIR]
        [--since DATE] [--tokenizer DIR] [--validate] [--no-tokens]

Each repository is built in this process (`build_datasets`, the function the command calls) into
`--out/<name>/`, timed from the call to its return. Tokens are counted with `--tokenizer`
(default: the quickstart tokenizer, a 1024-token byte-level BPE trained on the bundled sample
data, built offline; it splits code into more tokens than a production tokenizer would, so
compare tokens between repositories and phases, not with other tools). The removed share of a
rule is the bytes it removed (file content, diff sections, cut-off diff text) over the bytes
kept plus all removed, per phase. `--validate` also runs `phased-cpt validate` and `plan` on
each output through a generated config. Prints markdown tables, then one JSON object.

Each repository is built in a child process of its own (`--one`), so its peak RSS
(`ru_maxrss` of that process; git's own processes not included) is its own. Also measured per
repository (issue 25):

- *repeat, hunks*: the share of phase 3's changed lines (`+`/`-` lines of its diffs) that lie in
  a hunk (same file, same changed lines) which is also a hunk of phase 2 - the same change
  trained twice; *repeat, lines*: the share of phase 3's distinct (file, changed line) pairs
  found anywhere in phase 2, which also counts independent changes that touch the same line
  (a `}` re-added, a moved function), with the same share between the older and newer half of
  phase 2 itself as the yardstick; *of phase 2*: the same pairs over phase 2's distinct pairs
  (the share of phase 2's changed lines that phase 3 repeats);
- near-duplicates removed, e-mail addresses masked, and e-mail addresses left in the output
  outside the allow-list (`personal.is_public_address`; target 0);
- hand-written source files missing from phase 1: tracked files with a source-code extension
  (at phase 1's commit) that phase 1 does not hold, with the reason the report gives (vendored, generated and secret
  files are left out on purpose; a `minified` or `data` source file is the thing to look at).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
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
    parser.add_argument("--holdout-commits", type=int, help="as the command's (default: its default time split)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: the quickstart's)")
    parser.add_argument("--validate", action="store_true", help="also run validate and plan on each output")
    parser.add_argument("--no-tokens", action="store_true", help="skip counting tokens (minutes on a large history)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: one repository, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_build_one(args.repos[0], args.out / args.repos[0].name, args.since, args.holdout_commits)))
        return 0

    results = []
    for repo in args.repos:
        command = [sys.executable, __file__, str(repo), "--out", str(args.out), "--one"]
        command += ["--since", args.since] if args.since else []
        command += ["--holdout-commits", str(args.holdout_commits)] if args.holdout_commits is not None else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not args.no_tokens:
        _count_tokens(results, args.out, args.tokenizer)
    if args.validate:
        for result in results:
            result["validate_plan"] = _validate_and_plan(args.out / result["repo"])
    _print_tables(results)
    print(json.dumps(results, indent=1))
    return 0


def _build_one(repo: Path, out: Path, since: str | None, holdout_commits: int | None) -> dict:
    from phased_cpt.from_git import FromGitSettings, HoldoutOptions, build_datasets

    started = time.perf_counter()
    settings = FromGitSettings(since=since, force=True, holdout=HoldoutOptions(commits=holdout_commits))
    summary = build_datasets(repo, out, settings)
    wall_s = time.perf_counter() - started
    return {
        "repo": repo.name,
        "commit": summary.commit[:12],
        "wall_s": round(wall_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "commits": _count_commits(repo),
        "phases": _phase_figures(summary),
        "merge_styles": summary.merge_styles,
        "repeat": _repeat_shares(out),
        "emails_left": _emails_left(out),
        "missing_sources": _missing_sources(repo, out, summary.commit),
    }


_HUNK = re.compile(r"^@@")
SOURCE_SUFFIXES = (".py", ".rs", ".go", ".c", ".h", ".cc", ".cpp", ".js", ".ts", ".java", ".rb", ".sh", ".pyx", ".pyi")


def _diff_units(text: str) -> tuple[list[tuple[str, tuple[str, ...]]], set[tuple[str, str]]]:
    """The hunks (file, changed lines) and the distinct (file, changed line) pairs of a document."""
    hunks: list[tuple[str, list[str]]] = []
    pairs: set[tuple[str, str]] = set()
    path = None
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            path = line.rsplit(" b/", 1)[-1]
            hunks.append((path, []))
        elif path is not None and line.startswith(("+", "-")) and not line.startswith(("+++ ", "--- ")):
            changed = line[0] + " ".join(line[1:].split())
            hunks[-1][1].append(changed)
            pairs.add((path, changed))
        elif path is not None and _HUNK.match(line):
            hunks.append((path, []))
    return [(p, tuple(c)) for p, c in hunks if c], pairs


def _phase_units(path: Path) -> tuple[list, set]:
    hunks, pairs = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        doc_hunks, doc_pairs = _diff_units(json.loads(line)["training_content"])
        hunks += doc_hunks
        pairs |= doc_pairs
    return hunks, pairs


def _repeat_shares(out: Path) -> dict:
    hunks2, pairs2 = _phase_units(out / PHASES[1])
    hunks3, pairs3 = _phase_units(out / PHASES[2])
    known = set(hunks2)
    changed = sum(len(lines) for _, lines in hunks3)
    repeated = sum(len(lines) for hunk in hunks3 if hunk in known for lines in [hunk[1]])
    docs2 = (out / PHASES[1]).read_text(encoding="utf-8").splitlines()
    older = set().union(*[_diff_units(json.loads(line)["training_content"])[1] for line in docs2[: len(docs2) // 2]])
    newer = set().union(*[_diff_units(json.loads(line)["training_content"])[1] for line in docs2[len(docs2) // 2 :]])
    return {
        "hunks": round(repeated / changed, 4) if changed else 0.0,
        "lines": round(len(pairs3 & pairs2) / len(pairs3), 4) if pairs3 else 0.0,
        "lines_of_phase2": round(len(pairs3 & pairs2) / len(pairs2), 4) if pairs2 else 0.0,
        "lines_phase2_halves": round(len(newer & older) / len(newer), 4) if newer else 0.0,
        "phase3_changed_lines": changed,
    }


def _emails_left(out: Path) -> dict:
    from phased_cpt.from_git.personal import EMAIL, is_public_address

    kept: dict[str, int] = {}
    left = 0
    for name in PHASES:
        documents = [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]
        text = "\n".join(value for document in documents for value in document.values() if isinstance(value, str))
        for match in EMAIL.finditer(text):
            if is_public_address(match[0]):
                kept[match[0]] = kept.get(match[0], 0) + 1
            else:
                left += 1
    return {"outside_allow_list": left, "public_kept": dict(sorted(kept.items(), key=lambda kv: -kv[1])[:8])}


def _missing_sources(repo: Path, out: Path, commit: str) -> dict[str, str]:
    """Source files at `commit` (phase 1's: HEAD, or the time split's cut) that phase 1 does not
    hold -> the reason the report gives."""
    command = ["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only", commit]
    tracked = subprocess.run(command, capture_output=True, check=True).stdout
    sources = {p for p in tracked.decode("utf-8", "replace").split("\0") if p.endswith(SOURCE_SUFFIXES)}
    kept = {json.loads(line)["path"] for line in (out / PHASES[0]).read_text(encoding="utf-8").splitlines()}
    report = json.loads((out / "from-git-report.json").read_text(encoding="utf-8"))
    reasons = {
        entry["file"]: f"{entry['reason']} ({entry.get('rule', '')})"
        for entry in report["outputs"][PHASES[0]]["left_out"]
        if "file" in entry and entry.get("kind") != "line"
    }
    return {path: reasons.get(path, "?") for path in sorted(sources - kept)}


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
            "masked_emails": stats.masked_emails,
            "near_duplicates": stats.skipped.get("near-duplicate", 0),
            "near_duplicates_kept": stats.near_duplicates_kept,
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
        "| repository | commits | wall s | peak RSS MB | phase 1 docs / KB | phase 2 docs / KB | phase 3 docs / KB "
        "| repeat, hunks | repeat, lines (phase-2 halves) | of phase 2 | near-dups out / kept | e-mails masked / left |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        phases = [result["phases"][name] for name in PHASES]
        cells = [f"{p['documents']:,} / {p['text_bytes'] // 1024:,}" for p in phases]
        repeat = result["repeat"]
        near = sum(p["near_duplicates"] for p in phases)
        near_kept = sum(p["near_duplicates_kept"] for p in phases)
        masked = sum(p["masked_emails"] for p in phases)
        print(
            f"| {result['repo']} | {result['commits']:,} | {result['wall_s']} | {result['peak_rss_mb']} "
            f"| {' | '.join(cells)} | {repeat['hunks']:.1%} | {repeat['lines']:.1%} ({repeat['lines_phase2_halves']:.1%}) "
            f"| {repeat['lines_of_phase2']:.1%} | {near} / {near_kept} | {masked:,} / {result['emails_left']['outside_allow_list']} |"
        )
    print()
    print("| repository | tokens per phase | how it merges | hand-written source files missing from phase 1 |")
    print("|---|---|---|---|")
    for result in results:
        counts = [result["phases"][name].get("tokens") for name in PHASES]
        tokens = " / ".join("-" if count is None else f"{count:,}" for count in counts)
        styles = ", ".join(
            f"{count} {name}" for name, count in sorted(result["merge_styles"].items(), key=lambda kv: -kv[1])
        )
        missing = "; ".join(f"{path}: {why}" for path, why in result["missing_sources"].items()) or "none"
        print(f"| {result['repo']} | {tokens} | {styles} | {missing} |")
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
