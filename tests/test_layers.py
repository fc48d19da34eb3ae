"""Convolutions, pools, padding/cropping, activation layers, Dot, Permute, the identities at inference,
Maximum/Minimum and TimeDistributed around 1D convolutions and pools, against Keras itself.

Every case below is a tiny layer built by each Keras generation (Keras 3 and tf_keras) in a subprocess
(once per test run, shared by pytest-xdist's workers: `keras_once`), given random weights, and called on a
seeded input; the engine's layer function must give Keras's output (float32 and float64, within 1e-5), the
mask Keras passes on where the case gives masks, and what its `dims` says about the last axis must hold.
KNOWN_BUGS lists the cases where the engine does not compute what Keras computes (strict xfails). The
samples `*_cnn_*`, `*_pool_*`, `*_act_*` (sample_models/layer_samples.py) check the same layers inside
whole models through test_engine, test_verify, test_show, test_gates and test_interop.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import fcntl
except ImportError:  # Windows: each worker then runs Keras in a folder of its own
    fcntl = None  # type: ignore[assignment]

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers import LAYERS, Context, LayerCall, Tensor
from lstm_inspect.engine.layers.core import IDENTITY
from lstm_inspect.model.activations import activation_fn
from lstm_inspect.model.architecture import LayerNode

from conftest import SAMPLES, run_cli

GENS = ("keras3", "tf_keras")
CL, CF = "channels_last", "channels_first"


def _cases() -> list[dict[str, Any]]:
    """(id, class, constructor arguments, input names, generations, mask) for every layer checked."""
    out: list[dict[str, Any]] = []

    def add(cid: str, cls: str, kwargs: dict[str, Any], x: str | list[str], gens: tuple[str, ...] = GENS,
            mask: str | None = None, masks: list[str | None] | None = None) -> None:
        """`mask`: "masking" (a Masking layer in front) or the name of a mask given as mask=; `masks`: the Keras
        mask each input arrives with (its name, or None), whose output mask is compared too."""
        out.append({"id": cid, "cls": cls, "kwargs": kwargs, "x": x if isinstance(x, list) else [x],
                    "gens": list(gens), "mask": mask, "masks": masks})

    # Conv1D: every padding, stride, dilation and data format; groups, no bias, the activation inside.
    # 6 filters: no channels_first output here has 6 steps (see the note on Keras 3's bias in layers/conv.py)
    for padding in ("valid", "same", "causal"):
        for s, d in ((1, 1), (2, 1), (1, 2), (3, 1), (1, 3)):
            for fmt in (CL, CF):
                add(f"Conv1D-{padding}-s{s}-d{d}-{fmt}", "Conv1D",
                    {"filters": 6, "kernel_size": 3, "strides": s, "dilation_rate": d, "padding": padding,
                     "data_format": fmt}, "x1" if fmt == CL else "x1f")
    add("Conv1D-groups2-relu-nobias", "Conv1D", {"filters": 6, "kernel_size": 2, "groups": 2, "activation": "relu",
                                                 "use_bias": False}, "x1")
    add("Conv1D-groups4-same-cf", "Conv1D", {"filters": 4, "kernel_size": 3, "groups": 4, "padding": "same",
                                             "data_format": CF}, "x1f")
    add("Conv1D-k1-tanh", "Conv1D", {"filters": 3, "kernel_size": 1, "activation": "tanh"}, "x1")
    for padding in ("valid", "same"):
        for s, d in (((1, 1), (1, 1)), ((2, 1), (1, 1)), ((2, 3), (1, 1)), ((1, 1), (2, 1)), ((1, 1), (1, 2))):
            for fmt in (CL, CF):
                add(f"Conv2D-{padding}-s{s[0]}{s[1]}-d{d[0]}{d[1]}-{fmt}", "Conv2D",
                    {"filters": 3, "kernel_size": [3, 2], "strides": list(s), "dilation_rate": list(d),
                     "padding": padding, "data_format": fmt}, "x2" if fmt == CL else "x2f")
    add("Conv2D-groups2-sigmoid", "Conv2D", {"filters": 4, "kernel_size": 2, "groups": 2, "activation": "sigmoid"},
        "x2")
    for padding in ("valid", "same", "causal"):
        for fmt in (CL, CF):
            add(f"SeparableConv1D-{padding}-dm2-{fmt}", "SeparableConv1D",
                {"filters": 3, "kernel_size": 3, "padding": padding, "depth_multiplier": 2, "data_format": fmt},
                "x1" if fmt == CL else "x1f", gens=("tf_keras",) if padding == "causal" else GENS)
    for padding in ("valid", "same"):
        for fmt in (CL, CF):
            add(f"DepthwiseConv1D-{padding}-dm2-{fmt}", "DepthwiseConv1D",
                {"kernel_size": 3, "padding": padding, "depth_multiplier": 2, "data_format": fmt},
                "x1" if fmt == CL else "x1f")
    add("SeparableConv1D-s2-relu", "SeparableConv1D", {"filters": 4, "kernel_size": 2, "strides": 2,
                                                       "activation": "relu"}, "x1")
    add("DepthwiseConv1D-d2-nobias", "DepthwiseConv1D", {"kernel_size": 2, "dilation_rate": 2, "use_bias": False},
        "x1")
    # Keras 3 only: depthwise and separable convolutions with strides and dilation both above 1
    add("DepthwiseConv1D-s2-d2-same", "DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "dilation_rate": 2,
                                                          "padding": "same"}, "x1", gens=("keras3",))
    add("SeparableConv1D-s2-d2-valid", "SeparableConv1D", {"filters": 2, "kernel_size": 2, "strides": 2,
                                                           "dilation_rate": 2}, "x1", gens=("keras3",))
    add("DepthwiseConv2D-same-dm2", "DepthwiseConv2D", {"kernel_size": [3, 2], "padding": "same",
                                                        "depth_multiplier": 2}, "x2")
    add("DepthwiseConv2D-cf", "DepthwiseConv2D", {"kernel_size": 2, "data_format": CF}, "x2f")
    add("SeparableConv2D-valid-s2", "SeparableConv2D", {"filters": 3, "kernel_size": [2, 3], "strides": [2, 1]},
        "x2")
    add("SeparableConv2D-same-cf", "SeparableConv2D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                                       "data_format": CF}, "x2f")
    # pooling: strides default to pool_size; "same" average pools divide by the real positions only
    for cls in ("MaxPooling1D", "AveragePooling1D"):
        for size, strides in ((2, None), (3, None), (3, 1), (2, 3), (4, 2)):
            for padding in ("valid", "same"):
                for fmt in (CL, CF):
                    add(f"{cls}-p{size}-s{strides}-{padding}-{fmt}", cls,
                        {"pool_size": size, "strides": strides, "padding": padding, "data_format": fmt},
                        "x1" if fmt == CL else "x1f")
    for cls in ("MaxPooling2D", "AveragePooling2D"):
        for size, strides in (((2, 2), None), ((3, 2), (2, 1)), ((3, 3), (1, 2))):
            for padding in ("valid", "same"):
                for fmt in (CL, CF):
                    add(f"{cls}-p{size[0]}{size[1]}-s{strides}-{padding}-{fmt}", cls,
                        {"pool_size": list(size), "strides": strides and list(strides), "padding": padding,
                         "data_format": fmt}, "x2" if fmt == CL else "x2f")
    for cls in ("GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling2D"):
        for keepdims in (False, True):
            for fmt in (CL, CF):
                x = ("x1" if fmt == CL else "x1f") if cls.endswith("1D") else ("x2" if fmt == CL else "x2f")
                add(f"{cls}-keepdims{keepdims}-{fmt}", cls, {"data_format": fmt, "keepdims": keepdims}, x)
    for cls in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):  # behind a Masking layer
        for keepdims in (False, True):
            add(f"{cls}-masked-keepdims{keepdims}", cls, {"keepdims": keepdims}, "xm", mask="masking")
    # padding, cropping, upsampling, permute
    add("ZeroPadding1D-1", "ZeroPadding1D", {"padding": 1}, "x1")
    add("ZeroPadding1D-2-3", "ZeroPadding1D", {"padding": [2, 3]}, "x1")
    add("ZeroPadding1D-cf", "ZeroPadding1D", {"padding": [1, 2], "data_format": CF}, "x1f", gens=("keras3",))
    add("ZeroPadding2D-int", "ZeroPadding2D", {"padding": 1}, "x2")
    add("ZeroPadding2D-pairs-cf", "ZeroPadding2D", {"padding": [[1, 0], [2, 3]], "data_format": CF}, "x2f")
    add("Cropping1D-default", "Cropping1D", {}, "x1")
    add("Cropping1D-3-0", "Cropping1D", {"cropping": [3, 0]}, "x1")
    add("Cropping2D-pairs", "Cropping2D", {"cropping": [[1, 2], [0, 1]]}, "x2")
    add("Cropping2D-int-cf", "Cropping2D", {"cropping": 1, "data_format": CF}, "x2f")
    add("UpSampling1D-3", "UpSampling1D", {"size": 3}, "x1")
    add("Permute-21", "Permute", {"dims": [2, 1]}, "x1")
    add("Permute-312", "Permute", {"dims": [3, 1, 2]}, "x2")
    # activation layers
    add("ReLU-default", "ReLU", {}, "xa")
    add("ReLU-max6", "ReLU", {"max_value": 6.0}, "xa3")
    add("ReLU-max1.5", "ReLU", {"max_value": 1.5}, "xa")
    add("ReLU-slope", "ReLU", {"negative_slope": 0.1}, "xa")
    add("ReLU-threshold", "ReLU", {"threshold": 0.5}, "xa")
    add("ReLU-all", "ReLU", {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5}, "xa")
    add("ReLU-slope-threshold", "ReLU", {"negative_slope": 0.3, "threshold": 1.0}, "xa")
    add("LeakyReLU-default", "LeakyReLU", {}, "xa")
    add("LeakyReLU-0.05", "LeakyReLU", {"negative_slope": 0.05}, "xa", gens=("keras3",))
    add("LeakyReLU-0.05", "LeakyReLU", {"alpha": 0.05}, "xa", gens=("tf_keras",))
    add("PReLU-full", "PReLU", {}, "xa")
    add("PReLU-shared1", "PReLU", {"shared_axes": [1]}, "xa")
    add("PReLU-shared12", "PReLU", {"shared_axes": [1, 2]}, "xa")
    add("ELU-default", "ELU", {}, "xa")
    add("ELU-0.4", "ELU", {"alpha": 0.4}, "xa")
    add("Softmax-default", "Softmax", {}, "xa")
    add("Softmax-axis1", "Softmax", {"axis": 1}, "xa")
    add("Softmax-axes12", "Softmax", {"axis": [1, 2]}, "xa")
    add("Softmax-explicit-mask", "Softmax", {}, "xa", mask="sm_mask")  # one row masked whole
    add("Softmax-broadcast-mask", "Softmax", {"axis": 1}, "xa", mask="sm_mask_b")
    add("Softmax-robust-mask", "Softmax", {"robust_masking": True}, "xa", mask="sm_mask_f", gens=("tf_keras",))
    add("ThresholdedReLU-default", "ThresholdedReLU", {}, "xa", gens=("tf_keras",))
    add("ThresholdedReLU-0.5", "ThresholdedReLU", {"theta": 0.5}, "xa", gens=("tf_keras",))
    # Dot
    add("Dot-axes2", "Dot", {"axes": 2}, ["xd", "yd"])
    add("Dot-axes-2-1", "Dot", {"axes": [2, 1]}, ["xd", "yd_t"])
    add("Dot-axes1-normalize", "Dot", {"axes": 1, "normalize": True}, ["xd", "yd_5"])
    add("Dot-vectors", "Dot", {"axes": -1}, ["v1", "v2"])
    add("Dot-vectors-normalize", "Dot", {"axes": 1, "normalize": True}, ["v1", "v2"])
    add("Dot-vector-seq", "Dot", {"axes": [1, 2]}, ["v1", "yd"])
    add("Dot-seq-vector", "Dot", {"axes": [2, 1]}, ["xd", "v2"])
    add("Dot-normalize-zero-row", "Dot", {"axes": 2, "normalize": True}, ["xd0", "yd"])
    # the layers that are the identity at inference (Keras called outside fit: training is False)
    add("AlphaDropout-0.3", "AlphaDropout", {"rate": 0.3}, "xa")
    add("ActivityRegularization-l1-l2", "ActivityRegularization", {"l1": 0.01, "l2": 0.02}, "xa")
    add("SpatialDropout2D-cl", "SpatialDropout2D", {"rate": 0.5}, "x2")
    add("SpatialDropout2D-cf", "SpatialDropout2D", {"rate": 0.5, "data_format": CF}, "x2f")
    add("SpatialDropout3D-cl", "SpatialDropout3D", {"rate": 0.5}, "x3")
    add("SpatialDropout3D-cf", "SpatialDropout3D", {"rate": 0.5, "data_format": CF}, "x3f")
    # Maximum and Minimum: two and three inputs, and a size-1 axis broadcast
    for cls in ("Maximum", "Minimum"):
        add(f"{cls}-two", cls, {}, ["xa", "xd"])
        add(f"{cls}-three", cls, {}, ["xa", "xd", "xd0"])
        add(f"{cls}-broadcast-steps", cls, {}, ["xd", "xb1"])
        # Keras masks arriving with the inputs: both masked (two different masks), the first one only
        add(f"{cls}-masked-both", cls, {}, ["xa", "xd"], masks=["mk1", "mk2"])
        add(f"{cls}-masked-first", cls, {}, ["xa", "xd"], masks=["mk1", None])
    # the other elementwise merges with masks: Keras 3.4+ counts Multiply's masked entries as 1 and ORs the masks
    # when every input has one (else none); tf_keras ANDs the masks present and ignores them in the values
    for cls in ("Multiply", "Add", "Subtract", "Average"):
        add(f"{cls}-masked-both", cls, {}, ["xa", "xd"], masks=["mk1", "mk2"])
        add(f"{cls}-masked-first", cls, {}, ["xa", "xd"], masks=["mk1", None])
    add("Multiply-masked-three", "Multiply", {}, ["xa", "xd", "xd0"], masks=["mk1", "mk2", "mk1"])
    # Keras expands a lower-rank input at axis 1 (after the batch axis), where NumPy broadcasting would align the
    # last axes and, with batch == steps, merge a row's vector into another sample
    add("Maximum-vector-and-sequence", "Maximum", {}, ["xq", "v1"])
    add("Minimum-vector-and-sequence", "Minimum", {}, ["v1", "xq"])
    add("Add-vector-and-sequence", "Add", {}, ["xq", "v1"])
    # tf_keras's Softmax of its own float64 with a mask: Keras computes all of it in float64
    add("Softmax-float64-mask", "Softmax", {"dtype": "float64"}, "xa", mask="sm_mask")
    # TimeDistributed around the 1D convolutions and pools (issue 15: "also inside TimeDistributed")
    for cid, cls, kwargs, x, gens in (
            ("Conv1D-same-s2", "Conv1D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, "xt1",
             GENS),
            ("Conv1D-causal-d2-relu", "Conv1D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2,
                                                 "padding": "causal", "activation": "relu"}, "xt1", GENS),
            ("Conv1D-valid-cf", "Conv1D", {"filters": 3, "kernel_size": 3, "data_format": CF}, "xt1f", GENS),
            ("SeparableConv1D-same-dm2", "SeparableConv1D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                                             "depth_multiplier": 2}, "xt1", GENS),
            ("SeparableConv1D-causal", "SeparableConv1D", {"filters": 2, "kernel_size": 3, "padding": "causal"},
             "xt1", ("tf_keras",)),  # Keras 3's SeparableConv1D has no causal padding
            ("DepthwiseConv1D-valid-dm2", "DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2}, "xt1", GENS),
            ("DepthwiseConv1D-same-cf", "DepthwiseConv1D", {"kernel_size": 2, "padding": "same", "data_format": CF},
             "xt1f", GENS),
            ("MaxPooling1D-p2", "MaxPooling1D", {"pool_size": 2}, "xt1", GENS),
            ("MaxPooling1D-same-s2", "MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, "xt1", GENS),
            ("AveragePooling1D-same-s2", "AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, "xt1",
             GENS),
            ("AveragePooling1D-valid-cf", "AveragePooling1D", {"pool_size": 2, "data_format": CF}, "xt1f", GENS)):
        add(f"TimeDistributed-{cid}", "TimeDistributed", {"layer": {"class_name": cls, "config": kwargs}}, x, gens)
    return out


CASES = _cases()

# The Keras side: inputs, layers, outputs; and what each generation does with a mask and with LeakyReLU.
KERAS_SCRIPT = r'''
import json, os, sys, warnings
warnings.simplefilter("ignore")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
gen, folder = sys.argv[1:3]
if gen == "keras3":
    import keras
    from keras import layers
else:
    import tf_keras as keras
    from tf_keras import layers
cases = json.loads(open(os.path.join(folder, "cases.json")).read())
rng = np.random.default_rng(7)
def seq(*shape):
    return rng.normal(size=shape).astype("float32")
x = {"x1": seq(3, 9, 4), "x2": seq(2, 7, 6, 4), "xa": seq(3, 5, 4) * 3, "xd": seq(3, 5, 4), "yd": seq(3, 6, 4),
     "yd_t": seq(3, 4, 6), "yd_5": seq(3, 5, 2), "v1": seq(3, 4), "v2": seq(3, 4)}
x["x1f"] = np.ascontiguousarray(np.swapaxes(x["x1"], 1, 2))
x["x2f"] = np.ascontiguousarray(np.moveaxis(x["x2"], 3, 1))
x["xa3"] = x["xa"] * 3
x["xd0"] = x["xd"].copy()
x["xd0"][0] = 0.0
xm = seq(4, 6, 3)
for b in range(4):
    xm[b, 6 - b:] = 0.0
xm[1, 1] = 0.0
xm[3, :3, 1] = -1.0 - np.abs(xm[3, :3, 1])  # every real step negative: the max takes a masked step's 0
x["xm"] = xm
x["sm_mask"] = rng.random((3, 5, 4)) > 0.3
x["sm_mask"][0, 0] = False
x["sm_mask_b"] = x["sm_mask"][:1, :, :1]
x["sm_mask_f"] = x["sm_mask"].astype("float32")
more = np.random.default_rng(8)  # inputs added later: drawn apart, so the ones above (and the weights) stay
x.update({k: more.normal(size=shape).astype("float32")
          for k, shape in (("x3", (2, 3, 4, 5, 2)), ("xb1", (3, 1, 4)), ("xq", (3, 3, 4)), ("xt1", (2, 3, 9, 4)))})
x["x3f"] = np.ascontiguousarray(np.moveaxis(x["x3"], 4, 1))
x["xt1f"] = np.ascontiguousarray(np.swapaxes(x["xt1"], 2, 3))
x["mk1"], x["mk2"] = more.random((3, 5)) > 0.4, more.random((3, 5)) > 0.4
arrays = {f"in:{k}": v for k, v in x.items()}
configs = {}
for case in cases:
    if gen not in case["gens"]:
        continue
    if case["cls"] == "TimeDistributed":
        inner = case["kwargs"]["layer"]
        layer = layers.TimeDistributed(getattr(layers, inner["class_name"])(**inner["config"]))
    else:
        layer = getattr(layers, case["cls"])(**case["kwargs"])
    xs = [x[k] for k in case["x"]]
    if case["mask"] == "masking":
        inp = keras.Input(xs[0].shape[1:])
        model = keras.Model(inp, layer(layers.Masking(0.0)(inp)))
    else:
        inps = [keras.Input(a.shape[1:]) for a in xs]
        layer(inps if len(inps) > 1 else inps[0])
    ws = [rng.uniform(-1.2 if case["cls"] == "PReLU" else -0.6, 0.6, w.shape).astype("float32")
          for w in layer.get_weights()]
    layer.set_weights(ws)
    if case["masks"]:
        import tensorflow as tf
        tensors = [tf.constant(a) for a in xs]
        for t, name in zip(tensors, case["masks"]):
            if name is not None:
                t._keras_mask = tf.constant(x[name])
        y = layer(tensors if len(tensors) > 1 else tensors[0])
        if getattr(y, "_keras_mask", None) is not None:
            arrays[f"{case['id']}:mask"] = np.asarray(y._keras_mask)
    elif case["mask"] == "masking":
        y = model.predict(xs[0], verbose=0)
    elif case["mask"]:
        y = layer(xs[0], mask=x[case["mask"]])
    else:
        y = layer(xs if len(xs) > 1 else xs[0])
    arrays[f"{case['id']}:y"] = np.asarray(y)
    for j, w in enumerate(ws):
        arrays[f"{case['id']}:w{j}"] = w
    configs[case["id"]] = json.loads(json.dumps(layer.get_config(), default=lambda o: o.tolist()
                                                if hasattr(o, "tolist") else list(o)))
# which layers pass a Keras mask on (Masking in front)
passes = {}
for cls, kwargs in (("Conv1D", {"filters": 2, "kernel_size": 2}), ("SeparableConv1D", {"filters": 2, "kernel_size": 2}),
                    ("DepthwiseConv1D", {"kernel_size": 2}), ("ZeroPadding1D", {}), ("Cropping1D", {}),
                    ("UpSampling1D", {}), ("MaxPooling1D", {"pool_size": 2}), ("AveragePooling1D", {"pool_size": 2}),
                    ("GlobalMaxPooling1D", {}), ("GlobalAveragePooling1D", {}), ("ReLU", {}), ("LeakyReLU", {}),
                    ("PReLU", {}), ("ELU", {}), ("ThresholdedReLU", {}), ("Permute", {"dims": (2, 1)})):
    if not hasattr(layers, cls):
        continue
    y = getattr(layers, cls)(**kwargs)(layers.Masking(0.0)(keras.Input((5, 3))))
    passes[cls] = getattr(y, "_keras_mask", None) is not None
m = layers.Masking(0.0)(keras.Input((5, 3)))
passes["Dot"] = getattr(layers.Dot(axes=2)([m, m]), "_keras_mask", None) is not None
v = np.array([-2.0, -0.5, 1.0], dtype="float32")
leaky = layers.LeakyReLU()
facts = {"passes_mask": passes, "leaky_relu_layer_config": json.loads(json.dumps(leaky.get_config(),
                                                                                   default=lambda o: o.tolist())),
         "leaky_relu_layer": np.asarray(leaky(v)).tolist(),
         "leaky_relu_activation": np.asarray(keras.activations.get("leaky_relu")(v)).tolist(),
         "has_thresholded_relu": hasattr(layers, "ThresholdedReLU")}
arrays["meta"] = np.array(json.dumps({"configs": configs, "facts": facts}))
np.savez(os.path.join(folder, f"{gen}.part.npz"), **arrays)
os.replace(os.path.join(folder, f"{gen}.part.npz"), os.path.join(folder, f"{gen}.npz"))
'''


def keras_once(tmp_path_factory: pytest.TempPathFactory, name: str, script: str, files: dict[str, bytes],
               gens: tuple[str, ...] = GENS) -> dict[str, Path]:
    """Run `python script GEN FOLDER` for each generation at once (FOLDER holds `files`), once per pytest run: the
    workers of pytest-xdist share the result through their common temporary folder, one waiting while another
    computes. Returns {generation: FOLDER/GEN.npz}, what the script wrote."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        root = root.parent  # the run's folder, above each worker's own
    digest = hashlib.sha256(script.encode() + b"".join(k.encode() + v for k, v in sorted(files.items())))
    folder = root / f"keras-{name}-{digest.hexdigest()[:16]}"
    outs = {gen: folder / f"{gen}.npz" for gen in gens}
    with open(f"{folder}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(p.exists() for p in outs.values()):
            folder.mkdir(exist_ok=True)
            for file, data in files.items():
                (folder / file).write_bytes(data)
            (folder / "make.py").write_text(script)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            procs = {gen: subprocess.Popen([sys.executable, str(folder / "make.py"), gen, str(folder)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                     for gen in gens}
            try:
                for gen, proc in procs.items():
                    _, err = proc.communicate(timeout=600)
                    assert proc.returncode == 0, f"{gen}: {err.decode()[-2000:]}"
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
    return outs


@pytest.fixture(scope="module")
def keras_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both generations at once, each in its own process: arrays, configs and facts by generation."""
    outs = keras_once(tmp_path_factory, "layers", KERAS_SCRIPT, {"cases.json": json.dumps(CASES).encode()})
    out = {}
    for gen, path in outs.items():
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        out[gen] = {"arrays": arrays, **meta}
    return out


def _call(cls: str, config: dict[str, Any], inputs: list[Tensor], weights: list[np.ndarray], dtype: type,
          keras_major: int, kwargs: dict[str, Any] | None = None) -> list[Tensor]:
    node = LayerNode(name="probe", path="probe", class_name=cls, config=config, entry={})
    return LAYERS[cls].run(LayerCall(node, inputs, weights, Context(dtype, None, keras_major), kwargs or {}))


# (generation, case) where the engine does not compute what Keras computes, as strict xfails with the reason.
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # none left: the three these cases found are fixed


def known_bug(gen: str, case: dict[str, Any]) -> list[Any]:
    """The xfail mark of a known engine bug (strict: the test fails once the bug is fixed, to drop the entry)."""
    bug = KNOWN_BUGS.get((gen, case["id"]))
    return [pytest.mark.xfail(reason=bug, strict=True, raises=AssertionError)] if bug else []


PARAMS = [pytest.param(gen, case, id=f"{gen}-{case['id']}", marks=known_bug(gen, case))
          for case in CASES for gen in GENS if gen in case["gens"]]


@pytest.mark.parametrize("gen,case", PARAMS)
def test_layer_matches_keras(keras_outputs: dict[str, Any], gen: str, case: dict[str, Any]) -> None:
    ref = keras_outputs[gen]
    arrays, config = ref["arrays"], ref["configs"][case["id"]]
    xs = [arrays[f"in:{k}"] for k in case["x"]]
    weights = [arrays[k] for k in sorted(a for a in arrays if a.startswith(f"{case['id']}:w"))]
    want = arrays[f"{case['id']}:y"]
    kind = LAYERS[case["cls"]]
    assert kind.has_weights(LayerNode(name="p", path="p", class_name=case["cls"], config=config, entry={})) \
        == bool(weights)
    for dtype in (np.float32, np.float64):
        # the identities hand on what they get (in a model that is already the run's dtype), the others cast
        inputs = [Tensor(x.astype(dtype) if case["cls"] in IDENTITY else x) for x in xs]
        kwargs = {}
        if case["mask"] == "masking":
            inputs[0].mask = np.any(xs[0] != 0, axis=-1)
        elif case["mask"]:
            kwargs["mask"] = Tensor(arrays[f"in:{case['mask']}"])
        for t, name in zip(inputs, case["masks"] or []):
            t.mask = None if name is None else arrays[f"in:{name}"]
        (got,) = _call(case["cls"], config, inputs, weights, dtype, 3 if gen == "keras3" else 2, kwargs)
        y = got.value
        assert y.shape == want.shape and y.dtype == dtype
        assert np.array_equal(np.isnan(y), np.isnan(want))
        err = np.abs(np.nan_to_num(y) - np.nan_to_num(want)) / np.maximum(1.0, np.abs(np.nan_to_num(want)))
        assert float(err.max(initial=0.0)) <= 1e-5, f"{case['id']} in {dtype.__name__}"
        if case["masks"]:  # the mask passed on, as Keras passes it on
            want_mask = arrays.get(f"{case['id']}:mask")
            assert (got.mask is None) == (want_mask is None), f"{case['id']}: mask {got.mask} for {want_mask}"
            assert want_mask is None or np.array_equal(got.mask, want_mask)
    # what show's shape checks assume about the last axis
    dims = kind.dims(LayerNode(name="p", path="p", class_name=case["cls"], config=config, entry={}),
                     [x.shape[-1] for x in xs]) if kind.dims else [None]
    assert dims[0] is None or dims[0] == want.shape[-1]


def test_the_cases_reach_every_new_kind() -> None:
    kinds = {c["cls"] for c in CASES}
    assert kinds >= {"Conv1D", "Conv2D", "SeparableConv1D", "DepthwiseConv1D", "SeparableConv2D", "DepthwiseConv2D",
                     "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalMaxPooling1D",
                     "GlobalAveragePooling1D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
                     "UpSampling1D", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Dot",
                     "Permute", "AlphaDropout", "ActivityRegularization", "SpatialDropout2D", "SpatialDropout3D",
                     "Maximum", "Minimum", "TimeDistributed"}
    wrapped = {c["kwargs"]["layer"]["class_name"] for c in CASES if c["cls"] == "TimeDistributed"}
    assert wrapped >= {"Conv1D", "SeparableConv1D", "DepthwiseConv1D", "MaxPooling1D", "AveragePooling1D"}
    assert len(PARAMS) > 400


# ---------------------------------------------------------------- masks

def test_global_pools_and_masks(keras_outputs: dict[str, Any]) -> None:
    """GlobalAveragePooling1D averages the unmasked steps only; GlobalMaxPooling1D ignores the mask (its
    maximum takes the masked steps too); neither passes a mask on, in either generation."""
    for gen in GENS:
        arrays = keras_outputs[gen]["arrays"]
        x = arrays["in:xm"]
        mask = np.any(x != 0, axis=-1)
        mean = arrays["GlobalAveragePooling1D-masked-keepdimsFalse:y"]
        top = arrays["GlobalMaxPooling1D-masked-keepdimsFalse:y"]
        want_mean = np.stack([x[b][mask[b]].mean(axis=0) for b in range(len(x))])
        np.testing.assert_allclose(mean, want_mean, atol=1e-6)
        np.testing.assert_allclose(top, x.max(axis=1), atol=0)
        assert x[3][mask[3]][:, 1].max() < -1.0 and top[3, 1] == 0.0  # a masked step's 0 wins the max
        assert not np.allclose(mean, x.mean(axis=1))
        for cls, want in (("GlobalAveragePooling1D", want_mean), ("GlobalMaxPooling1D", x.max(axis=1))):
            (got,) = _call(cls, {}, [Tensor(x, mask)], [], np.float64, 3 if gen == "keras3" else 2)
            np.testing.assert_allclose(got.value, want, atol=1e-6)
            assert got.mask is None
        assert keras_outputs[gen]["facts"]["passes_mask"]["GlobalAveragePooling1D"] is False


def test_mask_passes_through_exactly_the_layers_keras_passes_it_through(keras_outputs: dict[str, Any]) -> None:
    """Activation layers keep the Keras mask; convolutions, pools, padding, Permute and Dot drop it."""
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    configs = {"Conv1D": {"filters": 2, "kernel_size": [2]}, "SeparableConv1D": {"filters": 2, "kernel_size": [2]},
               "DepthwiseConv1D": {"kernel_size": [2]}, "Permute": {"dims": [2, 1]}, "ZeroPadding1D": {"padding": 1},
               "Cropping1D": {"cropping": [1, 1]}, "UpSampling1D": {"size": 2}, "MaxPooling1D": {"pool_size": 2},
               "AveragePooling1D": {"pool_size": 2}}
    rng = np.random.default_rng(1)
    weights = {"Conv1D": [rng.normal(size=(2, 3, 2)), rng.normal(size=2)],
               "SeparableConv1D": [rng.normal(size=(2, 3, 1)), rng.normal(size=(1, 3, 2)), rng.normal(size=2)],
               "DepthwiseConv1D": [rng.normal(size=(2, 3, 1)), rng.normal(size=3)], "PReLU": [rng.normal(size=(5, 3))]}
    for gen in GENS:
        passes = keras_outputs[gen]["facts"]["passes_mask"]
        assert passes["ReLU"] and passes["PReLU"] and not passes["Conv1D"] and not passes["Dot"]
        for cls, keeps in passes.items():
            inputs = [Tensor(x, mask)] + ([Tensor(x, mask)] if cls == "Dot" else [])
            config = {"axes": 2} if cls == "Dot" else configs.get(cls, {})
            (got,) = _call(cls, config, inputs, weights.get(cls, []), np.float32, 3 if gen == "keras3" else 2)
            assert (got.mask is not None) is keeps, f"{gen} {cls}"
            if keeps:
                assert got.mask is mask


# ---------------------------------------------------------------- LeakyReLU and ThresholdedReLU per generation

def test_leaky_relu_default_slopes(keras_outputs: dict[str, Any]) -> None:
    """Both layers default to 0.3 (Keras 3 writes negative_slope, tf_keras alpha); the leaky_relu activation
    defaults to 0.2 in both."""
    v = np.array([-2.0, -0.5, 1.0], dtype=np.float32)
    k3, tfk = keras_outputs["keras3"]["facts"], keras_outputs["tf_keras"]["facts"]
    assert k3["leaky_relu_layer_config"]["negative_slope"] == pytest.approx(0.3)
    assert "alpha" not in k3["leaky_relu_layer_config"]
    assert tfk["leaky_relu_layer_config"]["alpha"] == pytest.approx(0.3)
    assert "negative_slope" not in tfk["leaky_relu_layer_config"]
    for facts, major in ((k3, 3), (tfk, 2)):
        np.testing.assert_allclose(facts["leaky_relu_layer"], [-0.6, -0.15, 1.0], rtol=1e-6)
        np.testing.assert_allclose(facts["leaky_relu_activation"], [-0.4, -0.1, 1.0], rtol=1e-6)
        np.testing.assert_allclose(activation_fn("leaky_relu")(v), facts["leaky_relu_activation"], rtol=1e-6)
        for config in ({}, facts["leaky_relu_layer_config"]):  # no key at all: the layer's own default
            (got,) = _call("LeakyReLU", config, [Tensor(v)], [], np.float32, major)
            np.testing.assert_allclose(got.value, facts["leaky_relu_layer"], rtol=1e-6)
    for config in ({"alpha": 0.1}, {"negative_slope": 0.1}):
        (got,) = _call("LeakyReLU", config, [Tensor(v)], [], np.float32, 3)
        np.testing.assert_allclose(got.value, [-0.2, -0.05, 1.0], rtol=1e-6)
    assert tfk["has_thresholded_relu"] and not k3["has_thresholded_relu"]


def test_softmax_mask_differs_by_generation(keras_outputs: dict[str, Any]) -> None:
    """A row masked whole: Keras 3 gives zeros there, tf_keras (adding -1e9) a softmax of what is left."""
    k3 = keras_outputs["keras3"]["arrays"]["Softmax-explicit-mask:y"]
    tfk = keras_outputs["tf_keras"]["arrays"]["Softmax-explicit-mask:y"]
    np.testing.assert_array_equal(k3[0, 0], 0.0)
    assert tfk[0, 0].sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(k3[1:], tfk[1:], atol=1e-6)


# ---------------------------------------------------------------- refusals: one line, exit 2

def _bad(cls: str, config: dict[str, Any], x: np.ndarray, weights: list[np.ndarray] | None = None) -> str:
    with pytest.raises(InspectError) as info:
        _call(cls, config, [Tensor(x)], weights or [], np.float32, 3)
    message = str(info.value)
    assert "\n" not in message and cls in message
    return message


def test_bad_configs_and_inputs_fail_in_one_line() -> None:
    x = np.ones((2, 6, 4), np.float32)
    k = np.ones((3, 4, 2), np.float32)
    assert "padding" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "padding": "full"}, x, [k])
    assert "kernel_size" in _bad("Conv1D", {"filters": 2, "kernel_size": "3"}, x, [k])
    assert "strides" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, x, [k])
    assert "weight 0" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "use_bias": False},
                              np.ones((2, 6, 5), np.float32), [k])
    assert "window" in _bad("Conv1D", {"filters": 2, "kernel_size": 9, "use_bias": False}, x,
                            [np.ones((9, 4, 2), np.float32)])
    assert "groups" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "groups": 3}, x, [k])
    assert "causal" in _bad("Conv2D", {"filters": 2, "kernel_size": 1, "padding": "causal"},
                            np.ones((1, 3, 3, 4), np.float32), [np.ones((1, 1, 4, 2), np.float32)])
    assert "rank" in _bad("MaxPooling2D", {"pool_size": 2}, x)
    assert "Keras 1" in _bad("MaxPooling1D", {"pool_length": 3, "stride": None, "border_mode": "valid"}, x)
    assert "cropping" in _bad("Cropping1D", {"cropping": [3, 3]}, x)
    assert "dims" in _bad("Permute", {"dims": [1, 1]}, x)
    with pytest.raises(InspectError, match="two inputs"):
        _call("Dot", {"axes": 2}, [Tensor(x)], [], np.float32, 3)
    with pytest.raises(InspectError, match="do not pair"):
        _call("Dot", {"axes": 1}, [Tensor(x), Tensor(np.ones((2, 5, 4), np.float32))], [], np.float32, 3)
    with pytest.raises(InspectError, match="broadcast"):
        _call("Softmax", {}, [Tensor(x)], [], np.float32, 3, {"mask": Tensor(np.ones((2, 6), bool))})
    with pytest.raises(InspectError, match="shared_axes"):
        _call("PReLU", {"shared_axes": [3]}, [Tensor(x)], [np.ones((6, 4), np.float32)], np.float32, 3)


def test_a_layer_outside_the_list_is_named_and_lstms_still_run_alone(tmp_path: Path) -> None:
    """k3_cnn_lstm with its Conv1D renamed to a class the engine does not run (Conv1DTranspose)."""
    source = SAMPLES / "k3_cnn_lstm.keras"
    copy = tmp_path / "renamed.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(copy, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"class_name": "Conv1D"', b'"class_name": "Conv1DTranspose"')
                assert b"Conv1DTranspose" in data
            zout.writestr(item, data)
    np.save(tmp_path / "x.npy", np.zeros((2, 10, 3), np.float32))
    r = run_cli("forward", str(copy), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Conv1DTranspose" in lines[0] and "--layer" in lines[0]
    np.save(tmp_path / "h.npy", np.ones((2, 5, 4), np.float32))  # what the LSTM is fed: 4 filters, pooled by 2
    (lstm,) = lstm_inspect.load(copy).layers
    r = run_cli("forward", str(copy), "--layer", lstm.name, "-i", str(tmp_path / "h.npy"), "-o",
                str(tmp_path / "h.out.npy"))
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "h.out.npy").shape == (2, 5)
    # verify's Keras rebuild allows exactly the registry: the same class is refused before Keras is handed anything
    r = run_cli("verify", str(copy), "-i", str(tmp_path / "x.npy"))
    assert r.returncode == 2 and "Conv1DTranspose" in r.stderr and "match" not in r.stdout, r.stdout + r.stderr
