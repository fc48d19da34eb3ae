"""The steps every format reader shares: from a parsed model config and the arrays located in a file to one
`Checkpoint` (`from_graph`), and, for a file without its architecture, recurrent directions found by their arrays'
shapes and run with the writing Keras's defaults (`recurrent_halves`, `guessed_kind`, `default_settings`,
`make_direction`).

The format modules (keras_h5, keras3, savedmodel, tf_checkpoint) only find where a layer's arrays lie; what a
direction is, which of its shapes are wrong and what is said about a model with no recurrent layer is decided here,
once. Only shapes and attributes are read: the arrays stay in the file until asked for. Recurrent layers of every
kind the cell registry knows (LSTM, GRU, SimpleRNN and their CuDNN and RNN(cell) forms) become
`RecurrentDirection`s; the other layers' arrays are located for the engine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.shapes import input_feature_dims
from lstm_inspect.io.storage import StoredArray, WeightFile
from lstm_inspect.model.architecture import (
    MAX_JSON_DEPTH,
    TF_OP_LAYERS,
    ConfigError,
    ConfigValueError,
    LayerNode,
    ModelGraph,
    RecurrentSpec,
    TensorRef,
    check_values,
    json_depth,
    parse_model_config,
    recurrent_specs,
    split_rnn_call,
    state_names,
    unsupported_recurrent,
)
from lstm_inspect.model.cells.base import CELLS, Cell, CellSettings, StoredShapes
from lstm_inspect.model.checkpoint import Checkpoint, ModelLayer, RecurrentDirection

# What a format reader returns for one recurrent direction: its arrays, their layout, what went wrong.
Located = tuple[list[StoredArray], str, list[str]]


def from_graph(
    path: Path, fmt: str, keras_version: str | None, graph: ModelGraph, locate: Callable[[RecurrentSpec], Located],
    source: WeightFile, arrays_of: Callable[[LayerNode], list[StoredArray]], raw_config: Any,
) -> Checkpoint:
    try:
        dims = input_feature_dims(graph)
    except ConfigError as exc:
        raise InspectError(f"{path}: the model config is not one Keras could have written: {exc}") from exc
    directions: list[RecurrentDirection] = []
    model_layers: list[ModelLayer] = []
    unsupported: list[str] = []
    notes: list[str] = []
    layer_arrays: dict[str, list[StoredArray]] = {}
    for node in graph.walk():
        if node.is_op:
            if node.class_name in TF_OP_LAYERS:
                model_layers.append(ModelLayer(name=node.path, class_name=display_class(node.class_name, node.config)))
            continue
        model_layers.append(ModelLayer(name=node.path, class_name=display_class(node.class_name, node.config)))
        if (u := unsupported_recurrent(node.class_name, node.config)) is not None:
            unsupported.append(f"{node.path} ({u})")
        specs = recurrent_specs(node, keras_version)
        if not specs and node.children is None:
            layer_arrays[node.path] = arrays_of(node)
        states: list[str] = []
        if specs and node.inbound:
            _, refs, _ = split_rnn_call(node.inbound[0], lambda o: isinstance(o, TensorRef))
            states = state_names(graph, refs)
        for k, spec in enumerate(specs):
            arrays, storage, located_problems = locate(spec)
            d = make_direction(spec.parts, spec.cell, spec.kind, spec.settings, storage, arrays, source,
                               keras_version, located_problems, spec.merge_mode,
                               spec.layer.name if spec.half else None)
            expected = spec.build_input_dim if spec.build_input_dim is not None else dims.get(node.path)
            if spec.stack_index:  # a stacked cell reads the previous cell's output
                expected = directions[-1].units
            conv = spec.settings.conv
            if conv is not None and conv.data_format == "channels_first":
                expected = None  # the last axis is a spatial one; the engine checks the channels it is fed
            d.expected_input_dim = expected
            d.layer_path = spec.layer.path
            d.stack_index = spec.stack_index
            n_states = len(spec.cell.states)
            d.initial_state_from = states[n_states * k: n_states * (k + 1)]
            if not arrays and not located_problems:
                # Keras writes empty weight_names for a model saved before it was built.
                d.problems, d.weights_stored, d.input_dim = [], False, expected
                notes.append(f"layer {d.name}: the file stores no weights for it "
                             "(the model was saved before it was built); shapes come from the config")
            if expected is not None and d.input_dim is not None and expected != d.input_dim and d.shapes_ok:
                g = spec.cell.n_gates
                d.problems.append(
                    f"layer {d.name}: kernel {arrays[0].key} has {d.input_dim} rows (N_i) but the layer is fed "
                    f"{expected} features; expected ({expected}, {g * (d.units or 0)}), found {arrays[0].shape}"
                )
            directions.append(d)
    notes += [f"unsupported recurrent layer: {u}" for u in unsupported]
    if not directions:
        raise_no_recurrent(path, [m.class_name for m in model_layers], unsupported)
    return Checkpoint(file=path, format=fmt, keras_version=keras_version, directions=directions,
                      layers=model_layers, graph=graph, settings_from="config", notes=notes, source=source,
                      layer_arrays=layer_arrays, raw_config=raw_config)


def make_direction(
    parts: tuple[str, ...], cell: Cell, kind: str, settings: CellSettings, storage: str, arrays: list[StoredArray],
    source: WeightFile, keras_version: str | None, problems: list[str], merge_mode: str | None = None,
    wrapper: str | None = None,
) -> RecurrentDirection:
    name = "/".join(parts)
    n_i, n_c, shape_problems = (None, settings.units, [])
    if not problems:
        n_i, n_c, shape_problems = cell.check_shapes(name, storage, StoredShapes([(a.key, a.shape) for a in arrays]),
                                                     settings)
    return RecurrentDirection(
        name=name, parts=parts, cell=cell, kind=kind, direction="backward" if settings.go_backwards else "forward",
        input_dim=n_i, units=n_c, settings=settings, storage=storage, arrays=arrays, source=source,
        keras_version=keras_version, merge_mode=merge_mode, wrapper=wrapper, problems=problems + shape_problems,
    )


def display_class(class_name: str, config: dict[str, Any]) -> str:
    inner = config.get("layer") if class_name in ("Bidirectional", "TimeDistributed") else None
    if isinstance(inner, dict):
        inner_cfg = inner.get("config") if isinstance(inner.get("config"), dict) else {}
        return f"{class_name}({display_class(str(inner.get('class_name')), inner_cfg)})"
    cell = config.get("cell") if class_name == "RNN" else None
    if isinstance(cell, dict):
        return f"RNN({cell.get('class_name')})"
    if class_name in ("TFOpLambda", "SlicingOpLambda") and isinstance(config.get("function"), str):
        return f"{class_name}({config['function']})"
    if class_name == "TensorFlowOpLayer" and isinstance(config.get("node_def"), dict):
        return f"TensorFlowOpLayer({config['node_def'].get('op')})"
    return class_name


def raise_no_recurrent(path: Path, classes: list[str], unsupported: list[str]) -> None:
    kinds = ", ".join(dict.fromkeys(c for c in classes if c != "InputLayer")) or "no layers at all"
    if unsupported:
        raise InspectError(f"{path}: has no recurrent layer lstm-inspect can read; "
                           f"{', '.join(unsupported)} is not supported (layers: {kinds})")
    raise InspectError(f"no recurrent layer (LSTM, GRU, SimpleRNN) in {path}; it has: {kinds}")


def load_json(text: Any, what: str, path: Path) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InspectError(f"{path}: {what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise InspectError(f"{path}: {what} is not a JSON string")
    try:
        return json.loads(text)
    except RecursionError:  # deeper than Python's own stack allows, so deeper than MAX_JSON_DEPTH too
        raise InspectError(_too_deep(what, path)) from None
    except json.JSONDecodeError as exc:
        raise InspectError(f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                           f"{exc.colno})") from exc
    except ValueError as exc:  # not a JSONDecodeError: Python's cap on the digits of an integer it converts
        raise InspectError(f"{path}: {what} holds an integer of more than {sys.get_int_max_str_digits():,} digits; "
                           "no Keras config does, and Python does not read one") from exc


def _too_deep(what: str, path: Path) -> str:
    return (f"{path}: {what} is nested deeper than {MAX_JSON_DEPTH} levels (lists and objects inside one "
            "another); Keras never writes a config that deep, so lstm-inspect does not read it")


def model_graph(cfg: Any, what: str, path: Path) -> ModelGraph:
    """The graph of a model config, or InspectError naming the file: for a config that is not a Keras model,
    nests too deep, or holds a value no Keras builds a model from (see `architecture.check_values`)."""
    if json_depth(cfg) > MAX_JSON_DEPTH:
        raise InspectError(_too_deep(what, path))
    try:
        graph = parse_model_config(cfg)
        graph.calls()  # ordered once here: a cycle or a dangling reference is the file's fault
        check_values(graph)
    except ConfigValueError as exc:
        raise InspectError(f"{path}: {what} {exc}") from exc
    except ConfigError as exc:
        raise InspectError(f"{path}: {what} is not a Keras model config ({exc})") from exc
    return graph


def recurrent_halves(arrays: list[StoredArray]) -> tuple[Cell, str, list[list[StoredArray]]] | None:
    """A layer's arrays split into recurrent directions when their shapes say which kind, else None.

    One direction, or two (a Bidirectional: forward arrays, then backward); fused arrays (kernel,
    recurrent_kernel, bias or none) or Keras 1's per-gate arrays.
    """
    for cell in CELLS.values():
        sizes = [3, 2] + ([cell.legacy_arrays] if cell.legacy_arrays else [])
        for size in sizes:
            for halves in (1, 2):
                if len(arrays) != size * halves:
                    continue
                parts = [arrays[k * size:(k + 1) * size] for k in range(halves)]
                if all(_shapes_fit(cell, [a.shape for a in p]) for p in parts):
                    return cell, cell.storage_of(cell.kind, [a.shape for a in parts[0]]), parts
    return None


def _shapes_fit(cell: Cell, shapes: list[tuple[int, ...]]) -> bool:
    if cell.legacy_arrays and len(shapes) == cell.legacy_arrays:
        # Keras 1: W (N_i, U), U (U, U), b (U,) per gate
        return (all(len(s) == 2 for s in shapes[0::3]) and all(len(s) == 2 and s[0] == s[1] for s in shapes[1::3])
                and all(len(s) == 1 for s in shapes[2::3]))
    if not cell.looks_like(shapes):
        return False
    if len(shapes) == 3:
        units, g = shapes[1][0], cell.n_gates
        return shapes[2] in ((g * units,), (2, g * units), (2 * g * units,))
    return len(shapes) == 2


def guessed_kind(cell: Cell, storage: str) -> str:
    if storage == "cudnn":
        return next(c for c, s in cell.layer_classes.items() if s == "cudnn")
    return cell.kind


def default_settings(cell: Cell, kind: str, keras_version: str, arrays: list[StoredArray],
                     go_backwards: bool = False) -> CellSettings:
    """A weights-only direction's settings: the writing Keras's defaults, with what the shapes tell."""
    cfg: dict[str, Any] = {"use_bias": len(arrays) != 2, "go_backwards": go_backwards}
    cfg.update(cell.shape_settings(kind, [tuple(a.shape) for a in arrays], keras_version))
    return replace(cell.settings(cfg, cfg, kind, keras_version), assumed=True)


def renamed(arr: StoredArray, key: str) -> StoredArray:
    """The same array under its full path in the file (h5py gives it relative to its group)."""
    return StoredArray(key=key, shape=arr.shape, dtype=arr.dtype)


def note_sibling_configs(path: Path, ckpt: Checkpoint) -> Checkpoint:
    """A weights-only file read with the defaults: a JSON beside it may be its architecture, so say so."""
    for sibling in _sibling_configs(path):
        ckpt.notes.append(f"{sibling.name} lies beside this file: if it is the architecture "
                          f"(model.to_json()), pass --config {sibling}")
    return ckpt


def _sibling_configs(path: Path) -> list[Path]:
    stem = path.name.split(".")[0]
    return sorted({p for p in (path.with_name(f"{stem}.json"), path.with_suffix(".json")) if p.is_file()})
