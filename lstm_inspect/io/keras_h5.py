"""Legacy Keras HDF5 files (Keras 1, 2, tf.keras, tf_keras, and Keras 3's legacy writer), read without TensorFlow.

Two kinds, told apart by content, never by file name (a real `model.keras` can be a Keras 2.2 HDF5):

- root attr `model_config`: a full model, `model.save("m.h5")` -> "legacy-h5"; its weights lie in
  `model_weights/<layer>/` in each group's `weight_names` order;
- root attr `layer_names`: `model.save_weights("w.h5")` -> "legacy-weights-h5": one group per layer and no
  architecture, so recurrent layers are found by their arrays' shapes (or paired in order with a `--config`
  model, as Keras 2's `load_weights` pairs them).

The layout is tf_keras's `src/saving/legacy/hdf5_format.py` (`save_model_to_hdf5`,
`load_weights_from_hdf5_group`). A Keras 0.x weights file (root attr `nb_layers`) and a `model_weights` group
without its config are refused here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.shapes import has_weights
from lstm_inspect.io.assemble import (
    Located,
    default_settings,
    from_graph,
    guessed_kind,
    load_json,
    make_direction,
    model_graph,
    note_sibling_configs,
    raise_no_recurrent,
    recurrent_halves,
    renamed,
)
from lstm_inspect.io.probe import Architecture, Probe, hdf5_errors
from lstm_inspect.io.storage import (
    StoredArray,
    WeightFile,
    attr,
    attr_str,
    attr_strings,
    child,
    hard_links_only,
    has_attr,
    stored,
)
from lstm_inspect.model.architecture import LayerNode, RecurrentSpec
from lstm_inspect.model.cells.base import Cell, default_recurrent_activation
from lstm_inspect.model.checkpoint import Checkpoint, ModelLayer, RecurrentDirection

# ---------------------------------------------------------------- sniffs and readers (io.READERS)


@hdf5_errors
def is_full_model(probe: Probe) -> bool:
    return probe.is_hdf5() and has_attr(probe.hdf5(), "model_config")


@hdf5_errors
def read_full_model(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    if architecture is not None:
        raise InspectError(f"{probe.path}: is a full model, which holds its own architecture; --config is for "
                           "weights-only files")
    return _read_legacy_full(probe.path, probe.hdf5())


@hdf5_errors
def is_weights(probe: Probe) -> bool:
    return probe.is_hdf5() and attr_strings(probe.hdf5(), "layer_names") is not None


@hdf5_errors
def read_weights(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    if architecture is not None:
        return _read_legacy_weights_with_config(probe.path, probe.hdf5(), architecture, config)
    return note_sibling_configs(probe.path, _read_legacy_weights(probe.path, probe.hdf5()))


@hdf5_errors
def is_keras0_weights(probe: Probe) -> bool:
    return probe.is_hdf5() and has_attr(probe.hdf5(), "nb_layers")


def refuse_keras0_weights(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: is a Keras 0.x weights file, which lstm-inspect does not read")


@hdf5_errors
def is_weights_without_config(probe: Probe) -> bool:
    return probe.is_hdf5() and child(probe.hdf5(), "model_weights") is not None


def refuse_weights_without_config(probe: Probe, architecture: Architecture | None, config: Path | None
                                  ) -> Checkpoint:
    raise InspectError(f"{probe.path}: has a model_weights group but no model_config attribute")


# ---------------------------------------------------------------- full models


def _read_legacy_full(path: Path, f: h5py.File) -> Checkpoint:
    cfg = load_json(attr(f, "model_config"), "the model_config attribute", path)
    root = child(f, "model_weights")
    if root is None or not isinstance(root, h5py.Group):
        raise InspectError(f"{path}: has a model config but no model_weights group (the weights are missing)")
    # Keras 2's loader reads keras_version from the weights group; its absence there means Keras 1,
    # which wrote it on the root only.
    keras_version = attr_str(attr(root, "keras_version")) or attr_str(attr(f, "keras_version")) or "1"
    graph = model_graph(cfg, "the model_config attribute", path)
    arrays_of = _legacy_arrays(path, root)
    return from_graph(path, "legacy-h5", keras_version, graph, _legacy_locator(arrays_of, root), WeightFile(path),
                       arrays_of, cfg)


def _legacy_arrays(path: Path, root: h5py.Group, rename: dict[str, str] | None = None
                   ) -> Callable[[LayerNode], list[StoredArray]]:
    """A layer's arrays in a legacy file: its group's weight_names, in order.

    Each top-level group's weight_names are read once and indexed by name scope, so a nested model of
    many layers costs one pass over its names, not one per layer.
    """
    groups: dict[str, tuple[Any, list[str], dict[str, list[str]], bool] | None] = {}

    def indexed(top: str) -> tuple[Any, list[str], dict[str, list[str]], bool] | None:
        if top not in groups:
            group = child(root, top)
            if group is None or not isinstance(group, h5py.Group):
                groups[top] = None
            else:
                names = attr_strings(group, "weight_names") or []
                by_scope: dict[str, list[str]] = {}
                for n in names:
                    for part in dict.fromkeys(n.split("/")):
                        by_scope.setdefault(part, []).append(n)
                # a group of many datasets: checked for soft and external links once, each dataset then opened whole
                groups[top] = (group, names, by_scope, len(names) > 64 and hard_links_only(group))
        return groups[top]

    def arrays_of(node: LayerNode) -> list[StoredArray]:
        top = node.path.split("/")[0]
        top = rename.get(top, top) if rename is not None else top
        found = indexed(top)
        if found is None:
            return []
        group, names, by_scope, hard = found
        if node.path != top:
            # A nested model keeps all its weights in one group, trainable ones first across
            # sub-layers: pick this layer's by the name scope, not by position.
            names = _by_role(by_scope.get(node.name, []))
        prefix = group.name.strip("/")
        return [renamed(stored(group, n, path, hard), f"{prefix}/{n}") for n in names]

    return arrays_of


def _legacy_locator(arrays_of: Callable[[LayerNode], list[StoredArray]], root: h5py.Group,
                    rename: dict[str, str] | None = None) -> Callable[[RecurrentSpec], Located]:
    def locate(spec: RecurrentSpec) -> Located:
        top = spec.layer.path.split("/")[0]
        top = rename.get(top, top) if rename is not None else top
        if child(root, top) is None:
            return [], "keras", [f"layer {spec.name}: no weights group {root.name.strip('/')}/{top} in the file"]
        arrays = arrays_of(spec.layer)
        if spec.half is not None:
            half = len(arrays) // 2  # Bidirectional: forward weights, then backward
            arrays = arrays[:half] if spec.half == "forward_layer" else arrays[half:]
        if spec.stack_arrays is not None:  # StackedRNNCells: each cell's arrays in turn
            first, count = spec.stack_arrays
            arrays = arrays[first: first + count]
        return arrays, spec.cell.storage_of(spec.kind, [a.shape for a in arrays]), []

    return locate


_ROLE = re.compile(r"(recurrent_kernel|kernel|bias)(:\d+)?$")


def _by_role(names: list[str]) -> list[str]:
    """Order kernel, recurrent_kernel, bias (per direction) when every name says its role."""
    roles = [_ROLE.search(n) for n in names]
    if not names or not all(roles):
        return names
    order = {"kernel": 0, "recurrent_kernel": 1, "bias": 2}
    direction = [1 if any(p.startswith("backward_") for p in n.split("/")) else 0 for n in names]
    keyed = sorted(zip(direction, [order[r.group(1)] for r in roles if r], range(len(names)), names))
    return [n for *_, n in keyed]


# ---------------------------------------------------------------- save_weights files


def _read_legacy_weights(path: Path, f: h5py.File) -> Checkpoint:
    """`save_weights("x.h5")`: one group per layer and no architecture, so recurrent layers are found by shape."""
    keras_version = attr_str(attr(f, "keras_version"))
    source = WeightFile(path)
    directions: list[RecurrentDirection] = []
    model_layers: list[ModelLayer] = []
    for layer_name in attr_strings(f, "layer_names") or []:
        group = child(f, layer_name)
        if group is None or not isinstance(group, h5py.Group):
            raise InspectError(f"{path}: layer_names lists {layer_name} but the file has no group for it")
        names = attr_strings(group, "weight_names") or []
        arrays = [renamed(stored(group, n, path), f"{group.name.strip('/')}/{n}") for n in names]
        found = recurrent_halves(arrays)
        model_layers.append(ModelLayer(name=layer_name, class_name=_guess_class(arrays, found)))
        if found is None:
            continue
        cell, storage, halves = found
        for k, half in enumerate(halves):
            kind = guessed_kind(cell, storage)
            parts = (layer_name,) if len(halves) == 1 else (layer_name, _half_name(names, k))
            settings = default_settings(cell, kind, keras_version or "1", half, go_backwards=k == 1)
            d = make_direction(parts, cell, kind, settings, storage, half, source, keras_version, [],
                               wrapper=layer_name if len(halves) == 2 else None,
                               merge_mode="concat" if len(halves) == 2 else None)
            d.layer_path = layer_name
            directions.append(d)
    if not directions:
        raise_no_recurrent(path, [m.class_name for m in model_layers], [])
    version = keras_version or "1 (no keras_version recorded)"
    notes = [f"weights only, no architecture: activations and flags shown are the Keras {version} defaults "
             f"(LSTM and GRU: tanh and {default_recurrent_activation(keras_version or '1')}; CuDNN layers: tanh and "
             "sigmoid); pass the architecture with --config to use the model's own"]
    return Checkpoint(file=path, format="legacy-weights-h5", keras_version=keras_version, directions=directions,
                      layers=model_layers, settings_from="defaults", notes=notes, source=source)


def _read_legacy_weights_with_config(path: Path, f: h5py.File, architecture: tuple[dict[str, Any], str | None],
                                     config: Path | None) -> Checkpoint:
    """A legacy save_weights .h5 with its architecture from --config, paired as Keras 2's load_weights pairs
    them: the file's layers that hold weights and the model's layers that have weights, in order
    (tf_keras `src/saving/legacy/hdf5_format.py`, `load_weights_from_hdf5_group`)."""
    cfg, config_version = architecture
    graph = model_graph(cfg, str(config), path)
    keras_version = attr_str(attr(f, "keras_version")) or config_version or "1"
    stored_layers = [n for n in attr_strings(f, "layer_names") or []
                     if (g := child(f, n)) is not None and attr_strings(g, "weight_names")]
    weighted = [n for n in graph.layers if has_weights(n)]
    if len(stored_layers) != len(weighted):
        raise InspectError(f"{path}: holds weights for {len(stored_layers)} layers but the model in {config} has "
                           f"{len(weighted)} layers with weights (as Keras would say, you are trying to load a weight "
                           "file into a different model)")
    rename = {node.name: group for node, group in zip(weighted, stored_layers)}
    arrays_of = _legacy_arrays(path, f, rename)
    ckpt = from_graph(path, "legacy-weights-h5", keras_version, graph, _legacy_locator(arrays_of, f, rename),
                      WeightFile(path), arrays_of, cfg)
    ckpt.notes.append(f"architecture from {config}; weights paired with its layers in order, as Keras 2's "
                      "load_weights pairs them" + ("" if all(k == v for k, v in rename.items()) else
                                                   " (the file's layer names differ from the config's)"))
    return ckpt


def _guess_class(arrays: list[StoredArray], found: tuple[Cell, str, list[list[StoredArray]]] | None) -> str:
    if found:
        cell, storage, halves = found
        kind = guessed_kind(cell, storage)
        return f"Bidirectional({kind})" if len(halves) == 2 else kind
    if not arrays:
        return "no weights"
    return "arrays " + ", ".join("×".join(map(str, a.shape)) for a in arrays)


def _half_name(names: list[str], k: int) -> str:
    want = "forward_" if k == 0 else "backward_"
    for n in names:
        for part in n.split("/"):
            if part.startswith(want):
                return part
    return "forward" if k == 0 else "backward"
