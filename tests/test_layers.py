"""The import graph keeps the layers one-way.

* core (:mod:`calico_accountant`) imports nothing of the project above it;
* the services (:mod:`node_agent`, :mod:`aggregator`) import the core and never each
  other or the application;
* the application (:mod:`calico_accountant_cli`) may import everything;
* no two files import each other, directly or through others.

Every import counts, also one inside a function (a lazy import must not hide a cycle);
only imports under ``if TYPE_CHECKING:`` (annotations, never executed) are left out.
Generated code (``*_pb2*.py``) is left out too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "calico_accountant"
SERVICES = ("node_agent", "aggregator")
APPLICATION = "calico_accountant_cli"
PACKAGES = (CORE, *SERVICES, APPLICATION)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" in path.name:
                continue
            files[_module_name(path)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (``if TYPE_CHECKING:`` bodies skipped)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports (a name imported from a package counts as
    the submodule when there is one, else as the package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        for name in candidates:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = _source_files()
    known = set(files)
    return {module: _imported_modules(module, path, known) for module, path in files.items()}


def _top(module: str) -> str:
    return module.split(".", 1)[0]


GRAPH = _graph()


def test_the_graph_is_read() -> None:
    """The check below must see the real imports (guards against a parser that finds none)."""
    assert "aggregator.server" in GRAPH and "node_agent.agent" in GRAPH
    assert any(_top(target) == CORE for target in GRAPH["aggregator.server"])
    assert any(_top(target) == CORE for target in GRAPH["node_agent.agent"])
    assert len(GRAPH) > 60


def test_core_imports_only_core() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _top(module) == CORE
        for target in targets
        if _top(target) != CORE
    )
    assert offenders == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_itself_and_the_core(service: str) -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _top(module) == service
        for target in targets
        if _top(target) not in (service, CORE)
    )
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []
