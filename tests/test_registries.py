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


def test_no_module_outside_the_cells_tests_a_cell_kind_by_name() -> None:
    """Cell attributes and per-target cell modules replace `kind == "LSTM"`: a new kind edits no such test."""
    kinds = set(CELLS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cells" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                names = {v.value for v in values if isinstance(v, ast.Constant)} | {
                    e.value for v in values if isinstance(v, (ast.Tuple, ast.Set, ast.List)) for e in v.elts
                    if isinstance(e, ast.Constant)}
                if names & kinds and any("kind" in ast.unparse(v) for v in values):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
