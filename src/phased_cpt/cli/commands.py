"""One function per subcommand: it calls into the package and prints what the user asked for.
Errors are raised (`UserError` and its kinds); `cli.main` maps them to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from phased_cpt import interrupt
from phased_cpt.errors import StorageError, UserError

if TYPE_CHECKING:
    from phased_cpt.config import RunConfig
    from phased_cpt.inference.params import GenerationParams

logger = logging.getLogger("phased_cpt")


def cmd_from_git(args: argparse.Namespace) -> int:
    import json

    from phased_cpt.from_git import FromGitSettings, HoldoutOptions, ScreenOptions, build_datasets

    settings = FromGitSettings(
        rev=args.rev,
        since=args.since,
        prs=args.prs,
        max_file_bytes=args.max_file_bytes,
        max_diff_bytes=args.max_diff_bytes,
        excludes=tuple(args.excludes),
        includes=tuple(args.includes),
        use_default_excludes=args.use_default_excludes,
        allow_other_owner=args.allow_other_owner,
        force=args.force,
        holdout=HoldoutOptions(commits=args.holdout_commits, after=args.holdout_after),
        screen=ScreenOptions(
            keep_bots=args.keep_bots,
            keep_emails=args.keep_emails,
            near_duplicate_threshold=args.near_duplicate_threshold,
            keep_duplicates=args.keep_duplicates,
        ),
    )
    summary = build_datasets(args.repo, args.out, settings)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format_table())
    return 0


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
    from phased_cpt.training.throughput import imports_frozen

    cfg = run_config(args, announce=True)
    try:
        with imports_frozen():
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
    from phased_cpt.data.jsonl import check_general_content, scan_files, scan_phase_files
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
    problems = model_setting_problems(cfg) + model_file_problems(cfg)
    general = cfg.general_files
    groups = []
    for phase in cfg.phases:
        try:
            groups.append((phase.name, scan_phase_files(phase, cfg.data)))
        except DataError as err:  # an eval_file that is the training data again
            problems.append(str(err))
    groups += [("general", scan_files(general, cfg.data))] if general else []
    if general:
        try:
            check_general_content(
                [(s.path, s.sha256) for _, scans in groups[:-1] for s in scans],
                [(s.path, s.sha256) for s in groups[-1][1]],
            )
        except DataError as err:
            problems.append(str(err))
    future = cfg.evaluation.future
    groups += [(name, scan_files([path], cfg.data)) for name, path in future.document_columns().items()]
    if future.tasks is not None:
        from phased_cpt.data.eval_sets import read_tasks

        try:
            tasks = read_tasks(future.tasks)
            print(f"future tasks: {len(tasks)} tasks in {future.tasks}", file=sys.stderr)
        except DataError as err:
            problems.append(str(err))
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
    for, or LoRA targets that the model's config.json (on this machine) does not show to exist.
    Only then are torch and transformers imported, so `validate` stays light for a model that is
    not here and for the targets a Llama/Qwen2-style model has (`model_shape.known_module_names`)."""
    from phased_cpt.model_shape import known_module_names, locate_model_config

    if cfg.model.attn_implementation != "flash_attention_2":
        config = locate_model_config(cfg.model.name)
        if config is None:
            return []
        known = known_module_names(config)
        if known is not None and set(cfg.training.lora.target_modules) <= known:
            return []
    from phased_cpt.modeling import check_model_settings

    return check_model_settings(cfg.model, cfg.training.lora)


def model_file_problems(cfg: RunConfig) -> list[str]:
    """`tokenizer_check.local_tokenizer_problems` for the model and the settings that need FIM
    tokens; a warning when `model.name` is written as a local path (`/`, `./`, `../`, `~`: not a
    hub id) that does not exist here (it may on the machine that trains)."""
    name = cfg.model.name
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        print(
            f"warning: model.name {name!r} is a local path (not a hub id) and does not exist here; check the path "
            "unless it exists on the machine that trains",
            file=sys.stderr,
        )
    from phased_cpt.tokenizer_check import local_tokenizer_problems

    fim_settings = [
        setting
        for setting, used in (
            ("context.fim_rate", cfg.context.fim_rate > 0),
            ("evaluation.completion.infill", cfg.evaluation.completion.infill),
        )
        if used
    ]
    return local_tokenizer_problems(cfg.model.name, fim_settings)


def cmd_plan(args: argparse.Namespace) -> int:
    import contextlib
    import json

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
    from phased_cpt.inference.params import text_problem

    params = params_from_args(args)
    prompts = list(args.prompt)
    if args.prompts is not None:
        from phased_cpt.inference.batch import read_prompts

        prompts += read_prompts(args.prompts)
    if any(not p.strip() for p in prompts):
        raise UserError("--prompt: a prompt is empty")
    for prompt in prompts:  # before loading the model: a prompt no tokenizer can encode is refused now
        problem = text_problem(prompt)
        if problem is not None:
            raise UserError(f"--prompt{'' if prompt in args.prompt else 's'}: {problem}")
    target = resolve_target(
        args.target, output_dir=output_dir, phase=args.phase, adapter=args.adapter, base_model=args.base_model
    )
    if args.out is not None:
        from phased_cpt.inference.batch import check_results_file

        protected = {"the prompts file": [args.prompts] if args.prompts else []}
        if target.run is not None:
            protected |= {"the run's data": target.run.data_files(), "the run directory": [target.run.path]}
        check_results_file(args.out, args.force, protected)
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

    # Undecodable input bytes reach the REPL as lone surrogates, which it refuses with one error
    # line, instead of input() raising UnicodeDecodeError under a strict UTF-8 locale.
    sys.stdin.reconfigure(errors="surrogateescape")
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
    from phased_cpt.inference.params import PARAMS, GenerationParams, ParamError, flag, set_param

    params = GenerationParams()
    for name in PARAMS:
        value = getattr(args, name)
        if value is not None:
            try:
                params = set_param(params, name, value)
            except ParamError as err:
                raise UserError(f"{flag(name)}: {err}") from None
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


def cmd_export(args: argparse.Namespace) -> int:
    from phased_cpt.inference.discovery import resolve_target

    target = resolve_target(args.target, phase=args.phase, base_model=args.base_model)
    from phased_cpt.export.flow import check_export, export_adapter  # torch: only once the arguments are checked
    from phased_cpt.export.target import ExportOptions, Source

    source = Source(
        model=target.model,
        adapter_dir=target.adapter_dir,
        label=target.active,
        run_dir=target.run.path if target.run is not None else None,
    )
    options = ExportOptions(gguf_type=args.gguf_type, llama_cpp_dir=args.llama_cpp, max_lora_rank=args.max_lora_rank)
    if args.check:
        result = check_export(source, args.to, args.out, options)
        print(f"checked the {args.to} export in {result.out_dir}: {result.parity.describe()}")
    else:
        logger.info("exporting %s (%s) --to %s", target.active, target.adapter_dir, args.to)
        result = export_adapter(source, args.to, args.out, options, force=args.force)
        print(f"exported {target.active} --to {args.to} into {result.out_dir}: {result.parity.describe()}")
    for line in result.usage:
        print(line)
    return 0


def resolve_node_arguments(args: argparse.Namespace):
    from phased_cpt.launch import resolve_nodes

    return resolve_nodes(args.hostfile, args.nodes, args.node_rank, args.master_addr, args.master_port)


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
    from phased_cpt.doctor import report_checks, run_checks
    from phased_cpt.launch import gpu_count

    processes = args.gpus or max(gpu_count(), 1)
    nodes = resolve_node_arguments(args)
    return report_checks(
        run_checks(args.config, args.overrides, processes, args.gpu_memory, args.model_config, nodes), args.json
    )
