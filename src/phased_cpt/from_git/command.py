"""CLI glue for `phased-cpt data from-git`: the arguments, one call, the printed summary.

The main CLI registers the subcommand with `add_arguments(parser)` and calls `run(args)`;
`UserError`s raised by `build_datasets` propagate to it (message, exit code 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phased_cpt.from_git import (
    DEFAULT_EXCLUDES,
    DEFAULT_MAX_DIFF_BYTES,
    DEFAULT_MAX_FILE_BYTES,
    PHASE1_FILE,
    PHASE2_FILE,
    PHASE3_FILE,
    REPORT_FILE,
    build_datasets,
)
from phased_cpt.from_git.secrets import SECRET_FILE_GLOBS

DESCRIPTION = (
    f"Build the three phase datasets from a git repository: {PHASE1_FILE} (one document per "
    f"tracked text file at --rev), {PHASE2_FILE} (one document per non-merge commit, oldest "
    f"first, with its diff) and {PHASE3_FILE} (one document per pull request of --prs; without "
    "--prs, one per merge commit). Secret-looking files and text containing credentials are "
    "never written. Prints a summary of what was written and skipped."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the REPO positional and every flag of `data from-git` to `parser`."""
    if parser.description is None:
        parser.description = DESCRIPTION
    default_globs = "; ".join(f"{reason}: {' '.join(globs)}" for reason, globs in DEFAULT_EXCLUDES.items())
    parser.add_argument("repo", metavar="REPO", type=Path,
                        help="path of the git repository (or any directory inside it)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="output directory, created if missing; the three .jsonl files in it "
                             "are replaced atomically")
    parser.add_argument("--rev", metavar="REV", default="HEAD",
                        help="commit whose files make phase 1 and whose history makes phases 2-3 "
                             "(default: HEAD)")
    parser.add_argument("--since", metavar="DATE",
                        help="only commits committed at or after DATE (ISO 8601, e.g. 2024-01-31 or "
                             "2024-01-31T12:00:00+01:00; UTC when no offset) for phase 2 and the "
                             "merge-commit fallback of phase 3")
    parser.add_argument("--max-file-bytes", metavar="N", type=_positive_int, default=DEFAULT_MAX_FILE_BYTES,
                        help=f"skip files larger than N bytes in phase 1 (default: {DEFAULT_MAX_FILE_BYTES})")
    parser.add_argument("--max-diff-bytes", metavar="N", type=_positive_int, default=DEFAULT_MAX_DIFF_BYTES,
                        help="cut each commit or pull-request diff at N bytes, marking the cut "
                             f"'[diff truncated: ...]' (default: {DEFAULT_MAX_DIFF_BYTES})")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[], dest="excludes",
                        help="also skip paths matching GLOB (repeatable); a glob matches the whole "
                             "path, a leading directory or one path component, e.g. 'docs/*', "
                             "'*.csv', 'fixtures'")
    parser.add_argument("--include", metavar="GLOB", action="append", default=[], dest="includes",
                        help="keep paths matching GLOB that a default rule would leave out (vendored, "
                             "lock, generated, data, minified; repeatable); never brings back a secret, "
                             "and --exclude still wins")
    parser.add_argument("--default-excludes", dest="use_default_excludes",
                        action=argparse.BooleanOptionalAction, default=True,
                        help=f"apply the default rules: the globs ({default_globs}), .gitattributes "
                             "linguist-vendored/linguist-generated, detected vendored copies and the "
                             "minified/generated content tests (default: on; --no-default-excludes keeps "
                             "such files). Secret stores "
                             f"({' '.join(SECRET_FILE_GLOBS)}) are always left out and credential values "
                             "always redacted")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep documents whose text repeats an earlier one of the same phase "
                             "(default: left out as 'duplicate')")
    parser.add_argument("--allow-other-owner", action="store_true",
                        help="read a repository owned by another user (git refuses by default: "
                             "safe.directory); its hooks, filters and configured commands never run either way")
    parser.add_argument("--prs", metavar="FILE_OR_DIR", type=Path,
                        help="pull-request export for phase 3: a JSON file, or a directory of JSON "
                             "files, each a list of GitHub REST pull objects with keys 'diff', "
                             "'reviews', 'review_comments' (see docs/from-git.md); without it phase 3 "
                             "uses merge commits")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Build the datasets as `args` say, print the summary (table or JSON) and return 0."""
    summary = build_datasets(args.repo, args.out, rev=args.rev, since=args.since,
                             max_file_bytes=args.max_file_bytes, excludes=args.excludes,
                             includes=args.includes, use_default_excludes=args.use_default_excludes,
                             prs=args.prs, max_diff_bytes=args.max_diff_bytes,
                             keep_duplicates=args.keep_duplicates, allow_other_owner=args.allow_other_owner)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.format_table())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of bytes, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of bytes, got {value}")
    return value
