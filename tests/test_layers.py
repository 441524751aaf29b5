"""The architecture's rule, checked on the source: layers import only downwards, no cycles, small modules.

docs/architecture.md draws the layers; ``LAYERS`` here is the same picture as
data. A module may import its own package and the layers below its own; two
packages on one layer never import each other. Imports inside functions are
only for heavy optional dependencies (a module of ours that imports torch,
tensorrt or pycuda at its top), never to dodge a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ipmcam

PACKAGE = Path(ipmcam.__file__).resolve().parent

#: bottom to top; each entry is a layer, each name a package or a leaf module of ipmcam
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "resources"),
    ("media", "face"),
    ("ipmnet",),
    ("engines",),
    ("calibration", "realtime"),
    ("measure", "studio"),
    ("cli", "__init__"),
    ("__main__",),
)
#: what a package may import besides itself, where the layer rule alone would allow more
ONLY: dict[str, set[str]] = {"face": {"errors"}, "media": {"errors"}, "errors": set(), "resources": set()}
HEAVY = {"torch", "tensorrt", "pycuda", "cuda", "cupy"}
MAX_LINES = 600


def unit_of(module: str) -> str:
    """``ipmcam.face.align`` -> ``face``; ``ipmcam.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(unit: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise AssertionError(f"ipmcam.{unit} is on no layer: add it to LAYERS and docs/architecture.md")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1 and parts[-2] != "ipmcam":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.Module) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import of ours and of heavy dependencies."""
    top = {id(node) for node in tree.body}
    for node in tree.body:  # imports under a module-level `try:` or `if` count as module level
        if isinstance(node, (ast.Try, ast.If)):
            top |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            found.append((name, id(node) in top, node.lineno))
    return found


def source_modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = source_modules()


def ours(name: str) -> str | None:
    """The module of ours that an import name refers to (``ipmcam.face.masks.LIPS`` -> ``ipmcam.face.masks``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def heavy_at_top(module: str) -> bool:
    _, tree = MODULES[module]
    return any(top and name.split(".")[0] in HEAVY for name, top, _ in imports(tree))


def test_every_package_is_on_a_layer() -> None:
    for module in MODULES:
        layer_of(unit_of(module))


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for module, (path, tree) in MODULES.items():
        unit = unit_of(module)
        for name, _, line in imports(tree):
            target = ours(name)
            if target is None or target == "ipmcam":
                continue
            other = unit_of(target)
            if other == unit:
                continue
            allowed = ONLY.get(unit)
            if allowed is not None and other not in allowed:
                wrong.append(f"{path.name}:{line} ipmcam.{unit} may import only {sorted(allowed)}, not {target}")
            elif layer_of(other) >= layer_of(unit):
                wrong.append(f"{path.name}:{line} {module} imports {target}: same or higher layer")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_cycle_between_modules() -> None:
    graph = {m: sorted({t for n, _, _ in imports(tree) if (t := ours(n)) and t not in (m, "ipmcam")})
             for m, (_, tree) in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_imports_inside_functions_are_only_for_heavy_dependencies() -> None:
    wrong = []
    for module, (path, tree) in MODULES.items():
        for name, top, line in imports(tree):
            target = ours(name)
            if not top and target is not None and not heavy_at_top(target):
                wrong.append(f"{path.name}:{line} imports {target} inside a function")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module: str) -> None:
    path, _ = MODULES[module]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines, over {MAX_LINES}: split it by job"


def test_the_checker_reads_imports_as_written() -> None:
    """The reader itself: a module-level and an in-function import of ours, each resolved to its module."""
    tree = ast.parse("from ipmcam.realtime.pipeline import Pipeline\n"
                     "def f():\n    from ipmcam.face import masks\n")
    found = {(ours(name), top) for name, top, _ in imports(tree)}
    assert found == {("ipmcam.realtime.pipeline", True), ("ipmcam.face.masks", False), ("ipmcam.face", False)}
    assert layer_of(unit_of("ipmcam.realtime.pipeline")) > layer_of(unit_of("ipmcam.engines.base"))
