"""The tests' own import rules: no test module imports another (what two test modules share lives in
tests/helpers/ or tests/cases/, or is a conftest fixture), and no module of tests/ imports a private name (`_x`)
of another local module (tests/ or sample_models/generate.py): a helper other modules use is public where it is
defined. AST walk, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TEST_MODULES = {p.stem for p in TESTS.glob("test_*.py")}
# the modules found on the tests' sys.path: tests/ itself (pytest's rootdir import) and sample_models/ (put there by
# keras_reference.py for generate.py)
LOCAL = TEST_MODULES | {p.stem for p in TESTS.glob("*.py")} | {p.name for p in TESTS.iterdir() if
                                                               (p / "__init__.py").exists()} | {"generate"}


def _sources() -> list[Path]:
    """Every Python file of tests/ (its helper and case packages included)."""
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names imported from it) of every import statement in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return out


def test_no_test_module_imports_another() -> None:
    bad = [f"{path.relative_to(TESTS)}:{line} imports {module}" for path in _sources()
           for line, module, _ in _imports(path) if module.split(".")[0] in TEST_MODULES]
    assert not bad, "share it through tests/helpers/, tests/cases/ or a conftest fixture:\n" + "\n".join(bad)


def test_no_private_name_crosses_local_modules() -> None:
    bad = [f"{path.relative_to(TESTS)}:{line} imports {name} from {module}" for path in _sources()
           for line, module, names in _imports(path) if module.split(".")[0] in LOCAL
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "make it public where it is defined:\n" + "\n".join(bad)


def test_the_rules_see_the_imports_they_forbid(tmp_path: Path) -> None:
    """The walk finds imports at any depth, `import x` and `from x import y` alike."""
    probe = tmp_path / "probe.py"
    probe.write_text("import test_engine\n\ndef f():\n    from test_layers import _cases\n")
    assert [(m, n) for _, m, n in _imports(probe)] == [("test_engine", []), ("test_layers", ["_cases"])]
    assert {"test_engine", "test_layers", "conftest", "helpers", "cases", "generate"} <= LOCAL
