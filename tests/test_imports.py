"""imgbench's imports go one way: entry -> task -> parts -> leaves, with no cycle (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

from imgbench.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "imgbench"

# the layers of ../shared/DESIGN.md: a module may import only from its own layer or the ones below
LAYERS = {
    "leaves": {"errors", "io", "paths", "ranks", "hydra_runtime", "groups", "resolvers", "hardware"},
    "parts": {
        "models",
        "data",
        "modules",
        "callbacks",
        "metrics",
        "report",
        "sweep",
        "distributed",
        "ddp_launcher",
        "checkpoint",
    },
    "task": {
        "schema",
        "config",
        "epoch_tests",
        "inner_steps",
        "compose",
        "build",
        "record",
        "run",
        "resume",
        "tuning",
        "trained",
        "predict",
        "export",
    },
    "entry": {"cli", "prepare"},
}
ORDER = ["leaves", "parts", "task", "entry"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the imgbench modules it imports, from the source (every import statement, at any depth)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> str | None:
    top = module.split(".")[1] if "." in module else ""
    return next((layer for layer, names in LAYERS.items() if top in names), None)


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer_and_imports_point_down():
    graph = import_graph()
    upward = []
    for module, targets in graph.items():
        if module == "imgbench":
            continue
        layer = _layer(module)
        assert layer is not None, f"{module} is in no layer of tests/test_imports.py"
        for target in targets:
            target_layer = _layer(target) if target != "imgbench" else "leaves"
            if ORDER.index(target_layer) > ORDER.index(layer):
                upward.append(f"{module} ({layer}) -> {target} ({target_layer})")
    assert upward == []


def test_no_module_is_longer_than_450_lines():
    lengths = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 450} == {}
