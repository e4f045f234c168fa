"""Every subcommand's arguments: `build_parser` declares the whole command line, each
subcommand bound to its function in `commands.py`."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
from collections.abc import Callable
from pathlib import Path

from phased_cpt.cli.commands import (
    cmd_chat,
    cmd_doctor,
    cmd_export,
    cmd_from_git,
    cmd_launch,
    cmd_merge,
    cmd_plan,
    cmd_report,
    cmd_train,
    cmd_validate,
)

MODEL_CONFIG_HELP = (
    "the model's config.json (or a directory holding it) for the memory estimate, when model.name is a hub id "
    "whose files are not on this machine (default: model.name's directory, then the local Hugging Face cache)"
)
SET_HELP = "override one config key, e.g. --set training.lora.r=16 or --set phases.0.epochs=1 (repeatable)"
TARGET_HELP = "a run directory or an adapter directory (default: the newest run under --output-dir)"


class Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one `error: ...` line and exit 2 (subcommands
    inherit it: `add_subparsers` builds them with the parser's own class)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help shows the usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="phased-cpt",
        description="Phased continual pre-training of causal LMs with one LoRA adapter trained "
        "through curriculum phases in order.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_training_commands(sub)
    data = sub.add_parser("data", help="build phase datasets", description="Build phase datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    add_from_git(data_sub)
    add_inference_commands(sub)
    add_distributed_commands(sub)
    add_debug_flag(parser, default=False)
    return parser


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's `version`), from its metadata."""
    try:
        return importlib.metadata.version("phased-cpt")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


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
        type=count_number,
        metavar="N",
        help="GPUs (training processes) per node (default: WORLD_SIZE when a launcher set it, else 1)",
    )
    plan.add_argument(
        "--nodes", type=count_number, default=1, metavar="M", help="nodes, each with --gpus GPUs (default: 1)"
    )
    plan.add_argument(
        "--gpu-model",
        type=gpu_model,
        metavar="NAME",
        help="the GPU the memory and time are for, e.g. H100, H200, A100-40GB (default: the GPU here, "
        "else H100, where the estimates were calibrated)",
    )
    plan.add_argument("--model-config", type=model_config_file, metavar="PATH", help=MODEL_CONFIG_HELP)
    plan.add_argument(
        "--bytes-per-token",
        type=bytes_per_token_number,
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
    from phased_cpt.from_git.neardup import DEFAULT_THRESHOLD
    from phased_cpt.from_git.secrets import SECRET_FILE_GLOBS

    parser = data_sub.add_parser(
        "from-git",
        help="write the three phase files from a git repository",
        description=f"Build the three phase datasets from a git repository: {PHASE1_FILE} (one document per "
        f"tracked text file at --rev), {PHASE2_FILE} (one document per commit not told in phase 3, oldest first, "
        f"with its diff) and {PHASE3_FILE} (one document per pull request of --prs; without --prs, one story per "
        "merged branch, pull request, review or squash merge): each change is trained once. They are built as of a "
        "cut that holds the repository's future out (future_*.jsonl, see --holdout-commits). Secret stores are never "
        "written and credential values are redacted. Prints a "
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
        help="output directory, created if missing; holding earlier from-git output, it needs "
        "--force (files from-git did not write are never replaced)",
    )
    parser.add_argument(
        "--rev",
        metavar="REV",
        default="HEAD",
        help="commit whose files make phase 1 and whose history makes phases 2-3 (default: HEAD); with the time "
        "split (--holdout-commits), a first-parent ancestor of it does, and the commits after that are held out",
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
        help="keep documents whose text repeats an earlier one of the same phase (default: left out as "
        "'duplicate'), and near-duplicates across phases (default: left out as 'near-duplicate')",
    )
    parser.add_argument(
        "--near-duplicate-threshold",
        metavar="J",
        type=similarity,
        default=DEFAULT_THRESHOLD,
        help="leave out a document whose line set is at least J similar (estimated Jaccard, MinHash) "
        f"to an earlier document of any phase, 0 < J <= 1 (default: {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--keep-bots",
        action="store_true",
        help="keep commits, merges and pull requests by bots (dependabot, renovate, pre-commit-ci, "
        "github-actions, any '[bot]' author; default: left out as 'bot')",
    )
    parser.add_argument(
        "--keep-emails",
        action="store_true",
        help="keep e-mail addresses in the text (default: replaced by <EMAIL>, except documentation "
        "domains such as example.com and role addresses such as security@; see docs/from-git.md)",
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
    parser.add_argument(
        "--holdout-commits",
        metavar="N",
        type=non_negative_int,
        help="hold out the last N first-parent commits as the repository's future: the phases are built as of the "
        "commit before them, and the future is written as future_evolution.jsonl, future_pr_mastery.jsonl and "
        "future_tasks.jsonl (default: the last 10%% of the first-parent commits, at most 100, none under 20 "
        "commits; 0 turns the time split off; see docs/from-git.md)",
    )
    parser.add_argument(
        "--holdout-after",
        metavar="DATE",
        help="hold out the first-parent commits committed after DATE (ISO 8601); with --holdout-commits, the "
        "larger of the two futures",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the phase files and report of an earlier from-git run in --out; a file from-git "
        "did not write (or that was changed since) is never replaced",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of a table")
    parser.set_defaults(func=cmd_from_git, light=True)


def number_type(kind: type, low: float, high: float, what: str) -> Callable[[str], int | float]:
    """An argparse type for every numeric flag: a finite `kind` (int or float) from `low` to
    `high`, else one error line saying `what` is expected. The bounds keep every later product
    (GiB -> bytes, bytes -> tokens, GPUs x nodes) finite and meaningful."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.bounds = (kind, low, high)  # what tests/fuzz checks every accepted value against
    return parse


MAX_COUNT = 1 << 20
"""Most GPUs, nodes or processes a count flag takes: more than any cluster has."""
positive_bytes = number_type(int, 1, 1 << 62, "a whole number of bytes >= 1")
count_number = number_type(int, 1, MAX_COUNT, f"a whole number from 1 to {MAX_COUNT}")
node_rank_number = number_type(int, 0, MAX_COUNT - 1, f"a whole number from 0 to {MAX_COUNT - 1}")
non_negative_int = number_type(int, 0, MAX_COUNT, f"a whole number from 0 to {MAX_COUNT}")
port_number = number_type(int, 1, 65535, "a port from 1 to 65535")
gpu_memory_gib = number_type(float, 0.01, 16384, "GiB from 0.01 to 16384")
similarity = number_type(float, 1e-6, 1.0, "a similarity above 0 and at most 1")
bytes_per_token_number = number_type(float, 0.1, 1000, "bytes per token from 0.1 to 1000 (code: about 3 to 4)")


def gpu_model(text: str) -> str:
    """An argparse type: a GPU model phased-cpt knows, by one of its names (`gpus.gpu_by_name`)."""
    from phased_cpt.gpus import gpu_by_name, known_gpu_names

    if gpu_by_name(text) is None:
        raise argparse.ArgumentTypeError(f"unknown GPU {text!r}; known: {known_gpu_names()}")
    return text


def model_config_file(text: str) -> Path:
    """An argparse type: a model's config.json (or a directory holding one) that describes a
    decoder's shape; the error names the file given and what is wrong with it."""
    from phased_cpt.model_shape import model_config_problem

    path = Path(text)
    problem = model_config_problem(path)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return path


def add_inference_commands(sub: argparse._SubParsersAction) -> None:
    from phased_cpt.inference.params import PARAM_TYPES, PARAMS, GenerationParams, flag

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
        help="with --prompt/--prompts: write prompt, both answers, stats and parameters as JSONL (a new file, "
        "or an existing one with --force; never the run's data, its files or the prompts file)",
    )
    chat.add_argument("--force", action="store_true", help="let --out replace an existing file")
    defaults = GenerationParams()
    for name, spec in PARAMS.items():
        chat.add_argument(
            flag(name),
            dest=name,
            metavar=PARAM_TYPES[name].__name__.upper(),
            help=f"{spec.allowed}; default {getattr(defaults, name)} (/set {name} in the REPL)",
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

    add_export(sub)


def add_export(sub: argparse._SubParsersAction) -> None:
    from phased_cpt.export import GGUF_TYPES, TARGET_NAMES

    export = sub.add_parser(
        "export",
        help="export a phase for llama.cpp, Ollama, vLLM or transformers, checked to answer like the trained adapter",
        description="Export the adapter of a phase (default: the last finished) as --to hf (merged transformers "
        "model), gguf (llama.cpp's converter; one .gguf file), ollama (the GGUF and a Modelfile) or vllm (the "
        "adapter directory, after checking vLLM would load it). Every export ends with a parity check: on fixed "
        "prompts the exported model's greedy tokens and logits are compared with the trained adapter on its base; "
        "nothing is written to --out unless it passes. See docs/export.md.",
    )
    export.add_argument(
        "target", type=Path, metavar="RUN_DIR|ADAPTER_DIR", help="a run directory or an adapter directory"
    )
    add_target_arguments(export, output_dir=False)
    export.add_argument("--to", required=True, choices=TARGET_NAMES, help="the format to export to")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="the directory to write the export to")
    export.add_argument(
        "--check",
        action="store_true",
        help="only run the parity check on the export already in --out (written by an earlier export --to the same)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty --out that an earlier export of the same kind wrote (never anything else)",
    )
    export.add_argument(
        "--gguf-type",
        choices=GGUF_TYPES,
        default="f16",
        help="gguf and ollama: the GGUF's weight type (llama.cpp's --outtype; default: f16)",
    )
    export.add_argument(
        "--llama-cpp",
        type=Path,
        metavar="DIR",
        help="gguf and ollama: a llama.cpp checkout holding convert_hf_to_gguf.py (default: $PHASED_CPT_LLAMA_CPP, "
        "else the copy `make install` unpacks into the environment)",
    )
    export.add_argument(
        "--max-lora-rank",
        type=count_number,
        default=16,
        metavar="R",
        help="vllm: the --max-lora-rank your vLLM server runs with (default: 16, vLLM's)",
    )
    export.set_defaults(func=cmd_export)


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
    nodes.add_argument(
        "--nodes", type=count_number, metavar="N", help="number of nodes, started one by one (with --node-rank)"
    )
    nodes.add_argument(
        "--node-rank",
        type=node_rank_number,
        metavar="K",
        help="this node's rank, 0 to N-1 (0: the node at --master-addr)",
    )
    nodes.add_argument("--master-addr", metavar="ADDR", help="address of node 0, the same on every node")
    nodes.add_argument(
        "--master-port",
        type=port_number,
        metavar="PORT",
        help="port on node 0, the same on every node (default 29500 on several nodes)",
    )


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
        "--gpus",
        type=count_number,
        metavar="N",
        help="processes per node (default: every visible GPU, or 1 without a GPU)",
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
        "--gpus", type=count_number, metavar="N", help="processes the run will use (default: every visible GPU, or 1)"
    )
    doctor.add_argument(
        "--gpu-memory",
        type=gpu_memory_gib,
        metavar="GIB",
        help="memory of each GPU the run will use, in GiB (default: the GPUs here); the memory "
        "check fails when the estimate needs more",
    )
    doctor.add_argument("--model-config", type=model_config_file, metavar="PATH", help=MODEL_CONFIG_HELP)
    add_node_arguments(doctor)
    add_set_argument(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON on stdout instead of a table")
    doctor.set_defaults(func=cmd_doctor)
