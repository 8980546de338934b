"""Bounds on reading proxy.yaml: a hostile or broken file is refused, not chewed on.

YAML aliases let a small file describe a huge tree (the "billion laughs": nine anchors of nine
references each are 387 million nodes), and PyYAML builds it by sharing, so the cost only shows
in whatever walks the tree afterwards (interpolation, validation) — in the reload thread, which
then never ends, holding every later reload and the graceful shutdown. So the composed node
graph is measured as it would be expanded, before anything walks it, and the whole reading has
a size cap and a deadline:

- `MAX_FILE_BYTES`: the file's size,
- `MAX_NODES`: scalars, sequences and mappings, each alias counted as the nodes it stands for
  (a recursive alias is refused outright),
- `MAX_SECONDS`: wall-clock time spent composing the node graph.

The limits sit far above any real configuration (a thousand connections are about 30,000
nodes) and far below what blocks a process.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 250_000
MAX_SECONDS = 5.0


class TooLarge(Exception):
    """The file is beyond a bound; the message says which (never quoting the file)."""


class BoundedComposer:
    """Mixin for a PyYAML loader: counts composed nodes against a deadline, and measures the
    expanded size of the document before it is constructed."""

    max_nodes = MAX_NODES
    max_seconds = MAX_SECONDS
    _deadline = 0.0
    _composed = 0

    def compose_document(self) -> Any:
        self._deadline = time.monotonic() + self.max_seconds
        self._composed = 0
        node = super().compose_document()  # type: ignore[misc]
        expanded_size(node, self.max_nodes)
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._composed += 1
        if self._composed > self.max_nodes:
            raise TooLarge(f"the file has more than {self.max_nodes} YAML nodes")
        if self._composed % 256 == 0 and time.monotonic() > self._deadline:
            raise TooLarge(f"reading the file took more than {self.max_seconds:g} s")
        return super().compose_node(parent, index)  # type: ignore[misc]


def expanded_size(root: yaml.Node, limit: int) -> int:
    """The number of nodes `root` stands for with every alias expanded; `TooLarge` past
    `limit` or on a recursive alias. Linear in the composed graph: each node's size is
    worked out once (iteratively: a deep file cannot exhaust the stack)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limit:
                raise TooLarge(f"the file expands to more than {limit} YAML nodes (aliases)")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise TooLarge("the file holds a recursive YAML alias")
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise TooLarge("the file holds a recursive YAML alias")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
