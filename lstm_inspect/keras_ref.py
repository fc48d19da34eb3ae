"""Keras itself, as the reference the engine is checked against. The only module that imports it.

The reference for a file is the Keras generation that wrote it: Keras 3 for 3.x files, tf_keras
(the Keras 2 TensorFlow ships) for older ones. The user's file is never handed to Keras's loader
(which has run embedded code despite safe_mode): the model is rebuilt from the configuration
lstm-inspect already parsed, after checking that every class in it is a plain Keras layer the
engine knows, and the weights lstm-inspect read are set layer by layer.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.architecture import MAX_JSON_DEPTH, MODEL_CLASSES, ModelGraph
from lstm_inspect.cells import all_layer_classes, cell_of_class, keras_major_minor
from lstm_inspect.errors import InspectError
from lstm_inspect.layers import LAYERS
from lstm_inspect.model import Checkpoint
from lstm_inspect.ops import KERAS3_OPS, TF_FUNCTIONS, TF_RAW_OPS

# Layer classes whose config may be handed to Keras's from_config: nothing in them runs user code.
# The same registries the engine runs from, so verify rebuilds exactly what the engine knows.
ALLOWED_CLASSES = (frozenset(LAYERS) | frozenset(all_layer_classes()) | {"Bidirectional"} | MODEL_CLASSES) - {
    "TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer"}
INSTALL_HINT = "pip install 'lstm-inspect[keras]'"
# The oldest Keras 3 verify runs: earlier releases have published safe-mode bypasses (README, "Which Keras
# verify runs"); the `keras` extra asks for it, and import_keras refuses an older one installed by other means.
KERAS3_FLOOR = (3, 14)


def generation(keras_version: str | None) -> str:
    """'keras3' for files Keras 3 wrote, 'tf_keras' for Keras 1/2 and tf.keras files."""
    major, _ = keras_major_minor(keras_version)
    return "keras3" if major is not None and major >= 3 else "tf_keras"


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """TensorFlow's C++ start-up chatter goes to file descriptor 2 whatever its log level says."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras(gen: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet_native_stderr():
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
        if gen == "keras3":
            import keras

            version = str(getattr(keras, "__version__", "?"))
            found = re.match(r"(\d+)\.(\d+)", version)
            if found is None or int(found.group(1)) < 3:
                raise InspectError(f"this file was written by Keras 3, but the installed keras is "
                                   f"{version}; {INSTALL_HINT}")
            if (int(found.group(1)), int(found.group(2))) < KERAS3_FLOOR:
                floor = ".".join(map(str, KERAS3_FLOOR))
                raise InspectError(f"verify needs Keras {floor} or later, but the installed keras is {version} "
                                   f"(releases before {floor} have published safe-mode bypasses); "
                                   f"pip install 'keras>={floor}'")
            return keras
        import tf_keras

        return tf_keras
    except ImportError:
        which = "Keras 3 (keras)" if gen == "keras3" else "tf_keras (the Keras 2 that TensorFlow ships)"
        raise InspectError(f"verify runs the file's own Keras, {which}, which is not installed; "
                           f"{INSTALL_HINT}") from None


@dataclass
class KerasRun:
    outputs: list[np.ndarray]  # what model.predict returns, as a list
    layer_outputs: dict[str, np.ndarray]  # first output of each top-level LSTM layer, by layer path
    library: str  # e.g. "keras 3.15.1"
    notes: list[str]


CODE_CLASSES = frozenset({"Lambda", "__lambda__"})


def check_safe(cfg: Any, where: str = "model") -> None:
    """Refuse anything but plain Keras layers the engine knows: no Lambda, no custom objects."""
    _check_objects(cfg, where)
    safe_config(cfg, keras1=False, where=where)


def _check_objects(cfg: Any, where: str, depth: int = 0) -> None:
    """Anywhere in the config: no code-carrying class, no object from outside Keras."""
    if depth >= MAX_JSON_DEPTH:  # never for a config lstm-inspect read: deeper ones are refused when read
        raise InspectError(f"the {where} is nested deeper than {MAX_JSON_DEPTH} levels, too deep to check")
    if isinstance(cfg, dict):
        cls = cfg.get("class_name")
        if cls in CODE_CLASSES:
            raise InspectError(f"the {where} contains a {cls} layer, which holds code; verify will not run it "
                               "(safe mode)")
        module, registered = cfg.get("module"), cfg.get("registered_name")
        if isinstance(module, str) and cls and not module.startswith("keras"):
            raise InspectError(f"the {where} contains {cls} from module {module!r}, a custom object; "
                               "verify will not load custom code (safe mode)")
        if isinstance(registered, str) and ">" in registered:
            raise InspectError(f"the {where} contains the custom object {registered}; verify will not load "
                               "custom code (safe mode)")
        for key, value in cfg.items():
            if key in DROPPED_KEYS or str(key).endswith(DROPPED_SUFFIXES):
                continue  # never handed to Keras (see safe_config): a model compiled with a custom loss verifies
            _check_objects(value, where, depth + 1)
    elif isinstance(cfg, list):
        for value in cfg:
            _check_objects(value, where, depth + 1)


# ---------------------------------------------------------------- the config handed to Keras
#
# Rebuilt from scratch, keeping only what the forward pass needs: the classes the engine knows, their
# settings, the graph. Initializers, regularizers and constraints are dropped (the weights are set
# after building, and none of them acts at inference), as are the model's compile_config and
# build_config; every nested object must be one of a few known kinds (an activation by name, a dtype
# policy, a wrapped layer of a known class, a Keras tensor in a call), and TensorFlow op layers must
# name a whitelisted op.

DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
DROPPED_KEYS = {"activity_regularizer", "weights", "compile_config", "shared_object_id"}
POLICY_CLASSES = {"DTypePolicy", "Policy", "FloatDTypePolicy"}
WRAPPED_KEYS = ("layer", "backward_layer", "cell")


def _refuse(where: str, what: str) -> InspectError:
    return InspectError(f"the {where} {what}; verify builds Keras models only from layers and settings it knows "
                        "(safe mode)")


def safe_config(cfg: Any, keras1: bool, where: str = "model") -> dict[str, Any]:
    """The model config to hand to Keras: validated, reduced to what the forward pass needs, CPU-ready."""
    if not isinstance(cfg, dict) or cfg.get("class_name") not in MODEL_CLASSES:
        raise _refuse(where, "is not a Sequential or Functional model")
    return _model(cfg, keras1, where, 0)


def _model(cfg: dict[str, Any], keras1: bool, where: str, depth: int) -> dict[str, Any]:
    if depth > 32:
        raise _refuse(where, "nests models too deep")
    body = cfg.get("config")
    out: dict[str, Any] = {"class_name": cfg["class_name"]}
    _keep_keras_identity(cfg, out, where)
    if isinstance(body, list):  # Keras 1 and 2.0-2.2 Sequential
        out["config"] = [_layer(e, keras1, where, depth) for e in body]
        return out
    if not isinstance(body, dict):
        raise _refuse(where, f"has a {cfg['class_name']} with no config")
    clean: dict[str, Any] = {}
    for key in ("name", "trainable", "input_layers", "output_layers"):
        if key in body:
            clean[key] = _plain(body[key], where)
    layers = body.get("layers", [])
    if not isinstance(layers, list):
        raise _refuse(where, "lists its layers as something other than a list")
    clean["layers"] = [_layer(e, keras1, where, depth) for e in layers]
    out["config"] = clean
    return out


def _keep_keras_identity(entry: dict[str, Any], out: dict[str, Any], where: str) -> None:
    """Keras 3's module / registered_name, kept only when they name Keras itself."""
    module, registered = entry.get("module"), entry.get("registered_name")
    if module is not None:
        if not isinstance(module, str) or not module.startswith("keras"):
            raise _refuse(where, f"names the module {module!r}")
        out["module"] = module
    if "registered_name" in entry:
        if registered is not None and registered != entry.get("class_name"):
            raise _refuse(where, f"names the registered object {registered!r}")
        out["registered_name"] = registered


def _layer(entry: Any, keras1: bool, where: str, depth: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise _refuse(where, "has a layer without a class")
    cls = entry["class_name"]
    if cls in MODEL_CLASSES:
        out = _model(entry, keras1, where, depth + 1)
        for key in ("name", "inbound_nodes"):
            if key in entry:
                out[key] = _call_data(entry[key], where) if key == "inbound_nodes" else _plain(entry[key], where)
        return out
    out: dict[str, Any] = {"class_name": cls}
    _keep_keras_identity(entry, out, where)
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if str(entry.get("module", "")).startswith("keras.src.ops"):
        if cls not in KERAS3_OPS:
            raise _refuse(where, f"contains the op {cls}, which the engine does not run")
        out["config"] = {k: _plain(v, where) for k, v in config.items() if k in KERAS3_OPS[cls].keywords
                         or k in ("name", "trainable", "dtype")}
    elif cls in ("TFOpLambda", "SlicingOpLambda"):
        if config.get("function") not in TF_FUNCTIONS:
            raise _refuse(where, f"contains the TensorFlow op {config.get('function')!r}, which the engine does not "
                          "run")
        out["config"] = {k: _plain(config[k], where) for k in ("name", "trainable", "dtype", "function")
                         if k in config}
    elif cls == "TensorFlowOpLayer":
        out["config"] = _node_def_layer(config, where)
    elif cls not in ALLOWED_CLASSES:
        raise _refuse(where, f"contains a {cls} layer, which the engine does not know")
    else:
        out["config"] = _layer_config(cls, config, keras1, where, depth)
    for key in ("name", "inbound_nodes", "build_config"):
        if key in entry:
            out[key] = _call_data(entry[key], where) if key == "inbound_nodes" else _plain(entry[key], where)
    return out


def _layer_config(cls: str, config: dict[str, Any], keras1: bool, where: str, depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for key, value in config.items():
        if key in DROPPED_KEYS or key.endswith(DROPPED_SUFFIXES):
            continue
        if key in WRAPPED_KEYS and isinstance(value, (dict, list)):
            inner[key] = ([_layer(v, keras1, where, depth) for v in value] if isinstance(value, list)
                          else _layer(value, keras1, where, depth))
            continue
        inner[key] = _setting(key, value, where)
    if keras1:
        inner = _keras1_to_keras2(inner)
    out_cls = cls
    cell = cell_of_class(cls)
    if cell is not None:
        # a recurrent layer or cell: its kind completes what old configs leave out, and turns a CuDNN layer (which
        # tf_keras cannot run on a CPU) into the plain layer with CuDNN's fixed settings, holding the converted
        # weights
        inner = cell.rebuild_config(inner, cls)
        if cell.layer_classes.get(cls) == "cudnn":
            out_cls = cell.kind
    if inner.get("stateful"):
        inner["stateful"] = False  # a first call from zero state is the same; frees the batch size
    for key in ("batch_input_shape", "batch_shape"):
        if isinstance(inner.get(key), list) and inner[key]:
            inner[key] = [None, *inner[key][1:]]
    if out_cls != cls:
        inner["__class_name__"] = out_cls
    return inner


def _setting(key: str, value: Any, where: str) -> Any:
    """One setting of a layer: plain JSON, or one of the few objects Keras serializes in settings."""
    if isinstance(value, dict) and "class_name" in value:
        cls = value.get("class_name")
        if cls in POLICY_CLASSES:
            policy = value.get("config") if isinstance(value.get("config"), dict) else {}
            return {**{k: v for k, v in value.items() if k in ("module", "class_name", "registered_name")},
                    "config": {"name": _plain(policy.get("name"), where)}}
        if cls == "function" and isinstance(value.get("config"), str):
            name = value["config"]
            _known_activation(name, where)
            return name
        raise _refuse(where, f"sets {key} to a {cls} object")
    if key in ("activation", "recurrent_activation") and isinstance(value, str):
        _known_activation(value, where)
    return _plain(value, where)


def _known_activation(name: str, where: str) -> None:
    from lstm_inspect.activations import activation_fn

    try:
        activation_fn(name)
    except InspectError:
        raise _refuse(where, f"uses the activation {name!r}") from None


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """JSON data with no objects in it (dicts without class_name)."""
    if depth >= MAX_JSON_DEPTH:  # as in _check_objects
        raise _refuse(where, "nests its settings too deep")
    if isinstance(value, dict):
        if "class_name" in value and value.get("class_name") not in ("__tuple__", "TensorShape", "__ellipsis__"):
            raise _refuse(where, f"holds a {value.get('class_name')} object where a plain value was expected")
        return {str(k): _plain(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where, depth + 1) for v in value]
    return value


def _call_data(value: Any, where: str, depth: int = 0) -> Any:
    """inbound_nodes: plain data and Keras tensors (Keras 3's __keras_tensor__), nothing else."""
    if depth >= MAX_JSON_DEPTH:  # as in _check_objects
        raise _refuse(where, "nests its calls too deep")
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls is not None and cls not in ("__keras_tensor__", "__tuple__", "__ellipsis__"):
            raise _refuse(where, f"passes a {cls} object to a layer call")
        return {str(k): _call_data(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_call_data(v, where, depth + 1) for v in value]
    return value


def _node_def_layer(config: dict[str, Any], where: str) -> dict[str, Any]:
    """A TensorFlowOpLayer's config: its NodeDef reduced to op, inputs and the op's own attributes."""
    node_def = config.get("node_def")
    if not isinstance(node_def, dict) or node_def.get("op") not in TF_RAW_OPS:
        op = node_def.get("op") if isinstance(node_def, dict) else None
        raise _refuse(where, f"contains the TensorFlow op {op!r}, which the engine does not run")
    _, allowed = TF_RAW_OPS[node_def["op"]]
    attrs = node_def.get("attr") if isinstance(node_def.get("attr"), dict) else {}
    clean_attrs = {}
    for key, value in attrs.items():
        if key not in allowed:
            continue
        if not isinstance(value, dict) or not set(value) <= {"type", "b", "i", "f", "list"}:
            raise _refuse(where, f"sets the op attribute {key} to {value!r}")
        clean_attrs[key] = _plain(value, where)
    inputs = node_def.get("input") if isinstance(node_def.get("input"), list) else []
    constants = config.get("constants") if isinstance(config.get("constants"), dict) else {}
    return {
        "name": _plain(config.get("name"), where), "trainable": bool(config.get("trainable", True)),
        "dtype": _plain(config.get("dtype"), where),
        "node_def": {"name": str(node_def.get("name", node_def["op"])), "op": node_def["op"],
                     "input": [str(i) for i in inputs], "attr": clean_attrs},
        "constants": {str(k): _plain(v, where) for k, v in constants.items()},
    }


def _keras1_to_keras2(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keras 1 layer configs in the names tf_keras understands (Keras 2's own legacy_recurrent_support)."""
    renames = {"output_dim": "units", "inner_activation": "recurrent_activation", "dropout_W": "dropout",
               "dropout_U": "recurrent_dropout", "bias": "use_bias"}
    keep = {"name", "units", "activation", "recurrent_activation", "use_bias", "return_sequences", "go_backwards",
            "stateful", "unroll", "dropout", "recurrent_dropout", "batch_input_shape", "input_dim", "mask_zero",
            "mask_value", "rate", "input_length", "trainable", "target_shape", "n", "merge_mode", "layer"}
    out = {}
    for key, value in cfg.items():
        key = renames.get(key, key)
        if key in keep:
            out[key] = value
    return out


def _rename_classes(cfg: Any) -> Any:
    """Apply the class renames `_layer_config` asked for (CuDNN layers run as their plain versions)."""
    if isinstance(cfg, list):
        return [_rename_classes(v) for v in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = {k: _rename_classes(v) for k, v in cfg.items()}
    inner = out.get("config")
    if isinstance(inner, dict) and "__class_name__" in inner:
        out["class_name"] = inner.pop("__class_name__")
    return out


def _config_json(ckpt: Checkpoint) -> dict[str, Any]:
    graph = ckpt.graph
    if graph is None:
        raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so Keras cannot rebuild the model")
    raw = ckpt.raw_config
    where = f"model in {ckpt.file}"
    _check_objects(raw, where)
    major, _ = keras_major_minor(ckpt.keras_version)
    return _rename_classes(safe_config(copy.deepcopy(raw), keras1=major is not None and major < 2, where=where))


def build_model(ckpt: Checkpoint) -> tuple[Any, Any]:
    """The Keras model rebuilt from the parsed config, with lstm-inspect's weights set in it."""
    gen = generation(ckpt.keras_version)
    cfg = _config_json(ckpt)  # refused before TensorFlow is even imported
    keras = import_keras(gen)
    try:
        if gen == "keras3" and "module" in cfg:
            model = keras.saving.deserialize_keras_object(cfg, safe_mode=True)
        elif gen == "keras3":
            # A legacy .h5 written by Keras 3 drops `module` at the top; Keras's own h5 loader reads
            # such configs through its legacy saving utilities.
            from keras.src.legacy.saving import saving_utils

            model = saving_utils.model_from_config(cfg)
        else:
            model = keras.models.model_from_json(json.dumps(cfg))
    except InspectError:
        raise
    except Exception as exc:  # Keras raises many types for configs it cannot build
        raise InspectError(f"{ckpt.file}: Keras could not rebuild the model from its config "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    _set_weights(ckpt, model, ckpt.graph, prefix="")  # type: ignore[arg-type]
    return keras, model


def _set_weights(ckpt: Checkpoint, model: Any, graph: ModelGraph, prefix: str) -> None:
    by_layer: dict[str, list[np.ndarray]] = {}
    for d in ckpt.layers:
        by_layer.setdefault(d.layer_path, []).extend(d.weights().arrays())
    for node in graph.layers:
        if node.is_op:
            continue
        try:
            layer = model.get_layer(node.name)
        except ValueError:
            if node.class_name == "InputLayer":
                continue
            raise InspectError(f"{ckpt.file}: Keras's rebuilt model has no layer {node.name}") from None
        if node.children is not None:
            _set_weights(ckpt, layer, node.children, prefix=f"{node.path}/")
            continue
        arrays = by_layer.get(node.path) or ckpt.read_layer(node.path)
        if not arrays and not layer.weights:
            continue
        try:
            layer.set_weights(arrays)
        except ValueError as exc:
            raise InspectError(f"{ckpt.file}: layer {node.path}: Keras refused the stored weights "
                               f"({str(exc).splitlines()[0][:200]})") from None


def run_keras(ckpt: Checkpoint, xs: list[np.ndarray]) -> KerasRun:
    """Keras's outputs for xs, and the output of each top-level LSTM layer (through a sub-model)."""
    keras, model = build_model(ckpt)
    assert ckpt.graph is not None
    lstm_paths = list(dict.fromkeys(d.layer_path for d in ckpt.layers if "/" not in d.layer_path))
    outputs = list(model.outputs)
    probes = []
    for path in lstm_paths:
        out = model.get_layer(path).output
        probes.append(out[0] if isinstance(out, (list, tuple)) else out)
    probe = keras.Model(model.inputs, outputs + probes)
    feed = xs if len(xs) > 1 else xs[0]
    try:
        got = probe.predict(feed, verbose=0)
    except Exception as exc:  # whatever TensorFlow raises for an input it cannot run
        raise InspectError(f"{ckpt.file}: Keras could not run the model on this input "
                           f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from None
    got = got if isinstance(got, list) else [got]
    version = getattr(keras, "__version__", "?")
    name = "keras" if keras.__name__ == "keras" else "tf_keras"
    return KerasRun(
        outputs=[np.asarray(g) for g in got[: len(outputs)]],
        layer_outputs={p: np.asarray(g) for p, g in zip(lstm_paths, got[len(outputs):])},
        library=f"{name} {version}",
        notes=[],
    )



def run_keras_direction(ckpt: Checkpoint, name: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    """One recurrent direction alone in Keras (a plain LSTM, GRU or SimpleRNN with its settings and weights) on x.

    Works for weights-only files too. Returns the full output sequence in processing order and
    the library that computed it.
    """
    d = ckpt.layer(name)
    keras = import_keras(generation(ckpt.keras_version) if ckpt.keras_version else
                         ("keras3" if ckpt.format == "keras3-weights" else "tf_keras"))
    w = d.weights()
    s = d.settings
    options: dict[str, Any] = {"activation": s.activation, "use_bias": s.use_bias, "return_sequences": True,
                               "go_backwards": s.go_backwards}
    if s.recurrent_activation is not None:
        options["recurrent_activation"] = s.recurrent_activation
    options.update(d.cell.kind_settings(s))
    if s.time_major:
        options["time_major"] = True  # tf_keras's own transposes; x is (steps, batch, N_i), one predict batch
    layer = getattr(keras.layers, d.cell.kind)(d.units, **options)
    model = keras.Sequential([keras.Input((None, d.input_dim)), layer])
    layer.set_weights(w.arrays())
    try:
        out = model.predict(np.asarray(x, dtype=np.float32), batch_size=max(1, len(x)), verbose=0)
    except Exception as exc:  # whatever TensorFlow raises for an input it cannot run
        raise InspectError(f"{ckpt.file}: Keras could not run layer {d.name} on this input "
                           f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from None
    name = "keras" if keras.__name__ == "keras" else "tf_keras"
    return np.asarray(out), f"{name} {keras.__version__}"
