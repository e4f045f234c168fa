"""The `phased-cpt` command line: parse arguments, call one function, map errors to exit codes.

Exit codes: 0 success, 2 a user mistake (config, data, arguments; message without traceback),
130 interrupted. Only this module (and the REPL) prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from phased_cpt import interrupt
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
    train.add_argument(
        "--resume", nargs="?", const="latest", metavar="RUN_DIR",
        help="continue a run: skip its finished phases and continue the current one from its latest complete "
        "checkpoint (optimizer, scheduler, RNG, data position). RUN_DIR defaults to 'latest', the newest run "
        "of output.run_name under output.dir. The config must not change what is trained.",
    )
    train.set_defaults(func=cmd_train)

    report = sub.add_parser(
        "report",
        help="summarize a run and write eval/report.md and the plots",
        description="Print a run's summary (phases, steps, wall time, tokens, final and best perplexities, the "
        "forgetting matrix) and write RUN_DIR/eval/report.md with curves.png next to it.",
    )
    report.add_argument("run_dir", type=Path, help="a run directory (outputs/<run_name>-<timestamp>)")
    report.set_defaults(func=cmd_report)

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

    plan = sub.add_parser(
        "plan",
        help="show what each phase will train on, without training",
        description="Validate, tokenize, chunk and pack every phase's data (or reuse the data cache) and "
        "print per phase: documents (train/eval), rejected lines, tokens, target tokens, chunks, rows, "
        "packing efficiency, EOS count, longest document, optimizer steps per epoch and in total, replay "
        "tokens. Without CONFIG, plans the embedded quickstart. The model is not loaded.",
    )
    plan.add_argument("config", nargs="?", type=Path, help="YAML config (default: the embedded quickstart)")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON on stdout instead of a table")
    plan.set_defaults(func=cmd_plan)

    data = sub.add_parser("data", help="build phase datasets", description="Build phase datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    add_from_git(data_sub)
    add_inference(sub)
    add_distributed(sub)
    return parser


def add_inference(sub: argparse._SubParsersAction) -> None:
    from phased_cpt.inference import command as inference

    chat = sub.add_parser(
        "chat",
        help="compare the base model and a fine-tuned phase, interactively or on given prompts",
        description="Answer prompts with the base model (adapter disabled) and with a phase's adapter, "
        "side by side. Without RUN_DIR: the newest run under --output-dir and its last finished phase. "
        "With --prompt/--prompts: answer those, print both, optionally write --out JSONL, and exit; "
        "otherwise an interactive REPL (/help inside).",
    )
    inference.add_chat_arguments(chat)
    chat.set_defaults(func=inference.run_chat)
    merge = sub.add_parser(
        "merge",
        help="merge a phase's adapter into the base weights and save a plain transformers model",
        description="Merge the adapter of a phase (default: the last finished) into the base model and save "
        "safetensors, config and tokenizer to --out, loadable with AutoModelForCausalLM.from_pretrained. "
        "The merged model's logits are checked against base + adapter before anything is written to --out.",
    )
    inference.add_merge_arguments(merge)
    merge.set_defaults(func=inference.run_merge)


def add_distributed(sub: argparse._SubParsersAction) -> None:
    launch = sub.add_parser(
        "launch",
        help="run the pre-flight checks, then train on several GPUs (or CPU processes) or nodes",
        description="Run `phased-cpt doctor` checks, then start one `phased-cpt train CONFIG` process per GPU "
        "through the DeepSpeed launcher (default when the config sets deepspeed) or torchrun. Without a GPU, "
        "--gpus N starts N CPU processes over gloo. See docs/multi-gpu.md.",
    )
    launch.add_argument("config", type=Path, help="YAML config")
    launch.add_argument("--gpus", type=int, metavar="N", help="processes per node (default: every visible GPU, or 1 without a GPU)")
    launch.add_argument("--hostfile", type=Path, metavar="FILE",
                        help="DeepSpeed hostfile ('hostname slots=N' per line) for several nodes")
    launch.add_argument("--launcher", choices=["deepspeed", "torchrun"],
                        help="default: deepspeed when the config sets deepspeed, else torchrun")
    launch.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    launch.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                        help="passed to `phased-cpt train --resume` on every process")
    launch.add_argument("--skip-doctor", action="store_true", help="start without the pre-flight checks")
    launch.set_defaults(func=cmd_launch)

    doctor = sub.add_parser(
        "doctor",
        help="pre-flight checks: software, GPUs, data, tokenizer, disk, W&B, memory per GPU",
        description="Check what a training run needs before it starts and print a pass/warn/fail table: Python, "
        "torch and CUDA versions; GPUs, their free memory, bf16; NCCL; DeepSpeed, flash-attn, Liger; every phase "
        "file; the tokenizer's EOS token; free disk for checkpoints; the W&B key (never shown) or offline mode; "
        "estimated memory per GPU with a recommendation. Exit 2 if any check fails.",
    )
    doctor.add_argument("config", type=Path, help="YAML config")
    doctor.add_argument("--gpus", type=int, metavar="N", help="processes the run will use (default: every visible GPU, or 1)")
    doctor.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON on stdout instead of a table")
    doctor.set_defaults(func=cmd_doctor)


def cmd_launch(args: argparse.Namespace) -> int:
    from phased_cpt.launch import launch

    return launch(args.config, args.overrides, args.gpus, args.hostfile, args.launcher, args.resume, args.skip_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from phased_cpt.doctor import doctor
    from phased_cpt.launch import gpu_count

    return doctor(args.config, args.overrides, args.gpus or max(gpu_count(), 1), args.json)


def add_from_git(data_sub: argparse._SubParsersAction) -> None:
    from phased_cpt.from_git import (
        DEFAULT_EXCLUDES,
        DEFAULT_MAX_DIFF_BYTES,
        DEFAULT_MAX_FILE_BYTES,
        PHASE1_FILE,
        PHASE2_FILE,
        PHASE3_FILE,
        REPORT_FILE,
    )
    from phased_cpt.from_git.secrets import SECRET_FILE_GLOBS

    parser = data_sub.add_parser(
        "from-git",
        help="write the three phase files from a git repository",
        description=f"Build the three phase datasets from a git repository: {PHASE1_FILE} (one document per "
        f"tracked text file at --rev), {PHASE2_FILE} (one document per non-merge commit, oldest first, with its "
        f"diff) and {PHASE3_FILE} (one document per pull request of --prs; without --prs, one per pull-request "
        "or branch merge commit). Secret stores are never written and credential values are redacted. Prints a "
        f"summary; every item left out is listed with its reason in {REPORT_FILE}. The repository's hooks, "
        "filters and configured commands never run.",
    )
    default_globs = "; ".join(f"{reason}: {' '.join(globs)}" for reason, globs in DEFAULT_EXCLUDES.items())
    parser.add_argument("repo", metavar="REPO", type=Path, help="path of the git repository (or any directory inside it)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="output directory, created if missing; the three .jsonl files and the report in it "
                        "are replaced atomically")
    parser.add_argument("--rev", metavar="REV", default="HEAD",
                        help="commit whose files make phase 1 and whose history makes phases 2-3 (default: HEAD)")
    parser.add_argument("--since", metavar="DATE",
                        help="only commits committed at or after DATE (ISO 8601, e.g. 2024-01-31 or "
                        "2024-01-31T12:00:00+01:00; UTC when no offset) for phase 2 and the merge-commit fallback "
                        "of phase 3")
    parser.add_argument("--max-file-bytes", metavar="N", type=positive_bytes, default=DEFAULT_MAX_FILE_BYTES,
                        help=f"skip files larger than N bytes in phase 1 (default: {DEFAULT_MAX_FILE_BYTES})")
    parser.add_argument("--max-diff-bytes", metavar="N", type=positive_bytes, default=DEFAULT_MAX_DIFF_BYTES,
                        help="cut each commit or pull-request diff at N bytes, marking the cut "
                        f"'[diff truncated: ...]' (default: {DEFAULT_MAX_DIFF_BYTES})")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[], dest="excludes",
                        help="also leave out paths matching GLOB, in every phase (repeatable); a glob matches the "
                        "whole path, a leading directory or one path component, e.g. 'docs/*', '*.csv', 'fixtures'")
    parser.add_argument("--include", metavar="GLOB", action="append", default=[], dest="includes",
                        help="keep paths matching GLOB that a default rule would leave out (vendored, lock, "
                        "generated, data, minified; repeatable); never brings back a secret, and --exclude still wins")
    parser.add_argument("--default-excludes", dest="use_default_excludes", action=argparse.BooleanOptionalAction,
                        default=True,
                        help=f"apply the default rules: the globs ({default_globs}), .gitattributes "
                        "linguist-vendored/linguist-generated, detected vendored copies and the minified/generated "
                        "content tests (default: on; --no-default-excludes keeps such files). Secret stores "
                        f"({' '.join(SECRET_FILE_GLOBS)}) are always left out and credential values always redacted")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep documents whose text repeats an earlier one of the same phase "
                        "(default: left out as 'duplicate')")
    parser.add_argument("--prs", metavar="FILE_OR_DIR", type=Path,
                        help="pull-request export for phase 3: a JSON file, or a directory of JSON files, each a "
                        "list of GitHub REST pull objects with keys 'diff', 'reviews', 'review_comments' (see "
                        "docs/from-git.md); without it phase 3 uses merge commits")
    parser.add_argument("--allow-other-owner", action="store_true",
                        help="read a repository owned by another user (git refuses by default: safe.directory); "
                        "its hooks, filters and configured commands never run either way")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of a table")
    parser.set_defaults(func=cmd_from_git, light=True)


def cmd_from_git(args: argparse.Namespace) -> int:
    import json

    from phased_cpt.from_git import build_datasets

    summary = build_datasets(args.repo, args.out, rev=args.rev, since=args.since,
                             max_file_bytes=args.max_file_bytes, excludes=args.excludes,
                             includes=args.includes, use_default_excludes=args.use_default_excludes,
                             prs=args.prs, max_diff_bytes=args.max_diff_bytes,
                             keep_duplicates=args.keep_duplicates, allow_other_owner=args.allow_other_owner)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format_table())
    return 0


def positive_bytes(text: str) -> int:
    """An argparse type: a whole number of bytes above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of bytes, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of bytes, got {value}")
    return value

def cmd_train(args: argparse.Namespace) -> int:
    from phased_cpt.config import load_config
    from phased_cpt.training.recipe import run_training
    from phased_cpt.training.signals import TrainingInterrupted

    if args.config is None:
        from phased_cpt.quickstart import quickstart_config_data, quickstart_model_dir

        logger.info("no config given: running the embedded quickstart (tiny model, bundled data)")
        cfg, warnings = load_config(None, args.overrides, base_data=quickstart_config_data(quickstart_model_dir()))
    else:
        cfg, warnings = load_config(args.config, args.overrides)
    for warning in warnings:
        logger.warning("warning: %s", warning)
    try:
        run = run_training(cfg, resume=args.resume)
    except TrainingInterrupted as stop:
        print(
            f"stopped by {signal.Signals(stop.signum).name}: a checkpoint was saved in {stop.run_path}\n"
            f"resume with:  {resume_command(args, stop.run_path)}",
            file=sys.stderr,
        )
        return stop.exit_code
    logger.info("done: %s (final adapter: %s)", run.path, run.final_adapter())
    return 0


def resume_command(args: argparse.Namespace, run_path: Path) -> str:
    parts = ["phased-cpt", "train"]
    if args.config is not None:
        parts.append(str(args.config))
    for override in args.overrides:
        parts += ["--set", override]
    parts += ["--resume", str(Path(run_path).resolve())]
    return shlex.join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    from phased_cpt.evaluation.report import build_report, write_report
    from phased_cpt.run_dir import RunDir

    run = RunDir(args.run_dir)
    path = write_report(run)
    print(build_report(run))
    print(f"\nwritten: {path}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from phased_cpt.config import dump_config, load_config
    from phased_cpt.data.jsonl import scan_phase_files
    from phased_cpt.errors import DataError

    cfg, warnings = load_config(args.config, args.overrides)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.print_translated:
        print(dump_config(cfg), end="")
    problems = []
    for phase in cfg.phases:
        files = [phase.file] + ([phase.eval_file] if phase.eval_file is not None else [])
        for scan in scan_phase_files(files, cfg.data.text_field, cfg.data.on_bad_record, cfg.data.dedup):
            try:
                scan.raise_if_bad(cfg.data.text_field)
                skipped = f", {len(scan.rejected)} line(s) to be left out ({scan.duplicates} duplicate(s))"
                print(f"{phase.name}: {scan.documents} documents in {scan.path}{skipped if scan.rejected else ''}",
                      file=sys.stderr)
            except DataError as err:
                problems.append(str(err))
    if problems:
        raise DataError("\n".join(problems))
    print(f"{args.config}: config and {len(cfg.phases)} phase file(s) are valid", file=sys.stderr)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from phased_cpt.config import load_config

    if args.config is None:
        from phased_cpt.quickstart import quickstart_config_data, quickstart_model_dir

        cfg, warnings = load_config(None, args.overrides, base_data=quickstart_config_data(quickstart_model_dir()))
    else:
        cfg, warnings = load_config(args.config, args.overrides)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):  # libraries print notices on import; stdout is the plan only
        from phased_cpt.data.plan import format_plan, plan_json, plan_run

        plans = plan_run(cfg)
    print(json.dumps(plan_json(plans, cfg.context), indent=2) if args.json else format_plan(plans, cfg.context))
    return 0


def quiet_deepspeed_on_cpu() -> None:
    """Without a GPU, DeepSpeed (when installed) prints an accelerator warning to stdout on every
    import of transformers; naming the CPU accelerator up front avoids it."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def setup_logging(light: bool = False) -> None:
    main_process = os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    if light:
        return
    import warnings

    import transformers

    # Deprecation notices raised inside transformers/peft about their own internals are not
    # actionable for a user of phased-cpt.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    with interrupt.guard():  # first: Ctrl-C while importing and loading stops the command (exit 130)
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            light = getattr(args, "light", False)  # a command that never needs torch or transformers
            if not light:
                quiet_deepspeed_on_cpu()
            setup_logging(light)
            return args.func(args)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            return report_interrupt()
        except Exception:
            if interrupt.requested():  # a library turned the KeyboardInterrupt into another error
                return report_interrupt()
            raise


def report_interrupt() -> int:
    """One line, no traceback (the terminal has echoed ^C without a line break), then exit 130.

    After a Ctrl-C, the process ends here, without the interpreter's shutdown: CPython marks an
    interrupt raised inside a library's nested evaluation as unhandled even when it was caught,
    and would then end the process with SIGINT instead of 130; and a loader's worker threads
    would be waited for. Every `finally` on the way here has already run.
    """
    print(("\n" if sys.stderr.isatty() else "") + "interrupted", file=sys.stderr)
    if interrupt.requested():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return 130


if __name__ == "__main__":
    sys.exit(main())
