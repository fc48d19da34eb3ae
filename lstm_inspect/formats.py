"""Every Keras checkpoint format, read into one `Checkpoint` without TensorFlow.

Formats are told apart by content, never by file name (a real `model.keras` can be a Keras 2.2
HDF5):

- a zip: Keras 3 `.keras` (config.json, metadata.json, model.weights.h5) -> "keras3";
- HDF5 with root attr `model_config`: a legacy full model (Keras 1, 2, tf.keras, tf_keras, and
  Keras 3's legacy writer) -> "legacy-h5";
- HDF5 with root attr `layer_names`: legacy `save_weights` -> "legacy-weights-h5";
- HDF5 with groups `layers/` or `vars/`: Keras 3 `.weights.h5` -> "keras3-weights".

Only shapes and attributes are read here; the arrays stay in the file until asked for.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import h5py

from lstm_inspect.architecture import (
    LayerNode,
    LSTMSpec,
    TensorRef,
    split_rnn_call,
    state_names,
    ModelGraph,
    default_recurrent_activation,
    input_feature_dims,
    lstm_settings,
    lstm_specs,
    parse_model_config,
    unsupported_lstm_like,
)
from lstm_inspect.errors import InspectError
from lstm_inspect.gates import check_lstm_shapes
from lstm_inspect.model import Checkpoint, LSTMDirection, ModelLayer
from lstm_inspect.storage import (
    HDF5_SIGNATURE,
    ZIP_SIGNATURE,
    StoredArray,
    WeightFile,
    attr_str,
    attr_strings,
    child,
    stored,
)

MAX_JSON_BYTES = 64 << 20
# What a format reader returns for one LSTM direction: its arrays, their layout, what went wrong.
Located = tuple[list[StoredArray], str, list[str]]


def read_checkpoint(path: Path) -> Checkpoint:
    if not path.exists():
        raise InspectError(f"{path}: no such file")
    if path.is_dir():
        raise InspectError(f"{path}: is a directory, not a checkpoint file (.keras, .h5, .weights.h5)")
    try:
        with open(path, "rb") as f:
            signature = f.read(8)
    except OSError as exc:
        raise InspectError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not signature:
        raise InspectError(f"{path}: is empty")
    if signature.startswith(ZIP_SIGNATURE):
        return _read_keras_zip(path)
    if signature == HDF5_SIGNATURE or h5py.is_hdf5(str(path)):
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InspectError(f"{path}: is not a readable HDF5 file; it may be truncated or damaged "
                               f"({str(exc).splitlines()[0][:160]})") from None
        try:
            return _read_hdf5(path, f)
        except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:
            raise InspectError(f"{path}: the HDF5 structure is damaged ({str(exc).splitlines()[0][:160]})") from None
        finally:
            f.close()
    raise InspectError(f"{path}: is neither HDF5 (.h5, .weights.h5) nor a Keras zip (.keras); "
                       "it does not look like a Keras checkpoint")


def _read_hdf5(path: Path, f: h5py.File) -> Checkpoint:
    if "model_config" in f.attrs:
        return _read_legacy_full(path, f)
    if attr_strings(f, "layer_names") is not None:
        return _read_legacy_weights(path, f)
    if "nb_layers" in f.attrs:
        raise InspectError(f"{path}: is a Keras 0.x weights file, which lstm-inspect does not read")
    if child(f, "layers") is not None or child(f, "vars") is not None or child(f, "_layer_checkpoint_dependencies"):
        return _read_keras3_weights(path, f)
    if child(f, "model_weights") is not None:
        raise InspectError(f"{path}: has a model_weights group but no model_config attribute")
    raise InspectError(f"{path}: is an HDF5 file but not a Keras checkpoint (no model_config, layer_names or layers/)")


# ---------------------------------------------------------------- shared: graph + located weights


def _from_graph(
    path: Path, fmt: str, keras_version: str | None, graph: ModelGraph, locate: Callable[[LSTMSpec], Located],
    source: WeightFile, arrays_of: Callable[[LayerNode], list[StoredArray]], raw_config: Any,
) -> Checkpoint:
    dims = input_feature_dims(graph)
    directions: list[LSTMDirection] = []
    model_layers: list[ModelLayer] = []
    unsupported: list[str] = []
    problems: list[str] = []
    notes: list[str] = []
    layer_arrays: dict[str, list[StoredArray]] = {}
    for node in graph.walk():
        if node.is_op:
            continue
        model_layers.append(ModelLayer(node.path, _display_class(node.class_name, node.config)))
        if (u := unsupported_lstm_like(node.class_name, node.config)) is not None:
            unsupported.append(f"{node.path} ({u})")
        specs = lstm_specs(node, keras_version)
        if not specs and node.children is None:
            layer_arrays[node.path] = arrays_of(node)
        states: list[str] = []
        if specs and node.inbound:
            _, refs, _ = split_rnn_call(node.inbound[0], lambda o: isinstance(o, TensorRef))
            states = state_names(graph, refs)
        for k, spec in enumerate(specs):
            arrays, storage, located_problems = locate(spec)
            d = _direction(spec.name, spec.kind, spec.settings, storage, arrays, path, keras_version,
                           located_problems, spec.merge_mode, spec.layer.name if spec.half else None,
                           source=source)
            expected = spec.build_input_dim if spec.build_input_dim is not None else dims.get(node.path)
            d.expected_input_dim = expected
            d.layer_path = spec.layer.path
            d.initial_state_from = states[2 * k : 2 * k + 2]
            if not arrays and not located_problems:
                # Keras writes empty weight_names for a model saved before it was built.
                d.problems, d.weights_stored, d.input_dim = [], False, expected
                notes.append(f"layer {d.name}: the file stores no weights for it "
                             "(the model was saved before it was built); shapes come from the config")
            if expected is not None and d.input_dim is not None and expected != d.input_dim and d.shapes_ok:
                d.problems.append(
                    f"layer {d.name}: kernel {arrays[0].key} has {d.input_dim} rows (N_i) but the layer is fed "
                    f"{expected} features; expected ({expected}, {4 * (d.units or 0)}), found {arrays[0].shape}"
                )
            directions.append(d)
    notes += [f"unsupported LSTM-like layer: {u}" for u in unsupported]
    if not directions:
        _raise_no_lstm(path, [m.class_name for m in model_layers], unsupported)
    return Checkpoint(path, fmt, keras_version, directions, model_layers, graph, "config", notes, problems,
                      source=source, layer_arrays=layer_arrays, raw_config=raw_config)


def _direction(
    name: str, kind: str, settings: Any, storage: str, arrays: list[StoredArray], path: Path,
    keras_version: str | None, problems: list[str], merge_mode: str | None = None, wrapper: str | None = None,
    source: WeightFile | None = None,
) -> LSTMDirection:
    n_i, n_c, shape_problems = (None, settings.units, [])
    if not problems:
        n_i, n_c, shape_problems = check_lstm_shapes(
            name, storage, [(a.key, a.shape) for a in arrays], settings.units, settings.use_bias)
    return LSTMDirection(
        name=name, kind=kind, direction="backward" if settings.go_backwards else "forward",
        input_dim=n_i, units=n_c, settings=settings, storage=storage, arrays=arrays,
        source=source or WeightFile(path), keras_version=keras_version, merge_mode=merge_mode, wrapper=wrapper,
        problems=problems + shape_problems,
    )


def _storage(kind: str, arrays: list[StoredArray]) -> str:
    if kind == "CuDNNLSTM":
        return "cudnn"
    if len(arrays) == 12:
        return "keras1"
    if len(arrays) == 3 and len(arrays[1].shape) == 2 and arrays[2].shape == (8 * arrays[1].shape[0],):
        return "cudnn"
    return "keras"


def _display_class(class_name: str, config: dict[str, Any]) -> str:
    inner = config.get("layer") if class_name in ("Bidirectional", "TimeDistributed") else None
    if isinstance(inner, dict):
        return f"{class_name}({_display_class(str(inner.get('class_name')), inner.get('config') or {})})"
    cell = config.get("cell") if class_name == "RNN" else None
    if isinstance(cell, dict):
        return f"RNN({cell.get('class_name')})"
    return class_name


def _raise_no_lstm(path: Path, classes: list[str], unsupported: list[str]) -> None:
    kinds = ", ".join(dict.fromkeys(c for c in classes if c != "InputLayer")) or "no layers at all"
    if unsupported:
        raise InspectError(f"{path}: has no LSTM layer lstm-inspect can read; "
                           f"{', '.join(unsupported)} is not supported (layers: {kinds})")
    raise InspectError(f"no LSTM layer in {path}; it has: {kinds}")


def _load_json(text: Any, what: str, path: Path) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InspectError(f"{path}: {what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise InspectError(f"{path}: {what} is not a JSON string")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InspectError(f"{path}: {what} is not valid JSON ({exc.__class__.__name__}: {str(exc)[:120]})") from None


def _graph(cfg: Any, what: str, path: Path) -> ModelGraph:
    try:
        return parse_model_config(cfg)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InspectError(f"{path}: {what} is not a Keras model config ({exc})") from None


# ---------------------------------------------------------------- legacy HDF5 (Keras 1, 2, tf.keras, Keras 3 legacy writer)


def _read_legacy_full(path: Path, f: h5py.File) -> Checkpoint:
    cfg = _load_json(f.attrs["model_config"], "the model_config attribute", path)
    root = child(f, "model_weights")
    if root is None or not isinstance(root, h5py.Group):
        raise InspectError(f"{path}: has a model config but no model_weights group (the weights are missing)")
    # Keras 2's loader reads keras_version from the weights group; its absence there means Keras 1,
    # which wrote it on the root only.
    keras_version = attr_str(root.attrs.get("keras_version")) or attr_str(f.attrs.get("keras_version")) or "1"
    graph = _graph(cfg, "the model_config attribute", path)
    arrays_of = _legacy_arrays(path, root)
    return _from_graph(path, "legacy-h5", keras_version, graph, _legacy_locator(arrays_of, root), WeightFile(path),
                       arrays_of, cfg)


def _legacy_arrays(path: Path, root: h5py.Group) -> Callable[[LayerNode], list[StoredArray]]:
    """A layer's arrays in a legacy file: its group's weight_names, in order."""

    def arrays_of(node: LayerNode) -> list[StoredArray]:
        top = node.path.split("/")[0]
        group = child(root, top)
        if group is None:
            return []
        names = attr_strings(group, "weight_names") or []
        if node.path != top:
            # A nested model keeps all its weights in one group, trainable ones first across
            # sub-layers: pick this layer's by the name scope, not by position.
            names = _by_role([n for n in names if node.name in n.split("/")])
        return [_renamed(stored(group, n, path), f"{group.name.strip('/')}/{n}") for n in names]

    return arrays_of


def _legacy_locator(arrays_of: Callable[[LayerNode], list[StoredArray]], root: h5py.Group
                    ) -> Callable[[LSTMSpec], Located]:
    def locate(spec: LSTMSpec) -> Located:
        top = spec.layer.path.split("/")[0]
        if child(root, top) is None:
            return [], "keras", [f"layer {spec.name}: no weights group {root.name.strip('/')}/{top} in the file"]
        arrays = arrays_of(spec.layer)
        if spec.half is not None:
            half = len(arrays) // 2  # Bidirectional: forward weights, then backward
            arrays = arrays[:half] if spec.half == "forward_layer" else arrays[half:]
        return arrays, _storage(spec.kind, arrays), []

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
    """`save_weights("x.h5")`: one group per layer and no architecture, so LSTMs are found by shape."""
    keras_version = attr_str(f.attrs.get("keras_version"))
    source = WeightFile(path)
    directions: list[LSTMDirection] = []
    model_layers: list[ModelLayer] = []
    for layer_name in attr_strings(f, "layer_names") or []:
        group = child(f, layer_name)
        if group is None:
            raise InspectError(f"{path}: layer_names lists {layer_name} but the file has no group for it")
        names = attr_strings(group, "weight_names") or []
        arrays = [_renamed(stored(group, n, path), f"{group.name.strip('/')}/{n}") for n in names]
        halves = _lstm_halves(arrays)
        model_layers.append(ModelLayer(layer_name, _guess_class(arrays, halves)))
        for k, half in enumerate(halves):
            storage = _storage("LSTM", half)
            kind = "CuDNNLSTM" if storage == "cudnn" else "LSTM"
            name = layer_name if len(halves) == 1 else f"{layer_name}/{_half_name(names, k)}"
            settings = _default_settings(kind, keras_version, use_bias=len(half) != 2, go_backwards=k == 1)
            d = _direction(name, kind, settings, storage, half, path, keras_version, [], source=source,
                           wrapper=layer_name if len(halves) == 2 else None,
                           merge_mode="concat" if len(halves) == 2 else None)
            d.layer_path = layer_name
            directions.append(d)
    if not directions:
        _raise_no_lstm(path, [m.class_name for m in model_layers], [])
    version = keras_version or "1 (no keras_version recorded)"
    notes = [f"weights only, no architecture: activations and flags shown are the Keras {version} defaults "
             f"(LSTM: tanh and {default_recurrent_activation(keras_version or '1')}; CuDNNLSTM: tanh and sigmoid)"]
    return Checkpoint(path, "legacy-weights-h5", keras_version, directions, model_layers, None, "defaults", notes,
                      source=source)


def _lstm_halves(arrays: list[StoredArray]) -> list[list[StoredArray]]:
    """Split a layer's arrays into LSTM directions when their shapes say LSTM, else []."""
    for size in (3, 2, 12):
        if len(arrays) == size and _looks_lstm(arrays):
            return [arrays]
        if len(arrays) == 2 * size and _looks_lstm(arrays[:size]) and _looks_lstm(arrays[size:]):
            return [arrays[:size], arrays[size:]]
    return []


def _looks_lstm(arrays: list[StoredArray]) -> bool:
    if len(arrays) == 12:  # Keras 1: W (N_i, U), U (U, U), b (U,) per gate
        return all(len(a.shape) == 2 for a in arrays[0::3]) and all(
            len(a.shape) == 2 and a.shape[0] == a.shape[1] for a in arrays[1::3])
    k, r = arrays[0].shape, arrays[1].shape
    return len(k) == 2 and len(r) == 2 and r[1] == 4 * r[0] and k[1] == r[1]


def _guess_class(arrays: list[StoredArray], halves: list[list[StoredArray]]) -> str:
    if halves:
        kind = "CuDNNLSTM" if _storage("LSTM", halves[0]) == "cudnn" else "LSTM"
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


def _default_settings(kind: str, keras_version: str | None, use_bias: bool, go_backwards: bool = False) -> Any:
    cfg: dict[str, Any] = {"use_bias": use_bias, "go_backwards": go_backwards}
    return lstm_settings(cfg, cfg, kind, keras_version or "1")


# ---------------------------------------------------------------- Keras 3 .keras zip


def _read_keras_zip(path: Path) -> Checkpoint:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InspectError(f"{path}: is a damaged zip archive ({exc}); it may be truncated") from None
    with zf:
        members = zf.namelist()
        if "config.json" not in members:
            raise InspectError(f"{path}: is a zip but not a Keras model archive (no config.json; "
                               f"it has: {', '.join(members[:8]) or 'nothing'})")
        config = _load_json(_read_member(path, zf, "config.json"), "config.json", path)
        metadata = {}
        if "metadata.json" in members:
            metadata = _load_json(_read_member(path, zf, "metadata.json"), "metadata.json", path)
        member = next((m for m in ("model.weights.h5", "variables.h5") if m in members), None)
        if member is None:
            if "model.weights.npz" in members:
                raise InspectError(f"{path}: stores its weights as model.weights.npz, which needs pickle to read; "
                                   "lstm-inspect never unpickles files (re-save with the default .h5 weights)")
            raise InspectError(f"{path}: has no weights (model.weights.h5 is missing from the archive)")
    keras_version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    keras_version = str(keras_version) if keras_version is not None else None
    graph = _graph(config, "config.json", path)
    source = WeightFile(path, member)
    with source.open() as f:
        prefix = "layers" if child(f, "layers") is not None else "_layer_checkpoint_dependencies"
        paths = keras3_paths(graph, prefix)
        return _from_graph(path, "keras3", keras_version, graph, _keras3_locator(path, f, paths), source,
                           _keras3_arrays(path, f, paths), config)


def _read_member(path: Path, zf: zipfile.ZipFile, name: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_JSON_BYTES:
        raise InspectError(f"{path}: {name} claims {info.file_size} bytes, too large for a model config")
    try:
        with zf.open(name) as member:
            data = member.read(MAX_JSON_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise InspectError(f"{path}: {name} could not be read from the archive ({exc})") from None
    if len(data) > MAX_JSON_BYTES:
        raise InspectError(f"{path}: {name} inflates past {MAX_JSON_BYTES} bytes")
    return data


def snake_case(class_name: str) -> str:
    """Keras's `to_snake_case`, which names the groups inside model.weights.h5 (LSTM -> lstm)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras3_paths(graph: ModelGraph, prefix: str = "layers") -> dict[str, str]:
    """Layer path -> group in model.weights.h5.

    Keras 3 addresses a layer by its class name and a per-container counter (lstm, lstm_1, ...),
    never by its own name. A Sequential's InputLayer has no group; a Functional's does; raw-op
    nodes (module keras.src.ops.*) are not layers at all.
    """
    out: dict[str, str] = {}
    counters: dict[str, int] = {}
    for node in graph.layers:
        if graph.class_name == "Sequential" and node.class_name == "InputLayer":
            continue
        if str(node.entry.get("module", "")).startswith("keras.src.ops"):
            continue
        base = snake_case(node.class_name)
        k = counters.get(base, -1) + 1
        counters[base] = k
        p = f"{prefix}/{base}" + ("" if k == 0 else f"_{k}")
        out[node.path] = p
        if node.children is not None:
            out.update(keras3_paths(node.children, f"{p}/layers"))
    return out


def _keras3_locator(path: Path, f: h5py.File, paths: dict[str, str]) -> Callable[[LSTMSpec], Located]:
    by_name = _vars_by_name(f)

    def locate(spec: LSTMSpec) -> Located:
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
        return arrays, _storage(spec.kind, arrays), []

    return locate


def _keras3_arrays(path: Path, f: h5py.File, paths: dict[str, str]) -> Callable[[LayerNode], list[StoredArray]]:
    """A layer's own variables in model.weights.h5: <path>/vars/0, 1, ... (a wrapper's under layer/)."""

    def arrays_of(node: LayerNode) -> list[StoredArray]:
        base = paths.get(node.path)
        if base is None:
            return []
        if node.class_name == "TimeDistributed":
            base = f"{base}/layer"
        group = _group(f, f"{base}/vars")
        return _numbered(group, path) if group is not None else []

    return arrays_of


def _group(f: h5py.Group, key: str) -> h5py.Group | None:
    node: Any = f
    for part in key.split("/"):
        node = child(node, part) if isinstance(node, h5py.Group) else None
        if node is None:
            return None
    return node if isinstance(node, h5py.Group) else None


def _numbered(vars_group: h5py.Group, path: Path) -> list[StoredArray]:
    keys = sorted((k for k in vars_group.keys() if k.isdigit()), key=int)
    prefix = vars_group.name.strip("/")
    return [_renamed(stored(vars_group, k, path), f"{prefix}/{k}") for k in keys]


def _renamed(arr: StoredArray, key: str) -> StoredArray:
    """The same array under its full path in the file (h5py gives it relative to its group)."""
    return StoredArray(key=key, shape=arr.shape, dtype=arr.dtype)


def _vars_by_name(f: h5py.File) -> dict[str, str]:
    """Layer name -> its group path, from the `name` attrs Keras >= 3.6 writes on `vars` groups."""
    found: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and name.endswith("/vars") and not name.endswith("cell/vars"):
            layer = attr_str(obj.attrs.get("name"))
            if layer:
                found.setdefault(layer, name[: -len("/vars")])

    f.visititems(visit)
    return found


# ---------------------------------------------------------------- Keras 3 .weights.h5 (no architecture)


def _read_keras3_weights(path: Path, f: h5py.File) -> Checkpoint:
    source = WeightFile(path)
    cells: list[str] = []
    others: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and name.endswith("vars") and any(k.isdigit() for k in obj.keys()):
            (cells if name.endswith("/cell/vars") else others).append(name)

    f.visititems(visit)
    if child(f, "optimizer") is not None:
        cells = [c for c in cells if not c.startswith("optimizer/")]
        others = [o for o in others if not o.startswith("optimizer/")]
    directions: list[LSTMDirection] = []
    unsupported: list[str] = []
    model_layers = [ModelLayer(_pretty(f, o[: -len("/vars")]), "weights") for o in sorted(others, key=_natural)]
    for cell in sorted(cells, key=_natural):
        layer_path = cell[: -len("/cell/vars")]
        arrays = _numbered(f[cell], path)
        if len(arrays) >= 2 and len(arrays[0].shape) > 2:
            unsupported.append(f"{_pretty(f, layer_path)} (ConvLSTM: kernel of rank {len(arrays[0].shape)})")
            continue
        if len(arrays) < 2 or not _looks_lstm(arrays[:2]):
            model_layers.append(ModelLayer(_pretty(f, layer_path), "recurrent cell, not an LSTM"))
            continue
        storage = _storage("LSTM", arrays)
        backward = layer_path.endswith("backward_layer")
        settings = _default_settings("LSTM", "3", use_bias=len(arrays) == 3, go_backwards=backward)
        name = _pretty(f, layer_path)
        wrapper = _pretty(f, layer_path.rsplit("/", 1)[0]) if layer_path.endswith(("forward_layer", "backward_layer")) else None
        model_layers.append(ModelLayer(name, "LSTM"))
        d = _direction(name, "LSTM", settings, storage, arrays, path, None, [], source=source,
                       wrapper=wrapper, merge_mode="concat" if wrapper else None)
        d.layer_path = wrapper or name
        directions.append(d)
    if not directions:
        _raise_no_lstm(path, [m.name for m in model_layers], unsupported)
    notes = ["Keras 3 weights only, no architecture: activations and flags are the Keras 3 defaults "
             "(activation tanh, recurrent_activation sigmoid), and layers are listed in file order"]
    notes += [f"unsupported LSTM-like layer: {u}" for u in unsupported]
    return Checkpoint(path, "keras3-weights", None, directions, model_layers, None, "defaults", notes,
                      source=source)


def _pretty(f: h5py.File, group_path: str) -> str:
    """A readable name for a group: its layer's own name where Keras >= 3.6 recorded it."""
    parts = [p for p in group_path.split("/") if p not in ("layers", "_layer_checkpoint_dependencies")]
    names = []
    walked = ""
    for part in group_path.split("/"):
        walked = f"{walked}/{part}" if walked else part
        if part in ("layers", "_layer_checkpoint_dependencies"):
            continue
        vars_group = _group(f, f"{walked}/vars")
        label = attr_str(vars_group.attrs.get("name")) if vars_group is not None else None
        names.append(label or part)
    return "/".join(names) if names else "/".join(parts)


def _natural(key: str) -> list[Any]:
    return [(int(t) if t.isdigit() else t) for t in re.split(r"(\d+)", key)]
