"""Keras 3's own formats, read without TensorFlow: the `.keras` zip and the `.weights.h5` file.

Keras's `saving_lib.py` writes both: a `.keras` is a zip of config.json, metadata.json and model.weights.h5
(-> "keras3"; also the layout TF 2.12-2.15's tf.keras wrote), and `save_weights("m.weights.h5")` writes that
model.weights.h5 alone (an HDF5 with groups `layers/` or `vars/` -> "keras3-weights"). Inside, a layer is
addressed by its class name and a per-container counter (`layers/lstm_1/cell/vars/0`), never by its own name
(`keras3_paths`); TF 2.12-2.14 wrote `_layer_checkpoint_dependencies/` instead (`tf_keras_paths`). A .weights.h5
without `--config` is read by its arrays' shapes with Keras 3's defaults.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from lstm_inspect.base.errors import InspectError
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
    ZIP_SIGNATURE,
    DamagedFile,
    NotRead,
    StoredArray,
    WeightFile,
    attr,
    attr_str,
    check_zip_member,
    child,
    groups_under,
    members,
    reading,
    stored,
)
from lstm_inspect.model.architecture import LayerNode, ModelGraph, RecurrentSpec, stacked_cells
from lstm_inspect.model.checkpoint import Checkpoint, ModelLayer, RecurrentDirection

MAX_JSON_BYTES = 64 << 20


# ---------------------------------------------------------------- sniffs and readers (io.READERS)


def is_keras_zip(probe: Probe) -> bool:
    return probe.signature().startswith(ZIP_SIGNATURE)


def read_keras_zip(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    if architecture is not None:
        raise InspectError(f"{probe.path}: is a .keras archive, which holds its own architecture; --config is for "
                           "weights-only files")
    return _read_keras_zip(probe.path)


@hdf5_errors
def is_weights(probe: Probe) -> bool:
    if not probe.is_hdf5():
        return False
    f = probe.hdf5()
    return bool(child(f, "layers") is not None or child(f, "vars") is not None
                or child(f, "_layer_checkpoint_dependencies"))


@hdf5_errors
def read_weights(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    if architecture is not None:
        return _read_keras3_weights_with_config(probe.path, probe.hdf5(), architecture, config)
    return note_sibling_configs(probe.path, _read_keras3_weights(probe.path, probe.hdf5()))


# ---------------------------------------------------------------- .keras zip


def _read_keras_zip(path: Path) -> Checkpoint:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InspectError(f"{path}: is a damaged zip archive ({exc}); it may be truncated") from exc
    with zf:
        names = zf.namelist()
        if "config.json" not in names:
            raise InspectError(f"{path}: is a zip but not a Keras model archive (no config.json; "
                               f"it has: {', '.join(names[:8]) or 'nothing'})")
        config = load_json(_read_member(path, zf, "config.json"), "config.json", path)
        metadata = {}
        if "metadata.json" in names:
            metadata = load_json(_read_member(path, zf, "metadata.json"), "metadata.json", path)
        member = next((m for m in ("model.weights.h5", "variables.h5") if m in names), None)
        if member is None:
            if "model.weights.npz" in names:
                raise InspectError(f"{path}: stores its weights as model.weights.npz, which needs pickle to read; "
                                   "lstm-inspect never unpickles files (re-save with the default .h5 weights)")
            raise InspectError(f"{path}: has no weights (model.weights.h5 is missing from the archive)")
    keras_version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    keras_version = str(keras_version) if isinstance(keras_version, (str, int, float)) else None
    graph = model_graph(config, "config.json", path)
    source = WeightFile(path, member)
    notes = []
    try:
        with source.open() as f:
            keras3_layout = _keras3_layout(f)
            if keras_version is None:
                # Without metadata.json only the archive itself tells the writer (KERAS_LSTM_SPEC.md A.1.7).
                keras_version = "3" if written_by_keras3(config, keras3_layout) else "2"
                notes.append(
                    "metadata.json records no keras_version; the archive is "
                    + ("Keras 3's (its config dialect and layout), so Keras 3's formulas are used "
                       "(hard_sigmoid = clip(x/6 + 0.5, 0, 1))" if keras_version == "3" else
                       "one TF 2.12-2.15's Keras 2 wrote (its config dialect or layout), so Keras 2's formulas are "
                       "used (hard_sigmoid = clip(0.2·x + 0.5, 0, 1))"))
            if keras3_layout:
                paths = keras3_paths(graph, "layers")
            else:
                paths = tf_keras_paths(f, graph, "_layer_checkpoint_dependencies")
            ckpt = from_graph(path, "keras3", keras_version, graph, _keras3_locator(path, f, paths), source,
                               _keras3_arrays(path, f, paths), config)
    except NotRead as exc:
        raise InspectError(f"{path}: model.weights.h5: {exc}") from exc
    except DamagedFile as exc:
        raise InspectError(f"{path}: model.weights.h5 is damaged: {exc}") from exc
    ckpt.notes[:0] = notes
    return ckpt


def _keras3_layout(f: h5py.File) -> bool:
    """layers/<class counter>/... (Keras 3, TF 2.15) rather than TF 2.12-2.14's _layer_checkpoint_dependencies/
    (whose files also hold an empty root vars/ group, so that group alone decides nothing)."""
    if child(f, "_layer_checkpoint_dependencies") is not None:
        return child(f, "layers") is not None
    return child(f, "layers") is not None or child(f, "vars") is not None


def written_by_keras3(config: Any, keras3_layout: bool) -> bool:
    """Keras 3 or TF 2.12-2.15's Keras 2, for a .keras without metadata.json.

    tf.keras's configs keep Keras 2's dialect: InputLayer's `batch_input_shape` and the RNN option
    `time_major`; Keras 3 writes `batch_shape` and has no `time_major`. Where the config says
    neither, the weights' layout decides: `_layer_checkpoint_dependencies/` is TF 2.12-2.14's.
    """
    found: set[str] = set()

    def walk(obj: Any, depth: int = 0) -> None:
        if depth > 64 or len(found) == 2:
            return
        if isinstance(obj, dict):
            found.update(k for k in ("batch_input_shape", "time_major", "batch_shape") if k in obj)
            for value in obj.values():
                walk(value, depth + 1)
        elif isinstance(obj, list):
            for value in obj:
                walk(value, depth + 1)

    walk(config)
    if found & {"batch_input_shape", "time_major"}:
        return False
    return "batch_shape" in found or keras3_layout


def _read_member(path: Path, zf: zipfile.ZipFile, name: str) -> bytes:
    info = zf.getinfo(name)
    check_zip_member(path, info)
    if info.file_size > MAX_JSON_BYTES:
        raise InspectError(f"{path}: {name} claims {info.file_size} bytes, too large for a model config")
    try:
        with reading(f"{name} could not be read from the archive"), zf.open(info) as member:
            data = member.read(MAX_JSON_BYTES + 1)
    except DamagedFile as exc:
        raise InspectError(f"{path}: {exc}") from exc
    if len(data) > MAX_JSON_BYTES:
        raise InspectError(f"{path}: {name} inflates past {MAX_JSON_BYTES} bytes")
    return data


def snake_case(class_name: str) -> str:
    """Keras's `to_snake_case`, which names the groups inside model.weights.h5 (LSTM -> lstm)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _is_layer(graph: ModelGraph, node: LayerNode) -> bool:
    """A node with a group of its own: not a Sequential's InputLayer, not a raw op."""
    return not (graph.class_name == "Sequential" and node.class_name == "InputLayer") and not node.is_op


def keras3_paths(graph: ModelGraph, prefix: str = "layers") -> dict[str, str]:
    """Layer path -> group in model.weights.h5.

    Keras 3 addresses a layer by its class name and a per-container counter (lstm, lstm_1, ...),
    never by its own name. A Sequential's InputLayer has no group; a Functional's does; raw-op
    nodes (module keras.src.ops.*) are not layers at all.
    """
    out: dict[str, str] = {}
    counters: dict[str, int] = {}
    for node in graph.layers:
        if not _is_layer(graph, node):
            continue
        base = snake_case(node.class_name)
        k = counters.get(base, -1) + 1
        counters[base] = k
        p = f"{prefix}/{base}" + ("" if k == 0 else f"_{k}")
        out[node.path] = p
        if node.children is not None:
            out.update(keras3_paths(node.children, f"{p}/layers"))
    return out


def tf_keras_paths(f: h5py.File, graph: ModelGraph, prefix: str) -> dict[str, str]:
    """Layer path -> group for the `_layer_checkpoint_dependencies` layout of TF 2.12-2.14's Keras.

    Its counters are not one per layer (a layer with weights consumes two values), so the groups
    present are matched to the layers of their class in counter order instead.
    """
    out: dict[str, str] = {}
    container = _group(f, prefix)
    present = members(container) if container is not None else []
    by_base: dict[str, list[tuple[int, str]]] = {}
    for name in present:
        m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
        if m:
            by_base.setdefault(m.group(1), []).append((int(m.group(2) or 0), name))
    queues = {base: [n for _, n in sorted(items)] for base, items in by_base.items()}
    for node in graph.layers:
        if not _is_layer(graph, node):
            continue
        queue = queues.get(snake_case(node.class_name), [])
        if queue:
            p = f"{prefix}/{queue.pop(0)}"
            out[node.path] = p
            if node.children is not None:
                out.update(keras3_paths(node.children, f"{p}/layers"))
    return out


def stacked_group(spec: RecurrentSpec) -> str:
    """The group of a stacked cell under <layer>/cell/cells/: Keras 3 names each cell of the list after its class,
    lstm_cell, lstm_cell_1, ... in the list's order (`saving_lib._save_container_state`)."""
    used: dict[str, int] = {}
    name = ""
    for entry in (stacked_cells(spec.layer.config) or [])[: (spec.stack_index or 0) + 1]:
        base = snake_case(str(entry.get("class_name")) if isinstance(entry, dict) else "")
        name = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
    return name


def _keras3_locator(path: Path, f: h5py.File, paths: dict[str, str]) -> Callable[[RecurrentSpec], Located]:
    by_name = _vars_by_name(f)

    def locate(spec: RecurrentSpec) -> Located:
        base = paths.get(spec.layer.path)
        group_path = f"{base}/{spec.half}" if spec.half else base
        if spec.stack_index is not None and group_path:
            group_path = f"{group_path}/cell/cells/{stacked_group(spec)}"
            cell = _group(f, f"{group_path}/vars")
            if cell is None:
                return [], "keras", [f"layer {spec.name}: weights not found in model.weights.h5 (looked for "
                                     f"{group_path}/vars)"]
            arrays = _numbered(cell, path)
            return arrays, spec.cell.storage_of(spec.kind, [a.shape for a in arrays]), []
        cell = _group(f, f"{group_path}/cell/vars") if group_path else None
        if cell is None:
            # Files from Keras >= 3.6 name each vars group after its layer: a second way in.
            own = spec.name.split("/")[-1] if spec.half else spec.layer.name
            holder = by_name.get(own)
            cell = _group(f, f"{holder}/cell/vars") if holder else None
        if cell is None:
            where = f"{group_path}/cell/vars" if group_path else f"a group for {spec.layer.name}"
            return [], "keras", [f"layer {spec.name}: weights not found in model.weights.h5 (looked for {where})"]
        arrays = _numbered(cell, path)
        return arrays, spec.cell.storage_of(spec.kind, [a.shape for a in arrays]), []

    return locate


# Layers whose variables live in their sub-layers' groups (<path>/<attribute>/vars), in `layer.weights` order.
# Each attribute is named as Keras 3 writes it, then as tf.keras 2.12-2.15 did (`_query_dense`); Keras 3.14's
# gate sub-layer has no public name, so its group keeps the underscore in both.
SUBLAYER_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "MultiHeadAttention": (("query_dense", "_query_dense"), ("key_dense", "_key_dense"), ("_gate_dense",),
                           ("value_dense", "_value_dense"), ("output_dense", "_output_dense")),
}


def _keras3_arrays(path: Path, f: h5py.File, paths: dict[str, str]) -> Callable[[LayerNode], list[StoredArray]]:
    """A layer's own variables in model.weights.h5: <path>/vars/0, 1, ... (a wrapper's under layer/), then
    those of its sub-layers for the layers in SUBLAYER_GROUPS."""

    def arrays_of(node: LayerNode) -> list[StoredArray]:
        base = paths.get(node.path)
        if base is None:
            return []
        if node.class_name == "TimeDistributed":
            base = f"{base}/layer"
        group = _group(f, f"{base}/vars")
        arrays = _numbered(group, path) if group is not None else []
        for names in SUBLAYER_GROUPS.get(node.class_name, ()):
            sub = next((g for g in (_group(f, f"{base}/{n}/vars") for n in names) if g is not None), None)
            if sub is not None:
                arrays += _numbered(sub, path)
        return arrays

    return arrays_of


def _group(f: h5py.Group, key: str) -> h5py.Group | None:
    node: Any = f
    for part in key.split("/"):
        node = child(node, part) if isinstance(node, h5py.Group) else None
        if node is None:
            return None
    return node if isinstance(node, h5py.Group) else None


def _numbered(vars_group: h5py.Group, path: Path) -> list[StoredArray]:
    keys = sorted((k for k in members(vars_group) if k.isdigit() and len(k) < 9), key=int)
    prefix = vars_group.name.strip("/")
    return [renamed(stored(vars_group, k, path), f"{prefix}/{k}") for k in keys]


def _vars_by_name(f: h5py.File) -> dict[str, str]:
    """Layer name -> its group path, from the `name` attrs Keras >= 3.6 writes on `vars` groups."""
    found: dict[str, str] = {}
    for name, group in groups_under(f):
        if name.endswith("/vars") and not name.endswith("cell/vars"):
            layer = attr_str(attr(group, "name"))
            if layer:
                found.setdefault(layer, name[: -len("/vars")])
    return found


# ---------------------------------------------------------------- .weights.h5


def _read_keras3_weights(path: Path, f: h5py.File) -> Checkpoint:
    source = WeightFile(path)
    cells: list[str] = []
    others: list[str] = []
    for name, group in groups_under(f):
        if name.endswith("vars") and any(k.isdigit() for k in members(group)):
            (cells if name.endswith("/cell/vars") else others).append(name)
    if child(f, "optimizer") is not None:
        cells = [c for c in cells if not c.startswith("optimizer/")]
        others = [o for o in others if not o.startswith("optimizer/")]
    directions: list[RecurrentDirection] = []
    model_layers = [ModelLayer(name=_pretty(f, o[: -len("/vars")]), class_name="weights")
                    for o in sorted(others, key=_natural)]
    for cell_path in sorted(cells, key=_natural):
        layer_path = cell_path[: -len("/cell/vars")]
        group = _group(f, cell_path)
        arrays = _numbered(group, path) if group is not None else []
        found = recurrent_halves(arrays)
        if found is None or len(found[2]) != 1:
            model_layers.append(ModelLayer(name=_pretty(f, layer_path), class_name="recurrent cell of unknown kind"))
            continue
        cell, storage, _ = found
        backward = layer_path.endswith("backward_layer")
        settings = default_settings(cell, guessed_kind(cell, storage), "3", arrays, go_backwards=backward)
        parts = _pretty_parts(f, layer_path)
        name = "/".join(parts)
        wrapper = "/".join(parts[:-1]) if layer_path.endswith(("forward_layer", "backward_layer")) else None
        model_layers.append(ModelLayer(name=name, class_name=cell.kind))
        d = make_direction(parts, cell, guessed_kind(cell, storage), settings, storage, arrays, source, "3", [],
                           wrapper=wrapper, merge_mode="concat" if wrapper else None)
        d.layer_path = wrapper or name
        directions.append(d)
    if not directions:
        raise_no_recurrent(path, [m.name for m in model_layers], [])
    notes = ["Keras 3 weights only, no architecture: activations and flags are the Keras 3 defaults "
             "(activation tanh, recurrent_activation sigmoid, GRU reset_after from its bias shape), and layers are "
             "listed in file order; pass the architecture with --config to use the model's own"]
    return Checkpoint(file=path, format="keras3-weights", keras_version=None, directions=directions,
                      layers=model_layers, settings_from="defaults", notes=notes, source=source)


def _read_keras3_weights_with_config(path: Path, f: h5py.File, architecture: tuple[dict[str, Any], str | None],
                                     config: Path | None) -> Checkpoint:
    """A Keras 3 .weights.h5 with its architecture from --config: the same layout as a .keras's model.weights.h5
    (KERAS_LSTM_SPEC.md A.2), so located the same way."""
    cfg, config_version = architecture
    graph = model_graph(cfg, str(config), path)
    if _keras3_layout(f):
        paths = keras3_paths(graph, "layers")
    else:
        paths = tf_keras_paths(f, graph, "_layer_checkpoint_dependencies")
    ckpt = from_graph(path, "keras3-weights", config_version or "3", graph, _keras3_locator(path, f, paths),
                      WeightFile(path), _keras3_arrays(path, f, paths), cfg)
    ckpt.notes.append(f"architecture from {config}; weights located by Keras 3's own paths (class-name counters), "
                      "as its load_weights locates them")
    return ckpt


def _pretty(f: h5py.File, group_path: str) -> str:
    return "/".join(_pretty_parts(f, group_path))


def _pretty_parts(f: h5py.File, group_path: str) -> tuple[str, ...]:
    """A readable name for a group: its layer's own name where Keras >= 3.6 recorded it, per level."""
    parts = [p for p in group_path.split("/") if p not in ("layers", "_layer_checkpoint_dependencies")]
    names = []
    walked = ""
    for part in group_path.split("/"):
        walked = f"{walked}/{part}" if walked else part
        if part in ("layers", "_layer_checkpoint_dependencies"):
            continue
        vars_group = _group(f, f"{walked}/vars")
        label = attr_str(attr(vars_group, "name")) if vars_group is not None else None
        names.append(label or part)
    return tuple(names) if names else tuple(parts)


def _natural(key: str) -> list[Any]:
    return [(int(t) if t.isdigit() else t) for t in re.split(r"(\d+)", key)]
