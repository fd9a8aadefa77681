"""Import layering of the package, read from the source (ast; nothing is imported or run).

Layers (docs/architecture.md), bottom to top; a module may import its own layer or lower ones:

0. private helpers (``physres/_*``), ``errors``, ``_version``
1. known physics and the drivers: ``systems``, ``steppers``, ``rollout``, ``integrate``,
   ``reference``
2. ``data``, ``models``
3. ``training``, ``validation``, ``artifacts``
4. ``cli`` and the scenario runner

and (a) the imports that run when a module is imported form no cycle, (b) below the top layer
no import at all (deferred ones inside functions included) closes a cycle, (c) every import
points to its own layer or down. ``physres/__init__.py`` is the public facade above everything:
no module imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "physres"

HELPERS = 0
TOP = 4
LAYERS = {
    "errors": HELPERS,
    "_version": HELPERS,  # and every other physres/_* module or package (private helpers)
    "systems": 1,
    "steppers": 1,
    "rollout": 1,
    "integrate": 1,
    "reference": 1,
    "data": 2,
    "models": 2,
    "depth": 2,  # networks of the depth study: beside models, needs only helpers
    "training": 3,
    "validation": 3,
    "artifacts": 3,
    "cli": TOP,
    "scenarios": TOP,  # the scenario runner (module or package, either name)
    "runner": TOP,
}
NAMES = {
    0: "private helpers and errors",
    1: "systems, steppers and drivers",
    2: "data and models",
    3: "training, validation and artifacts",
    4: "CLI and scenario runner",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported physres module, line, deferred) for every import in module ``name``;
    deferred: inside a function. ``if TYPE_CHECKING:`` blocks are skipped."""
    path, package = MODULES[name]
    found = []

    def target(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = name.split(".") if package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node, deferred: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = deferred or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.Import):
                found.extend(
                    (a.name, child.lineno, deferred)
                    for a in child.names
                    if a.name == "physres" or a.name.startswith("physres.")
                )
            elif isinstance(child, ast.ImportFrom):
                mod = target(child)
                if mod == "physres" or mod.startswith("physres."):
                    for a in child.names:  # `from pkg import submodule` imports the submodule
                        sub = f"{mod}.{a.name}"
                        found.append((sub if sub in MODULES else mod, child.lineno, deferred))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _unit(name: str) -> str:
    """``physres.systems.chain.system`` -> ``systems``; the facade ``physres`` -> ``physres``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "physres"


def _layer(unit: str) -> int:
    if unit in LAYERS:
        return LAYERS[unit]
    if unit.startswith("_"):
        return HELPERS
    raise KeyError(unit)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_every_top_level_module_is_in_the_layer_table():
    units = {_unit(name) for name in MODULES} - {"physres"}
    missing = sorted(u for u in units if u not in LAYERS and not u.startswith("_"))
    assert not missing, (
        f"physres/{missing[0]} is not in the layer table: add it to LAYERS in "
        f"tests/test_layering.py and to docs/architecture.md, at the lowest layer whose "
        f"modules it needs ({'; '.join(f'{k}: {v}' for k, v in NAMES.items())})"
    )


def test_imports_resolve_to_physres_modules():
    unknown = [
        (name, mod, line)
        for name, imports in GRAPH.items()
        for mod, line, _ in imports
        if mod not in MODULES
    ]
    assert not unknown, f"imports of modules that do not exist: {unknown}"


def test_no_module_imports_the_facade():
    offenders = [
        f"{MODULES[name][0].relative_to(ROOT.parent)}:{line}"
        for name, imports in GRAPH.items()
        if name != "physres"
        for mod, line, _ in imports
        if mod == "physres"
    ]
    assert not offenders, (
        "import the submodule you need, not the `physres` facade (it "
        f"imports every layer): {offenders}"
    )


def test_no_import_time_cycle():
    edges = {
        name: {m for m, _, deferred in imports if not deferred and m in MODULES}
        for name, imports in GRAPH.items()
    }
    cycle = _cycle(edges)
    assert cycle is None, f"import cycle at import time: {' -> '.join(cycle)}"


def test_no_cycle_below_the_top_layer():
    def low(name):
        return name != "physres" and _layer(_unit(name)) < TOP

    edges = {
        name: {m for m, _, _ in imports if m in MODULES and low(m)}
        for name, imports in GRAPH.items()
        if low(name)
    }
    cycle = _cycle(edges)
    assert cycle is None, f"import cycle (deferred imports included): {' -> '.join(cycle)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "physres"))
def test_imports_point_down(name):
    here = _layer(_unit(name))
    upward = [
        f"line {line}: {mod} (layer {_layer(_unit(mod))}, {NAMES[_layer(_unit(mod))]})"
        for mod, line in sorted({(m, n) for m, n, _ in GRAPH[name]}, key=lambda e: e[1])
        if mod != "physres" and _layer(_unit(mod)) > here
    ]
    assert not upward, (
        f"{name} (layer {here}, {NAMES[here]}) imports upward: "
        f"{'; '.join(upward)}; move the code down or the import up "
        "(docs/architecture.md)"
    )


def test_the_checks_catch_what_they_should():
    """The graph tools on made-up graphs: a cycle is found, an acyclic graph passes."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert _layer("_anything") == HELPERS and _unit("physres.systems.chain.system") == "systems"
    with pytest.raises(KeyError):
        _layer("not_in_the_table")
    tree = {mod for mod, _, deferred in GRAPH["physres.data.generate"] if deferred}
    assert "physres.systems" in tree  # deferred imports are seen
