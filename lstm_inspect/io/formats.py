"""Every Keras checkpoint format, read into one `Checkpoint` without TensorFlow.

Formats are told apart by content, never by file name (a real `model.keras` can be a Keras 2.2
HDF5):

- a zip: Keras 3 `.keras` (config.json, metadata.json, model.weights.h5) -> "keras3" (also the
  2.12-2.15 layout tf.keras wrote);
- HDF5 with root attr `model_config`: a legacy full model (Keras 1, 2, tf.keras, tf_keras, and
  Keras 3's legacy writer) -> "legacy-h5";
- HDF5 with root attr `layer_names`: legacy `save_weights` -> "legacy-weights-h5";
- HDF5 with groups `layers/` or `vars/`: Keras 3 `.weights.h5` -> "keras3-weights".

Only shapes and attributes are read here; the arrays stay in the file until asked for. Recurrent
layers of every kind the cell registry knows (LSTM, GRU, SimpleRNN and their CuDNN and RNN(cell)
forms) become `RecurrentDirection`s; the other layers' arrays are located for the engine.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.shapes import has_weights, input_feature_dims
from lstm_inspect.io.storage import (
    HDF5_SIGNATURE,
    ZIP_SIGNATURE,
    DamagedFile,
    NotRead,
    StoredArray,
    WeightFile,
    attr,
    attr_str,
    attr_strings,
    check_zip_member,
    child,
    groups_under,
    hard_links_only,
    has_attr,
    members,
    reading,
    stored,
)
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
from lstm_inspect.model.cells import CELLS, Cell, CellSettings, StoredShapes, default_recurrent_activation
from lstm_inspect.model.checkpoint import Checkpoint, ModelLayer, RecurrentDirection

MAX_JSON_BYTES = 64 << 20
# What a format reader returns for one recurrent direction: its arrays, their layout, what went wrong.
Located = tuple[list[StoredArray], str, list[str]]


def read_checkpoint(path: Path, config: Path | None = None) -> Checkpoint:
    from lstm_inspect.io.tf_formats import is_savedmodel, looks_like_tf_checkpoint, read_savedmodel, read_tf_checkpoint

    architecture = read_config_file(config) if config is not None else None
    if path.name in ("saved_model.pb", "keras_metadata.pb") and is_savedmodel(path.parent):
        path = path.parent  # a file of a SavedModel folder stands for the folder
    if is_savedmodel(path):
        if architecture is not None:
            raise InspectError(f"{path}: is a SavedModel, which holds its own architecture; --config is for "
                               "weights-only files")
        return read_savedmodel(path)
    if looks_like_tf_checkpoint(path) and not (path.is_file() and _signature(path)[:4] in (ZIP_SIGNATURE,)):
        if architecture is not None:
            return read_tf_checkpoint(path, architecture[0], architecture[1], config)
        return read_tf_checkpoint(path)
    if not path.exists():
        raise InspectError(f"{path}: no such file")
    if path.is_dir():
        raise InspectError(f"{path}: is a directory, but neither a SavedModel folder nor a TensorFlow checkpoint's "
                           "folder; lstm-inspect reads .keras, .h5, .weights.h5, SavedModel folders and TF "
                           "checkpoints")
    ckpt = _read_file(path, architecture, config)
    if architecture is None and ckpt.settings_from == "defaults":
        for sibling in _sibling_configs(path):
            ckpt.notes.append(f"{sibling.name} lies beside this file: if it is the architecture "
                              f"(model.to_json()), pass --config {sibling}")
    return ckpt


def _signature(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


def _sibling_configs(path: Path) -> list[Path]:
    stem = path.name.split(".")[0]
    return sorted({p for p in (path.with_name(f"{stem}.json"), path.with_suffix(".json")) if p.is_file()})


MAX_CONFIG_BYTES = 64 << 20


def read_config_file(path: Path) -> tuple[dict[str, Any], str | None]:
    """An architecture in its own JSON file: `model.to_json()` (with its keras_version when Keras 2 wrote it)
    or the config.json of a .keras. Returns the {"class_name", "config"} and the Keras version if recorded."""
    if not path.is_file():
        raise InspectError(f"{path}: no such file (--config takes a model.to_json() file)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InspectError(f"{path}: is too large for a model config")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InspectError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    cfg = load_json(text, "the --config file", path)
    if not isinstance(cfg, dict) or "class_name" not in cfg or "config" not in cfg:
        raise InspectError(f"{path}: is not a Keras model config (expected the JSON of model.to_json())")
    version = cfg.get("keras_version")
    if not isinstance(version, str):
        from lstm_inspect.io.formats import written_by_keras3

        version = "3" if written_by_keras3(cfg, keras3_layout=False) else None
    return {"class_name": cfg["class_name"], "config": cfg["config"]}, version


def _read_file(path: Path, architecture: tuple[dict[str, Any], str | None] | None, config: Path | None
               ) -> Checkpoint:
    try:
        with open(path, "rb") as f:
            signature = f.read(8)
    except OSError as exc:
        raise InspectError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not signature:
        raise InspectError(f"{path}: is empty")
    if signature.startswith(ZIP_SIGNATURE):
        if architecture is not None:
            raise InspectError(f"{path}: is a .keras archive, which holds its own architecture; --config is for "
                               "weights-only files")
        return _read_keras_zip(path)
    if signature == HDF5_SIGNATURE or h5py.is_hdf5(str(path)):
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InspectError(f"{path}: is not a readable HDF5 file; it may be truncated or damaged "
                               f"({str(exc).splitlines()[0][:160] if str(exc) else 'OSError'})") from exc
        try:
            return _read_hdf5(path, f, architecture, config)
        except NotRead as exc:
            raise InspectError(f"{path}: {exc}") from exc
        except DamagedFile as exc:
            raise InspectError(f"{path}: the HDF5 structure is damaged: {exc}") from exc
        finally:
            f.close()
    raise InspectError(f"{path}: is neither HDF5 (.h5, .weights.h5) nor a Keras zip (.keras); "
                       "it does not look like a Keras checkpoint")


def _read_hdf5(path: Path, f: h5py.File, architecture: tuple[dict[str, Any], str | None] | None = None,
               config: Path | None = None) -> Checkpoint:
    if has_attr(f, "model_config"):
        if architecture is not None:
            raise InspectError(f"{path}: is a full model, which holds its own architecture; --config is for "
                               "weights-only files")
        return _read_legacy_full(path, f)
    if attr_strings(f, "layer_names") is not None:
        if architecture is not None:
            return _read_legacy_weights_with_config(path, f, architecture, config)
        return _read_legacy_weights(path, f)
    if has_attr(f, "nb_layers"):
        raise InspectError(f"{path}: is a Keras 0.x weights file, which lstm-inspect does not read")
    if child(f, "layers") is not None or child(f, "vars") is not None or child(f, "_layer_checkpoint_dependencies"):
        if architecture is not None:
            return _read_keras3_weights_with_config(path, f, architecture, config)
        return _read_keras3_weights(path, f)
    if child(f, "model_weights") is not None:
        raise InspectError(f"{path}: has a model_weights group but no model_config attribute")
    raise InspectError(f"{path}: is an HDF5 file but not a Keras checkpoint (no model_config, layer_names or layers/)")


# ---------------------------------------------------------------- shared: graph + located weights


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
            d.expected_input_dim = expected
            d.layer_path = spec.layer.path
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
        _raise_no_recurrent(path, [m.class_name for m in model_layers], unsupported)
    return Checkpoint(file=path, format=fmt, keras_version=keras_version, layers=directions,
                      model_layers=model_layers, graph=graph, settings_from="config", notes=notes, source=source,
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


def _raise_no_recurrent(path: Path, classes: list[str], unsupported: list[str]) -> None:
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


# ---------------------------------------------------------------- legacy HDF5 (Keras 1, 2, tf.keras, Keras 3 legacy)


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
        return [_renamed(stored(group, n, path, hard), f"{prefix}/{n}") for n in names]

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
        arrays = [_renamed(stored(group, n, path), f"{group.name.strip('/')}/{n}") for n in names]
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
        _raise_no_recurrent(path, [m.class_name for m in model_layers], [])
    version = keras_version or "1 (no keras_version recorded)"
    notes = [f"weights only, no architecture: activations and flags shown are the Keras {version} defaults "
             f"(LSTM and GRU: tanh and {default_recurrent_activation(keras_version or '1')}; CuDNN layers: tanh and "
             "sigmoid); pass the architecture with --config to use the model's own"]
    return Checkpoint(file=path, format="legacy-weights-h5", keras_version=keras_version, layers=directions,
                      model_layers=model_layers, settings_from="defaults", notes=notes, source=source)


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


# ---------------------------------------------------------------- Keras 3 .keras zip


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


def _keras3_locator(path: Path, f: h5py.File, paths: dict[str, str]) -> Callable[[RecurrentSpec], Located]:
    by_name = _vars_by_name(f)

    def locate(spec: RecurrentSpec) -> Located:
        base = paths.get(spec.layer.path)
        group_path = f"{base}/{spec.half}" if spec.half else base
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
    return [_renamed(stored(vars_group, k, path), f"{prefix}/{k}") for k in keys]


def _renamed(arr: StoredArray, key: str) -> StoredArray:
    """The same array under its full path in the file (h5py gives it relative to its group)."""
    return StoredArray(key=key, shape=arr.shape, dtype=arr.dtype)


def _vars_by_name(f: h5py.File) -> dict[str, str]:
    """Layer name -> its group path, from the `name` attrs Keras >= 3.6 writes on `vars` groups."""
    found: dict[str, str] = {}
    for name, group in groups_under(f):
        if name.endswith("/vars") and not name.endswith("cell/vars"):
            layer = attr_str(attr(group, "name"))
            if layer:
                found.setdefault(layer, name[: -len("/vars")])
    return found


# ---------------------------------------------------------------- Keras 3 .weights.h5 (no architecture)


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
    unsupported: list[str] = []
    model_layers = [ModelLayer(name=_pretty(f, o[: -len("/vars")]), class_name="weights")
                    for o in sorted(others, key=_natural)]
    for cell_path in sorted(cells, key=_natural):
        layer_path = cell_path[: -len("/cell/vars")]
        group = _group(f, cell_path)
        arrays = _numbered(group, path) if group is not None else []
        if len(arrays) >= 2 and len(arrays[0].shape) > 2:
            unsupported.append(f"{_pretty(f, layer_path)} (ConvLSTM: kernel of rank {len(arrays[0].shape)})")
            continue
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
        _raise_no_recurrent(path, [m.name for m in model_layers], unsupported)
    notes = ["Keras 3 weights only, no architecture: activations and flags are the Keras 3 defaults "
             "(activation tanh, recurrent_activation sigmoid, GRU reset_after from its bias shape), and layers are "
             "listed in file order; pass the architecture with --config to use the model's own"]
    notes += [f"unsupported recurrent layer: {u}" for u in unsupported]
    return Checkpoint(file=path, format="keras3-weights", keras_version=None, layers=directions,
                      model_layers=model_layers, settings_from="defaults", notes=notes, source=source)


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
