"""The interactive base-vs-fine-tuned REPL: commands, streaming answers and their stats lines.

Every line that does not start with `/` is a prompt. In compare mode (the default) it goes
through the base model (adapter disabled), then through the fine-tuned model (active phase's
adapter), both with the same parameters and seed; each answer streams token by token and ends
with a stats line such as

    [ft] prompt 12 tok | generated 32 tok | 0.41 s | 78.0 tok/s | stop: max_tokens

A bad command or value prints one `error:` line and the REPL goes on; EOF and Ctrl-C at the
prompt exit (Ctrl-C during an answer stops that answer).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from phased_cpt.inference.generation import Generator
from phased_cpt.inference.params import PARAMS, GenerationParams, ParamError, set_param, text_problem

PROMPT = ">>> "
CONTINUATION = "... "
SIDES = {"base": "base model (adapter disabled)", "ft": "fine-tuned"}

COMMANDS = {
    "set": ("/set NAME VALUE", f"set {' | '.join(PARAMS)}"),
    "params": ("/params", "show the generation parameters, mode and phase"),
    "compare": ("/compare", "toggle side-by-side base vs fine-tuned (on at start)"),
    "base": ("/base, /ft", "answer with the base model only / the fine-tuned model only"),
    "ft": None,  # shown with /base
    "phase": ("/phase [NAME|N]", "switch to another phase's adapter (no argument: list them)"),
    "reset": ("/reset", "restore the starting parameters and compare mode"),
    "help": ("/help", "this text"),
    "quit": ("/quit", "leave (EOF and Ctrl-C too)"),
}
"""{command: (usage, what it does) for /help, or None where another command's line shows it}. A
new command is an entry here and a `Repl.do_<command>` method (tests/unit/inference/test_repl.py
fails when one lacks the other)."""
ALIASES = {"exit": "quit", "q": "quit"}

HELP = "\n".join(
    [
        "commands:",
        *(f"  {usage:<17} {effect}" for usage, effect in filter(None, COMMANDS.values())),
        "anything else is a prompt, completed as raw text; end a line with \\ to continue it on the next",
    ]
)


SHOWN_CONTROLS = {
    code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(code) not in "\n\t"
}
"""Control characters a model generated, shown escaped (`\\x1b`): raw, they would drive the
terminal (an escape sequence clears or rewrites the screen, a NUL ends up in a log) instead of
being read. New lines and tabs stay as they are."""


class Repl:
    def __init__(self, generator: Generator, params: GenerationParams, out: TextIO = sys.stdout) -> None:
        self.generator = generator
        self.start_params = self.params = params
        self.out = out
        self.compare = True
        self.single = "ft"  # the side answered when compare is off

    def run(self, read: Callable[[str], str] = input) -> int:
        """Read and handle lines until /quit, EOF or Ctrl-C; the CLI's exit code."""
        self.print(f"phase: {self.generator.active} | {self.describe_mode()} | /help for commands")
        while True:
            try:
                line = self.read_prompt(read)
            except (EOFError, KeyboardInterrupt):
                self.print("")
                return 0
            if not self.handle(line):
                return 0

    def read_prompt(self, read: Callable[[str], str]) -> str:
        lines = [read(PROMPT)]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(read(CONTINUATION))
        return "\n".join(lines)

    def handle(self, line: str) -> bool:
        """Handle one command or prompt; False when the REPL should end."""
        if not line.strip():
            return True
        problem = text_problem(line, "the line")
        if problem is not None:
            self.print(f"error: {problem}")
            return True
        if not line.startswith("/"):
            self.answer(line)
            return True
        command, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        try:
            return self.command(command, arg)
        except ParamError as err:
            self.print(f"error: {err}")
            return True

    def command(self, command: str, arg: str) -> bool:
        """Run `/command arg` (its `do_` method); False when the REPL should end."""
        command = ALIASES.get(command, command)
        if command not in COMMANDS:
            raise ParamError(f"unknown command /{command} (/help lists the commands)")
        return getattr(self, f"do_{command}")(arg) is not False

    def do_quit(self, arg: str) -> bool:
        return False

    def do_help(self, arg: str) -> None:
        self.print(HELP)

    def do_set(self, arg: str) -> None:
        name, _, value = arg.partition(" ")
        if not value.strip():
            raise ParamError("usage: /set NAME VALUE, e.g. /set temperature 0.7")
        self.params = set_param(self.params, name, value.strip())
        self.print(f"{name} = {getattr(self.params, name)}")

    def do_params(self, arg: str) -> None:
        self.print(f"{self.params.describe()} | {self.describe_mode()} | phase: {self.generator.active}")

    def do_compare(self, arg: str) -> None:
        self.compare = not self.compare
        self.print(self.describe_mode())

    def do_base(self, arg: str) -> None:
        self.compare, self.single = False, "base"
        self.print(self.describe_mode())

    def do_ft(self, arg: str) -> None:
        self.compare, self.single = False, "ft"
        self.print(self.describe_mode())

    def do_reset(self, arg: str) -> None:
        self.params, self.compare, self.single = self.start_params, True, "ft"
        self.print(f"{self.params.describe()} | {self.describe_mode()}")

    def do_phase(self, arg: str) -> None:
        labels = list(self.generator.adapters)
        if not arg:
            for index, label in enumerate(labels, 1):
                mark = "*" if label == self.generator.active else " "
                self.print(f"{mark} {index}. {label}  {self.generator.adapters[label]}")
            return
        label = labels[int(arg) - 1] if arg.isdigit() and 1 <= int(arg) <= len(labels) else arg
        self.generator.use_phase(label)
        self.print(f"phase: {label} ({self.generator.adapters[label]})")

    def describe_mode(self) -> str:
        return "mode: compare base vs ft" if self.compare else f"mode: {self.single} only"

    def answer(self, prompt: str) -> None:
        try:
            self.generator.prompt_ids(prompt)  # an empty or too long prompt: one error line, nothing generated
        except ParamError as err:
            self.print(f"error: {err}")
            return
        sides = ["base", "ft"] if self.compare else [self.single]
        for side in sides:
            title = SIDES[side] if side == "base" else f"{SIDES[side]} ({self.generator.active})"
            self.print(f"--- {title} ---")
            try:
                completion = self.generator.generate(prompt, self.params, adapter=side == "ft", on_text=self.stream)
            except KeyboardInterrupt:
                self.print("\n[interrupted]")
                return
            except ParamError as err:
                self.print(f"error: {err}")
                return
            self.print("")
            self.print(completion.stats(side))

    def stream(self, text: str) -> None:
        self.out.write(text.translate(SHOWN_CONTROLS))
        self.out.flush()

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
