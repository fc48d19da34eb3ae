"""The package's layering (ARCHITECTURE.md), checked on the source: an AST walk of every module.

Ranks, lowest first: base → model → engine → io → check → plot, export → dump (it writes the targets' weight
layouts) → the package's top (`load`) → cli.
A module imports, at module level, only modules of a lower rank or of its own package; nothing imports upward;
sibling folders of one rank do not import each other. Inside functions only optional dependencies are imported
(torch, onnx, matplotlib, TensorFlow...), plus the CLI's deferred imports (a command loads only what it runs) and
the two thin wrappers the issue allows (`Checkpoint.forward`, `RecurrentDirection.forward` call the engine).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lstm_inspect"

RANKS = {"base": 0, "model": 1, "engine": 2, "io": 3, "check": 4, "plot": 5, "export": 5, "dump": 6,
         "__init__": 7, "cli": 8}
# imported inside functions: optional extras (and threadpoolctl, left out of `show`'s start-up)
OPTIONAL = {"torch", "onnx", "onnxruntime", "safetensors", "matplotlib", "tensorflow", "keras", "tf_keras",
            "threadpoolctl"}
# (module, function) pairs allowed to import lstm_inspect inside a function
DEFERRED = {("lstm_inspect.model.checkpoint", "forward")}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The folder (or top-level module) of the package a module belongs to: its rank's key."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[ast.stmt, str, str | None]]:
    """Every import as (statement, absolute module imported, enclosing function or None)."""
    found = []

    def visit(node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                found.extend((child, a.name, func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[:len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                # `from lstm_inspect.x import y` may import the submodule y: count it as x.y when it is one
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append((child, sub if _is_module(sub) else base, func))
            visit(child, inner)

    visit(tree, None)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel.with_suffix(".py")).exists() or (PACKAGE.parent / rel / "__init__.py").exists()


def _type_checking_only(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                lines.add(getattr(sub, "lineno", -1))
    return lines


def layering_problems(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """What breaks the layering among `sources` (module name -> (source, is_package))."""
    problems = []
    for module, (text, is_package) in sorted(sources.items()):
        tree = ast.parse(text)
        guarded = _type_checking_only(tree)
        here = _unit(module)
        for stmt, target, func in _imports(tree, module, is_package):
            root = target.split(".")[0]
            if func is not None:
                if here == "cli":
                    continue
                if root == "lstm_inspect":
                    if (module, func) not in DEFERRED:
                        problems.append(f"{module}:{stmt.lineno}: imports {target} inside {func}()")
                elif root not in OPTIONAL:
                    problems.append(f"{module}:{stmt.lineno}: imports {target} inside {func}() (not optional)")
                continue
            if root != "lstm_inspect" or (target == "lstm_inspect" and here == "__init__"):
                continue
            there = _unit(target)
            if there == here:
                continue
            if stmt.lineno in guarded and RANKS[there] <= RANKS[here]:
                continue
            if RANKS[there] >= RANKS[here]:
                problems.append(f"{module}:{stmt.lineno}: {here} (rank {RANKS[here]}) imports {target} "
                                f"({there}, rank {RANKS[there]})")
    return list(dict.fromkeys(problems))


def _package_sources() -> dict[str, tuple[str, bool]]:
    return {_name(p): (p.read_text(), p.name == "__init__.py") for p in _modules()}


def test_every_folder_has_a_rank() -> None:
    assert {_unit(m) for m in _package_sources()} <= set(RANKS)


def test_the_package_keeps_its_layering() -> None:
    assert layering_problems(_package_sources()) == []


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
