"""The `phased-cpt` command line: `parser.py` declares every subcommand's arguments, `commands.py`
has one function per subcommand, and `main` here runs one and maps errors to exit codes.

Exit codes: 0 success, 2 a user mistake (config, data, arguments; one `error:` message without
traceback), 3 training stopped by the non-finite guard, 130/143 interrupted (SIGINT/SIGTERM). A
traceback appears only for a bug, or with `--debug` (accepted anywhere on the command line).
Output for the user is printed here, except by the chat REPL (it owns the terminal), `doctor`'s
check table and `data from-git`'s summary.

Imports are lazy: `--help`, `validate` and `data from-git` never import torch or transformers,
so they start in a fraction of a second (tests/unit/cli/test_cli.py checks which modules they load).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

from phased_cpt import interrupt
from phased_cpt.cli.parser import build_parser
from phased_cpt.errors import UserError

NOISY_LIBRARIES = r"transformers(\.|$)"
"""Modules whose FutureWarnings are about the library's own internals, not actionable for a user
(transformers warns that its Trainer calls its own deprecated `is_gradient_checkpointing`)."""


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
            code = args.func(args)
            if interrupt.requested():  # a Ctrl-C that nothing could raise (it landed in a finalizer)
                return report_interrupt()
            return code
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
