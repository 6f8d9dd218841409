"""Layers point one way (docs/design.md, "Extension seams"): read from the source's import statements,
so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import raysim

PACKAGE = Path(raysim.__file__).parent
SCIENCE = ("survey", "metrics", "engine", "identity", "methods", "report", "runs", "fits", "postprocess", "registry", "align")
RAY_LAYERS = ("pipeline", "tune")


def _module(path: Path) -> str:
    parts = ("raysim", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the modules (raysim's, or any other top-level name) it imports."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:   # `if TYPE_CHECKING:` imports are not made at run time
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                deps.add(target)
                # `from . import x` / `from .pkg import mod` may name submodules
                deps |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in _MODULES}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d != name}
    return graph


_MODULES = {_module(p) for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_science_never_imports_pipeline_or_tune():
    bad = {m: sorted(d for d in deps if _layer(d) in RAY_LAYERS and d.startswith("raysim."))
           for m, deps in import_graph().items() if _layer(m) in SCIENCE}
    assert {m: d for m, d in bad.items() if d} == {}


def test_ray_is_imported_only_by_pipeline_and_tune():
    bad = {m: sorted(d for d in deps if d == "ray" or d.startswith("ray."))
           for m, deps in import_graph().items() if _layer(m) not in RAY_LAYERS}
    assert {m: d for m, d in bad.items() if d} == {}


def test_argparse_only_in_the_command_line():
    # Science and job modules take typed arguments; cli.py and raysim.commands parse them.
    bad = sorted(m for m, deps in import_graph().items()
                 if "argparse" in deps and m != "raysim.cli" and _layer(m) != "commands")
    assert bad == []


def test_no_import_cycles_inside_raysim():
    graph = {m: {d for d in deps if d in _MODULES} for m, deps in import_graph().items()}
    # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
    graph = {m: {d for d in deps if not (m.startswith(d + ".") and d in graph)} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []
