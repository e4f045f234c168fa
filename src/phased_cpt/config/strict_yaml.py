"""Reading YAML strictly: `yaml.safe_load` plus three refusals, each a one-line `ConfigError`
naming `file:line`.

- A key given twice in one mapping (YAML would keep the last one silently); keys brought in by a
  `<<: *base` merge may still be overridden.
- Anchors and aliases that expand the document to more than `MAX_CONFIG_NODES` values (a 1 KB
  "billion laughs" file took 40 s and 1.4 GB when the config was walked).
- A recursive alias (an anchor used inside itself), and nesting too deep to parse.
"""

from __future__ import annotations

from typing import Any

import yaml

from phased_cpt.errors import ConfigError

MAX_CONFIG_NODES = 10_000
"""Most YAML nodes a config may hold once every alias is expanded (a full config has ~150)."""


class YamlProblem(Exception):
    """A config text that YAML would load but phased-cpt refuses; `line` is 1-based (0: unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys, alias bombs and recursive aliases."""

    def construct_document(self, node: yaml.Node) -> Any:
        check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges keys that the mapping's own keys may override
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                break
            if seen is not None:
                raise YamlProblem(
                    f"duplicate key {key!r} (first at line {seen}, again at line {line}); YAML would keep only "
                    "the last one: merge them into one",
                    line,
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def check_expansion(root: yaml.Node, limit: int = MAX_CONFIG_NODES) -> None:
    """Refuse a node graph that expands (aliases followed) to more than `limit` nodes, or that
    refers to itself. Aliases share node objects, so sizes are memoized by node identity."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in children)
            if size[id(node)] > limit:
                raise YamlProblem(
                    f"the YAML anchors and aliases expand to more than {limit:,} values; a config needs far "
                    "fewer (is this an alias bomb?)",
                    node.start_mark.line + 1,
                )
            continue
        if id(node) in on_path:
            raise YamlProblem("a recursive alias (an anchor used inside itself)", node.start_mark.line + 1)
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YamlProblem("a recursive alias (an anchor used inside itself)", child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_yaml(text: str, source: str) -> Any:
    """`text` parsed with `ConfigLoader`; every refusal or syntax error is a one-line ConfigError
    naming `source:line`."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (ConfigLoader is a SafeLoader)
    except YamlProblem as err:
        where = f"{source}:{err.line}" if err.line else source
        raise ConfigError([f"{where}: {err}"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: the YAML is nested too deeply"]) from None
