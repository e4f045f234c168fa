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
    from phased_cpt.from_git import command as from_git

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
    general = cfg.general.files + ([cfg.evaluation.general_file] if cfg.evaluation.general_file else [])
    groups = [(phase.name, phase.files) for phase in cfg.phases] + ([("general", general)] if general else [])
    for name, files in groups:
        for scan in scan_phase_files(files, cfg.data.text_field, cfg.data.on_bad_record, cfg.data.dedup):
            try:
                scan.raise_if_bad(cfg.data.text_field)
                skipped = f", {len(scan.rejected)} line(s) to be left out ({scan.duplicates} duplicate(s))"
                print(f"{name}: {scan.documents} documents in {scan.path}{skipped if scan.rejected else ''}",
                      file=sys.stderr)
            except DataError as err:
                problems.append(str(err))
    if problems:
        raise DataError("\n".join(problems))
    print(f"{args.config}: config and the data files of {len(cfg.phases)} phase(s)"
          f"{' and the general source' if general else ''} are valid", file=sys.stderr)
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
    with interrupt.guard():  # first: Ctrl-C while importing and loading stops the command (exit 130)
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            quiet_deepspeed_on_cpu()
            setup_logging()
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
