"""The `phased-cpt` command line: every subcommand's arguments, and for each one function that
calls into the package and maps errors to exit codes.

Exit codes: 0 success, 2 a user mistake (config, data, arguments; one `error:` message without
traceback), 3 training stopped by the non-finite guard, 130/143 interrupted (SIGINT/SIGTERM). A
traceback appears only for a bug, or with `--debug` (accepted anywhere on the command line).
Output for the user is printed here, except by the chat REPL (it owns the terminal), `doctor`'s
check table and `data from-git`'s summary.

Imports are lazy: `--help`, `validate` and `data from-git` never import torch or transformers,
so they start in a fraction of a second (tests/unit/test_cli.py checks which modules they load).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from phased_cpt import interrupt
from phased_cpt.errors import StorageError, UserError

if TYPE_CHECKING:
    from phased_cpt.config import RunConfig
    from phased_cpt.inference.params import GenerationParams

logger = logging.getLogger("phased_cpt")

MODEL_CONFIG_HELP = (
    "the model's config.json (or a directory holding it) for the memory estimate, when model.name is a hub id "
    "whose files are not on this machine (default: model.name's directory, then the local Hugging Face cache)"
)
SET_HELP = "override one config key, e.g. --set training.lora.r=16 or --set phases.0.epochs=1 (repeatable)"
TARGET_HELP = "a run directory or an adapter directory (default: the newest run under --output-dir)"
NOISY_LIBRARIES = r"transformers(\.|$)"
"""Modules whose FutureWarnings are about the library's own internals, not actionable for a user
(transformers warns that its Trainer calls its own deprecated `is_gradient_checkpointing`)."""


# --- arguments ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phased-cpt",
        description="Phased continual pre-training of causal LMs with one LoRA adapter trained "
        "through curriculum phases in order.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_training_commands(sub)
    data = sub.add_parser("data", help="build phase datasets", description="Build phase datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    add_from_git(data_sub)
    add_inference_commands(sub)
    add_distributed_commands(sub)
    add_debug_flag(parser, default=False)
    return parser


def add_debug_flag(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """`--debug` on the parser and every subcommand: show the traceback of an error (a
    subcommand's flag only overrides the top-level default when given)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, also print its traceback and log debug messages",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                add_debug_flag(subparser)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE`, the config override every config-reading command takes."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train every phase in order",
        description="Train one LoRA adapter through every phase of CONFIG in order. Without CONFIG, "
        "runs the embedded quickstart (a tiny model built offline, bundled sample data).",
    )
    train.add_argument("config", nargs="?", type=Path, help="YAML config (default: the embedded quickstart)")
    add_set_argument(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
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
    add_set_argument(validate)
    validate.add_argument(
        "--print-translated",
        action="store_true",
        help="print the config in phased-cpt's layout, with the translation's notes as comments (for configs "
        "written for the older tool); printed even when the data files do not exist yet",
    )
    validate.set_defaults(func=cmd_validate, light=True)

    plan = sub.add_parser(
        "plan",
        help="show what each phase will train on, how many steps, how long and in how much memory",
        description="Validate, tokenize, chunk and pack every phase's data (or reuse the data cache) and "
        "print per phase: documents (train/eval), rejected lines, tokens, target tokens, chunks, rows, "
        "packing efficiency, EOS count, longest document, optimizer steps per epoch and in total, warm-up "
        "steps, evaluations and checkpoints, replay tokens; then the memory per GPU (from the model's "
        "config.json only: no weights) and the time on --gpus x --nodes GPUs, with warnings for settings that "
        "make a phase train differently than it reads. Without CONFIG, plans the embedded quickstart. When the "
        "tokenizer cannot be loaded here, token counts are estimated from the documents' bytes, and the plan "
        "says so.",
    )
    plan.add_argument("config", nargs="?", type=Path, help="YAML config (default: the embedded quickstart)")
    plan.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="GPUs (training processes) per node (default: WORLD_SIZE when a launcher set it, else 1)",
    )
    plan.add_argument("--nodes", type=int, default=1, metavar="M", help="nodes, each with --gpus GPUs (default: 1)")
    plan.add_argument(
        "--gpu-model",
        metavar="NAME",
        help="the GPU the memory and time are for, e.g. H100, H200, A100-40GB (default: the GPU here, "
        "else H100, where the estimates were calibrated)",
    )
    plan.add_argument("--model-config", type=Path, metavar="PATH", help=MODEL_CONFIG_HELP)
    plan.add_argument(
        "--bytes-per-token",
        type=float,
        default=None,
        metavar="B",
        help="UTF-8 bytes per token when the tokenizer cannot be loaded here (default: 3.5)",
    )
    add_set_argument(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON on stdout instead of a table")
    plan.set_defaults(func=cmd_plan)


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
    parser.add_argument(
        "repo", metavar="REPO", type=Path, help="path of the git repository (or any directory inside it)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        required=True,
        help="output directory, created if missing; the three .jsonl files and the report in it "
        "are replaced atomically",
    )
    parser.add_argument(
        "--rev",
        metavar="REV",
        default="HEAD",
        help="commit whose files make phase 1 and whose history makes phases 2-3 (default: HEAD)",
    )
    parser.add_argument(
        "--since",
        metavar="DATE",
        help="only commits committed at or after DATE (ISO 8601, e.g. 2024-01-31 or "
        "2024-01-31T12:00:00+01:00; UTC when no offset) for phase 2 and the merge-commit fallback "
        "of phase 3",
    )
    parser.add_argument(
        "--max-file-bytes",
        metavar="N",
        type=positive_bytes,
        default=DEFAULT_MAX_FILE_BYTES,
        help=f"skip files larger than N bytes in phase 1 (default: {DEFAULT_MAX_FILE_BYTES})",
    )
    parser.add_argument(
        "--max-diff-bytes",
        metavar="N",
        type=positive_bytes,
        default=DEFAULT_MAX_DIFF_BYTES,
        help="cut each commit or pull-request diff at N bytes, marking the cut "
        f"'[diff truncated: ...]' (default: {DEFAULT_MAX_DIFF_BYTES})",
    )
    parser.add_argument(
        "--exclude",
        metavar="GLOB",
        action="append",
        default=[],
        dest="excludes",
        help="also leave out paths matching GLOB, in every phase (repeatable); a glob matches the "
        "whole path, a leading directory or one path component, e.g. 'docs/*', '*.csv', 'fixtures'",
    )
    parser.add_argument(
        "--include",
        metavar="GLOB",
        action="append",
        default=[],
        dest="includes",
        help="keep paths matching GLOB that a default rule would leave out (vendored, lock, "
        "generated, data, minified; repeatable); never brings back a secret, and --exclude still wins",
    )
    parser.add_argument(
        "--default-excludes",
        dest="use_default_excludes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"apply the default rules: the globs ({default_globs}), .gitattributes "
        "linguist-vendored/linguist-generated, detected vendored copies and the minified/generated "
        "content tests (default: on; --no-default-excludes keeps such files). Secret stores "
        f"({' '.join(SECRET_FILE_GLOBS)}) are always left out and credential values always redacted",
    )
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep documents whose text repeats an earlier one of the same phase (default: left out as 'duplicate')",
    )
    parser.add_argument(
        "--prs",
        metavar="FILE_OR_DIR",
        type=Path,
        help="pull-request export for phase 3: a JSON file, or a directory of JSON files, each a "
        "list of GitHub REST pull objects with keys 'diff', 'reviews', 'review_comments' (see "
        "docs/from-git.md); without it phase 3 uses merge commits",
    )
    parser.add_argument(
        "--allow-other-owner",
        action="store_true",
        help="read a repository owned by another user (git refuses by default: safe.directory); "
        "its hooks, filters and configured commands never run either way",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of a table")
    parser.set_defaults(func=cmd_from_git, light=True)


def add_inference_commands(sub: argparse._SubParsersAction) -> None:
    from phased_cpt.inference.params import PARAM_CHECKS, GenerationParams

    chat = sub.add_parser(
        "chat",
        help="compare the base model and a fine-tuned phase, interactively or on given prompts",
        description="Answer prompts with the base model (adapter disabled) and with a phase's adapter, "
        "side by side. Without RUN_DIR: the newest run under --output-dir and its last finished phase. "
        "With --prompt/--prompts: answer those, print both, optionally write --out JSONL, and exit; "
        "otherwise an interactive REPL (/help inside).",
    )
    chat.add_argument("target", nargs="?", type=Path, metavar="RUN_DIR|ADAPTER_DIR", help=TARGET_HELP)
    add_target_arguments(chat)
    chat.add_argument(
        "--adapter", type=Path, metavar="PATH", help="any adapter directory, e.g. a checkpoint: RUN/PHASE/checkpoint-N"
    )
    chat.add_argument(
        "--list", action="store_true", help="list the runs, phases, adapters and checkpoints found, then exit"
    )
    chat.add_argument(
        "--chat-template",
        action="store_true",
        help="wrap prompts in the tokenizer's chat template (default: raw completion)",
    )
    chat.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="TEXT",
        help="answer TEXT with the base and the fine-tuned model, print both, exit (repeatable)",
    )
    chat.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help='like --prompt for every prompt in FILE (.jsonl: {"prompt": ...} per line; else one per line)',
    )
    chat.add_argument(
        "--out",
        type=Path,
        metavar="RESULTS.jsonl",
        help="with --prompt/--prompts: write prompt, both answers, stats and parameters as JSONL",
    )
    defaults = GenerationParams()
    for name, (kind, _, allowed) in PARAM_CHECKS.items():
        chat.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=kind.__name__.upper(),
            help=f"{allowed}; default {getattr(defaults, name)} (/set {name} in the REPL)",
        )
    chat.set_defaults(func=cmd_chat)

    merge = sub.add_parser(
        "merge",
        help="merge a phase's adapter into the base weights and save a plain transformers model",
        description="Merge the adapter of a phase (default: the last finished) into the base model and save "
        "safetensors, config and tokenizer to --out, loadable with AutoModelForCausalLM.from_pretrained. "
        "The merged model's logits are checked against base + adapter before anything is written to --out.",
    )
    merge.add_argument(
        "target", type=Path, metavar="RUN_DIR|ADAPTER_DIR", help="a run directory or an adapter directory"
    )
    add_target_arguments(merge, output_dir=False)
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the merged model")
    merge.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty --out that an earlier merge wrote (never anything else)",
    )
    merge.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="merge and save in this dtype (default: the run's model.dtype; auto is float32 on CPU)",
    )
    merge.set_defaults(func=cmd_merge)


def add_target_arguments(parser: argparse.ArgumentParser, output_dir: bool = True) -> None:
    """What `chat` and `merge` load: which phase, which base model, where runs are."""
    parser.add_argument("--phase", metavar="NAME|N", help="a finished phase by name or number (default: the last)")
    parser.add_argument(
        "--base-model",
        metavar="NAME_OR_DIR",
        help="load this base model instead of the one the run's config names (e.g. it moved)",
    )
    if output_dir:
        parser.add_argument(
            "--output-dir",
            type=Path,
            metavar="DIR",
            help="where to look for runs (default: output.dir of --config, else ./outputs)",
        )
        parser.add_argument("--config", type=Path, metavar="CONFIG", help="read output.dir from this training config")


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Several nodes, for `launch` and `doctor` (docs/multi-gpu.md)."""
    nodes = parser.add_argument_group("several nodes")
    nodes.add_argument(
        "--hostfile",
        type=Path,
        metavar="FILE",
        help="DeepSpeed hostfile ('hostname slots=N' per line); alone: DeepSpeed's launcher starts "
        "every node over ssh; with --node-rank: run on each node, no ssh",
    )
    nodes.add_argument("--nodes", type=int, metavar="N", help="number of nodes, started one by one (with --node-rank)")
    nodes.add_argument(
        "--node-rank", type=int, metavar="K", help="this node's rank, 0 to N-1 (0: the node at --master-addr)"
    )
    nodes.add_argument("--master-addr", metavar="ADDR", help="address of node 0, the same on every node")
    nodes.add_argument(
        "--master-port",
        type=int,
        metavar="PORT",
        help="port on node 0, the same on every node (default 29500 on several nodes)",
    )


def resolve_node_arguments(args: argparse.Namespace):
    from phased_cpt.launch import resolve_nodes

    return resolve_nodes(args.hostfile, args.nodes, args.node_rank, args.master_addr, args.master_port)


def add_distributed_commands(sub: argparse._SubParsersAction) -> None:
    launch = sub.add_parser(
        "launch",
        help="run the pre-flight checks, then train on several GPUs (or CPU processes) or nodes",
        description="Run `phased-cpt doctor` checks, then start one `phased-cpt train CONFIG` process per GPU "
        "through the DeepSpeed launcher (default when the config sets deepspeed) or torchrun. Without a GPU, "
        "--gpus N starts N CPU processes over gloo. See docs/multi-gpu.md.",
    )
    launch.add_argument("config", type=Path, help="YAML config")
    launch.add_argument(
        "--gpus", type=int, metavar="N", help="processes per node (default: every visible GPU, or 1 without a GPU)"
    )
    add_node_arguments(launch)
    launch.add_argument(
        "--launcher",
        choices=["deepspeed", "torchrun"],
        help="default: deepspeed when the config sets deepspeed or --hostfile is given, else torchrun",
    )
    add_set_argument(launch)
    launch.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
        help="passed to `phased-cpt train --resume` on every process",
    )
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
    doctor.add_argument(
        "--gpus", type=int, metavar="N", help="processes the run will use (default: every visible GPU, or 1)"
    )
    doctor.add_argument(
        "--gpu-memory",
        type=float,
        metavar="GIB",
        help="memory of each GPU the run will use, in GiB (default: the GPUs here); the memory "
        "check fails when the estimate needs more",
    )
    doctor.add_argument("--model-config", type=Path, metavar="PATH", help=MODEL_CONFIG_HELP)
    add_node_arguments(doctor)
    add_set_argument(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON on stdout instead of a table")
    doctor.set_defaults(func=cmd_doctor)


# --- commands ----------------------------------------------------------------------------------


def cmd_from_git(args: argparse.Namespace) -> int:
    import json

    from phased_cpt.from_git import build_datasets

    summary = build_datasets(
        args.repo,
        args.out,
        rev=args.rev,
        since=args.since,
        max_file_bytes=args.max_file_bytes,
        excludes=args.excludes,
        includes=args.includes,
        use_default_excludes=args.use_default_excludes,
        prs=args.prs,
        max_diff_bytes=args.max_diff_bytes,
        keep_duplicates=args.keep_duplicates,
        allow_other_owner=args.allow_other_owner,
    )
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


def run_config(args: argparse.Namespace, announce: bool = False) -> RunConfig:
    """The config of `train` and `plan`: CONFIG, or the embedded quickstart without one; with
    `--set` overrides applied and the config's warnings shown."""
    from phased_cpt.config import load_config

    if args.config is None:
        from phased_cpt.quickstart import describe_quickstart, quickstart_config_data, quickstart_model_dir

        model_dir = quickstart_model_dir()
        cfg, notes = load_config(None, args.overrides, base_data=quickstart_config_data(model_dir))
        if announce:  # what actually runs: the --set overrides may point at your files or model
            logger.info("%s", describe_quickstart(cfg.model.name, {p.name: p.file for p in cfg.phases}, model_dir))
    else:
        cfg, notes = load_config(args.config, args.overrides)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from phased_cpt.training.recipe import run_training
    from phased_cpt.training.signals import TrainingInterrupted

    cfg = run_config(args, announce=True)
    try:
        run = run_training(cfg, resume=args.resume)
    except StorageError as err:
        room = "once there is room (or the directory is writable)"
        then = (
            f"the run can be resumed {room}: {resume_command(args, err.run_path)}"
            if err.run_path
            else f"nothing was left half-written: run the command again {room}"
        )
        raise StorageError(f"{err}; {then}") from err
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
    from phased_cpt.config.legacy import TRANSLATED
    from phased_cpt.data.jsonl import scan_files, scan_phase_files
    from phased_cpt.errors import DataError

    if args.print_translated:
        # The translation prints even when the data files do not exist yet; they are checked after.
        draft, notes = load_config(args.config, args.overrides, check_files=False)
        header = ["# translated from the older tool's layout by phased-cpt\n"] if TRANSLATED in notes else []
        header += [f"# note: {note}\n" for note in notes if note != TRANSLATED]
        print("".join(header) + dump_config(draft), end="", flush=True)
    cfg, notes = load_config(args.config, args.overrides)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    problems = model_setting_problems(cfg)
    general = cfg.general.files + ([cfg.evaluation.general_file] if cfg.evaluation.general_file else [])
    groups = []
    for phase in cfg.phases:
        try:
            groups.append((phase.name, scan_phase_files(phase, cfg.data)))
        except DataError as err:  # an eval_file that is the training data again
            problems.append(str(err))
    groups += [("general", scan_files(general, cfg.data))] if general else []
    for name, scans in groups:
        for scan in scans:
            try:
                scan.raise_if_bad(cfg.data.text_field)
                skipped = f", {len(scan.rejected)} line(s) to be left out ({scan.duplicates} duplicate(s))"
                print(
                    f"{name}: {scan.documents} documents in {scan.path}{skipped if scan.rejected else ''}",
                    file=sys.stderr,
                )
            except DataError as err:
                problems.append(str(err))
    if problems:
        raise DataError("\n".join(problems))
    print(
        f"{args.config}: config and the data files of {len(cfg.phases)} phase(s)"
        f"{' and the general source' if general else ''} are valid",
        file=sys.stderr,
    )
    return 0


def model_setting_problems(cfg: RunConfig) -> list[str]:
    """`modeling.check_model_settings` where it has something to check: flash_attention_2 asked
    for, or the model's config.json on this machine. Only then are torch and transformers
    imported, so validating a config for a model that is not here stays light."""
    from phased_cpt.memory import locate_model_config

    if cfg.model.attn_implementation != "flash_attention_2" and locate_model_config(cfg.model.name) is None:
        return []
    from phased_cpt.modeling import check_model_settings

    return check_model_settings(cfg.model, cfg.training.lora)


def cmd_plan(args: argparse.Namespace) -> int:
    import contextlib
    import json

    if args.gpus is not None and args.gpus < 1 or args.nodes < 1:
        raise UserError("--gpus and --nodes must be at least 1")
    if args.bytes_per_token is not None and args.bytes_per_token <= 0:
        raise UserError("--bytes-per-token must be positive")
    cfg = run_config(args)
    with contextlib.redirect_stdout(sys.stderr):  # libraries print notices on import; stdout is the plan only
        from phased_cpt.data.plan import BYTES_PER_TOKEN
        from phased_cpt.planning import format_run_plan, plan_run, run_plan_json

        world = args.gpus * args.nodes if args.gpus else None
        run = plan_run(
            cfg, world, args.nodes, args.gpu_model, args.model_config, args.bytes_per_token or BYTES_PER_TOKEN
        )
    if args.json:
        print(json.dumps(run_plan_json(run, cfg.context), indent=2))
    else:
        print(format_run_plan(run, cfg.context, cfg.training))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from phased_cpt.inference.discovery import describe_runs, resolve_target

    output_dir = chat_output_dir(args)
    if args.list:
        print(describe_runs(output_dir, args.target), end="")
        return 0
    if args.out is not None and not (args.prompt or args.prompts):
        raise UserError("--out needs --prompt TEXT or --prompts FILE (it records their answers)")
    params = params_from_args(args)
    prompts = list(args.prompt)
    if args.prompts is not None:
        from phased_cpt.inference.batch import read_prompts

        prompts += read_prompts(args.prompts)
    if any(not p.strip() for p in prompts):
        raise UserError("--prompt: a prompt is empty")
    target = resolve_target(
        args.target, output_dir=output_dir, phase=args.phase, adapter=args.adapter, base_model=args.base_model
    )
    logger.info("base model: %s", target.model.name)  # before the imports: the first seconds show what loads
    logger.info("adapter: %s (%s)", target.active, target.adapter_dir)
    from phased_cpt.inference.generation import load_generator

    generator = load_generator(target, args.chat_template)
    interrupt.take_over()  # loaded: from here Ctrl-C stops an answer (REPL) or the whole command
    if prompts:
        from phased_cpt.inference.batch import compare_prompts

        compare_prompts(generator, prompts, params, sys.stdout, args.out)
        if args.out is not None:
            logger.info("wrote %d result(s) to %s", len(prompts), args.out)
        return 0
    from phased_cpt.inference.repl import Repl

    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    return Repl(generator, params).run()


def chat_output_dir(args: argparse.Namespace) -> Path:
    if args.output_dir is not None:
        return args.output_dir
    if args.config is not None:
        from phased_cpt.config import load_config

        return load_config(args.config, check_files=False)[0].output.dir
    return Path("outputs")


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    from phased_cpt.inference.params import PARAM_CHECKS, GenerationParams, ParamError, set_param

    params = GenerationParams()
    for name in PARAM_CHECKS:
        value = getattr(args, name)
        if value is not None:
            try:
                params = set_param(params, name, value)
            except ParamError as err:
                raise UserError(f"--{name.replace('_', '-')}: {err}") from None
    return params


def cmd_merge(args: argparse.Namespace) -> int:
    from phased_cpt.inference.discovery import resolve_target

    target = resolve_target(args.target, phase=args.phase, base_model=args.base_model)
    from phased_cpt.inference.merge import merge_adapter  # torch: only once the arguments are checked

    model = target.model if args.dtype is None else target.model.model_copy(update={"dtype": args.dtype})
    logger.info("merging %s into %s", target.adapter_dir, model.name)
    report = merge_adapter(
        model,
        target.adapter_dir,
        args.out,
        force=args.force,
        run_dir=target.run.path if target.run is not None else None,
    )
    print(
        f"merged {target.active} into {report.out_dir} ({str(report.dtype).removeprefix('torch.')}; "
        f"relative logit error vs base + adapter {report.relative_error:.2e} <= {report.allowed:.0e} "
        f"on {report.probes} probe prompts)"
    )
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    """Run the pre-flight checks, then replace this process with the launcher (signals then reach it directly)."""
    from phased_cpt.launch import gpu_count, launch_plan

    processes = args.gpus or max(gpu_count(), 1)
    nodes = resolve_node_arguments(args)
    if not args.skip_doctor:
        from phased_cpt.doctor import format_report, has_failures, run_checks

        checks = run_checks(args.config, args.overrides, processes=processes, nodes=nodes)
        print(format_report(checks), file=sys.stderr)
        if has_failures(checks):
            raise UserError("pre-flight checks failed (see the table above); fix them, or pass --skip-doctor")
    plan = launch_plan(args.config, args.overrides, processes, nodes, args.launcher, args.resume)
    print(f"launcher: {plan.launcher} ({plan.reason})", file=sys.stderr)
    print("launching: " + " ".join(plan.command), file=sys.stderr)
    sys.stderr.flush()
    os.execvpe(plan.command[0], plan.command, plan.env)
    return 0  # not reached: exec replaced this process


def cmd_doctor(args: argparse.Namespace) -> int:
    from phased_cpt.doctor import doctor
    from phased_cpt.launch import gpu_count

    return doctor(
        args.config,
        args.overrides,
        args.gpus or max(gpu_count(), 1),
        args.json,
        args.gpu_memory,
        args.model_config,
        resolve_node_arguments(args),
    )


# --- process setup -----------------------------------------------------------------------------


def quiet_deepspeed_on_cpu() -> None:
    """Without a GPU, DeepSpeed (when installed) prints an accelerator warning to stdout on every
    import of transformers; naming the CPU accelerator up front avoids it. Imports torch."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def setup_logging() -> None:
    """INFO on the main process, WARNING on the others; transformers quiet (errors only, no
    progress bars) without importing it: it reads these variables when first imported."""
    from phased_cpt.distributed import is_local_main_process, is_main_process

    logging.basicConfig(
        level=logging.INFO if is_main_process() and is_local_main_process() else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    warnings.filterwarnings("ignore", category=FutureWarning, module=NOISY_LIBRARIES)
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    else:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    with interrupt.guard():  # first: Ctrl-C while importing and loading stops the command (exit 130)
        args = None
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            setup_logging()
            if not getattr(args, "light", False):
                quiet_deepspeed_on_cpu()
            if args.debug:
                logging.getLogger("phased_cpt").setLevel(logging.DEBUG)
            return args.func(args)
        except UserError as err:
            if args is not None and args.debug:
                traceback.print_exc()
            print(f"error: {err}", file=sys.stderr)  # secrets are masked in the message (errors.UserError)
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
