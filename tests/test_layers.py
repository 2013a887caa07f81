"""The package's import graph: no cycle between modules, and nothing imports upward.

Every ``import`` is counted, function-level (lazy) ones included: a lazy import still makes the
two modules depend on each other. Layers, bottom up, as DESIGN.md draws them; a module may import
its own layer and the ones below, never above. Only ``plugin/`` imports OpenRLHF.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "openrlhf_visualprm"

# top-level module or folder -> layer
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "errors",
            "bounds",
            "config_fields",
            "envs",
            "labels",
            "registry",
            "steps",
            "images",
            "answers",
            "log",
            "lazy",
            "torch_names",
        ],
        0,
    ),
    "tiny_models": 0,
    **dict.fromkeys(["prm", "judge", "outcome", "data"], 1),
    "rewards": 2,
    "eval": 3,
    "workers": 3,
    "plugin": 4,
    **dict.fromkeys(["cli", "demo", "train_ppo_ray"], 5),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & known
            found.update(subs or {module})
    return {m for m in found if m in known and m != name and m != PACKAGE.name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    top = module.split(".")[1]
    assert top in LAYERS, f"{module}: add its top-level name to LAYERS (and to DESIGN.md's layers)"
    return LAYERS[top]


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_nothing_imports_upward():
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in _graph().items()
        if a != PACKAGE.name
        for b in sorted(targets)
        if _layer(b) > _layer(a)
    ]
    assert upward == []


def test_only_the_plugin_imports_openrlhf():
    importers = sorted(
        name
        for name, path in _modules().items()
        if any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "openrlhf" for a in n.names))
            or (
                isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "openrlhf" and not n.level
            )
            for n in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert [m for m in importers if not m.startswith(f"{PACKAGE.name}.plugin")] == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The detectors themselves: a made-up cycle and an upward edge are found."""
    graph = {"p.a.x": {"p.b.y"}, "p.b.y": {"p.a.x"}, "p.c": set()}
    assert _cycles(graph) == [["p.a.x", "p.b.y"]]
    assert _layer("openrlhf_visualprm.rewards.groups") > _layer("openrlhf_visualprm.prm.config")
