"""The tree is the architecture: every import (module level or inside a function) goes down a declared layer order,
and no module imports itself back through others (no circle, even a hidden one)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A folder (or top-level module) may import its own modules and anything listed before it.
LAYERS = {
    "engine": [
        "engine", "engine._optional", "engine.errors", "engine.images", "engine.device_info", "engine.registry",
        "engine.models", "engine.render", "engine.fields", "engine.mesh", "engine.priors", "engine.guidance", "engine.toy",
        "engine.tasks", "engine.testing", "engine.commands", "engine.serve", "engine.batch", "engine.cli",
        "engine.__main__",
    ],
    "csd_blender": [
        "csd_blender.protocol", "csd_blender.link", "csd_blender.scene", "csd_blender.props",
        "csd_blender.operators", "csd_blender.panels", "csd_blender.preferences", "csd_blender",
    ],
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module name an `import` or `from … import` in the file can mean (relative ones resolved)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _graph(package: str) -> dict[str, set[str]]:
    modules = {_module(p): p for p in (ROOT / package).rglob("*.py")}
    assert len(modules) > 10, f"no sources under {package}/"
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


def _layer(module: str, package: str) -> int:
    """Index of the deepest declared layer that contains `module`."""
    best = -1
    for i, layer in enumerate(LAYERS[package]):
        if module == layer or module.startswith(layer + "."):
            if best < 0 or len(layer) > len(LAYERS[package][best]):
                best = i
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_circle(package):
    assert _cycles(_graph(package)) == []


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_module_belongs_to_a_layer(package):
    unplaced = sorted(m for m in _graph(package) if _layer(m, package) < 0)
    assert not unplaced, f"modules outside every declared layer: {unplaced}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_only_go_down(package):
    upward = defaultdict(list)
    for module, deps in _graph(package).items():
        for dep in deps:
            if _layer(dep, package) > _layer(module, package):
                upward[module].append(dep)
    assert not upward, "upward imports:\n" + "\n".join(f"  {m} -> {sorted(d)}" for m, d in sorted(upward.items()))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_folder_says_what_lives_there(package):
    """Every top-level folder has an __init__ docstring that says what it may import."""
    for folder in sorted(p for p in (ROOT / package).iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "import" in doc, f"{folder.relative_to(ROOT)}/__init__.py: say what it may import"


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_too_long():
    """One concept per file: at most 450 lines, except the rasterizer core."""
    exempt = {"engine/render/_torch_raster.py"}
    long = []
    paths = [*ROOT.glob("*.py"), *(p for folder in ("engine", "csd_blender", "tests", "bench")
                                   for p in (ROOT / folder).rglob("*.py"))]
    for path in paths:
        rel = str(path.relative_to(ROOT))
        if rel not in exempt and len(path.read_text(encoding="utf-8").splitlines()) > 450:
            long.append(rel)
    assert not long, f"over 450 lines: {sorted(long)}"
