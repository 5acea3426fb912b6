"""The package's shape: commands on top, library layers below, imports that follow one table.

Every module directly in ``solution/`` is a command (it has a ``main``) and imports only the library; every
library module lives in a layer (a sub-package) and imports only the layers its row of ``ALLOWED`` names.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "solution"

# Layer -> the layers it may import (itself included). Commands may import any layer, never a command.
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},
    "scoring": {"core", "scoring"},
    "artifacts": {"core", "data", "artifacts"},
    "training": {"core", "data", "scoring", "artifacts", "training"},
    "ensemble": {"core", "scoring", "artifacts", "ensemble"},
    "reporting": {"core", "scoring", "artifacts", "ensemble", "reporting"},
    "benchmarks": {"core", "data", "scoring", "artifacts", "training", "ensemble", "benchmarks"},
    "offline": {"core", "data", "scoring", "artifacts", "training", "ensemble", "offline"},
}
# Third-party packages a layer never imports: the pixel and deep-learning stacks stay out of the layers
# that ``stack``, ``make_submission`` and ``report`` load.
HEAVY = {"torch", "torchvision", "timm", "segmentation_models_pytorch", "albumentations", "cv2"}
FORBIDDEN: dict[str, set[str]] = {layer: HEAVY for layer in ("core", "scoring", "artifacts", "ensemble", "reporting")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
COMMANDS = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def layer_of(name: str) -> str | None:
    """The layer of a library module (``solution.core.ids`` -> ``core``); None for a command or the package."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def imported_names(node: ast.AST) -> set[str]:
    """Every module named by one import statement (``from solution import x`` names ``solution.x``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = {f"{node.module}.{a.name}" for a in node.names}
        return {n for n in names if n in MODULES} or {node.module}
    return set()


def top_level_imports(path: Path) -> set[str]:
    return set().union(*(imported_names(n) for n in ast.parse(path.read_text()).body), set())


def kit_imports(path: Path) -> set[str]:
    return {m for m in top_level_imports(path) if m.split(".")[0] == "solution"}


def test_every_layer_has_a_row_and_every_library_module_a_layer():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(ALLOWED)
    assert all(layer_of(n) in ALLOWED for n in MODULES if n != "solution" and n.split(".")[1] not in COMMANDS)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer_of(n)))
def test_a_library_module_imports_only_the_layers_of_its_row(name):
    layer = layer_of(name)
    used = {layer_of(m) for m in kit_imports(MODULES[name])}
    assert None not in used, f"{name} imports a command or the bare package"
    assert used <= ALLOWED[layer], f"{name} ({layer}) imports {used - ALLOWED[layer]}"
    heavy = {m.split(".")[0] for m in top_level_imports(MODULES[name])} & FORBIDDEN.get(layer, set())
    assert not heavy, f"{name} ({layer}) imports {heavy}"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_has_a_main_and_imports_no_other_command(command):
    tree = ast.parse(MODULES[f"solution.{command}"].read_text())
    main = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert main, f"{command} has no main()"
    # its work runs in user_errors(), which also ends the command's start (solution.core.startup)
    assert any(
        isinstance(n, ast.With) and ast.unparse(n.items[0].context_expr) == "user_errors()" for n in ast.walk(main[0])
    ), f"{command}'s main() does not enter user_errors()"
    assert 'if __name__ == "__main__":\n    main()' in MODULES[f"solution.{command}"].read_text(), (
        f"{command} never runs"
    )
    others = {m for m in kit_imports(MODULES[f"solution.{command}"]) if layer_of(m) is None}
    assert not others, f"solution.{command} imports {others}"


def test_no_library_module_runs_as_a_script():
    scripts = [n for n, p in MODULES.items() if layer_of(n) and "__main__" in p.read_text().replace("'__main__'", "")]
    assert not [n for n in scripts if 'if __name__ == "__main__"' in MODULES[n].read_text()], scripts


def test_the_readme_lists_every_command():
    readme = (PACKAGE.parent / "README.md").read_text()
    missing = [c for c in COMMANDS if f"python -m solution.{c}" not in readme]
    assert not missing, f"README.md does not show: {missing}"


def test_no_kit_import_inside_a_function():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nested = [
            n
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f)
            if {m for m in imported_names(n) if m.startswith("solution")}
        ]
        assert not nested, f"{name} imports {imported_names(nested[0])} inside a function"


def test_no_import_cycle():
    graph = {name: {m for m in kit_imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
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


@pytest.mark.parametrize("command", ["make_submission", "stack", "report"])
def test_the_ensemble_commands_start_without_torch_or_opencv(command):
    """Their ``--help`` (every import they make) loads neither torch nor OpenCV: they start in about a second."""
    code = (  # the collector off while it imports, as in the command's own start (solution.core.startup)
        f"import gc, sys; gc.disable(); sys.argv = ['x', '--help']; import solution.{command} as c\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'cv2', 'timm', 'albumentations'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


def kit_modules_loaded_by(name: str) -> set[str]:
    """The kit's modules that importing ``name`` loads, itself included (read from their top-level imports)."""
    loaded, todo = set(), [name]
    while todo:
        name = todo.pop()
        if name not in loaded:
            loaded.add(name)
            todo += [m for m in kit_imports(MODULES[name]) if m in MODULES]
    return loaded


def test_prediction_starts_without_albumentations():
    """Only training builds augmentation pipelines (``solution.data.augment``): no module that ``predict`` loads
    imports albumentations (the config names the presets, ``solution.data.transforms``, without it)."""
    loaded = kit_modules_loaded_by("solution.predict")
    assert {"solution.training.config", "solution.data.transforms"} <= loaded
    assert [m for m in loaded if "albumentations" in top_level_imports(MODULES[m])] == []
    assert "albumentations" in top_level_imports(MODULES["solution.data.augment"])


@pytest.mark.parametrize("command", ["predict", "stack"])
def test_prediction_and_the_stack_start_without_lightgbm(command):
    """LightGBM (with scikit-learn and SciPy) is imported by the functions that fit or read boosters
    (``solution.ensemble``), not at the top of any module ``predict`` or ``stack`` loads."""
    loaded = kit_modules_loaded_by(f"solution.{command}")
    assert "solution.ensemble.stacking" in loaded
    assert [m for m in loaded if "lightgbm" in top_level_imports(MODULES[m])] == []


def test_importing_the_kit_never_asks_the_network():
    """albumentations looks for a newer release on import unless NO_ALBUMENTATIONS_UPDATE is set: the kit sets it."""
    code = (
        "import gc, sys\ngc.disable()\nasked = []\n"
        "sys.addaudithook(lambda event, args: asked.append(args[0]) if event == 'urllib.Request' else None)\n"
        "import solution.data.augment\nprint(asked)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]
