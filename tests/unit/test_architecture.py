"""The rules of docs/architecture.md, checked on the source (each test says which rule it checks).

Checked here:
- the layer table: no module imports (even lazily) from a layer it may not (`ALLOWED`), and every
  module of `src/phased_cpt` has a row here and in docs/architecture.md's table, whose "may import"
  column names every layer `ALLOWED` lets it import;
- "pre-flight knows no recipe": `doctor.py`, `planning.py` and `launch.py` import nothing from `training/`;
- no import cycle among the modules of `src/phased_cpt`, module-level and lazy imports alike;
- settings travel in typed groups: no function takes more than 6 parameters besides self/cls;
- `distributed.py` is the only reader of `RANK`, `LOCAL_RANK` and `WORLD_SIZE`, the only caller
  of `torch.distributed`'s collectives, and the one answer to "am I rank 0" (nobody asks the HF
  Trainer's `is_world_process_zero`);
- argparse lives only in `cli/`;
- one rule, one function, where the rule has a syntactic mark: only `run_dir.py` builds or parses
  `checkpoint-N` names; the label rule's -100 is written only as `data/chunking.IGNORE_INDEX`;
  a tokenizer is loaded only through `modeling.load_tokenizer` (and so `tokenizer_problem`);
- where a change goes, for an export target: one class in its own module `export/<name>.py`,
  named in `export/flow.TARGETS` and `export.TARGET_NAMES` alike.

Checked elsewhere:
- lazy imports in `cli/` (`--help`, `validate`, `data from-git` import no torch or transformers):
  `tests/unit/cli/test_cli.py` runs them and looks at `sys.modules`;
- "a generation parameter is one field of `GenerationParams`" and "a REPL command has a HELP line":
  `tests/unit/inference/test_params.py` and `tests/unit/inference/test_repl.py`;
- where a change goes, for a per-phase option (`PHASE_OVERRIDE_KEYS`, `spec.DataSpec` and its key,
  `MAY_CHANGE`): tests/unit/data/test_spec.py and the resume tests;
- what `merge --force` may replace (`check_replaceable`), whether a checkpoint is complete
  (`missing_rank_parts`), the one-writer-per-cache rule: their behaviour tests in tests/unit.

Not checkable on the source, and why:
- "the latest run is `run_dir.latest_run`", "a checkpoint's step is `run_dir.checkpoint_step`" beyond
  the `checkpoint-N` names, "the EOS requirement is `modeling.require_eos_token`", "bytes per weight
  is `config.training_dtype`", "a phase's files are scanned by `data/jsonl.scan_phase_files`", "the
  ZeRO stage is `choose_zero_stage`": a second copy of such a rule is ordinary code (a sort, a
  comparison, a dict of sizes) with nothing that tells it apart from other code;
- "a data file counted once is `config/files.py`": the other globs in src/ are of fixed layouts
  (DeepSpeed shards, bundled data), which look the same as a user's data pattern to a parser;
- "anything the run directory holds has a name and an accessor in `run_dir.py`": file names are
  plain strings, also used in messages and docstrings;
- "the metrics sink gives ranks other than 0 no backend", "a metrics backend is a class added in
  `open_sink`", "a LoRA variant goes through peft's state-dict API": what objects do at run time,
  tested by the metrics, modeling and resume tests; their source has no mark to look for.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "phased_cpt"

ALLOWED = {
    "errors": set(),
    "distributed": set(),
    "interrupt": set(),
    "crash_points": set(),
    "contamination": set(),
    "config": {"errors"},
    "run_dir": {"config", "distributed", "errors"},
    "model_shape": {"config"},
    "memory": {"config", "errors", "model_shape"},
    "gpus": set(),
    "flops": {"gpus", "memory", "model_shape"},
    "modeling": {"config", "errors", "tokenizer_check"},
    "tokenizer_check": set(),
    "data": {"config", "contamination", "crash_points", "errors", "distributed", "modeling", "tokenizer_check"},
    "evaluation": {"config", "contamination", "crash_points", "data", "run_dir", "distributed", "errors"},
    "plans": {"config", "data", "distributed", "errors", "memory", "model_shape", "modeling"},
    "training": {
        "config",
        "contamination",
        "crash_points",
        "data",
        "distributed",
        "errors",
        "evaluation",
        "flops",
        "gpus",
        "interrupt",
        "memory",
        "model_shape",
        "modeling",
        "plans",
        "run_dir",
    },
    "inference": {"config", "errors", "modeling", "run_dir"},
    "export": {"config", "errors", "modeling", "run_dir", "inference"},
    "doctor": {"config", "data", "errors", "launch", "memory", "model_shape", "modeling", "plans"},
    "planning": {"config", "data", "distributed", "errors", "flops", "gpus", "memory", "model_shape", "plans"},
    "launch": {"config", "errors"},
    "from_git": {"contamination", "errors"},
    "quickstart": set(),
    "pretrain": {"config", "data", "errors", "evaluation", "modeling", "quickstart"},
}
TOP = {"cli", "__main__", "__init__"}
"""The command line, which may import everything (lazily), and the package's own docstring."""

MAX_PARAMETERS = 6


@functools.cache
def source_files() -> dict[str, ast.Module]:
    """{path relative to src/phased_cpt: its syntax tree}, every module."""
    return {
        path.relative_to(SRC).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(SRC.rglob("*.py"))
    }


def type_checking_nodes(tree: ast.Module) -> set[int]:
    """The ids of the nodes under `if TYPE_CHECKING:`, which never run (annotations only)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            hidden |= {id(n) for statement in node.body for n in ast.walk(statement)}
    return hidden


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants (of modules, classes, functions and attributes)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for statement in body:
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    found.add(id(statement.value))
    return found


def layer_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        layer = parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module == "phased_cpt":  # from phased_cpt import interrupt
                targets = {alias.name for alias in node.names}
            elif node.module.startswith("phased_cpt."):
                targets = {layer_of(node.module)}
            else:
                continue
            found.setdefault(layer, set()).update(targets - {layer})
    return found


def test_every_layer_imports_only_what_docs_architecture_allows():
    found = imports()
    crossings = {
        layer: sorted(targets - ALLOWED[layer])
        for layer, targets in found.items()
        if layer in ALLOWED and targets - ALLOWED[layer]
    }
    assert crossings == {}
    assert {layer for layer in found if found[layer]} - set(ALLOWED) <= {
        "cli",
        "__main__",
    }  # every other module has a row


def test_every_module_has_a_row_here_and_in_docs_architecture():
    layers = {
        path.relative_to(SRC).parts[0].removesuffix(".py") for path in SRC.glob("*") if path.name != "__pycache__"
    }
    layers -= {"deepspeed"}  # package data (JSON), no code
    assert layers - TOP - set(ALLOWED) == set()
    table = [
        line
        for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("|")
    ]
    named = {
        name.removesuffix(".py").rstrip("/")
        for line in table
        for name in re.findall(r"`([\w./]+)`", line.split("|")[2])
    }
    assert layers - {"__init__"} - named == set()


def architecture_table() -> dict[str, str]:
    """{module of docs/architecture.md's layer table: its row's "may import" column}."""
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 3:
            for name in re.findall(r"`([\w./]+)`", cells[2]):
                rows[name.removesuffix(".py").rstrip("/")] = cells[3]
    return rows


def test_the_docs_table_names_every_import_allowed_here():
    """What `ALLOWED` lets a module import, its row in docs/architecture.md names (a row that says
    "all of the above" covers its layer)."""
    table = architecture_table()
    unnamed = {
        layer: sorted(name for name in allowed if not re.search(rf"\b{name}\b", table[layer]))
        for layer, allowed in ALLOWED.items()
        if "all of the above" not in table[layer]
    }
    assert {layer: names for layer, names in unnamed.items() if names} == {}


def pre_flight_imports() -> set[tuple[str, str]]:
    found = imports()
    return {
        (module, "training") for module in ("doctor", "planning", "launch") if "training" in found.get(module, set())
    }


def test_pre_flight_knows_no_recipe():
    """docs/architecture.md: pre-flight (doctor, planning, launch) depends on lower layers only."""
    assert pre_flight_imports() == set()


def module_graph() -> dict[str, set[str]]:
    """{module: the phased_cpt modules it imports}, at module level or inside a function (lazily);
    imports under `if TYPE_CHECKING:` never run and are left out."""
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = ("phased_cpt", *path.relative_to(SRC).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = type_checking_nodes(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "phased_cpt":
                for alias in node.names:  # `from phased_cpt.x import y` imports the module x.y when there is one
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "phased_cpt"}
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(module_graph()) is None


def functions(tree: ast.Module):
    """(qualified name, node) of every function and method, nested ones too."""

    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters besides self/cls; *args and **kwargs count one each."""
    args = function.args
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (args.vararg is not None) + (args.kwarg is not None)


def too_many_parameters() -> dict[str, int]:
    return {
        f"{path}:{name}": parameter_count(node)
        for path, tree in source_files().items()
        for name, node in functions(tree)
        if parameter_count(node) > MAX_PARAMETERS
    }


def test_parameter_count_skips_self_and_counts_star_args():
    tree = ast.parse("class A:\n    def f(self, a, *b, c, **d): ...\ndef g(cls, a=1): ...\n")
    assert {name: parameter_count(node) for name, node in functions(tree)} == {"A.f": 4, "g": 1}


def test_no_function_takes_more_than_six_parameters():
    """Settings travel in typed groups (a dataclass or a config section), not as loose parameters."""
    assert too_many_parameters() == {}


def string_constants(tree: ast.Module):
    """Every string constant that is not a docstring."""
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.value


def test_only_distributed_reads_the_launcher_variables():
    readers = {
        path
        for path, tree in source_files().items()
        if {"RANK", "LOCAL_RANK", "WORLD_SIZE"} & set(string_constants(tree))
    }
    assert readers == {"distributed.py"}


def test_argparse_lives_only_in_cli():
    users = set()
    for path, tree in source_files().items():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if "argparse" in names:
                users.add(path)
    assert users and all(path.startswith("cli/") for path in users)


COLLECTIVES = {
    "all_gather",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "gather_object",
    "reduce",
    "scatter",
    "scatter_object_list",
}


def calls_to(tree: ast.Module, names: set[str]):
    """The dotted names (`dist.barrier`) of the calls to an attribute in `names`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
            yield ast.unparse(node.func)


def test_only_distributed_calls_collectives():
    """One process authority: `distributed.py` wraps every collective (a no-op in one process)."""
    callers = {
        path
        for path, tree in source_files().items()
        if any(name.startswith(("dist.", "torch.distributed.")) for name in calls_to(tree, COLLECTIVES))
    }
    assert callers - {"distributed.py"} == set()


def test_only_init_distributed_joins_the_process_group():
    """Joining (torch's `init_process_group`, or DeepSpeed's `init_distributed`, which the DeepSpeed
    plan decides) is `training/processes.init_distributed`'s, once, before anything else."""
    joiners = {
        path
        for path, tree in source_files().items()
        if any(
            name.startswith(("torch.distributed.", "dist.", "deepspeed."))
            for name in calls_to(tree, {"init_process_group", "destroy_process_group", "init_distributed"})
        )
    }
    assert joiners == {"training/processes.py"}


def test_only_distributed_says_who_is_rank_zero():
    """`distributed.is_main_process()` answers "am I rank 0"; not the HF Trainer's state."""
    askers = set()
    for path, tree in source_files().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("is_world_process_zero", "is_local_process_zero"):
                askers.add(path)
    assert askers == set()


CHECKPOINT_NAME = re.compile(r"(^|[/\\])checkpoint-($|\*|\(|\\d|\[|\{)")
"""A string that builds, globs or matches `checkpoint-N` names (not prose that mentions one)."""


def builds_checkpoint_names(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # f"checkpoint-{step}"
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant)) + "{"
            if CHECKPOINT_NAME.search(literal) or literal.startswith("checkpoint-{"):
                return True
    return any(CHECKPOINT_NAME.search(text) for text in string_constants(tree))


def test_builds_checkpoint_names_sees_the_ways_to_write_one():
    for code in ['f"checkpoint-{step}"', '"checkpoint-"', 'r"checkpoint-(\\d+)"', 'glob("checkpoint-*")']:
        assert builds_checkpoint_names(ast.parse(f"name = {code}")), code
    assert not builds_checkpoint_names(ast.parse('help = "an adapter, e.g. RUN/PHASE/checkpoint-N"'))


def test_only_run_dir_names_checkpoints():
    """A checkpoint's directory and step are `run_dir.checkpoint_dir` / `run_dir.checkpoint_step`."""
    assert {path for path, tree in source_files().items() if builds_checkpoint_names(tree)} == {"run_dir.py"}


def test_the_label_rule_has_one_ignore_index():
    """The label rule (data/chunking.py) owns -100; other modules use `IGNORE_INDEX`."""
    writers = set()
    for path, tree in source_files().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and ast.unparse(node.operand) == "100":
                writers.add(path)
    assert writers == {"data/chunking.py"}


TOKENIZER_BUILDERS = {
    "modeling.py": "load_tokenizer: the one loader, which applies tokenizer_check.tokenizer_problem",
    "quickstart/tiny_model.py": "builds the tiny model's tokenizer (it trains one, it loads no user's)",
    "export/hf.py": "reloads the exported directory with plain transformers, as a user of the export would",
}


def test_a_tokenizer_is_loaded_through_modeling():
    loaders = {
        path
        for path, tree in source_files().items()
        if any("Tokenizer" in name for name in calls_to(tree, {"from_pretrained"}))
    }
    assert loaders == set(TOKENIZER_BUILDERS)


def test_an_export_target_is_one_class_in_its_own_module():
    from phased_cpt.export import TARGET_NAMES
    from phased_cpt.export.flow import TARGETS

    assert tuple(TARGETS) == TARGET_NAMES
    for name, target in TARGETS.items():
        assert target.kind == name and target.__module__ == f"phased_cpt.export.{name}"
