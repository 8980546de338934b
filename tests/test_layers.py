"""The packages of `proxy/` stand in layers, and no modules import each other in a circle.

Each package's docstring says what it owns and what it may import; this holds the code to it.
A module imports from its own package or from a lower layer, never from a higher one nor from a
package beside it in its own layer. Every import counts: at the top of a module, inside a
function, or under `TYPE_CHECKING`. The imports are read from the source with `ast`, so nothing
of the proxy is run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PROXY = Path(__file__).resolve().parent.parent / "proxy"

# Lowest first. Units on one line stand side by side and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    # The shared vocabulary: the version, the error family, the values the schemes and the
    # request path share, log output.
    ("proxy", "proxy.errors", "proxy.messages", "proxy.logs"),
    ("proxy.config",),  # reads and validates proxy.yaml
    ("proxy.http1", "proxy.schemes", "proxy.store"),  # the wire, pure signing, durable state
    ("proxy.intercept",),  # forward-proxy mode's CA, leaves and TLS contexts
    ("proxy.connections",),  # what a connection is compiled into; the runtime
    ("proxy.metrics",),  # counts requests and connections, so it knows both
    ("proxy.tokens",),  # OAuth tokens obtained, refreshed and stored
    ("proxy.dataplane",),  # the request path
    ("proxy.admin",),  # the management API
    ("proxy.cli",),  # the process
    ("proxy.__main__",),  # `python -m proxy`
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROXY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PROXY.rglob("*.py")}


def imported(name: str) -> Iterator[str]:
    """The modules of the proxy that module `name` imports, wherever the import stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target not in MODULES:
                continue
            # `from . import x` names a module when there is one, else something of the package.
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            found = [module for module in submodules if module in MODULES]
            yield from found
            if len(found) < len(submodules):
                yield target


GRAPH = {name: sorted(set(imported(name)) - {name}) for name in MODULES}


def unit_of(name: str) -> str:
    """The longest unit of LAYERS that holds module `name`."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        unit = ".".join(parts[:end])
        if unit in RANK:
            return unit
    raise AssertionError(f"{name} stands in no layer: add its package to LAYERS")


def test_every_module_stands_in_a_layer() -> None:
    assert {unit_of(name) for name in MODULES} <= set(RANK)


def test_every_package_says_what_it_may_import() -> None:
    """Each package's docstring names what it may import ("May import ..."), so the layers are
    read where the code is, not only here."""
    silent = []
    for init in sorted(PROXY.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if "May import" not in docstring:
            silent.append(str(init.relative_to(PROXY.parent)))
    assert silent == []


def upward_imports(graph: dict[str, list[str]]) -> list[str]:
    """Each import of `graph` that reaches a higher layer or a unit beside its own."""
    return [
        f"{name} -> {target} ({unit_of(name)} may not import {unit_of(target)})"
        for name, targets in graph.items()
        for target in targets
        if unit_of(name) != unit_of(target) and RANK[unit_of(name)] <= RANK[unit_of(target)]
    ]


def circles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Modules of `graph` that import each other in a circle (Tarjan's strongly connected
    components).

    A package's own `__init__.py` is its face: its modules may use what it defines while it
    hands one of them on or opens one in a function (`store.open_store`), so an import of the
    package's face from inside the package is not followed.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in graph[name]:
            if name.startswith(target + "."):
                continue
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while (top := stack.pop()) != name:
                component.append(top)
            if component:
                found.append(sorted([name, *component]))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_reaches_up_or_across() -> None:
    assert upward_imports(GRAPH) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert circles(GRAPH) == []


def planted(*edges: tuple[str, str]) -> dict[str, list[str]]:
    graph = {name: list(targets) for name, targets in GRAPH.items()}
    for importer, target in edges:
        graph[importer].append(target)
    return graph


def test_the_checks_catch_what_they_are_for() -> None:
    """Not vacuous: an upward import, an import across a layer and a circle planted into the
    real graph are each found."""
    up = planted(("proxy.config.load", "proxy.connections.compiled"))
    assert upward_imports(up) == [
        "proxy.config.load -> proxy.connections.compiled"
        " (proxy.config may not import proxy.connections)"
    ]
    across = planted(("proxy.http1.client", "proxy.schemes.base"))
    assert len(upward_imports(across)) == 1
    circle = planted(("proxy.admin.redact", "proxy.admin.connections"))
    assert any({"proxy.admin.redact", "proxy.admin.connections"} <= set(c) for c in circles(circle))


def test_tests_import_helpers_from_modules_not_conftest() -> None:
    """Shared test helpers live in importable modules (`tests/builders.py`, `tests/ports.py`,
    `tests/admin/planes.py`, ...); a `conftest.py` holds fixtures only, which pytest hands out by
    name, so no test module imports from one."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("conftest"):
                offenders.append(f"{path.relative_to(tests)}:{node.lineno}")
    assert not offenders, offenders


def test_tests_import_helpers_from_modules_not_other_tests() -> None:
    """A helper two test files share lives in a helper module (docs/testing.md), not in one of
    the two test files: a test file imports from no `test_*` module."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(
                name.startswith("tests.") and name.rpartition(".")[2].startswith("test_")
                for name in names
            ):
                offenders.append(f"{path.relative_to(tests)}:{node.lineno}")
    assert not offenders, offenders
