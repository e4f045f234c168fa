"""The `phased-cpt` command line: parse arguments, call one function, map errors to exit codes.

Exit codes: 0 success, 2 a user mistake (config, data, arguments; message without traceback),
130 interrupted. Only this module (and the REPL) prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from phased_cpt.errors import UserError

logger = logging.getLogger("phased_cpt")

SET_HELP = "override one config key, e.g. --set training.lora.r=16 or --set phases.0.epochs=1 (repeatable)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phased-cpt",
        description="Phased continual pre-training of causal LMs with one LoRA adapter trained "
        "through curriculum phases in order.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train every phase in order",
        description="Train one LoRA adapter through every phase of CONFIG in order. Without CONFIG, "
        "runs the embedded quickstart (a tiny model built offline, bundled sample data).",
    )
    train.add_argument("config", nargs="?", type=Path, help="YAML config (default: the embedded quickstart)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    train.set_defaults(func=cmd_train)

    validate = sub.add_parser(
        "validate",
        help="check a config and its data files without training",
        description="Check CONFIG (every key, type and cross-field rule) and read every record of "
        "every phase file. Reports all problems at once; exit 2 if there is any.",
    )
    validate.add_argument("config", type=Path, help="YAML config (new layout or the older tool's)")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    validate.add_argument(
        "--print-translated", action="store_true",
        help="print the config in phased-cpt's layout (useful for configs written for the older tool)",
    )
    validate.set_defaults(func=cmd_validate)

    data = sub.add_parser("data", help="build phase datasets", description="Build phase datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    add_from_git(data_sub)
    return parser


def add_from_git(data_sub: argparse._SubParsersAction) -> None:
    try:
        from phased_cpt.from_git import command as from_git
    except ImportError:  # the component is optional until it lands
        return
    parser = data_sub.add_parser(
        "from-git",
        help="write the three phase files from a git repository",
        description="Write phase1_foundation.jsonl (the files at a revision), phase2_evolution.jsonl "
        "(the commit history) and phase3_pr_mastery.jsonl (pull requests and reviews) from a git repository.",
    )
    from_git.add_arguments(parser)
    parser.set_defaults(func=from_git.run)


def cmd_train(args: argparse.Namespace) -> int:
    from phased_cpt.config import load_config
    from phased_cpt.training.recipe import run_training

    if args.config is None:
        from phased_cpt.quickstart import quickstart_config_data, quickstart_model_dir

        logger.info("no config given: running the embedded quickstart (tiny model, bundled data)")
        cfg, warnings = load_config(None, args.overrides, base_data=quickstart_config_data(quickstart_model_dir()))
    else:
        cfg, warnings = load_config(args.config, args.overrides)
    for warning in warnings:
        logger.warning("warning: %s", warning)
    run = run_training(cfg)
    logger.info("done: %s (final adapter: %s)", run.path, run.final_adapter())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from phased_cpt.config import dump_config, load_config
    from phased_cpt.data.jsonl import read_documents
    from phased_cpt.errors import DataError

    cfg, warnings = load_config(args.config, args.overrides)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.print_translated:
        print(dump_config(cfg), end="")
    problems = []
    for phase in cfg.phases:
        try:
            count = len(read_documents(phase.file, cfg.data.text_field))
            print(f"{phase.name}: {count} documents in {phase.file}", file=sys.stderr)
        except DataError as err:
            problems.append(str(err))
    if problems:
        raise DataError("\n".join(problems))
    print(f"{args.config}: config and {len(cfg.phases)} phase file(s) are valid", file=sys.stderr)
    return 0


def setup_logging() -> None:
    main_process = os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    import warnings

    import transformers

    # Deprecation notices raised inside transformers/peft about their own internals are not
    # actionable for a user of phased-cpt.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
