"""What the changed lines that phase 3 shares with phase 2 are, for `from_git_repos.py` outputs.

    python benchmarks/from_git_overlap.py /tmp/fgb/fd /tmp/fgb/mux ...

Per output directory, over phase 3's distinct (file, `+`/`-` line) pairs (as *repeat, lines* of
`from_git_repos.py`): the share also in phase 2, split into trivial lines (under 4 characters),
pairs whose earliest phase-2 copy is dated after the phase-3 document (a later, separate change
to the same line) and pairs whose phase-2 copy is older (`-` and `+` lines apart). Then a
what-if: the share left if every phase-3 hunk whose non-trivial changed lines are all phase-2
pairs were dropped, and how many hunks and lines that would drop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from from_git_repos import PHASES, _diff_units  # noqa: E402


def _documents(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _hunks(text: str) -> list[tuple[str, list[str]]]:
    hunks, path = [], None
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            path = line.rsplit(" b/", 1)[-1]
            hunks.append((path, []))
        elif path is not None and line.startswith("@@"):
            hunks.append((path, []))
        elif path is not None and line.startswith(("+", "-")) and not line.startswith(("+++ ", "--- ")):
            hunks[-1][1].append(line[0] + " ".join(line[1:].split()))
    return [(p, lines) for p, lines in hunks if lines]


def overlap(out: Path) -> dict:
    first2: dict[tuple[str, str], str] = {}
    for document in _documents(out / PHASES[1]):
        for pair in _diff_units(document["training_content"])[1]:
            first2[pair] = min(first2.get(pair, document["date"]), document["date"])
    first3: dict[tuple[str, str], str] = {}
    kept: set[tuple[str, str]] = set()
    dropped_hunks = hunks = dropped_lines = lines = 0
    for document in _documents(out / PHASES[2]):
        for pair in _diff_units(document["training_content"])[1]:
            first3[pair] = min(first3.get(pair, document["date"]), document["date"])
        for path, changed in _hunks(document["training_content"]):
            pairs = {(path, line) for line in changed}
            hunks += 1
            lines += len(changed)
            if all(pair in first2 for pair in pairs if len(pair[1]) > 1):
                dropped_hunks += 1
                dropped_lines += len(changed)
            else:
                kept |= pairs
    common = [pair for pair in first3 if pair in first2]
    real = [pair for pair in common if len(pair[1]) - 1 >= 4]
    older = [pair for pair in real if first2[pair] <= first3[pair]]
    total = len(first3) or 1
    return {
        "repo": out.name,
        "shared": len(common) / total,
        "trivial": (len(common) - len(real)) / total,
        "phase2_copy_later": (len(real) - len(older)) / total,
        "phase2_copy_older_minus": sum(pair[1][0] == "-" for pair in older) / total,
        "phase2_copy_older_plus": sum(pair[1][0] == "+" for pair in older) / total,
        "if_contained_hunks_dropped": len(kept & first2.keys()) / (len(kept) or 1),
        "hunks_dropped": f"{dropped_hunks}/{hunks}",
        "lines_dropped": f"{dropped_lines}/{lines}",
    }


def main() -> int:
    print(
        "| repository | shared | trivial | phase-2 copy later | older, `-` | older, `+` | if contained hunks dropped | hunks / lines dropped |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for out in map(Path, sys.argv[1:]):
        r = overlap(out)
        print(
            f"| {r['repo']} | {r['shared']:.1%} | {r['trivial']:.1%} | {r['phase2_copy_later']:.1%} "
            f"| {r['phase2_copy_older_minus']:.1%} | {r['phase2_copy_older_plus']:.1%} "
            f"| {r['if_contained_hunks_dropped']:.1%} | {r['hunks_dropped']} / {r['lines_dropped']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
