"""The package's shape: stages import only library modules, imports point one way, none hide in functions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "solution"
STAGES = {"folds", "train", "predict", "stack", "make_submission", "report", "bench"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def kit_imports(node: ast.AST) -> set[str]:
    """The kit modules named by one import statement (``from solution import x`` names ``solution.x``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.startswith("solution")}
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("solution"):
        names = {f"{node.module}.{a.name}" for a in node.names}
        return {n for n in names if n in MODULES} or {node.module}
    return set()


def top_level_imports(path: Path) -> set[str]:
    return set().union(*(kit_imports(n) for n in ast.parse(path.read_text()).body), set())


def test_stage_modules_exist():
    assert {"folds", "train", "predict", "stack", "make_submission"} <= {m.split(".")[-1] for m in MODULES}


@pytest.mark.parametrize("stage", sorted(s for s in STAGES if f"solution.{s}" in MODULES))
def test_a_stage_imports_no_other_stage(stage):
    imported = top_level_imports(MODULES[f"solution.{stage}"])
    assert not imported & {f"solution.{s}" for s in STAGES}, imported


def test_no_kit_import_inside_a_function():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nested = [
            n
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f)
            if kit_imports(n)
        ]
        assert not nested, f"{name} imports {kit_imports(nested[0])} inside a function"


def test_no_import_cycle():
    graph = {name: {m for m in top_level_imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        assert name not in stack, " -> ".join([*stack[stack.index(name) :], name])
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, [*stack, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_bottom_modules_import_no_library_module():
    """Atomic I/O, errors, Id helpers, the class table and the CLI plumbing sit under everything else."""
    allowed = {"solution.errors"}
    for name in ("solution.fileio", "solution.errors", "solution.ids", "solution.classes", "solution.cli"):
        assert top_level_imports(MODULES[name]) <= allowed, name


def test_data_modules_import_no_library_above_them():
    below = {"solution.errors", "solution.fileio", "solution.ids", "solution.classes", "solution.cli"}
    for name, path in MODULES.items():
        if name.startswith("solution.data"):
            above = {m for m in top_level_imports(path) if not m.startswith("solution.data")} - below
            assert not above, f"{name} imports {above}"
