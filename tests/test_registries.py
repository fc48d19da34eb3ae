"""The registries line up across the engine and both export targets (ARCHITECTURE.md, "One vocabulary").

A layer kind is run by the engine (`lstm_inspect.engine.layers.LAYERS`) and written by each target
(`lstm_inspect.export.onnx.registry.LAYERS`, `lstm_inspect.export.torch.registry.LAYERS`) from family modules of the
same name; a cell kind (`lstm_inspect.model.cells.CELLS`) has its code in each target's `CELLS`, in a module named
as the model's. These tests fail when a kind is added to one and not the others, or lands in another family.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.export.onnx import registry as onnx
from lstm_inspect.export.torch import registry as torch
from lstm_inspect.model.cells.base import CELLS

PACKAGE = Path(__file__).resolve().parents[1] / "lstm_inspect"
TARGETS = {"onnx": onnx, "torch": torch}


def _family(fn: object) -> str:
    return getattr(fn, "__module__", "").rsplit(".", 1)[-1]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_layer_the_engine_runs_is_written_from_the_same_family(target: str) -> None:
    registry = TARGETS[target].LAYERS
    assert set(registry) == set(LAYERS), (sorted(set(LAYERS) - set(registry)), sorted(set(registry) - set(LAYERS)))
    moved = {k: (_family(LAYERS[k].run), _family(registry[k])) for k in LAYERS
             if _family(LAYERS[k].run) != _family(registry[k])}
    assert moved == {}


def test_the_engine_families_are_the_targets_family_files() -> None:
    families = {_family(kind.run) for kind in LAYERS.values()}
    assert families == {"core", "conv", "pooling", "activations", "attention"}
    for target in TARGETS:
        for family in families:
            assert (PACKAGE / "export" / target / f"{family}.py").is_file(), (target, family)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_cell_kind_has_one_module_per_target(target: str) -> None:
    registry = TARGETS[target].CELLS
    assert set(registry) == set(CELLS)
    for kind, cell in CELLS.items():
        model_module = type(cell).__module__.rsplit(".", 1)[-1]
        target_module = type(registry[kind]).__module__
        assert target_module == f"lstm_inspect.export.{target}.cells.{model_module}", (kind, target_module)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_target_imports_every_registering_module_in_one_place(target: str) -> None:
    tree = ast.parse((PACKAGE / "export" / target / "__init__.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {f"{node.module}.{a.name}" for a in node.names}
    registering = {fn.__module__ for fn in TARGETS[target].LAYERS.values()}
    registering |= {type(c).__module__ for c in TARGETS[target].CELLS.values()}
    assert registering <= imported, sorted(registering - imported)


# Where a kind's name may stand in code outside its own modules, and why.
KIND_NAMES_ALLOWED = {
    "check/mistakes.py": "a kind's own porting mistakes (@mistakes_of) and the gate orders other libraries use",
    "check/keras_ref.py": "Keras 1's config key renames, per layer class (history: Keras 1 had these three kinds)",
}


def _kind_names(node: ast.AST, kinds: set[str]) -> set[str]:
    """The cell kinds a comparison, a dict literal or a match case names by string."""
    if isinstance(node, ast.Compare):
        values = [node.left, *node.comparators]
    elif isinstance(node, ast.Dict):
        values = [k for k in node.keys if k is not None]
    elif isinstance(node, ast.MatchValue):
        values = [node.value]
    else:
        return set()
    consts = [v for v in values if isinstance(v, ast.Constant)]
    consts += [e for v in values if isinstance(v, (ast.Tuple, ast.Set, ast.List)) for e in v.elts
               if isinstance(e, ast.Constant)]
    return {c.value for c in consts if isinstance(c.value, str)} & kinds


def test_no_module_but_a_kinds_own_names_a_cell_kind() -> None:
    """Cell attributes and per-target cell modules replace `kind == "LSTM"` and dicts keyed by kind: a new kind
    edits its own modules (model/cells/<kind>.py, export/*/cells/<kind>.py) and the import lines, no dispatch."""
    kinds = set(CELLS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if (path.parent.name == "cells" and path.stem not in ("__init__", "base")) or rel in KIND_NAMES_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _kind_names(node, kinds):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert found == []


def test_the_kind_check_sees_dispatch() -> None:
    tree = ast.parse('STEPS = {"LSTM": 1}\nif d.cell.kind == "GRU": pass\nmatch k:\n    case "SimpleRNN": pass\n')
    assert set().union(*(_kind_names(n, set(CELLS)) for n in ast.walk(tree))) == {"LSTM", "GRU", "SimpleRNN"}
