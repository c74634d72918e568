"""The package boundaries, read from the source: no import cycles, dependencies one way.

Layers, from the bottom: the domain core (ketenmonitor.domain) and the metric names know nothing
else of the project; the contract (schemas) and the runtime (streams) build on them; the rule and
dashboard generators read names and the chain, never the runtime; only the demo may start the local
servers of ketenmonitor.infra (tests and benchmarks may, they are not shipped code).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folder -> installed package (pyproject.toml maps the three top-level folders into ketenmonitor).
PACKAGES = {
    "ketenmonitor": "ketenmonitor",
    "streams": "ketenmonitor.streams",
    "schemas": "ketenmonitor.schemas",
    "dashboards": "ketenmonitor.dashboards",
}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = tuple(package.split(".")) + parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Project modules imported at module level (TYPE_CHECKING blocks and function bodies left out:
    those do not run at import time)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return {m for m in out if m in MODULES}


GRAPH = {name: _imports(path, name) - {name} for name, path in MODULES.items()}


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert not cycles, cycles


def _reaches(module: str, prefix: str) -> set[str]:
    return {m for m in GRAPH[module] if m == prefix or m.startswith(prefix + ".")}


def test_the_domain_core_and_the_names_import_nothing_else_of_the_project() -> None:
    for module in MODULES:
        if module.startswith("ketenmonitor.domain") or module == "ketenmonitor.metric_names":
            outside = {m for m in GRAPH[module] if not m.startswith("ketenmonitor.domain")}
            assert not outside, (module, outside)


def test_generators_read_names_and_the_chain_never_the_runtime() -> None:
    for module in MODULES:
        if module.startswith(("ketenmonitor.alerting", "ketenmonitor.dashboards")):
            assert not _reaches(module, "ketenmonitor.streams"), module
            assert not _reaches(module, "ketenmonitor.infra"), module


def test_only_the_demo_starts_local_servers() -> None:
    users = {
        m
        for m in MODULES
        if not m.startswith("ketenmonitor.infra") and _reaches(m, "ketenmonitor.infra")
    }
    assert users <= {"ketenmonitor.demo"}, users


def test_the_runtime_does_not_import_the_commands() -> None:
    for module in MODULES:
        runtime = ("ketenmonitor.streams", "ketenmonitor.schemas", "ketenmonitor.domain")
        if module.startswith(runtime):
            assert not _reaches(module, "ketenmonitor.cli"), module
