"""Reading the YAML a user writes (studies, cluster profiles, data roots) strictly.

PyYAML's SafeLoader silently keeps the last of two equal keys, reads ``1e9`` and ``1.0e-3`` as strings
(YAML 1.1 wants a dot and a signed exponent) and expands aliases without bound (nine anchors of nine aliases
make 9**9 nodes, which hang anything that walks the result). ``StrictLoader`` rejects duplicate keys, reads
every YAML 1.2 float as a float and rejects documents whose aliases expand past ``MAX_NODES`` nodes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 100_000

# YAML 1.2 core schema floats (and YAML 1.1's forms): 1e9, 1.0e9, 1e-3, .5, -2.5E+3, .inf, .nan
FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)



class StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then own keys: overrides, not duplicates
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found duplicate key {key!r} (first at line "
                    f"{seen[key].start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_size(node)
        return node


def _check_size(root: yaml.Node) -> None:
    """Count the nodes the document stands for once every alias is expanded (linear time: sizes are memoised
    per node, which aliases share)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a recursive alias counts once; the constructor handles recursion
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"the document's aliases expand to more than "
                                              f"{MAX_NODES} nodes", node.start_mark)
        return total

    size(root)


StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(StrictLoader.yaml_implicit_resolvers):
    StrictLoader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in StrictLoader.yaml_implicit_resolvers[_first] if tag != "tag:yaml.org,2002:float"]
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def loads(text: str) -> Any:
    """Parse YAML strictly; raises ``yaml.YAMLError`` naming the line of the problem."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


def load_file(path: Path) -> Any:
    return loads(Path(path).read_text())
