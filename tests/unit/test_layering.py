"""The package's layers import one way (docs/design/architecture.md).

Every import in ``src/dpvault`` -- at module level, inside functions, under TYPE_CHECKING -- is an
edge between top-level units (``dpvault/<unit>`` package or module). The edges must go down the
layer table below and never form a cycle, and the core (``protection``) never imports the ARM
handlers (``resources``). A new top-level unit fails here until it is placed in a layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dpvault"

# Bottom to top: a unit may import units of its own layer (without a cycle) and of layers below.
LAYERS: list[set[str]] = [
    {"__init__", "types", "clock", "errors", "settings", "logging", "allocator"},
    {"arm"},  # the ARM protocol
    {"store"},  # state persistence
    {"services", "identity", "secrets"},
    {"model"},  # spec Structs, pure rules, records of work
    {"datastores", "engines"},  # the two ports and their implementations
    {"vault"},  # the vault format and recovery points' lifecycle
    {"jobs"},  # the durable queue and worker
    {"protection"},  # the core
    {"resources", "observability", "alerts", "dashboard"},  # ARM handlers; the operator's surfaces
    {"runtime", "app", "server", "cli", "__main__"},  # composition roots, the HTTP server, the command
]
FORBIDDEN = {("protection", "resources")}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dpvault":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """unit -> the units it imports (itself excluded)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        if rel.parts[:2] == ("store", "migrations"):
            continue  # Alembic's scripts, run by Alembic
        source = rel.parts[0].removesuffix(".py")
        graph[source]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = (
                    [node.module] if node.module != "dpvault" else [f"dpvault.{a.name}" for a in node.names]
                )
            else:
                continue
            for target in targets:
                unit = _unit(target)
                if unit is not None and unit != source:
                    graph[source].add(unit)
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    rank = {unit: n for n, layer in enumerate(LAYERS) for unit in layer}
    out = [
        f"{u} is in no layer of tests/unit/test_layering.py: place it" for u in sorted(graph) if u not in rank
    ]
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if (source, target) in FORBIDDEN:
                out.append(f"{source} imports {target}: forbidden")
            elif source in rank and target in rank and rank[target] > rank[source]:
                out.append(f"{source} (layer {rank[source]}) imports {target} (layer {rank[target]}): upward")
    out += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    return out


def test_layers_import_one_way() -> None:
    graph = import_graph()
    assert {"protection", "resources", "model", "engines", "datastores", "vault"} <= graph.keys()
    assert violations(graph) == []


def test_the_check_sees_what_it_must_refuse() -> None:
    """The checker itself: a resources import in protection, an upward import and a cycle are found."""
    graph = {k: set(v) for k, v in import_graph().items()}
    graph["protection"].add("resources")
    found = violations(graph)
    assert "protection imports resources: forbidden" in found
    assert any(v.startswith("import cycle:") and "protection" in v and "resources" in v for v in found)
    graph = {k: set(v) for k, v in import_graph().items()}
    graph["store"].add("model")
    assert "store (layer 2) imports model (layer 4): upward" in violations(graph)
