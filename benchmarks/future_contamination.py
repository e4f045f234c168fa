"""Count, outside phased-cpt, how much of a repository's future stands verbatim in its past.

An independent check of the contamination `phased-cpt data from-git` prints for its time split
(`future_evolution.jsonl`): plain `git` and Python only, no phased_cpt code.

- The cut: the first-parent commit N back from HEAD, N = min(100, 10% of the first-parent
  commits) (the documented default of `data from-git`), or `--holdout-commits N`.
- Training text: every text file at the cut (`git ls-tree` + `git cat-file`), plus every diff of
  the history up to the cut (`git log -p`, merges diffed against their first parent), with each
  diff line's +/-/space marker removed.
- Future: the lines added by the non-merge commits after the cut (`git log -p --no-merges
  CUT..HEAD`).
- Lock files and pictures (`*.lock`, `*-lock.json`, `*-lock.yaml`, `*.svg`) are left out on both
  sides: they are no one's code (the tool leaves them out too, by its own rules).
- A line counts when it is at least 25 characters long after stripping white space; the share
  is the future's counted added lines found verbatim among the training text's counted lines.

    python benchmarks/future_contamination.py /work/real/attrs [--holdout-commits N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MIN_CHARS = 25
SKIPPED_SUFFIXES = (".lock", "-lock.json", "-lock.yaml", ".svg")


def git(repo: str, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", repo, "-c", "core.quotepath=off", *args], capture_output=True, check=True
    ).stdout


def counted(line: str) -> str | None:
    line = line.strip()
    return line if len(line) >= MIN_CHARS else None


def diff_lines(patch: bytes) -> list[str]:
    """The hunk lines of a `git log -p` output, files with a skipped suffix left out."""
    kept, skip, in_hunk = [], False, False
    for raw in patch.decode("utf-8", "replace").split("\n"):
        if raw.startswith("diff --git "):
            skip, in_hunk = raw.endswith(SKIPPED_SUFFIXES), False
        elif raw.startswith("@@"):
            in_hunk = True
        elif in_hunk and not skip:
            kept.append(raw)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo")
    parser.add_argument("--holdout-commits", type=int, default=None)
    args = parser.parse_args()
    mainline = git(args.repo, "rev-list", "--first-parent", "HEAD").decode().split()
    held_out = args.holdout_commits if args.holdout_commits is not None else min(100, len(mainline) // 10)
    cut = mainline[held_out]

    seen: set[str] = set()
    listing = git(args.repo, "ls-tree", "-r", "-z", cut).split(b"\0")
    blobs = [
        entry.split()[2]
        for entry in listing
        if entry and entry.split()[1] == b"blob" and not entry.decode("utf-8", "replace").endswith(SKIPPED_SUFFIXES)
    ]
    contents = subprocess.run(
        ["git", "-C", args.repo, "cat-file", "--batch"],
        input=b"\n".join(blobs) + b"\n",
        capture_output=True,
        check=True,
    ).stdout
    position = 0
    while position < len(contents):
        header_end = contents.index(b"\n", position)
        size = int(contents[position:header_end].split()[2])
        data = contents[header_end + 1 : header_end + 1 + size]
        position = header_end + 2 + size
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\0" not in text:
            seen.update(line for line in map(counted, text.split("\n")) if line)

    history = git(args.repo, "log", "-p", "--no-color", "--diff-merges=first-parent", "--format=", cut)
    for raw in diff_lines(history):
        if raw[:1] in ("+", "-", " "):
            line = counted(raw[1:])
            if line:
                seen.add(line)

    total = found = 0
    future = git(args.repo, "log", "-p", "--no-color", "--no-merges", "--format=", f"{cut}..HEAD")
    for raw in diff_lines(future):
        if raw.startswith("+"):
            line = counted(raw[1:])
            if line:
                total += 1
                found += line in seen
    print(
        json.dumps(
            {
                "repo": args.repo,
                "cut": cut,
                "held_out": held_out,
                "lines": total,
                "seen": found,
                "share": round(found / total, 4) if total else 0.0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
