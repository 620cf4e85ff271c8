"""The rules of docs/architecture.md, checked over the import graph of `agent/`.

Every import counts, also one inside a function or under TYPE_CHECKING: a cycle hidden
in a function still couples the two modules. The graph is read from the source with
`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parent.parent / "agent"


def _module_name(path: Path) -> str:
    parts = path.relative_to(AGENT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in AGENT.rglob("*.py")}


def _imports(name: str) -> Iterator[tuple[str, str | None]]:
    """(module imported, name imported from it or None) for each import in `name`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                yield module, alias.name


def _edges() -> dict[str, set[str]]:
    """module -> the agent modules it imports (a submodule imported by name counts)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for module, item in _imports(name):
            target = f"{module}.{item}" if f"{module}.{item}" in MODULES else module
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


GRAPH = _edges()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_cli(name: str) -> bool:
    return (
        name in ("agent.cli", "agent.doctor")
        or name.endswith(".cli")
        or name.startswith("agent.doctor.")
    )


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_in_agent() -> None:
    assert _cycles(GRAPH) == []


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [
        f"{name} imports {module}.{item}"
        for name in MODULES
        for module, item in _imports(name)
        if item and item.startswith("_") and not item.startswith("__")
        and module.startswith("agent") and module != name
    ]  # fmt: skip
    assert offenders == []


def test_only_cli_modules_import_cli_modules() -> None:
    """The core never reaches up into a command line module (apply.py once did)."""
    offenders = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if _is_cli(target) and not _is_cli(name)
    ]
    assert offenders == []


def test_nothing_imports_the_daemon() -> None:
    assert [name for name, targets in GRAPH.items() if "agent.daemon" in targets] == []


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # the catalogue sits under everything: config types only
        ("agent.stack.model", {"agent.config"}),
        # rendering is pure: no gateway, no host facts
        ("agent.stack.render", {"agent.config", "agent.quadlet.keys", "agent.quadlet.unit",
                                "agent.stack.model"}),
        # gateways speak to one external system and know nothing above them
        ("agent.podman_api", set()),
        ("agent.systemd_ctl", set()),
        ("agent.client", {"agent.config", "agent.token"}),
    ],
)  # fmt: skip
def test_low_modules_import_only_what_is_below_them(module: str, allowed: set[str]) -> None:
    assert GRAPH[module] <= allowed, sorted(GRAPH[module] - allowed)


# Low to high; a module may import its own layer and the layers below (docs/architecture.md).
LAYERS: tuple[tuple[str, ...], ...] = (
    # the watcher loop and reconnect helpers are infrastructure every source builds on
    ("agent", "agent.config", "agent.config_text", "agent.snapshot", "agent.atomic",
     "agent.log", "agent.notify", "agent.token", "agent.tabular", "agent.quadlet",
     "agent.watchers.base", "agent.watchers.reconnect"),
    ("agent.podman_api", "agent.systemd_ctl", "agent.journal", "agent.ollama_api",
     "agent.client"),
    ("agent.stack", "agent.gpu", "agent.compose", "agent.backup", "agent.migrate"),
    ("agent.watchers",),
    ("agent.heal",),
    ("agent.status", "agent.metrics", "agent.api", "agent.openapi", "agent.statuspage"),
    ("agent.daemon", "agent.cli", "agent.doctor"),
)  # fmt: skip


def _layer(module: str) -> int:
    """The layer of the longest prefix that names `module` or a package above it."""
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) < 0] == []


def test_no_upward_import() -> None:
    offenders = [
        f"{name} (layer {_layer(name)}) -> {target} (layer {_layer(target)})"
        for name, targets in GRAPH.items()
        for target in sorted(targets)
        if _layer(target) > _layer(name) and not _is_cli(name)
    ]
    assert offenders == []


def test_the_architecture_page_names_only_modules_that_exist() -> None:
    page = (AGENT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\(\.\./(agent/[\w/.]+?|tests/[\w/.]+?)\)", page))
    missing = sorted(p for p in named if not (AGENT.parent / p).exists())
    assert named and missing == []
