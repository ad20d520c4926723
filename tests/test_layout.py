"""The layout of ``src/wagate`` (docs/architecture.md): packages for the layers, no import cycle.

import-linter checks the layers in CI (``lint-imports``, contracts in pyproject.toml); this test
walks the import graph on its own, every import statement included (inside functions and under
``TYPE_CHECKING`` too), so a cycle cannot hide from either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wagate

SRC = Path(wagate.__file__).parent
# The only modules that stand outside a package (STYLE.md, Layout).
TOP_LEVEL = {"__init__", "__main__", "gateway", "config", "errors", "logs", "metrics"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts}


def imports(path: Path, known: set[str]) -> set[str]:
    """The wagate modules ``path`` imports, wherever the statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from wagate.x import y``: y is a module of its own, or a name in wagate.x.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walker_finds_a_cycle() -> None:
    """The check itself can fail: a made-up graph with a three-module cycle is caught."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_wagate() -> None:
    edges = graph()
    assert "wagate.sessions.manager" in edges  # the walk saw the package
    assert edges["wagate.sessions.commands"] >= {"wagate.sessions.manager"}
    assert cycles(edges) == []


def test_nothing_below_the_manager_imports_it() -> None:
    edges = graph()
    below = ["wagate.sessions.handlers", "wagate.sessions.context"]
    lower = ("services", "db", "core", "engines")
    below += [m for m in edges if m.count(".") > 1 and m.split(".")[1] in lower]
    assert [m for m in below if "wagate.sessions.manager" in edges[m]] == []


def test_only_the_composition_root_and_a_few_modules_stand_outside_a_package() -> None:
    loose = {p.stem for p in SRC.glob("*.py")}
    assert loose <= TOP_LEVEL, loose - TOP_LEVEL
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert {"core", "db", "services", "sessions", "webhooks", "engines", "stores"} <= packages
    assert {"api", "cli", "doctor"} <= packages
