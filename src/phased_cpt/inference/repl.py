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
from phased_cpt.inference.params import GenerationParams, ParamError, set_param, text_problem

PROMPT = ">>> "
CONTINUATION = "... "
SIDES = {"base": "base model (adapter disabled)", "ft": "fine-tuned"}

HELP = """\
commands:
  /set NAME VALUE   set temperature | top_p | top_k | max_tokens | repetition_penalty | seed
  /params           show the generation parameters, mode and phase
  /compare          toggle side-by-side base vs fine-tuned (on at start)
  /base, /ft        answer with the base model only / the fine-tuned model only
  /phase [NAME|N]   switch to another phase's adapter (no argument: list them)
  /reset            restore the starting parameters and compare mode
  /help             this text
  /quit             leave (EOF and Ctrl-C too)
anything else is a prompt, completed as raw text; end a line with \\ to continue it on the next"""


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
        if command in ("quit", "exit", "q"):
            return False
        if command == "help":
            self.print(HELP)
        elif command == "set":
            name, _, value = arg.partition(" ")
            if not value.strip():
                raise ParamError("usage: /set NAME VALUE, e.g. /set temperature 0.7")
            self.params = set_param(self.params, name, value.strip())
            self.print(f"{name} = {getattr(self.params, name)}")
        elif command == "params":
            self.print(f"{self.params.describe()} | {self.describe_mode()} | phase: {self.generator.active}")
        elif command == "compare":
            self.compare = not self.compare
            self.print(self.describe_mode())
        elif command in SIDES:
            self.compare, self.single = False, command
            self.print(self.describe_mode())
        elif command == "phase":
            self.switch_phase(arg)
        elif command == "reset":
            self.params, self.compare, self.single = self.start_params, True, "ft"
            self.print(f"{self.params.describe()} | {self.describe_mode()}")
        else:
            raise ParamError(f"unknown command /{command} (/help lists the commands)")
        return True

    def switch_phase(self, arg: str) -> None:
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
