"""Samples with TensorFlow op layers around an LSTM, in both forms tf.keras wrote (used by generate.py).

- `tfk_tf_ops.h5`: written by tf_keras, whose functional API records `tf.cast(x)`, `x * 2`,
  `x[:, 1:]` ... as TFOpLambda / SlicingOpLambda layers (the form of tf.keras 2.4 and later).
- `tfk_tf_ops_v23.h5`: the same model as tf.keras 2.2-2.3 wrote it, every op a TensorFlowOpLayer
  holding the op's NodeDef as JSON and its constant inputs. No TF 2.3 wheel runs on this Python, so
  the config is rewritten here the way TF 2.3's `TensorFlowOpLayer.get_config` writes it
  (`tensorflow/python/keras/engine/base_layer.py` at v2.3: name without the `tf_op_layer_` prefix,
  `node_def` = `json_format.MessageToDict(node_def)`, `constants` = {input index: value}), each op
  as the TF 2.3 Python API creates it (`tf.cast` -> Cast with SrcT/DstT/Truncate, `x * c` -> Mul
  with the constant as input 1, `x[...]` -> StridedSlice with begin/end/strides constants and the
  five masks, `tf.concat` -> ConcatV2 with the axis last...). tf_keras still has TensorFlowOpLayer
  and rebuilds the rewritten config; its outputs must equal the TFOpLambda model's (checked here
  before anything is written).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DT = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64", "bool": "DT_BOOL",
      "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128"}


def build(keras: Any, layers: Any) -> Any:
    """A model whose every TensorFlow op the engine must run: Cast to and from complex, FFT, ComplexAbs,
    Real/Imag, arithmetic with constants and tensors, reshapes, slices, reductions, a matmul."""
    import tensorflow as tf

    inp = keras.Input((8, 4), name="signal")
    z = tf.signal.fft(tf.cast(inp, tf.complex64))  # Cast (to complex) -> FFT
    magnitude = tf.abs(z)  # ComplexAbs
    real = tf.cast(z, tf.float32)  # Cast (complex -> float: the real part)
    imag = tf.math.imag(z)
    back = tf.math.real(tf.signal.ifft(z))  # IFFT -> Real
    # (tf.signal.rfft takes no Keras tensor in tf_keras's functional API: RFFT and IRFFT are tested alone)
    feats = tf.concat([magnitude * 0.25, real - 1.0, imag / 4.0, back], axis=-1)  # Mul, Sub, RealDiv, ConcatV2
    feats = tf.maximum(tf.minimum(feats, 3.0), -3.0)
    feats = layers.BatchNormalization(name="bn")(feats)
    seq = layers.LSTM(6, return_sequences=True, name="lstm")(feats)
    head = inp[:, 1:, :2]  # StridedSlice
    head = tf.reshape(head, (-1, 7, 2))
    head = tf.squeeze(tf.expand_dims(head, -1), axis=-1)
    head = tf.transpose(head, perm=[0, 2, 1])  # (batch, 2, 7)
    head = tf.slice(head, [0, 0, 1], [-1, 2, 6])  # Slice -> (batch, 2, 6)
    mixed = tf.matmul(head, seq[:, :6, :])  # BatchMatMulV2 of two tensors -> (batch, 2, 6)
    pooled = tf.reduce_mean(seq, axis=1) + tf.reduce_max(seq, axis=1) - tf.reduce_sum(mixed, axis=1) * 0.1
    gated = tf.sigmoid(pooled) * tf.tanh(pooled) + tf.exp(-tf.square(pooled))
    gated = gated + tf.math.log(tf.sqrt(tf.abs(pooled) + 1.0)) - tf.negative(pooled)
    projected = tf.matmul(gated, tf.constant(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3)))  # MatMul
    out = layers.Dense(2, name="out")(projected)
    return keras.Model(inp, out)


def _dtype(t: Any) -> str:
    return DT[t.dtype.name]


def _slice_constants(spec: list[Any], rank: int) -> tuple[list[int], list[int], list[int], dict[str, int]]:
    """What TF 2.3's `_slice_helper` builds from a Python index: begin/end/strides and the five masks."""
    begin, end, strides = [], [], []
    masks = dict.fromkeys(("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask"), 0)
    for i, s in enumerate(spec):
        bit = 1 << i
        if isinstance(s, dict) and s.get("class_name") == "__ellipsis__":
            begin.append(0), end.append(0), strides.append(1)
            masks["ellipsis_mask"] |= bit
        elif s is None:
            begin.append(0), end.append(0), strides.append(1)
            masks["new_axis_mask"] |= bit
        elif isinstance(s, dict):
            start, stop, step = s["start"], s["stop"], s["step"]
            begin.append(0 if start is None else start)
            end.append(0 if stop is None else stop)
            strides.append(1 if step is None else step)
            if start is None:
                masks["begin_mask"] |= bit
            if stop is None:
                masks["end_mask"] |= bit
        else:
            begin.append(int(s)), end.append(int(s) + 1), strides.append(1)
            masks["shrink_axis_mask"] |= bit
    return begin, end, strides, masks


def _node_def(op: str, inputs: list[str], attr: dict[str, Any]) -> dict[str, Any]:
    return {"name": op, "op": op, "input": inputs, "attr": attr}


def rewrite_as_tf23(model: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The model config with every TFOpLambda as the TensorFlowOpLayer TF 2.3 would have recorded."""
    by_name = {layer.name: layer for layer in model.layers}
    renamed: dict[str, str] = {}
    layers_out = []
    for entry in config["config"]["layers"]:
        cls = entry["class_name"]
        if cls not in ("TFOpLambda", "SlicingOpLambda"):
            layers_out.append(entry)
            continue
        layer = by_name[entry["config"]["name"]]
        function = entry["config"]["function"]
        node = entry["inbound_nodes"][0]
        single = isinstance(node[0], str)
        refs = [node] if single else node
        kwargs = dict(refs[0][3]) if len(refs[0]) > 3 else {}
        kwargs.pop("name", None)
        tensors = [r[:3] for r in refs]
        out = layer.output
        first_in = layer._inbound_nodes[0].input_tensors
        first_in = first_in[0] if isinstance(first_in, (list, tuple)) else first_in
        T = _dtype(first_in)
        op, attr, constants, extra = _op_for(function, kwargs, T, out, first_in)
        for ref_value in extra:  # a second tensor operand, recorded in kwargs by tf_keras
            tensors.append(ref_value)
        base = function.replace(".", "_").replace("__operators___", "")
        name = f"{base}_{len(renamed)}"
        renamed[entry["name"]] = f"tf_op_layer_{name}"
        n_inputs = len(tensors) + len(constants)
        input_names = [f"in_{k}" for k in range(n_inputs)]
        layers_out.append({
            "class_name": "TensorFlowOpLayer",
            "config": {"name": name, "trainable": True, "dtype": "float32",
                       "node_def": _node_def(op, input_names, attr),
                       "constants": {str(k): v for k, v in constants.items()}},
            "name": f"tf_op_layer_{name}",
            "inbound_nodes": [[[*t, {}] for t in tensors]],
        })
    text = json.dumps({**config, "config": {**config["config"], "layers": layers_out}})
    for old, new in renamed.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    return json.loads(text)


def _op_for(function: str, kw: dict[str, Any], T: str, out: Any, first_in: Any
            ) -> tuple[str, dict[str, Any], dict[int, Any], list[list[Any]]]:
    """(op, attrs, constants by input index, other tensor operands) of one TF API call."""
    t = {"type": T}
    binary = {"__operators__.add": "AddV2", "math.add": "AddV2", "math.subtract": "Sub", "math.multiply": "Mul",
              "math.truediv": "RealDiv", "math.maximum": "Maximum", "math.minimum": "Minimum"}
    unary = {"math.negative": "Neg", "math.exp": "Exp", "math.log": "Log", "math.sqrt": "Sqrt",
             "math.square": "Square", "math.tanh": "Tanh", "math.sigmoid": "Sigmoid"}
    if function in binary:
        y = kw["y"]
        if isinstance(y, list) and len(y) == 3 and isinstance(y[0], str):
            return binary[function], {"T": t}, {}, [y]
        return binary[function], {"T": t}, {1: y}, []
    if function in unary:
        return unary[function], {"T": t}, {}, []
    if function == "cast":
        return "Cast", {"SrcT": t, "DstT": {"type": DT[kw["dtype"]]}, "Truncate": {"b": False}}, {}, []
    if function == "math.abs":
        if T.startswith("DT_COMPLEX"):
            return "ComplexAbs", {"T": t, "Tout": {"type": "DT_FLOAT"}}, {}, []
        return "Abs", {"T": t}, {}, []
    if function in ("math.real", "math.imag"):
        return function.split(".")[1].capitalize(), {"T": t, "Tout": {"type": "DT_FLOAT"}}, {}, []
    if function in ("signal.fft", "signal.ifft"):
        return function.split(".")[1].upper(), {"Tcomplex": t}, {}, []
    if function == "signal.rfft":
        length = kw.get("fft_length") or [int(first_in.shape[-1])]
        return "RFFT", {"Treal": t, "Tcomplex": {"type": "DT_COMPLEX64"}}, {1: list(length)}, []
    if function == "signal.irfft":
        length = kw.get("fft_length") or [2 * (int(first_in.shape[-1]) - 1)]
        return "IRFFT", {"Treal": {"type": "DT_FLOAT"}, "Tcomplex": t}, {1: list(length)}, []
    if function == "concat":
        return "ConcatV2", {"N": {"i": str(len(kw.get("_n", [])) or 0)}, "T": t, "Tidx": {"type": "DT_INT32"}}, \
            {"axis": kw["axis"]}, []
    if function == "reshape":
        return "Reshape", {"T": t, "Tshape": {"type": "DT_INT32"}}, {1: list(kw["shape"])}, []
    if function == "expand_dims":
        return "ExpandDims", {"T": t, "Tdim": {"type": "DT_INT32"}}, {1: kw["axis"]}, []
    if function in ("squeeze", "compat.v1.squeeze"):
        axis = kw.get("axis")
        axes = [axis] if isinstance(axis, int) else list(axis or [])
        return "Squeeze", {"T": t, "squeeze_dims": {"list": {"i": [str(a) for a in axes]}}}, {}, []
    if function in ("transpose", "compat.v1.transpose"):
        return "Transpose", {"T": t, "Tperm": {"type": "DT_INT32"}}, {1: list(kw["perm"])}, []
    if function == "slice":
        return "Slice", {"T": t, "Index": {"type": "DT_INT32"}}, {1: list(kw["begin"]), 2: list(kw["size"])}, []
    if function == "__operators__.getitem":
        begin, end, strides, masks = _slice_constants(kw["slice_spec"], len(first_in.shape))
        attr = {"T": t, "Index": {"type": "DT_INT32"}, **{k: {"i": str(v)} for k, v in masks.items()}}
        return "StridedSlice", attr, {1: begin, 2: end, 3: strides}, []
    if function in ("math.reduce_mean", "math.reduce_sum", "math.reduce_max"):
        op = {"math.reduce_mean": "Mean", "math.reduce_sum": "Sum", "math.reduce_max": "Max"}[function]
        axis = kw.get("axis")
        return op, {"T": t, "Tidx": {"type": "DT_INT32"}, "keep_dims": {"b": bool(kw.get("keepdims", False))}}, \
            {1: axis}, []
    if function == "linalg.matmul":
        b = kw["b"]
        rank = len(first_in.shape)
        if isinstance(b, list) and len(b) == 3 and isinstance(b[0], str):
            return "BatchMatMulV2" if rank > 2 else "MatMul", (
                {"T": t, "adj_x": {"b": False}, "adj_y": {"b": False}} if rank > 2 else
                {"T": t, "transpose_a": {"b": False}, "transpose_b": {"b": False}}), {}, [b]
        return "MatMul", {"T": t, "transpose_a": {"b": False}, "transpose_b": {"b": False}}, {1: b}, []
    raise ValueError(f"no TF 2.3 form written for {function}")


def fix_concat(config: dict[str, Any]) -> dict[str, Any]:
    """ConcatV2's axis is its last input and N counts the values: fill both in once the inputs are known."""
    for entry in config["config"]["layers"]:
        nd = entry.get("config", {}).get("node_def")
        if entry["class_name"] == "TensorFlowOpLayer" and nd and nd["op"] == "ConcatV2":
            values = len(entry["inbound_nodes"][0])
            consts = entry["config"]["constants"]
            axis = consts.pop("axis")
            consts[str(values)] = axis
            nd["attr"]["N"] = {"i": str(values)}
            nd["input"] = [f"in_{k}" for k in range(values + 1)]
    return config


def save_tf23_copy(keras: Any, model: Any, src: Path, dst: Path, x: np.ndarray, check: Callable[..., None]) -> None:
    """dst: src (a tf_keras .h5) with its config rewritten to TF 2.3's TensorFlowOpLayers, keras_version 2.3.0-tf."""
    config = fix_concat(rewrite_as_tf23(model, json.loads(model.to_json())))
    rebuilt = keras.models.model_from_json(json.dumps(config))
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    check(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.3.0-tf"
        root = f["model_weights"]
        root.attrs["keras_version"] = "2.3.0-tf"
        names = [n["name"] for n in config["config"]["layers"]]
        for group in list(root.keys()):
            if group not in names:
                del root[group]
        for name in names:
            if name not in root:
                root.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
