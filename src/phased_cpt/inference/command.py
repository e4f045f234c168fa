"""The `chat` and `merge` subcommands: their arguments, and one function each that runs them.

`cli.py` registers them; the work is in discovery (what to load), generation (answers), repl
(interactive), batch (scripted comparison) and merge (export).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from phased_cpt import interrupt
from phased_cpt.errors import UserError
from phased_cpt.inference.discovery import Target, describe_runs, resolve_target
from phased_cpt.inference.params import PARAM_CHECKS, GenerationParams, ParamError, set_param

if TYPE_CHECKING:
    from phased_cpt.inference.generation import Generator

logger = logging.getLogger(__name__)

TARGET_HELP = "a run directory or an adapter directory (default: the newest run under --output-dir)"


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", type=Path, metavar="RUN_DIR|ADAPTER_DIR", help=TARGET_HELP)
    add_target_arguments(parser)
    parser.add_argument("--adapter", type=Path, metavar="PATH",
                        help="any adapter directory, e.g. a checkpoint: RUN/PHASE/checkpoint-N")
    parser.add_argument("--list", action="store_true",
                        help="list the runs, phases, adapters and checkpoints found, then exit")
    parser.add_argument("--chat-template", action="store_true",
                        help="wrap prompts in the tokenizer's chat template (default: raw completion)")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                        help="answer TEXT with the base and the fine-tuned model, print both, exit (repeatable)")
    parser.add_argument("--prompts", type=Path, metavar="FILE",
                        help="like --prompt for every prompt in FILE "
                        "(.jsonl: {\"prompt\": ...} per line; else one per line)")
    parser.add_argument("--out", type=Path, metavar="RESULTS.jsonl",
                        help="with --prompt/--prompts: write prompt, both answers, stats and parameters as JSONL")
    defaults = GenerationParams()
    for name, (kind, _, allowed) in PARAM_CHECKS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=kind.__name__.upper(),
                            help=f"{allowed}; default {getattr(defaults, name)} (/set {name} in the REPL)")


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, metavar="RUN_DIR|ADAPTER_DIR",
                        help="a run directory or an adapter directory")
    add_target_arguments(parser, output_dir=False)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the merged model")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                        help="merge and save in this dtype (default: the run's model.dtype; auto is float32 on CPU)")


def add_target_arguments(parser: argparse.ArgumentParser, output_dir: bool = True) -> None:
    parser.add_argument("--phase", metavar="NAME|N", help="a finished phase by name or number (default: the last)")
    parser.add_argument("--base-model", metavar="NAME_OR_DIR",
                        help="load this base model instead of the one the run's config names (e.g. it moved)")
    if output_dir:
        parser.add_argument("--output-dir", type=Path, metavar="DIR",
                            help="where to look for runs (default: output.dir of --config, else ./outputs)")
        parser.add_argument("--config", type=Path, metavar="CONFIG", help="read output.dir from this training config")


def run_chat(args: argparse.Namespace) -> int:
    output_dir = chat_output_dir(args)
    if args.list:
        print(describe_runs(output_dir), end="")
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
    target = resolve_target(args.target, output_dir=output_dir, phase=args.phase, adapter=args.adapter,
                            base_model=args.base_model)
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


def run_merge(args: argparse.Namespace) -> int:
    target = resolve_target(args.target, phase=args.phase, base_model=args.base_model)
    from phased_cpt.inference.merge import merge_adapter  # torch: only once the arguments are checked

    model = target.model if args.dtype is None else target.model.model_copy(update={"dtype": args.dtype})
    logger.info("merging %s into %s", target.adapter_dir, model.name)
    report = merge_adapter(model, target.adapter_dir, args.out, force=args.force)
    print(
        f"merged {target.active} into {report.out_dir} ({str(report.dtype).removeprefix('torch.')}; "
        f"relative logit error vs base + adapter {report.relative_error:.2e} <= {report.allowed:.0e} "
        f"on {report.probes} probe prompts)"
    )
    return 0


def chat_output_dir(args: argparse.Namespace) -> Path:
    if args.output_dir is not None:
        return args.output_dir
    if args.config is not None:
        from phased_cpt.config import load_config

        return load_config(args.config, check_files=False)[0].output.dir
    return Path("outputs")


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    params = GenerationParams()
    for name in PARAM_CHECKS:
        value = getattr(args, name)
        if value is not None:
            try:
                params = set_param(params, name, value)
            except ParamError as err:
                raise UserError(f"--{name.replace('_', '-')}: {err}") from None
    return params


def load_generator(target: Target, chat_template: bool) -> Generator:
    logger.info("base model: %s", target.model.name)  # before the imports: the first seconds show what loads
    logger.info("adapter: %s (%s)", target.active, target.adapter_dir)
    import torch

    from phased_cpt.inference.generation import Generator
    from phased_cpt.modeling import load_base_model, load_tokenizer

    try:
        tokenizer = load_tokenizer(target.model)
        base = load_base_model(target.model)
    except UserError as err:
        raise UserError(f"{err}\n(pass --base-model NAME_OR_DIR if the base model is elsewhere)") from None
    if torch.cuda.is_available():
        base.to("cuda")  # the whole model on one GPU; chat does not shard over several
    return Generator(base, tokenizer, target.adapters, target.active, chat_template=chat_template)
