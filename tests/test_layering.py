"""The package's layering (ARCHITECTURE.md), checked on the source: an AST walk of every module.

Ranks, lowest first: base → model → engine → io → check → plot, export → dump (it writes the targets' weight
layouts) → the package's top (`load`) → cli. A module imports, at module level, only modules of a lower rank or of
its own folder (a folder and its sub-folders: export and export/onnx); sibling folders of one rank do not import
each other (plot, export/onnx and export/torch); the module-level imports have no cycle. Inside functions only the
optional dependencies are imported, each where ARCHITECTURE.md puts it (Keras in keras_ref, a runtime in its export
target, matplotlib in plot), plus the CLI's deferred imports (a command loads only what it runs) and the two thin
wrappers that call the engine (`Checkpoint.forward`, `RecurrentDirection.forward`). No private name crosses modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lstm_inspect"

RANKS = {"base": 0, "model": 1, "engine": 2, "io": 3, "check": 4, "plot": 5, "export": 5, "export.onnx": 5,
         "export.torch": 5, "dump": 6, "__init__": 7, "cli": 8}
# Optional dependencies: imported only inside functions (a command that does not need one never loads it), and
# only where ARCHITECTURE.md says: Keras and TensorFlow in keras_ref, the runtimes in their export target.
OPTIONAL = {"tensorflow": ("lstm_inspect.check.keras_ref",), "keras": ("lstm_inspect.check.keras_ref",),
            "tf_keras": ("lstm_inspect.check.keras_ref",),
            "onnx": ("lstm_inspect.export.onnx",), "onnxruntime": ("lstm_inspect.export.onnx",),
            "torch": ("lstm_inspect.export.torch",), "safetensors": ("lstm_inspect.export.torch",),
            "matplotlib": ("lstm_inspect.plot",), "threadpoolctl": ("lstm_inspect.base.threads",)}
# the thin wrappers allowed to import the engine inside a function (a Checkpoint is data; `forward`, `trace` run it)
DEFERRED = {("lstm_inspect.model.checkpoint", "Checkpoint.forward"),
            ("lstm_inspect.model.checkpoint", "Checkpoint.trace"),
            ("lstm_inspect.model.checkpoint", "RecurrentDirection.forward")}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The folder (or top-level module) of the package a module belongs to: its rank's key. Each export target
    is a unit of its own: the targets share export/plan.py and never import each other."""
    parts = module.split(".")
    if len(parts) > 2 and ".".join(parts[1:3]) in RANKS:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else "__init__"


def _related(here: str, there: str) -> bool:
    """One folder, or a folder and one of its own sub-folders (export and export.onnx)."""
    return here == there or here.startswith(there + ".") or there.startswith(here + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Import:
    """One imported name: the statement, the absolute module, the enclosing function (Class.method) or None,
    whether it sits in an `if TYPE_CHECKING:` body, and the name imported."""

    def __init__(self, stmt: ast.stmt, target: str, func: str | None, typing_only: bool, name: str) -> None:
        self.stmt, self.target, self.func, self.typing_only, self.name = stmt, target, func, typing_only, name


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, func: str | None, scope: str, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner, inner_scope, guarded = func, scope, typing_only
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"{scope}{child.name}"
            elif isinstance(child, ast.ClassDef):
                inner_scope = f"{scope}{child.name}."
            if isinstance(child, ast.Import):
                found.extend(Import(child, a.name, func, typing_only, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[:len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                # `from lstm_inspect.x import y` may import the submodule y: count it as x.y when it is one
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(Import(child, sub if _is_module(sub) else base, func, typing_only, a.name))
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), inner, inner_scope, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), inner, inner_scope, typing_only)
                continue
            visit(child, inner, inner_scope, guarded)

    visit(tree, None, "", False)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel.with_suffix(".py")).exists() or (PACKAGE.parent / rel / "__init__.py").exists()


def _function_level(module: str, imp: Import) -> str | None:
    root = imp.target.split(".")[0]
    where = f"{module}:{imp.stmt.lineno}: imports {imp.target} inside {imp.func}()"
    if _unit(module) == "cli":
        return None
    if root == "lstm_inspect":
        allowed = (module, imp.func) in DEFERRED and imp.target.startswith("lstm_inspect.engine")
        return None if allowed else where
    if root not in OPTIONAL:
        return where + " (not optional)"
    if not any(module == m or module.startswith(m + ".") for m in OPTIONAL[root]):
        return where + f" (only {', '.join(OPTIONAL[root])} may)"
    return None


def _module_level(module: str, imp: Import) -> str | None:
    root = imp.target.split(".")[0]
    if root in OPTIONAL:
        return f"{module}:{imp.stmt.lineno}: imports the optional {imp.target} at module level"
    if root != "lstm_inspect" or (imp.target == "lstm_inspect" and _unit(module) == "__init__"):
        return None
    if imp.name.startswith("_") and not imp.name.startswith("__") and imp.target != module:
        return f"{module}:{imp.stmt.lineno}: imports the private {imp.name} from {imp.target}"
    here, there = _unit(module), _unit(imp.target)
    if _related(here, there):
        return None
    if RANKS[there] < RANKS[here]:  # the same rule for `if TYPE_CHECKING:` imports: types flow downwards too
        return None
    return (f"{module}:{imp.stmt.lineno}: {here} (rank {RANKS[here]}) imports {imp.target} "
            f"({there}, rank {RANKS[there]})")


def layering_problems(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """What breaks the layering among `sources` (module name -> (source, is_package))."""
    problems = []
    for module, (text, is_package) in sorted(sources.items()):
        for imp in _imports(ast.parse(text), module, is_package):
            problem = _function_level(module, imp) if imp.func is not None else _module_level(module, imp)
            if problem:
                problems.append(problem)
    return list(dict.fromkeys(problems))


def import_cycles(sources: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """Cycles among the package's modules through module-level imports (type-checking ones aside)."""
    edges: dict[str, set[str]] = {m: set() for m in sources}
    for module, (text, is_package) in sources.items():
        for imp in _imports(ast.parse(text), module, is_package):
            if imp.func is None and not imp.typing_only and imp.target in sources and imp.target != module:
                edges[module].add(imp.target)
    cycles, state = [], dict.fromkeys(edges, 0)

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state[n] == 1:
                cycles.append([*path[path.index(n):], n])
            elif state[n] == 0:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if state[m] == 0:
            visit(m, [m])
    return cycles


def _package_sources() -> dict[str, tuple[str, bool]]:
    return {_name(p): (p.read_text(), p.name == "__init__.py") for p in _modules()}


def test_every_folder_has_a_rank() -> None:
    assert {_unit(m) for m in _package_sources()} <= set(RANKS)


def test_the_package_keeps_its_layering() -> None:
    assert layering_problems(_package_sources()) == []


def test_no_import_cycle_inside_the_package() -> None:
    assert import_cycles(_package_sources()) == []


def test_a_cycle_is_found() -> None:
    sources = _package_sources()
    text, is_package = sources["lstm_inspect.engine.layers.core"]
    sources["lstm_inspect.engine.layers.core"] = (text + "\nfrom lstm_inspect.engine.layers import pooling\n",
                                                   is_package)
    assert any("lstm_inspect.engine.layers.pooling" in c and "lstm_inspect.engine.layers.core" in c
               for c in import_cycles(sources))


@pytest.mark.parametrize(("module", "line", "expected"), [
    ("lstm_inspect.model.architecture", "from lstm_inspect.engine.layers.registry import LAYERS",
     "model (rank 1) imports lstm_inspect.engine.layers.registry (engine, rank 2)"),
    ("lstm_inspect.io.keras_h5", "from lstm_inspect.check.verify import compare",
     "io (rank 3) imports lstm_inspect.check.verify (check, rank 4)"),
    ("lstm_inspect.plot", "from lstm_inspect.export import plan",
     "plot (rank 5) imports lstm_inspect.export.plan (export, rank 5)"),
    ("lstm_inspect.engine.network", "def f():\n    from lstm_inspect.engine.ops import op_supported",
     "imports lstm_inspect.engine.ops inside f()"),
    ("lstm_inspect.check.stats", "def f():\n    import itertools", "imports itertools inside f() (not optional)"),
    ("lstm_inspect.export.onnx.core", "from lstm_inspect.export.torch import code",
     "export.onnx (rank 5) imports lstm_inspect.export.torch.code (export.torch, rank 5)"),
    ("lstm_inspect.plot", "if not TYPE_CHECKING:\n    from lstm_inspect.export import plan",
     "plot (rank 5) imports lstm_inspect.export.plan"),
    ("lstm_inspect.plot", "if TYPE_CHECKING:\n    pass\nelse:\n    from lstm_inspect.export import plan",
     "plot (rank 5) imports lstm_inspect.export.plan"),
    ("lstm_inspect.model.checkpoint", "class X:\n    def forward(self):\n        from lstm_inspect.engine import loop",
     "imports lstm_inspect.engine.loop inside X.forward()"),
    ("lstm_inspect.engine.network", "def f():\n    import tensorflow",
     "imports tensorflow inside f() (only lstm_inspect.check.keras_ref may)"),
    ("lstm_inspect.export.onnx.build", "import onnx", "imports the optional onnx at module level"),
    ("lstm_inspect.check.stats", "from lstm_inspect.engine.network import _op",
     "imports the private _op from lstm_inspect.engine.network"),
])
def test_one_upward_or_function_level_import_fails(module: str, line: str, expected: str) -> None:
    sources = _package_sources()
    before = set(layering_problems(sources))
    text, is_package = sources[module]
    sources[module] = (text + "\n\n" + line + "\n", is_package)
    problems = [p for p in layering_problems(sources) if p not in before]
    assert len(problems) == 1 and expected in problems[0], problems


def test_deferred_and_optional_imports_are_allowed() -> None:
    sources = _package_sources()
    sources["lstm_inspect.plot"] = (sources["lstm_inspect.plot"][0] + "\n\ndef f():\n    import matplotlib\n", False)
    sources["lstm_inspect.cli"] = (sources["lstm_inspect.cli"][0] + "\n\ndef g():\n    import lstm_inspect.dump\n",
                                   False)
    assert layering_problems(sources) == layering_problems(_package_sources())


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines() -> None:
    """Ruff's C901 (in `make test`) bounds each function's branches; this bounds its length."""
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{_name(path)}.{node.name}: {lines} lines")
    assert long == []
