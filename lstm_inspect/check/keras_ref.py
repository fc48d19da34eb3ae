"""Keras itself, as the reference the engine is checked against. The only module that imports it.

The reference for a file is the Keras generation that wrote it: Keras 3 for 3.x files, tf_keras
(the Keras 2 TensorFlow ships) for older ones. Nothing from the user's file reaches Keras's
loaders or deserializers (`model_from_json`, `model_from_config`, `deserialize_keras_object`), whose
JSON object hooks and registries have turned data into code (tf_keras's `json_utils._decode_helper`
deserializes `__passive_serialization__` objects, a Lambda runs marshalled bytecode) whatever safe
mode says. Instead:

1. the parsed config is searched for Keras's internal serialization keys (`INTERNAL_KEYS`), which no
   plain layer setting uses, and refused with the key named;
2. it is rebuilt key by key (`safe_config`): only the classes the engine runs, only plain JSON settings
   (activations by name, a dtype policy by its name), Keras 1 keys renamed as Keras 2's
   `keras/legacy/interfaces.py` renamed them, CuDNN classes renamed to their plain layers;
3. each layer is constructed from its clean settings with its own class (`layer_cls.from_config` or,
   for wrappers, the constructor with the wrapped layer built the same way), and the functional
   graph is wired here by calling the layers on Keras tensors in the order `ModelGraph.calls` gives,
   as Keras's `functional.process_node` would;
4. the weights lstm-inspect read are set layer by layer.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.engine.network import walk_graph
from lstm_inspect.engine.ops import KERAS3_OPS, TF_FUNCTIONS, TF_RAW_OPS
from lstm_inspect.engine.user_layers import KERAS_SOURCES, UserLayer, user_layer
from lstm_inspect.model.activations import activation_fn
from lstm_inspect.model.architecture import (
    MAX_JSON_DEPTH,
    MODEL_CLASSES,
    Call,
    ConfigError,
    LayerNode,
    ModelGraph,
    declared_shape,
    parse_model_config,
)
from lstm_inspect.model.cells.base import all_layer_classes, cell_of_class, is_multi_backend_keras2, keras_major_minor
from lstm_inspect.model.checkpoint import Checkpoint

# Layer classes whose config may be handed to Keras's from_config: nothing in them runs user code.
# The same registries the engine runs from, so verify rebuilds exactly what the engine knows.
ALLOWED_CLASSES = (frozenset(LAYERS) | frozenset(all_layer_classes()) | {"Bidirectional", "StackedRNNCells"}
                   | MODEL_CLASSES) - {
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
    # TensorFlow's CPU kernels without oneDNN (its default on CPUs without AVX-512 VNNI or AMX) refuse channels_first
    # convolutions and pools; with oneDNN on they run them, on every x86 CPU. A user's own setting is kept (see
    # `_predict` for what runs then).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
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
# Keys by which Keras's own (de)serializers mark data to turn into objects: tf_keras's JSON object hook builds any
# object carrying __passive_serialization__, a Lambda's function and function_type carry its code, and any other
# dunder key is Keras's (or an attacker's) marker, never a setting. The one `function` a plain config holds is a
# TFOpLambda's op name (checked against TF_FUNCTIONS).
OP_FUNCTION_CLASSES = frozenset({"TFOpLambda", "SlicingOpLambda"})
CODE_KEYS = frozenset({"function", "function_type"})
# The modules a Keras 3 op node may name (keras/src/ops/): the engine runs ops of these only.
KERAS3_OP_MODULES = ("keras.src.ops.numpy", "keras.src.ops.core", "keras.src.ops.math", "keras.src.ops.nn")


def _key_text(key: object) -> str:
    text = str(key)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _is_internal_key(key: str, value: Any, in_op_config: bool) -> bool:
    if len(key) > 4 and key.startswith("__") and key.endswith("__"):
        return True
    return key in CODE_KEYS and not (key == "function" and in_op_config and isinstance(value, str))


def refuse_internal_keys(cfg: Any, where: str) -> None:
    """Anywhere in the config (settings never handed on included): no key of Keras's internal serialization.

    One pass over every object and list (linear), no recursion; the refusal names the key and its place.
    """
    stack: list[tuple[Any, Any, int, bool]] = [(cfg, None, 0, False)]
    while stack:
        value, path, depth, in_op_config = stack.pop()
        if depth >= MAX_JSON_DEPTH:  # never for a config lstm-inspect read: deeper ones are refused when read
            raise _refuse(where, "nests its settings too deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        op_entry = isinstance(value, dict) and value.get("class_name") in OP_FUNCTION_CLASSES
        for key, item in items:
            if isinstance(value, dict) and _is_internal_key(str(key), item, in_op_config):
                raise InspectError(f"the {where} holds the key {_key_text(key)} (at {_path_text((key, path))}), "
                                   "Keras's internal serialization, through which its loaders build objects and run "
                                   "code; verify will not hand it to Keras (safe mode)")
            if isinstance(item, (dict, list)):
                stack.append((item, (key, path), depth + 1, op_entry and key == "config"))


def _path_text(path: Any) -> str:
    parts: list[str] = []
    while path is not None:
        key, path = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{str(key)[:60]}")
    text = "".join(reversed(parts)).lstrip(".")
    return repr(text[-200:])[1:-1]


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


# ---------------------------------------------------------------- the clean config the model is built from
#
# Rebuilt from scratch, keeping only what the forward pass needs: the classes the engine knows, their
# settings, the graph. Initializers, regularizers and constraints are dropped (the weights are set
# after building, and none of them acts at inference), as are the model's compile_config and every
# build_config (the layers are built by calling them on Keras tensors); every nested object must be
# one of a few known kinds (an activation by name, a dtype policy, a wrapped layer of a known class, a
# Keras tensor in a call), and TensorFlow op layers must name a whitelisted op.

DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
DROPPED_KEYS = {"activity_regularizer", "weights", "compile_config", "shared_object_id", "build_config"}
POLICY_CLASSES = {"DTypePolicy", "Policy", "FloatDTypePolicy"}
WRAPPED_KEYS = ("layer", "backward_layer", "cell", "cells")  # cells: a StackedRNNCells's list
# Serialized plain values: a tuple (tf_keras's json_utils: "items"; Keras 3: config.value) or a TensorShape
SEQUENCE_CLASSES = ("__tuple__", "TensorShape")


@dataclass(frozen=True)
class _Rules:
    """How to read the layer settings of one file."""

    where: str
    keras1: bool  # Keras 1 key names (`_keras1_to_keras2`)
    dtype_is_input: bool  # multi-backend Keras 1/2: a layer's dtype is its input placeholder's, not its weights'


def _refuse(where: str, what: str) -> InspectError:
    return InspectError(f"the {where} {what}; verify builds Keras models only from layers and settings it knows "
                        "(safe mode)")


def safe_config(cfg: Any, keras1: bool, where: str = "model", dtype_is_input: bool = False) -> dict[str, Any]:
    """The model config Keras's layers are built from: validated, reduced to what the forward pass needs,
    CPU-ready, holding only plain JSON values."""
    if not isinstance(cfg, dict) or cfg.get("class_name") not in MODEL_CLASSES:
        raise _refuse(where, "is not a Sequential or Functional model")
    return _model(cfg, _Rules(where, keras1, dtype_is_input or keras1), 0)


def _model(cfg: dict[str, Any], rules: _Rules, depth: int) -> dict[str, Any]:
    where = rules.where
    if depth > 32:
        raise _refuse(where, "nests models too deep")
    body = cfg.get("config")
    out: dict[str, Any] = {"class_name": cfg["class_name"]}
    _keep_keras_identity(cfg, out, where)
    if isinstance(body, list):  # Keras 1 and 2.0-2.2 Sequential
        out["config"] = [_layer(e, rules, depth) for e in body]
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
    clean["layers"] = [_layer(e, rules, depth) for e in layers]
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


def _layer(entry: Any, rules: _Rules, depth: int) -> dict[str, Any]:
    where = rules.where
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise _refuse(where, "has a layer without a class")
    cls = entry["class_name"]
    if cls in MODEL_CLASSES:
        out = _model(entry, rules, depth + 1)
        for key in ("name", "inbound_nodes"):
            if key in entry:
                out[key] = _call_data(entry[key], where) if key == "inbound_nodes" else _plain(entry[key], where)
        return out
    out: dict[str, Any] = {"class_name": cls}
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if isinstance(entry.get(USER_MARK), StandIn):  # the user's own layer (`user_stand_ins`): their Keras class
        return _stand_in(entry, config, where)
    _keep_keras_identity(entry, out, where)
    if str(entry.get("module", "")).startswith("keras.src.ops"):
        if cls not in KERAS3_OPS or entry["module"] not in KERAS3_OP_MODULES:
            raise _refuse(where, f"contains the op {cls}, which the engine does not run")
        out["config"] = {k: _plain(v, where) for k, v in config.items() if k in KERAS3_OPS[cls].keywords
                         or k in ("name", "trainable")}
    elif cls in OP_FUNCTION_CLASSES:
        if config.get("function") not in TF_FUNCTIONS:
            raise _refuse(where, f"contains the TensorFlow op {config.get('function')!r}, which the engine does not "
                          "run")
        out["config"] = {k: _plain(config[k], where) for k in ("name", "trainable", "function") if k in config}
    elif cls == "TensorFlowOpLayer":
        out["config"] = _node_def_layer(config, where)
    elif cls not in ALLOWED_CLASSES:
        raise _refuse(where, f"contains a {cls} layer, which the engine does not know (your own layer? give its "
                      "NumPy form and Keras class with --layers, README 'Your own layers')")
    else:
        out["class_name"], out["config"] = _layer_config(cls, config, rules, depth)
    for key in ("name", "inbound_nodes"):
        if key in entry:
            out[key] = _call_data(entry[key], where) if key == "inbound_nodes" else _plain(entry[key], where)
    return out


def _stand_in(entry: dict[str, Any], config: dict[str, Any], where: str) -> dict[str, Any]:
    """The clean entry of one of the user's own layers: its mark, its plain settings, its name and calls."""
    out: dict[str, Any] = {"class_name": entry["class_name"], USER_MARK: entry[USER_MARK],
                           "config": {k: _setting(k, v, where) for k, v in config.items()
                                      if k not in DROPPED_KEYS and not k.endswith(DROPPED_SUFFIXES)}}
    for key in ("name", "inbound_nodes"):
        if key in entry:
            out[key] = _call_data(entry[key], where) if key == "inbound_nodes" else _plain(entry[key], where)
    return out


def _layer_config(cls: str, config: dict[str, Any], rules: _Rules, depth: int) -> tuple[str, dict[str, Any]]:
    """(the class Keras builds, its settings): a CuDNN class becomes its plain layer here, out of band."""
    if rules.keras1:
        config = _keras1_to_keras2(cls, config, rules.where)
    inner: dict[str, Any] = {}
    for key, value in config.items():
        if key in DROPPED_KEYS or key.endswith(DROPPED_SUFFIXES):
            continue
        if key in WRAPPED_KEYS and isinstance(value, (dict, list)):
            inner[key] = ([_layer(v, rules, depth) for v in value] if isinstance(value, list)
                          else _layer(value, rules, depth))
            continue
        if key in WRAPPED_KEYS and value is not None:
            # a wrapped layer named by a string: tf_keras's legacy deserializer builds whatever class it names
            raise _refuse(rules.where, f"names the layer its {cls} wraps as {str(value)[:60]!r}, not as a layer config")
        if key == "dtype" and rules.dtype_is_input and cls != "InputLayer":
            continue  # multi-backend Keras: the input placeholder's dtype (int32 on an Embedding), not the weights'
        inner[key] = _setting(key, value, rules.where)
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
    if inner.get("unroll"):
        # an unrolled RNN computes the same steps as the symbolic loop (keras/src/backend/tensorflow/rnn.py, the
        # `unroll` branch, is a Python loop of the same step function); but tf_keras builds a graph of one copy of
        # the cell per declared step (114 s of CPU for 4096 steps), which the file decides: the loop instead
        inner["unroll"] = False
    for key in ("batch_input_shape", "batch_shape"):
        if isinstance(inner.get(key), list) and inner[key]:
            inner[key] = [None, *inner[key][1:]]
    return out_cls, inner


def _setting(key: str, value: Any, where: str) -> Any:
    """One setting of a layer: plain JSON, or one of the few objects Keras serializes in settings, as its name."""
    if isinstance(value, dict) and "class_name" in value and value.get("class_name") not in SEQUENCE_CLASSES:
        cls = value.get("class_name")
        if cls in POLICY_CLASSES and key == "dtype":
            policy = value.get("config") if isinstance(value.get("config"), dict) else {}
            name = policy.get("name")
            if not isinstance(name, str):
                raise _refuse(where, f"sets {key} to a {cls} without a name")
            return name
        if cls == "function" and isinstance(value.get("config"), str):
            name = value["config"]
            _known_activation(name, where)
            return name
        raise _refuse(where, f"sets {key} to a {cls} object")
    if key in ("activation", "recurrent_activation") and not (isinstance(value, str) or value is None):
        raise _refuse(where, f"sets {key} to something other than an activation's name")
    if key in ("activation", "recurrent_activation") and isinstance(value, str):
        _known_activation(value, where)
    return _plain(value, where)


def _known_activation(name: str, where: str) -> None:
    try:
        activation_fn(name)
    except InspectError:
        raise _refuse(where, f"uses the activation {name!r}") from None


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """JSON data with no objects in it (dicts without class_name; a serialized tuple or TensorShape as a list)."""
    if depth >= MAX_JSON_DEPTH:  # as in _check_objects
        raise _refuse(where, "nests its settings too deep")
    if isinstance(value, dict):
        if "class_name" in value:
            if value.get("class_name") not in SEQUENCE_CLASSES:
                raise _refuse(where, f"holds a {value.get('class_name')} object where a plain value was expected")
            return _plain(_sequence_items(value, where), where, depth + 1)
        return {str(k): _plain(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where, depth + 1) for v in value]
    return value


def _sequence_items(value: dict[str, Any], where: str) -> list[Any] | None:
    """The items of a serialized tuple or TensorShape (None: a TensorShape of unknown rank)."""
    inner = value.get("config")
    items = value.get("items") if "items" in value else inner.get("value") if isinstance(inner, dict) else None
    if items is not None and not isinstance(items, list):
        raise _refuse(where, f"holds a {value.get('class_name')} whose items are not a list")
    return items


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


# ---------------------------------------------------------------- Keras 1 settings in Keras 2 names
#
# Keras 2 read Keras 1 configs through the legacy interfaces on its layers' constructors
# (keras/legacy/interfaces.py, Keras 2.0-2.2): per layer, renamed keys, renamed values and a few
# preprocessors; every other key Keras 1 wrote is a Keras 2 argument of the same name (BatchNormalization's
# epsilon, axis and momentum, Dense's activation...). The same renames, per class:

_K1_DENSE = {"output_dim": "units", "init": "kernel_initializer", "W_regularizer": "kernel_regularizer",
             "b_regularizer": "bias_regularizer", "W_constraint": "kernel_constraint",
             "b_constraint": "bias_constraint", "bias": "use_bias"}
_K1_RECURRENT = {"output_dim": "units", "init": "kernel_initializer", "inner_init": "recurrent_initializer",
                 "inner_activation": "recurrent_activation", "W_regularizer": "kernel_regularizer",
                 "b_regularizer": "bias_regularizer", "U_regularizer": "recurrent_regularizer",
                 "dropout_W": "dropout", "dropout_U": "recurrent_dropout", "consume_less": "implementation"}
_K1_CONV = {"nb_filter": "filters", "filter_length": "kernel_size", "subsample_length": "strides",
            "subsample": "strides", "border_mode": "padding", "dim_ordering": "data_format",
            "init": "kernel_initializer", "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
            "W_constraint": "kernel_constraint", "b_constraint": "bias_constraint", "bias": "use_bias"}
_K1_POOL = {"pool_length": "pool_size", "stride": "strides", "border_mode": "padding", "dim_ordering": "data_format"}
_K1_DROPOUT = {"p": "rate", "dim_ordering": "data_format"}
KERAS1_RENAMES: dict[str, dict[str, str]] = {
    "Dense": _K1_DENSE, "LSTM": _K1_RECURRENT, "GRU": _K1_RECURRENT, "SimpleRNN": _K1_RECURRENT,
    "Conv1D": _K1_CONV, "Conv2D": _K1_CONV, "SeparableConv1D": _K1_CONV, "SeparableConv2D": _K1_CONV,
    "Embedding": {"init": "embeddings_initializer", "W_regularizer": "embeddings_regularizer",
                  "W_constraint": "embeddings_constraint"},
    "Dropout": _K1_DROPOUT, "SpatialDropout1D": _K1_DROPOUT, "SpatialDropout2D": _K1_DROPOUT,
    "SpatialDropout3D": _K1_DROPOUT, "GaussianDropout": _K1_DROPOUT,
    "GaussianNoise": {"sigma": "stddev"}, "PReLU": {"init": "alpha_initializer"},
    "BatchNormalization": {"beta_init": "beta_initializer", "gamma_init": "gamma_initializer"},
    "UpSampling1D": {"length": "size"}, "InputLayer": {"input_dtype": "dtype"},
    **{cls: _K1_POOL for cls in ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D",
                                 "GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D",
                                 "GlobalAveragePooling2D", "UpSampling2D", "ZeroPadding2D", "Cropping2D")},
}
KERAS1_VALUES = {"dim_ordering": {"tf": "channels_last", "th": "channels_first", "default": None},
                 "consume_less": {"cpu": 0, "mem": 1, "gpu": 2}}


def _keras1_to_keras2(cls: str, cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """A Keras 1 layer config in the names Keras 2 (and so tf_keras) reads, as Keras 2's legacy interfaces
    converted it; keys Keras 2 no longer took (Embedding's dropout, a layer's input_dtype) are left out."""
    renames = KERAS1_RENAMES.get(cls, {})
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in KERAS1_VALUES and isinstance(value, str):
            value = KERAS1_VALUES[key].get(value, value)
        out[renames.get(key, key)] = value
    if cls == "BatchNormalization" and out.pop("mode", 0) != 0:
        raise _refuse(where, "has a Keras 1 BatchNormalization with mode 1 or 2, which Keras 2 no longer runs")
    if cell_of_class(cls) is not None and "forget_bias_init" in out and out.pop("forget_bias_init") == "one":
        out["unit_forget_bias"] = True  # any other value was ignored
    if cls == "Conv2D" and "nb_row" in out and "nb_col" in out:
        out["kernel_size"] = [out.pop("nb_row"), out.pop("nb_col")]
    if cls == "Embedding":
        out.pop("dropout", None)
    elif cls != "InputLayer":
        out.pop("input_dtype", None)
    return out


def clean_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The clean model config (`safe_config`) of a checkpoint, refused before TensorFlow is imported."""
    graph = ckpt.graph
    if graph is None:
        raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so Keras cannot rebuild the model")
    where = f"model in {ckpt.file}"
    raw = user_stand_ins(ckpt)
    refuse_internal_keys(raw, where)
    _check_objects(raw, where)
    major, _ = keras_major_minor(ckpt.keras_version)
    return safe_config(raw, keras1=major is not None and major < 2, where=where,
                       dtype_is_input=is_multi_backend_keras2(ckpt.keras_version, (2, 4)))


# ---------------------------------------------------------------- the user's own layers
#
# A layer the user gave a NumPy form for (`engine.user_layers`) is rebuilt with the Keras class the user's module
# gives for it (`keras_classes(keras)`), never from the file: its entry becomes a stand-in holding only its name,
# its calls and its plain settings (a Lambda's: none of its code), marked by a `StandIn` object no JSON can hold.
# The rest of the model goes through the same checks; the user's classes are asked for only once Keras is imported,
# after the clean config is built.

USER_MARK = "lstm_inspect_user_layer"
LAMBDA_KEPT = ("name", "trainable", "dtype")  # a Lambda's settings its stand-in keeps: never function, module...


@dataclass(frozen=True)
class StandIn:
    """A layer rebuilt with the user's own Keras class: the name it is registered under and where from."""

    key: str
    layer: str  # its path in the model
    origin: str


def user_stand_ins(ckpt: Checkpoint) -> Any:
    """The stored config with each of the user's own layers replaced by its stand-in (the config itself when the
    user gave none); refused here, before TensorFlow is imported, when no module of theirs gives Keras classes."""
    assert ckpt.graph is not None
    mine: dict[int, tuple[LayerNode, UserLayer]] = {}
    for node in ckpt.graph.walk():
        found = user_layer(node) if node.children is None and not node.is_op else None
        if found is not None:
            mine[id(node.entry)] = (node, found)
    if not mine:
        return ckpt.raw_config
    if not KERAS_SOURCES:
        node, found = next(iter(mine.values()))
        raise InspectError(missing_keras_class(ckpt, node, found))
    return _replaced(ckpt.raw_config, mine, 0)


def missing_keras_class(ckpt: Checkpoint, node: LayerNode, found: UserLayer) -> str:
    return (f"{ckpt.file}: verify against Keras needs layer {node.path} ({node.class_name}) in Keras too, and "
            f"{found.origin} gives only its NumPy form: define keras_classes(keras) there returning "
            f"{{{found.name!r}: your Keras class}} (README 'Your own layers')")


def _replaced(value: Any, mine: dict[int, tuple[LayerNode, UserLayer]], depth: int) -> Any:
    """A copy of the config with the user's layers' entries replaced (configs were refused past MAX_JSON_DEPTH)."""
    if depth > MAX_JSON_DEPTH:
        raise InspectError("the model config nests too deep to rebuild")
    if isinstance(value, dict):
        if id(value) in mine:
            node, found = mine[id(value)]
            config = value.get("config") if isinstance(value.get("config"), dict) else {}
            kept = {k: v for k, v in config.items() if node.class_name != "Lambda" or k in LAMBDA_KEPT}
            out = {"class_name": found.name, "config": kept, USER_MARK: StandIn(found.name, node.path, found.origin)}
            for key in ("name", "inbound_nodes"):
                if key in value:
                    out[key] = value[key]
            return out
        return {k: _replaced(v, mine, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, mine, depth + 1) for v in value]
    return value


def user_keras_classes(keras: Any, ckpt: Checkpoint, cfg: Any) -> dict[str, Any]:
    """The user's Keras classes for the stand-ins of `cfg`, from their modules' keras_classes(keras) (their own
    code, called with the Keras verify runs); one line naming the layer when one is missing."""
    wanted: dict[str, StandIn] = {}
    stack = [cfg]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if isinstance(value.get(USER_MARK), StandIn):
                wanted.setdefault(value[USER_MARK].key, value[USER_MARK])
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (dict, list)))
    if not wanted:
        return {}
    classes: dict[str, Any] = {}
    for origin, fn in KERAS_SOURCES:
        try:
            given = fn(keras)
        except Exception as exc:  # the user's own code: whatever it raises is theirs to fix
            raise InspectError(f"{origin}: keras_classes(keras) raised {type(exc).__name__}: "
                               f"{keras_reason(exc)}") from exc
        if not isinstance(given, dict):
            raise InspectError(f"{origin}: keras_classes(keras) returned {type(given).__name__}, not a dict "
                               "{name: Keras class}")
        classes.update({k: v for k, v in given.items() if isinstance(k, str)})
    for key, stand_in in wanted.items():
        klass = classes.get(key)
        if not (isinstance(klass, type) and issubclass(klass, keras.layers.Layer)):
            raise InspectError(f"{ckpt.file}: verify against Keras needs layer {stand_in.layer} in Keras too, and "
                               f"keras_classes(keras) gives no Keras layer class for {key!r} "
                               f"({stand_in.origin}; README 'Your own layers')")
    return {key: classes[key] for key in wanted}


def build_model(ckpt: Checkpoint, shapes: list[tuple[int | None, ...]] | None = None) -> tuple[Any, Any]:
    """The Keras model rebuilt from the clean config, with lstm-inspect's weights set in it.

    `shapes` (one per model input) stand in for input shapes the config does not declare.
    """
    keras, model, _ = _build(ckpt, shapes)
    return keras, model


def _build(ckpt: Checkpoint, shapes: list[tuple[int | None, ...]] | None) -> tuple[Any, Any, dict[str, str]]:
    """build_model, and the stand-in names Keras knows some layers by ({layer path: Keras's name})."""
    gen = generation(ckpt.keras_version)
    cfg = clean_config(ckpt)  # refused before TensorFlow is even imported
    try:
        graph = parse_model_config(cfg)
    except ConfigError as exc:
        raise InspectError(f"{ckpt.file}: {exc}") from exc
    keras = import_keras(gen)
    mine = user_keras_classes(keras, ckpt, cfg)
    try:
        rebuild = _Rebuild(keras, str(ckpt.file), mine)
        model = rebuild.model(graph, list(shapes or []))
    except InspectError:
        raise
    except Exception as exc:  # Keras raises many types for configs it cannot build
        raise InspectError(f"{ckpt.file}: Keras could not rebuild the model from its config "
                           f"({keras_reason(exc)})") from None
    _set_weights(ckpt, model, ckpt.graph, rebuild.names)  # type: ignore[arg-type]
    return keras, model, rebuild.names


def keras_reason(exc: BaseException) -> str:
    """Keras's message in one line for a person: its first line (or the error a traced function re-raised), cut
    before any array it prints."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    raised = [line for line in lines if re.match(r"\w+(Error|Exception): ", line)]
    # a tf.function's error: the one it re-raised, which names its type
    text = raised[-1] if raised else f"{type(exc).__name__}: {lines[0] if lines else ''}"
    cut = re.search(r"\[?\s*(array\(|tf\.Tensor\(|<tf\.Variable)|Provided weights|\[\[|\[-?\d", text)
    if cut is not None:
        text = text[: cut.start()].rstrip(" :,([") + " ..."
    return text[:240]


# The longest layer name handed to Keras as it is (`_Rebuild.keras_name`); Keras itself makes names of up to 255.
KERAS_NAME_LIMIT = 128

# Keys of a layer's settings that declare its input, which the rebuild gives it as a Keras tensor instead (an
# Embedding's input_dim and input_length are its vocabulary and length, kept)
INPUT_DECLARATIONS = ("batch_input_shape", "batch_shape", "input_shape", "batch_size", "input_dim", "input_length")


class _Rebuild:
    """Keras layers constructed from a clean config and wired as its graph says (see the module docstring)."""

    def __init__(self, keras: Any, where: str, mine: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        self.keras, self.where, self.flatten = keras, where, tf.nest.flatten
        self.mine = mine or {}  # the user's own Keras classes, by the name their stand-ins are registered under
        self.names: dict[str, str] = {}  # layer path -> the stand-in name Keras knows it by (`keras_name`)
        self.stand_ins = 0

    def keras_name(self, name: Any, path: str | None = None) -> Any:
        """The file's name where Keras takes it as it is; else a short stand-in (recorded by path, where given).

        Keras keeps a layer's name in every op and tensor name it makes: a 400,000-character name from a 3 KB file
        cost 3.6 GB and 38 s to build, and a control character is refused by TensorFlow's name scopes.
        """
        if not isinstance(name, str) or (len(name) <= KERAS_NAME_LIMIT and name.isprintable()):
            return name
        self.stand_ins += 1
        stand_in = f"lstm_inspect_renamed_{self.stand_ins}"
        if path is not None:
            self.names[path] = stand_in
        return stand_in

    def model(self, graph: ModelGraph, shapes: list[Any], name: str | None = None) -> Any:
        """A Keras Model of `graph`: its inputs as declared (else `shapes`), each call made as the config says."""
        inputs = self._inputs(graph, shapes)
        built: dict[str, Any] = {}

        def apply(node: LayerNode, call: Call, k: int) -> list[Any]:
            if node.class_name == "InputLayer":  # a Sequential's first entry: its input itself
                return list(call.args)
            if node.name not in built:
                name = self.keras_name(node.name, node.path)
                built[node.name] = (self.layer(node.entry, name) if node.children is None
                                    else self.model(node.children, [t.shape for t in self._tensors(call)], name))
            return list(self.flatten(self._call(built[node.name], node, call, k)))

        outs = walk_graph(graph, inputs, apply, self.where, lambda o: hasattr(o, "shape") and hasattr(o, "dtype"))
        return self.keras.Model(inputs[0] if len(inputs) == 1 else inputs, outs[0] if len(outs) == 1 else outs,
                                name=name or self.keras_name(graph.name))

    def _tensors(self, call: Call) -> list[Any]:
        return [t for t in self.flatten([call.args, call.kwargs]) if hasattr(t, "shape") and hasattr(t, "dtype")]

    def _inputs(self, graph: ModelGraph, shapes: list[Any]) -> list[Any]:
        if graph.class_name == "Sequential":
            if not graph.layers:
                raise InspectError(f"{self.where}: the model {graph.name} has no layers")
            first = graph.layers[0]
            name = first.name if first.class_name == "InputLayer" else f"{first.name}_input"
            dtype = first.config.get("dtype") if first.class_name == "InputLayer" else None
            return [self._input(first, shapes[0] if shapes else None, dtype, self.keras_name(name, first.path))]
        by_name = {n.name: n for n in graph.layers}
        return [self._input(by_name[ref.layer], shapes[k] if k < len(shapes) else None,
                            by_name[ref.layer].config.get("dtype"), self.keras_name(ref.layer, by_name[ref.layer].path))
                for k, ref in enumerate(graph.inputs)]

    def _input(self, node: LayerNode, fallback: Any, dtype: Any, name: str) -> Any:
        try:
            shape = declared_shape(node)
        except ConfigError as exc:
            raise InspectError(f"{self.where}: {exc}") from exc
        if shape is None and fallback is not None:
            shape = list(fallback)
        if shape is None:
            raise InspectError(f"{self.where}: the input of {node.path} declares no shape, so Keras cannot build it")
        return self.keras.Input(batch_shape=(None, *shape[1:]), dtype=dtype if isinstance(dtype, str) else None,
                                name=name)

    def layer(self, entry: dict[str, Any], name: str | None = None) -> Any:
        """One layer from its clean entry: its own class's from_config, or the constructor with the layers it wraps
        built the same way first (never Keras's deserializer on the wrapped configs). `name`: Keras's name for it."""
        cls, config = entry["class_name"], dict(entry["config"])
        if "name" in config:
            config["name"] = name if name is not None else self.keras_name(config["name"])
        if cls in MODEL_CLASSES:
            raise InspectError(f"{self.where}: a model wrapped in a layer is not something verify rebuilds")
        klass = self._class(entry)
        wrapped = {k: self._wrapped(config.pop(k)) for k in WRAPPED_KEYS if isinstance(config.get(k), (dict, list))}
        for key in INPUT_DECLARATIONS:
            if not (cls == "Embedding" and key in ("input_dim", "input_length")):
                config.pop(key, None)
        if not wrapped:
            return klass.from_config(config)
        constants = config.pop("num_constants", 0)
        obj = klass(**wrapped, **config)
        if constants:
            obj._num_constants = constants
        return obj

    def _wrapped(self, value: Any) -> Any:
        return [self.layer(v) for v in value] if isinstance(value, list) else self.layer(value)

    def _class(self, entry: dict[str, Any]) -> Any:
        cls = entry["class_name"]
        if isinstance(entry.get(USER_MARK), StandIn):
            return self.mine[entry[USER_MARK].key]
        module = entry.get("module")
        if isinstance(module, str) and module.startswith("keras.src.ops"):
            return getattr(importlib.import_module(KERAS3_OP_MODULES[KERAS3_OP_MODULES.index(module)]), cls)
        if cls in OP_FUNCTION_CLASSES:
            from tf_keras.src.layers.core import tf_op_layer

            return getattr(tf_op_layer, cls)
        if cls == "TensorFlowOpLayer":
            from tf_keras.src.engine.base_layer import TensorFlowOpLayer

            return TensorFlowOpLayer
        return getattr(self.keras.layers, cls)

    def _call(self, obj: Any, node: LayerNode, call: Call, k: int) -> Any:
        """One call as Keras's process_node makes it: Keras 3 records args and kwargs; Keras 1/2 a list of inputs,
        a single one passed alone."""
        args, kwargs = _keras_values(call.args), _keras_values(call.kwargs)
        if isinstance(node.entry.get(USER_MARK), StandIn):  # e.g. a Lambda's mask=None: the user's call may not take it
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
        inbound = node.entry.get("inbound_nodes") or []
        if k < len(inbound) and isinstance(inbound[k], dict):
            return obj(*args, **kwargs)
        return obj(args[0] if len(args) == 1 else args, **kwargs)


def _keras_values(value: Any) -> Any:
    """Call arguments as Keras passes them: serialized tuples and Ellipsis decoded (they were vetted by
    `_call_data`), everything else as it is."""
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls == "__ellipsis__":
            return Ellipsis
        if cls == "__tuple__":
            return tuple(_keras_values(v) for v in (_sequence_items(value, "call") or []))
        return {k: _keras_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keras_values(v) for v in value]
    return value


def _set_weights(ckpt: Checkpoint, model: Any, graph: ModelGraph, names: dict[str, str]) -> None:
    by_layer: dict[str, list[np.ndarray]] = {}
    for d in ckpt.directions:
        by_layer.setdefault(d.layer_path, []).extend(d.weights().arrays())
    for node in graph.layers:
        if node.is_op:
            continue
        try:
            layer = model.get_layer(names.get(node.path, node.name))
        except ValueError:
            if node.class_name == "InputLayer":
                continue
            raise InspectError(f"{ckpt.file}: Keras's rebuilt model has no layer {node.name}") from None
        if node.children is not None:
            _set_weights(ckpt, layer, node.children, names)
            continue
        arrays = by_layer.get(node.path) or ckpt.read_layer(node.path)
        if not arrays and not layer.weights:
            continue
        try:
            layer.set_weights(arrays)
        except ValueError as exc:
            raise InspectError(f"{ckpt.file}: layer {node.path}: Keras refused the stored weights "
                               f"({keras_reason(exc)})") from None


def run_keras(ckpt: Checkpoint, xs: list[np.ndarray]) -> KerasRun:
    """Keras's outputs for xs, and the output of each top-level LSTM layer (through a sub-model)."""
    keras, model, names = _build(ckpt, [(None, *np.shape(x)[1:]) for x in xs])
    assert ckpt.graph is not None
    lstm_paths = list(dict.fromkeys(d.layer_path for d in ckpt.directions if "/" not in d.layer_path))
    outputs = list(model.outputs)
    probes = []
    for path in lstm_paths:
        out = model.get_layer(names.get(path, path)).output
        probes.append(out[0] if isinstance(out, (list, tuple)) else out)
    probe = keras.Model(model.inputs, outputs + probes)
    notes: list[str] = []
    got = _predict(ckpt, probe, xs if len(xs) > 1 else xs[0], notes)
    got = got if isinstance(got, list) else [got]
    version = getattr(keras, "__version__", "?")
    name = "keras" if keras.__name__ == "keras" else "tf_keras"
    return KerasRun(
        outputs=[np.asarray(g) for g in got[: len(outputs)]],
        layer_outputs={p: np.asarray(g) for p, g in zip(lstm_paths, got[len(outputs):])},
        library=f"{name} {version}",
        notes=notes,
    )


# TensorFlow's refusal of a channels_first convolution or pool by its CPU kernels without oneDNN ("The Conv2D op
# currently only supports the NHWC tensor format on the CPU", "Default MaxPoolingOp only supports NHWC")
NO_NCHW = "NHWC"


def _predict(ckpt: Checkpoint, model: Any, feed: Any, notes: list[str]) -> Any:
    """model.predict; where TensorFlow's plain CPU kernels refuse a channels_first layer (oneDNN turned off by the
    user, or TensorFlow imported before verify could turn it on), the same model compiled by XLA, whose CPU kernels
    take both layouts (Keras 3's TensorFlow backend takes the same route for its 3-D channels_first convolutions)."""
    try:
        return model.predict(feed, verbose=0)
    except Exception as exc:  # whatever TensorFlow raises for an input it cannot run
        if NO_NCHW not in str(exc):
            raise InspectError(f"{ckpt.file}: Keras could not run the model on this input "
                               f"({keras_reason(exc)})") from None
    notes.append("TensorFlow runs here without oneDNN, whose CPU kernels refuse channels_first layers: Keras ran "
                 "the model compiled by XLA")
    model.compile(jit_compile=True)
    try:
        return model.predict(feed, verbose=0)
    except Exception as exc:  # as above
        raise InspectError(f"{ckpt.file}: Keras could not run the model on this input, neither with TensorFlow's "
                           f"CPU kernels without oneDNN nor through XLA ({keras_reason(exc)})") from None



def run_keras_direction(ckpt: Checkpoint, name: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    """One recurrent direction alone in Keras (a plain LSTM, GRU or SimpleRNN with its settings and weights) on x.

    Works for weights-only files too. Returns the full output sequence in processing order and
    the library that computed it.
    """
    d = ckpt.direction(name)
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
    layer = getattr(keras.layers, d.cell.keras_layer(s))(d.units, **options)
    model = keras.Sequential([keras.Input((None, *np.shape(x)[2:])), layer])  # (None, N_i), or feature maps
    layer.set_weights(w.arrays())
    try:
        out = model.predict(np.asarray(x, dtype=np.float32), batch_size=max(1, len(x)), verbose=0)
    except Exception as exc:  # whatever TensorFlow raises for an input it cannot run
        raise InspectError(f"{ckpt.file}: Keras could not run layer {d.name} on this input "
                           f"({keras_reason(exc)})") from None
    name = "keras" if keras.__name__ == "keras" else "tf_keras"
    return np.asarray(out), f"{name} {keras.__version__}"
