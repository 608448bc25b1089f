"""Imports flow one way: no cycle among the modules of ``mock_runbase/`` and ``contracts/``, and
the state layer and the judge tools never reach up into the journal middleware.

The graph is read from the source with ``ast``, not by importing: an edge is an import that
runs when its module is imported (module level, class bodies, ``try``, ``if``), never one inside
a function or under ``if TYPE_CHECKING:`` (the style guide's place for back-references).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mock_runbase", "contracts")
MIDDLEWARE = "mock_runbase.journal"
BELOW_THE_MIDDLEWARE = (  # the state layer, the judge tools, and the records they share
    "mock_runbase.store",
    "mock_runbase.redis_store",
    "mock_runbase.proxy",
    "mock_runbase.cassette",
    "mock_runbase.journal_records",
)

Graph = dict[str, set[str]]


def module_files() -> dict[str, Path]:
    """Dotted name -> file, for every module of the packages (``__init__`` as the package)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def run_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            yield from run_time_imports(node.orelse)
        else:
            for block in nested_blocks(node):
                yield from run_time_imports(block)


def nested_blocks(node: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists inside a compound statement (class, if, try, with, for, match)."""
    for field in ("body", "orelse", "finalbody"):
        yield getattr(node, field, [])
    for part in [*getattr(node, "handlers", []), *getattr(node, "cases", [])]:
        yield part.body


def targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> set[str]:
    """The modules of ``known`` that one import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    found = {f"{base}.{alias.name}" for alias in node.names} & known
    return found or ({base} & known)


def import_graph() -> Graph:
    files = module_files()
    known = set(files)
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = set()
        for node in run_time_imports(tree.body):
            graph[module] |= targets(node, module, is_package, known) - {module}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per back edge a depth-first walk meets."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                walk(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return found


def reachable(graph: Graph, start: str) -> dict[str, str]:
    """Every module ``start`` loads, directly or not -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        for imported in graph[module]:
            if imported not in seen and imported != start:
                seen[imported] = module
                todo.append(imported)
    return seen


def chain(seen: dict[str, str], start: str, end: str) -> str:
    links = [end]
    while links[-1] != start:
        links.append(seen[links[-1]])
    return " -> ".join(reversed(links))


def test_the_graph_sees_the_packages_and_their_relative_imports() -> None:
    graph = import_graph()
    assert {"mock_runbase.app", "mock_runbase.journal_records", "contracts.conftest"} <= set(graph)
    assert "contracts.registry" in graph["contracts.conftest"]  # from . import registry
    assert "contracts.facts" in graph["contracts.session"]  # from .facts import facts
    assert "mock_runbase.catalog" in graph["contracts.facts"]  # across the two packages
    assert "contracts.strategies" not in graph["contracts.target"]  # under TYPE_CHECKING


def test_a_cycle_is_named_from_start_to_start() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_state_layer_and_judge_tools_do_not_import_the_journal_middleware() -> None:
    graph = import_graph()
    for module in BELOW_THE_MIDDLEWARE:
        seen = reachable(graph, module)
        assert MIDDLEWARE not in seen, f"{chain(seen, module, MIDDLEWARE)} (the middleware)"
