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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.architecture import MODEL_CLASSES, ModelGraph
from lstm_inspect.cells import all_layer_classes, keras_major_minor
from lstm_inspect.errors import InspectError
from lstm_inspect.layers import LAYERS
from lstm_inspect.model import Checkpoint
from lstm_inspect.ops import OPS

# Layer classes whose config may be handed to Keras's from_config: nothing in them runs user code.
# The same registries the engine runs from, so verify rebuilds exactly what the engine knows.
ALLOWED_CLASSES = frozenset(LAYERS) | frozenset(all_layer_classes()) | {"Bidirectional"} | MODEL_CLASSES
INSTALL_HINT = "pip install 'lstm-inspect[keras]'"


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

            if int(keras.__version__.split(".")[0]) < 3:
                raise InspectError(f"this file was written by Keras 3, but the installed keras is "
                                   f"{keras.__version__}; {INSTALL_HINT}")
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


CODE_CLASSES = frozenset({"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"})


def check_safe(cfg: Any, where: str = "model") -> None:
    """Refuse anything but plain Keras layers the engine knows: no Lambda, no custom objects."""
    _check_objects(cfg, where)
    _check_layers(cfg, where)


def _check_objects(cfg: Any, where: str) -> None:
    """Anywhere in the config: no code-carrying class, no object from outside Keras."""
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
        for value in cfg.values():
            _check_objects(value, where)
    elif isinstance(cfg, list):
        for value in cfg:
            _check_objects(value, where)


def _check_layers(model_cfg: Any, where: str) -> None:
    """Every layer (and wrapped layer or cell) is a class the engine knows."""
    body = model_cfg.get("config") if isinstance(model_cfg, dict) else None
    entries = body if isinstance(body, list) else (body or {}).get("layers", []) if isinstance(body, dict) else []
    for entry in entries:
        _check_layer(entry, where)


def _check_layer(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        return
    cls = entry.get("class_name")
    if str(entry.get("module", "")).startswith("keras.src.ops") and cls in OPS:
        return  # one of Keras's own ops (the ones Keras 3 records to compute masks)
    if cls not in ALLOWED_CLASSES:
        raise InspectError(f"the {where} contains a {cls} layer, which the engine does not know; verify builds "
                           "Keras models only from layers it knows (safe mode)")
    if cls in MODEL_CLASSES:
        _check_layers(entry, where)
        return
    inner = entry.get("config") or {}
    for key in ("layer", "backward_layer", "cell"):
        sub = inner.get(key) if isinstance(inner, dict) else None
        for item in sub if isinstance(sub, list) else [sub]:
            _check_layer(item, where)


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


def _prepare(cfg: Any, keras1: bool) -> Any:
    """Rewrite a config so Keras can run it on a CPU from a fresh state, same math."""
    if isinstance(cfg, list):
        return [_prepare(v, keras1) for v in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = {k: _prepare(v, keras1) for k, v in cfg.items()}
    cls = out.get("class_name")
    inner = out.get("config")
    if isinstance(inner, dict) and cls not in MODEL_CLASSES:
        if keras1:
            inner = _keras1_to_keras2(inner)
        if cls in ("CuDNNLSTM", "CuDNNGRU"):
            # tf_keras cannot run a CuDNN layer on a CPU; Keras's documented route is the plain layer
            # with CuDNN's fixed activations (and, for GRU, reset_after), holding the converted weights.
            out["class_name"] = cls[len("CuDNN"):]
            inner = {k: v for k, v in inner.items() if k in {"name", "units", "return_sequences", "return_state",
                                                              "go_backwards", "stateful", "batch_input_shape",
                                                              "trainable", "dtype"}}
            inner.update(activation="tanh", recurrent_activation="sigmoid")
            if cls == "CuDNNGRU":
                inner["reset_after"] = True
        if out.get("class_name") in ("GRU", "GRUCell") and "reset_after" not in inner:
            # Keras before 2.1.x wrote no reset_after and computed the reset-before form; tf_keras would
            # assume its own default (True).
            inner["reset_after"] = False
        if inner.get("stateful"):
            inner["stateful"] = False  # a first call from zero state is the same; frees the batch size
        for key in ("batch_input_shape", "batch_shape"):
            if isinstance(inner.get(key), list) and inner[key]:
                inner[key] = [None, *inner[key][1:]]
        out["config"] = inner
    return out


def _config_json(ckpt: Checkpoint) -> dict[str, Any]:
    graph = ckpt.graph
    if graph is None:
        raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so Keras cannot rebuild the model")
    raw = ckpt.raw_config
    check_safe(raw, f"model in {ckpt.file}")
    major, _ = keras_major_minor(ckpt.keras_version)
    return _prepare(copy.deepcopy(raw), keras1=major is not None and major < 2)


def build_model(ckpt: Checkpoint) -> tuple[Any, Any]:
    """The Keras model rebuilt from the parsed config, with lstm-inspect's weights set in it."""
    gen = generation(ckpt.keras_version)
    keras = import_keras(gen)
    cfg = _config_json(ckpt)
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
    if d.cell.kind == "GRU":
        options["reset_after"] = bool(s.reset_after)
    layer = getattr(keras.layers, d.cell.kind)(d.units, **options)
    model = keras.Sequential([keras.Input((None, d.input_dim)), layer])
    layer.set_weights(w.arrays())
    try:
        out = model.predict(np.asarray(x, dtype=np.float32), verbose=0)
    except Exception as exc:  # whatever TensorFlow raises for an input it cannot run
        raise InspectError(f"{ckpt.file}: Keras could not run layer {d.name} on this input "
                           f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from None
    name = "keras" if keras.__name__ == "keras" else "tf_keras"
    return np.asarray(out), f"{name} {keras.__version__}"
