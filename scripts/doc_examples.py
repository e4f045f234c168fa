"""The example outputs shown in the docs, produced by running the commands they show.

A region of README.md or docs/*.md between

    <!-- doc-example: NAME -->
    ```text
    ...
    ```
    <!-- /doc-example -->

holds the output of the example NAME (`EXAMPLES` below: the command, where it runs, which lines
are shown). `python scripts/doc_examples.py` runs every example and rewrites its regions;
`--check` rewrites nothing and exits 1 naming each stale region (what CI runs, through
tests/e2e/test_docs.py); `--only NAME` runs one. Values that differ from one machine or run to
the next (versions, free disk, seconds, tokens/s, run-directory stamps, temporary paths) are
normalized before comparing (`normalize`), never the numbers the docs are about.

The examples run on material built here, offline: the embedded quickstart (its tiny model is
built into `$XDG_CACHE_HOME/phased-cpt`), a tiny Qwen2-architecture model, and a small git
repository made with fixed names and dates (`make_example_repo`, also the sandbox the runnable
```bash blocks of the docs run in).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
"""Every page whose ```bash blocks run and whose example regions are checked."""
REGION = re.compile(
    r"<!-- doc-example: (?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```\n<!-- /doc-example -->", re.DOTALL
)


# --- where the examples run ---------------------------------------------------------------------


def make_example_repo(root: Path) -> Path:
    """A small Python project with history: 9 commits, two merged pull requests (the second of two
    commits, one signed off with an e-mail address), a vendored copy, a lock file, a data file and
    a git-ignored file that is never committed."""
    sys.path.insert(0, str(REPO))
    from tests.unit.from_git.repos import git, merge

    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    day = iter(range(1, 100))

    def commit(files: dict[str, str], message: str) -> None:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        git(root, "add", "--", *files)
        git(root, "commit", "-q", "-m", message, date=f"2024-01-{next(day):02d}T10:00:00+00:00")

    def merge_pull_request(number: int, branch: str, files: dict[str, str], title: str) -> None:
        git(root, "checkout", "-q", "-b", branch)
        commit(files, title)
        git(root, "checkout", "-q", "main")
        message = f"Merge pull request #{number} from ada/{branch}\n\n{title}"
        merge(root, branch, message, date=f"2024-01-{next(day):02d}T10:00:00+00:00")

    commit(
        {
            ".gitignore": "*.log\n.env\n",
            "shop/__init__.py": '"""A tiny shop."""\n',
            "shop/cart.py": "class Cart:\n    def __init__(self):\n        self.items = []\n\n"
            "    def add(self, item, price):\n        self.items.append((item, price))\n\n"
            "    def total(self):\n        return sum(price for _, price in self.items)\n",
            "README.md": "# shop\n\nA cart that adds up prices.\n",
        },
        "Start the shop: a cart with a total",
    )
    commit(
        {
            "shop/discount.py": 'def apply_discount(total, percent):\n    """The total after `percent` off."""\n'
            "    return round(total * (100 - percent) / 100, 2)\n",
            "poetry.lock": '# locked\n[[package]]\nname = "requests"\n',
            "prices.csv": "item,price\napple,1.20\npear,0.90\n",
        },
        "Add discounts",
    )
    commit({"vendor/left_pad/__init__.py": "def left_pad(s, n):\n    return s.rjust(n)\n"}, "Vendor left_pad")
    commit(
        {
            "shop/cart.py": (root / "shop/cart.py")
            .read_text()
            .replace(
                "    def total(self):",
                "    def remove(self, item):\n        self.items = [i for i in self.items if i[0] != item]\n\n"
                "    def total(self):",
            )
        },
        "Cart: remove an item",
    )
    merge_pull_request(
        1,
        "checkout",
        {
            "shop/checkout.py": "from shop.discount import apply_discount\n\n\n"
            "def checkout(cart, percent=0):\n    return apply_discount(cart.total(), percent)\n"
        },
        "Add checkout with an optional discount",
    )
    git(root, "checkout", "-q", "-b", "receipt")
    commit(
        {"shop/receipt.py": "def receipt(cart):\n    return [item for item, _ in cart.items]\n"},
        "Receipt: list the items",
    )
    commit(
        {
            "shop/receipt.py": "def receipt(cart):\n"
            '    lines = [f"{item}: {price:.2f}" for item, price in cart.items]\n'
            '    return "\\n".join(lines + [f"total: {cart.total():.2f}"])\n'
        },
        "Receipt: prices and the total\n\nSigned-off-by: Bo Berg <bo.berg@shop.io>",
    )
    git(root, "checkout", "-q", "main")
    merge(root, "receipt", "Merge pull request #2 from bo/receipt\n\nPrint a receipt", date="2024-01-20T10:00:00+00:00")
    (root / "debug.log").write_text("ignored by .gitignore, never committed\n")
    return root


def tiny_repository_config(model_dir: Path) -> str:
    """The repository's config.yaml for the tiny model: the same phases and dataset/ files, rows of
    256 tokens, 2 steps per phase, no generation."""
    import yaml

    data = yaml.safe_load((REPO / "config.yaml").read_text())
    data["model"] |= {"name": str(model_dir), "size": None}
    data["training"] |= {
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
    }
    data["training"]["lora"] |= {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    data["context"] |= {"max_tokens": 256, "overlap_tokens": 32}
    data["data"]["eval_ratio"] = 0.2
    data["evaluation"]["completion"]["samples"] = 0
    data["evaluation"]["humaneval"]["problems"] = 0
    data["wandb"].pop("api_key")
    return yaml.safe_dump(data, sort_keys=False)


def tiny_qwen2_model(out_dir: Path) -> Path:
    """The tests' tiny Qwen2-architecture model (no BOS, pad == EOS), built offline."""
    from phased_cpt.quickstart import DATA_DIR
    from phased_cpt.quickstart.tiny_model import TinyModelSpec, build_tiny_model

    return build_tiny_model(
        out_dir,
        sorted(DATA_DIR.glob("*.jsonl")),
        TinyModelSpec(architecture="qwen2", vocab_size=512, hidden_size=32, num_layers=2),
    )


def phased_cpt(
    args: list[str],
    cwd: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """The phased-cpt command in a subprocess, offline, one thread."""
    script = shutil.which("phased-cpt", path=str(Path(sys.executable).parent)) or shutil.which("phased-cpt")
    command = [script] if script else [sys.executable, "-m", "phased_cpt"]
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, input=stdin, capture_output=True, text=True, timeout=600
    )


def expect(result: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    if result.returncode != code:
        raise RuntimeError(f"{result.args}: exit {result.returncode}, expected {code}\n{result.stderr[-3000:]}")
    return result


# --- the examples ---------------------------------------------------------------------------------


@dataclass
class Workspace:
    """A scratch directory the examples share; `quickstart_run` is trained once, on first use."""

    root: Path
    quickstart_run_dir: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_CACHE_HOME": str(self.root / "cache")}

    def quickstart_run(self) -> Path:
        """The working directory of a finished `phased-cpt train` of the embedded quickstart."""
        if self.quickstart_run_dir is None:
            work = self.root / "quickstart"
            work.mkdir(exist_ok=True)
            expect(phased_cpt(["train"], work, env=self.env))
            self.quickstart_run_dir = work
        return self.quickstart_run_dir


def plan_quickstart(ws: Workspace) -> str:
    command = "phased-cpt plan --set context.sample_packing=true"
    work = ws.root / "plan"
    work.mkdir(exist_ok=True)
    result = expect(phased_cpt(command.split()[1:], work, env=ws.env))
    return f"$ {command}      # the embedded quickstart\n{result.stdout}"


def config_error(ws: Workspace) -> str:
    """A typo on the command line, with the repository's config.yaml and its three phase files present."""
    work = ws.root / "typo"
    (work / "dataset").mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery"):
        (work / "dataset" / f"{name}.jsonl").write_text('{"training_content": "def f(): pass"}\n')
    command = "phased-cpt train config.yaml --set training.lora.rnak=8"
    result = expect(phased_cpt(command.split()[1:], work, env=ws.env), code=2)
    return f"$ {command}\n{result.stderr}"


def doctor_tiny(ws: Workspace) -> str:
    """doctor on this kind of machine for a tiny model under ZeRO-3 with 2 processes; the
    temporary directory is shown as /tmp/ds."""
    import yaml

    work = ws.root / "ds"
    data = work / "data"
    data.mkdir(parents=True)
    texts = (REPO / "src/phased_cpt/quickstart/data/phase1_foundation.jsonl").read_text().splitlines()
    for name in ("p1", "p2"):
        (data / f"{name}.jsonl").write_text("\n".join(texts[:16]) + "\n")
    model = tiny_qwen2_model(work / "model")
    config = {
        "model": {"name": str(model), "dtype": "auto"},
        "context": {"max_tokens": 128, "overlap_tokens": 16},
        "training": {
            "micro_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        },
        "phases": [{"name": "p1", "file": "data/p1.jsonl"}, {"name": "p2", "file": "data/p2.jsonl"}],
        "deepspeed": "zero3",
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = phased_cpt(["doctor", "config.yaml", "--gpus", "2"], work, env=ws.env)
    return result.stdout.replace(str(work), "/tmp/ds")


def doctor_32b(ws: Workspace) -> str:
    """The older tool's config.yaml (32B, 32K rows), checked for 8 GPUs of 141 GB with a
    Qwen2.5-32B config.json; only the DeepSpeed and memory lines (the data is not here)."""
    import yaml

    sys.path.insert(0, str(REPO))
    from tests.unit.config.test_legacy import OLDER

    work = ws.root / "older"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(OLDER, sort_keys=False))
    shutil.copytree(REPO / "tests/fixtures/model_configs/qwen2.5-32b", work / "qwen2.5-32b")
    command = "phased-cpt doctor config.yaml --gpus 8 --gpu-memory 141 --model-config qwen2.5-32b/"
    result = phased_cpt(command.split()[1:], work, env=ws.env)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("deepspeed plan", "memory "))]
    return "\n".join([f"$ {command}", "...", *lines]) + "\n"


def from_git_summary(ws: Workspace) -> str:
    repo = make_example_repo(ws.root / "shop")
    command = "phased-cpt data from-git shop --out dataset/"
    result = expect(phased_cpt(command.split()[1:], ws.root, env=ws.env))
    return f"$ {command}\n{result.stdout.replace(str(repo), repo.name)}"


def from_git_document(phase_file: str, pick: Callable[[dict], bool]) -> Callable[[Workspace], str]:
    """The `training_content` of the first document of `phase_file` that `pick` accepts, from
    `data from-git` on the example repository."""

    def make(ws: Workspace) -> str:
        root = ws.root / f"formats-{phase_file.split('_')[0]}"
        make_example_repo(root / "shop")
        expect(phased_cpt(["data", "from-git", "shop", "--out", "dataset/"], root, env=ws.env))
        lines = (root / "dataset" / phase_file).read_text(encoding="utf-8").splitlines()
        document = next(d for d in map(json.loads, lines) if pick(d))
        return document["training_content"]

    return make


CHAT_INPUT = [
    "/set max_tokens 24",
    "# path: app/models/item.py\\",
    '"""The',
    "/phase phase3_pr_mastery",
    "/compare",
    "/set temperature hot",
    "/quit",
]


def chat_session(ws: Workspace) -> str:
    """`phased-cpt chat --phase 1` on the quickstart run, the typed lines put back after their prompts."""
    work = ws.quickstart_run()
    result = expect(phased_cpt(["chat", "--phase", "1"], work, stdin="\n".join(CHAT_INPUT) + "\n", env=ws.env))
    text = with_typed_lines(result.stdout, CHAT_INPUT).replace(str(work) + "/", "")
    return "$ phased-cpt chat --phase 1\n" + text


def quickstart_report(ws: Workspace) -> str:
    """The learning-vs-forgetting part of `phased-cpt report` on the quickstart run: its headline
    and the table, from the base model through each phase."""
    work = ws.quickstart_run()
    (run,) = (work / "outputs").iterdir()
    command = f"phased-cpt report outputs/{run.name}"
    result = expect(phased_cpt(command.split()[1:], work, env=ws.env))
    section = result.stdout.split("## Learning vs forgetting\n")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith(("**", "|"))]
    return f"$ {command}      # its learning-vs-forgetting part\n" + "\n".join(lines) + "\n"


def with_typed_lines(output: str, typed: list[str]) -> str:
    """The REPL's output as a terminal shows it: each prompt (`>>> `, `... `, at a line start or
    right after the previous prompt when nothing was printed between) followed by the line typed."""
    lines, parts, i = iter(typed), [], 0
    prompt = re.compile(r"^(>>> |\.\.\. )", re.MULTILINE)
    while match := prompt.search(output, i):
        parts.append(output[i : match.start()])
        i = match.start()
        while output.startswith((">>> ", "... "), i):
            parts.append(f"{output[i : i + 4]}{next(lines)}\n")
            i += 4
    return "".join(parts) + output[i:]


@dataclass(frozen=True)
class Example:
    make: Callable[[Workspace], str]
    trains: bool = False
    """True: needs the trained quickstart run (tens of seconds)."""


EXAMPLES: dict[str, Example] = {
    "plan-quickstart": Example(plan_quickstart),
    "config-error": Example(config_error),
    "doctor-tiny": Example(doctor_tiny),
    "doctor-32b": Example(doctor_32b),
    "from-git-summary": Example(from_git_summary),
    "from-git-phase2": Example(from_git_document("phase2_evolution.jsonl", lambda d: d["subject"] == "Add discounts")),
    "from-git-phase3": Example(from_git_document("phase3_pr_mastery.jsonl", lambda d: d.get("number") == 2)),
    "chat-session": Example(chat_session, trains=True),
    "quickstart-report": Example(quickstart_report, trains=True),
}


# --- regions, normalization, check ----------------------------------------------------------------

VOLATILE = [
    (re.compile(r"^(python +pass +)\S+", re.MULTILINE), r"\1<version>"),
    (re.compile(r"^(torch +pass +)[^,]+", re.MULTILINE), r"\1<version>"),
    (re.compile(r"^(deepspeed +pass +)\d\S*$", re.MULTILINE), r"\1<version>"),
    (re.compile(r"\d+(\.\d+)? GiB free"), "<n> GiB free"),
    (re.compile(r"\d+\.\d+ s \| \d+\.\d+ tok/s"), "<s> s | <n> tok/s"),
    (re.compile(r"-\d{8}_\d{6}\b"), "-<stamp>"),
]


def normalize(text: str) -> str:
    """`text` without what changes between machines and runs (see VOLATILE); trailing blanks dropped."""
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def regions(doc: Path) -> list[re.Match[str]]:
    return list(REGION.finditer(doc.read_text(encoding="utf-8")))


def documented_examples() -> dict[str, list[Path]]:
    """Example name -> the docs that show it."""
    found: dict[str, list[Path]] = {}
    for name in DOCS:
        for match in regions(REPO / name):
            found.setdefault(match["name"], []).append(REPO / name)
    return found


def rewrite(doc: Path, outputs: dict[str, str]) -> bool:
    """Put each example's output into its regions of `doc`; True when the file changed."""
    text = doc.read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        body = outputs.get(match["name"])
        if body is None:
            return match[0]
        return f"<!-- doc-example: {match['name']} -->\n```{match['lang']}\n{body.rstrip()}\n```\n<!-- /doc-example -->"

    new = REGION.sub(fill, text)
    if new != text:
        doc.write_text(new, encoding="utf-8")
    return new != text


def stale(outputs: dict[str, str]) -> list[str]:
    """`doc: NAME` for each region whose text differs (after `normalize`) from the example's output."""
    problems = []
    for name in DOCS:
        for match in regions(REPO / name):
            if match["name"] in outputs and normalize(match["body"]) != normalize(outputs[match["name"]]):
                problems.append(f"{name}: {match['name']}")
    return problems


def run_examples(names: list[str], root: Path) -> dict[str, str]:
    ws = Workspace(root)
    return {name: EXAMPLES[name].make(ws) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 naming each stale region")
    parser.add_argument("--only", action="append", choices=sorted(EXAMPLES), help="run only this example (repeatable)")
    args = parser.parse_args(argv)
    names = args.only or sorted(EXAMPLES)
    missing = sorted(set(EXAMPLES) - set(documented_examples()))
    if missing:
        print(f"examples with no region in the docs: {', '.join(missing)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="doc-examples-") as tmp:
        outputs = run_examples(names, Path(tmp))
    if args.check:
        problems = stale(outputs)
        for problem in problems:
            print(f"stale: {problem} (run python scripts/doc_examples.py --only NAME to rewrite it)")
        return 1 if problems else 0
    for name in DOCS:
        if rewrite(REPO / name, outputs):
            print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
