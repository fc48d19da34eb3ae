"""The layer cases: one table that tests/test_layers.py (the engine against Keras) and tests/test_export_layers.py
(the ONNX and PyTorch exports against Keras) both parametrize over.

Each case is one layer call: a Keras layer class and its config, the names of its inputs, and the masks that come
with them. An input's name is a symbol: each test module draws its own arrays for these names (test_layers.py's
Keras script, test_export_layers.py's `_inputs`). `engine` and `export` say in which Keras generations each of the
two test modules runs the case (an empty tuple: that module does not run it). Two cases may share an id when each
module runs only one of them (TimeDistributed: the export runs it with the steps mask passed on, the engine
without; a few others where the two modules long had different settings under one id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GENS = ("keras3", "tf_keras")
CL, CF = "channels_last", "channels_first"
K3, TFK = ("keras3",), ("tf_keras",)


@dataclass(frozen=True)
class LayerCase:
    """`mask`: the name of an input given as mask=; `implicit`: the Keras mask arriving with the first input
    ("masking": a Masking(0.0) layer in front, "masking_f": the same over a channels_first input, "steps": the
    first n - b steps of row b, or an input's name); `masks`: the Keras mask each input arrives with (its name or
    None, the engine's cases only), whose output mask is compared too."""

    id: str
    cls: str
    config: dict[str, Any]
    x: tuple[str, ...]
    engine: tuple[str, ...] = GENS
    export: tuple[str, ...] = GENS
    mask: str | None = None
    implicit: str | None = None
    masks: tuple[str | None, ...] | None = None


Add = Callable[..., None]


def _x1(fmt: str) -> str:
    return "x1" if fmt == CL else "x1f"


def _x2(fmt: str) -> str:
    return "x2" if fmt == CL else "x2f"


def _table() -> list[LayerCase]:
    out: list[LayerCase] = []

    def add(cid: str, cls: str, config: dict[str, Any], x: str | list[str], engine: tuple[str, ...] = GENS,
            export: tuple[str, ...] = GENS, **masks: Any) -> None:
        xs = tuple(x) if isinstance(x, list) else (x,)
        out.append(LayerCase(cid, cls, config, xs, engine, export, **masks))

    for family in (_convolutions, _pools, _reshaping, _activations, _dot_and_identities, _merges, _time_distributed):
        family(add)
    return out


def _convolutions(add: Add) -> None:
    # Conv1D: every padding, stride, dilation and data format; groups, no bias, the activation inside.
    # 6 filters: no channels_first output here has 6 steps (see the note on Keras 3's bias in engine/layers/conv.py)
    for padding in ("valid", "same", "causal"):
        for s, d in ((1, 1), (2, 1), (1, 2), (3, 1), (1, 3)):
            for fmt in (CL, CF):
                add(f"Conv1D-{padding}-s{s}-d{d}-{fmt}", "Conv1D",
                    {"filters": 6, "kernel_size": 3, "strides": s, "dilation_rate": d, "padding": padding,
                     "data_format": fmt}, _x1(fmt))
    add("Conv1D-same-k4-s1", "Conv1D", {"filters": 2, "kernel_size": 4, "padding": "same"}, "x1",
        engine=())  # (1, 2) pads
    add("Conv1D-groups2-relu-nobias", "Conv1D", {"filters": 6, "kernel_size": 2, "groups": 2, "activation": "relu",
                                                 "use_bias": False}, "x1")
    add("Conv1D-groups4-same-cf", "Conv1D", {"filters": 4, "kernel_size": 3, "groups": 4, "padding": "same",
                                             "data_format": CF}, "x1f")
    add("Conv1D-k1-tanh", "Conv1D", {"filters": 3, "kernel_size": 1, "activation": "tanh"}, "x1", export=())
    add("Conv1D-softmax-cf", "Conv1D", {"filters": 5, "kernel_size": 2, "activation": "softmax", "data_format": CF},
        "x1f", engine=())  # the activation on the output's own last axis
    add("Conv1D-hard_sigmoid", "Conv1D", {"filters": 3, "kernel_size": 2, "activation": "hard_sigmoid"}, "x1",
        engine=())
    add("Conv1D-leading-axes", "Conv1D", {"filters": 3, "kernel_size": 2, "strides": 2, "padding": "same"}, "x1_4d",
        engine=(), export=TFK)  # tf_keras runs extra leading axes as batch
    for padding in ("valid", "same"):
        for s, d in (((1, 1), (1, 1)), ((2, 1), (1, 1)), ((2, 3), (1, 1)), ((1, 1), (2, 1)), ((1, 1), (1, 2))):
            for fmt in (CL, CF):
                add(f"Conv2D-{padding}-s{s[0]}{s[1]}-d{d[0]}{d[1]}-{fmt}", "Conv2D",
                    {"filters": 3, "kernel_size": [3, 2], "strides": list(s), "dilation_rate": list(d),
                     "padding": padding, "data_format": fmt}, _x2(fmt))
    add("Conv2D-groups2-sigmoid", "Conv2D", {"filters": 4, "kernel_size": 2, "groups": 2, "activation": "sigmoid"},
        "x2")
    add("Conv2D-same-s22-odd", "Conv2D", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"}, "x2_odd",
        engine=())
    # Keras 3's SeparableConv1D has no causal padding: the export's reference there is the engine (NO_KERAS)
    for padding in ("valid", "same", "causal"):
        for fmt in (CL, CF):
            add(f"SeparableConv1D-{padding}-dm2-{fmt}", "SeparableConv1D",
                {"filters": 3, "kernel_size": 3, "padding": padding, "depth_multiplier": 2, "data_format": fmt},
                _x1(fmt), engine=TFK if padding == "causal" else GENS)
    for padding in ("valid", "same", "causal"):  # causal: no Keras has it, the engine is the export's reference
        for fmt in (CL, CF):
            add(f"DepthwiseConv1D-{padding}-dm2-{fmt}", "DepthwiseConv1D",
                {"kernel_size": 3, "padding": padding, "depth_multiplier": 2, "data_format": fmt},
                _x1(fmt), engine=() if padding == "causal" else GENS)
    add("SeparableConv1D-s2-relu", "SeparableConv1D", {"filters": 4, "kernel_size": 2, "strides": 2,
                                                       "activation": "relu"}, "x1")
    add("SeparableConv1D-nobias", "SeparableConv1D", {"filters": 4, "kernel_size": 2, "use_bias": False}, "x1",
        engine=())
    add("DepthwiseConv1D-d2-nobias", "DepthwiseConv1D", {"kernel_size": 2, "dilation_rate": 2, "use_bias": False},
        "x1")
    # Keras 3 only: depthwise and separable convolutions with strides and dilation both above 1
    add("DepthwiseConv1D-s2-d2-same", "DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "dilation_rate": 2,
                                                          "padding": "same"}, "x1", engine=K3, export=K3)
    add("DepthwiseConv1D-dm3-s2-same-cf", "DepthwiseConv1D", {"kernel_size": 2, "strides": 2, "depth_multiplier": 3,
                                                              "padding": "same", "data_format": CF}, "x1f", engine=())
    add("SeparableConv1D-s2-d2-valid", "SeparableConv1D", {"filters": 2, "kernel_size": 2, "strides": 2,
                                                           "dilation_rate": 2}, "x1", engine=K3, export=K3)
    add("DepthwiseConv2D-same-dm2", "DepthwiseConv2D", {"kernel_size": [3, 2], "padding": "same",
                                                        "depth_multiplier": 2}, "x2")
    add("DepthwiseConv2D-cf", "DepthwiseConv2D", {"kernel_size": 2, "data_format": CF}, "x2f")
    add("DepthwiseConv2D-s22-d21-same", "DepthwiseConv2D", {"kernel_size": 3, "strides": 2, "dilation_rate": [2, 1],
                                                            "padding": "same"}, "x2", engine=(), export=K3)
    add("SeparableConv2D-valid-s2", "SeparableConv2D", {"filters": 3, "kernel_size": [2, 3], "strides": [2, 1]},
        "x2")
    add("SeparableConv2D-same-cf", "SeparableConv2D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                                       "data_format": CF}, "x2f")
    add("SeparableConv2D-same-s2-cf-elu", "SeparableConv2D", {"filters": 2, "kernel_size": 2, "strides": 2,
                                                              "padding": "same", "data_format": CF,
                                                              "activation": "elu"}, "x2f", engine=())

    # transposed convolutions: each padding with strides, dilation, output_padding (below the strides), channels_first
    for padding in ("valid", "same"):
        for s, d, op in ((1, 1, None), (2, 1, None), (3, 1, None), (1, 2, None), (2, 1, 1), (3, 1, 0), (3, 1, 2)):
            if padding == "same" and op == 0:
                continue  # an odd kernel: "same" with output_padding 0 is TensorFlow's even-kernel refusal
            for fmt in (CL, CF):
                add(f"Conv1DTranspose-{padding}-s{s}-d{d}-op{op}-{fmt}", "Conv1DTranspose",
                    {"filters": 4, "kernel_size": 3, "strides": s, "dilation_rate": d, "padding": padding,
                     "output_padding": op, "data_format": fmt}, _x1(fmt))
    add("Conv1DTranspose-same-k4-s2-relu", "Conv1DTranspose", {"filters": 3, "kernel_size": 4, "strides": 2,
                                                               "padding": "same", "activation": "relu"}, "x1")
    add("Conv1DTranspose-k2-s3-nobias", "Conv1DTranspose", {"filters": 2, "kernel_size": 2, "strides": 3,
                                                            "use_bias": False}, "x1")
    for padding in ("valid", "same"):
        for s, d, op in (((1, 1), (1, 1), None), ((2, 1), (1, 1), None), ((2, 3), (1, 1), (1, 2)),
                         ((1, 1), (2, 2), None)):  # tf_keras: one dilation for both axes
            for fmt in (CL, CF):
                add(f"Conv2DTranspose-{padding}-s{s[0]}{s[1]}-d{d[0]}{d[1]}-op{op and op[0]}-{fmt}",
                    "Conv2DTranspose",
                    {"filters": 3, "kernel_size": [3, 2], "strides": list(s), "dilation_rate": list(d),
                     "padding": padding, "output_padding": op and list(op), "data_format": fmt}, _x2(fmt))
    add("Conv2DTranspose-same-k4-s2-tanh", "Conv2DTranspose", {"filters": 2, "kernel_size": 4, "strides": 2,
                                                               "padding": "same", "activation": "tanh"}, "x2")


def _pools(add: Add) -> None:
    # pooling: strides default to pool_size; "same" average pools divide by the real positions only
    for cls in ("MaxPooling1D", "AveragePooling1D"):
        for size, strides in ((2, None), (3, None), (3, 1), (2, 3), (4, 2), (2, 1), (4, 1)):
            for padding in ("valid", "same"):
                for fmt in (CL, CF):
                    add(f"{cls}-p{size}-s{strides}-{padding}-{fmt}", cls,
                        {"pool_size": size, "strides": strides, "padding": padding, "data_format": fmt}, _x1(fmt),
                        engine=() if strides == 1 and size in (2, 4) else GENS)
    for cls in ("MaxPooling2D", "AveragePooling2D"):
        for size, strides in (((2, 2), None), ((3, 2), (2, 1)), ((3, 3), (1, 2)), ((2, 2), (1, 1))):
            for padding in ("valid", "same"):
                for fmt in (CL, CF):
                    add(f"{cls}-p{size[0]}{size[1]}-s{strides}-{padding}-{fmt}", cls,
                        {"pool_size": list(size), "strides": strides and list(strides), "padding": padding,
                         "data_format": fmt}, _x2(fmt), engine=() if strides == (1, 1) else GENS)
    for cls in ("GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling2D"):
        for keepdims in (False, True):
            for fmt in (CL, CF):
                add(f"{cls}-keepdims{keepdims}-{fmt}", cls, {"data_format": fmt, "keepdims": keepdims},
                    _x1(fmt) if cls.endswith("1D") else _x2(fmt))
    for cls in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):  # behind a Masking layer
        for keepdims in (False, True):
            add(f"{cls}-masked-keepdims{keepdims}", cls, {"keepdims": keepdims}, "xm", implicit="masking")
            add(f"{cls}-masked-cf-keepdims{keepdims}", cls, {"keepdims": keepdims, "data_format": CF}, "xmf",
                engine=(), implicit="masking_f")
    add("GlobalAveragePooling1D-all-masked-row", "GlobalAveragePooling1D", {}, "xm0", engine=(), implicit="masking")


def _reshaping(add: Add) -> None:
    # padding, cropping, upsampling, permute
    add("ZeroPadding1D-1", "ZeroPadding1D", {"padding": 1}, "x1")
    add("ZeroPadding1D-2-3", "ZeroPadding1D", {"padding": [2, 3]}, "x1")
    add("ZeroPadding1D-cf", "ZeroPadding1D", {"padding": [1, 2], "data_format": CF}, "x1f", engine=K3, export=K3)
    add("ZeroPadding2D-int", "ZeroPadding2D", {"padding": 1}, "x2")
    add("ZeroPadding2D-pairs", "ZeroPadding2D", {"padding": [[0, 2], [3, 1]]}, "x2", engine=())
    add("ZeroPadding2D-pairs-cf", "ZeroPadding2D", {"padding": [[1, 0], [2, 3]], "data_format": CF}, "x2f")
    add("ZeroPadding2D-hw-cf", "ZeroPadding2D", {"padding": [2, 1], "data_format": CF}, "x2f", engine=())
    add("Cropping1D-default", "Cropping1D", {}, "x1")
    add("Cropping1D-3-0", "Cropping1D", {"cropping": [3, 0]}, "x1")
    add("Cropping1D-0-2-masked", "Cropping1D", {"cropping": [0, 2]}, "xm", engine=(), implicit="masking")
    add("Cropping2D-pairs", "Cropping2D", {"cropping": [[1, 2], [0, 1]]}, "x2")
    add("Cropping2D-int-cf", "Cropping2D", {"cropping": 1, "data_format": CF}, "x2f")
    add("UpSampling1D-3", "UpSampling1D", {"size": 3}, "x1")
    add("UpSampling1D-default-masked", "UpSampling1D", {}, "xm", engine=(), implicit="masking")
    add("Permute-21", "Permute", {"dims": [2, 1]}, "x1")
    add("Permute-312", "Permute", {"dims": [3, 1, 2]}, "x2")
    add("Permute-masked", "Permute", {"dims": [2, 1]}, "xm", engine=(), implicit="masking")


def _activations(add: Add) -> None:
    # activation layers
    add("ReLU-default", "ReLU", {}, "xa")
    add("ReLU-max6", "ReLU", {"max_value": 6.0}, "xa3")
    add("ReLU-max1.5", "ReLU", {"max_value": 1.5}, "xa")
    add("ReLU-max0", "ReLU", {"max_value": 0.0}, "xa", engine=())
    add("ReLU-slope", "ReLU", {"negative_slope": 0.1}, "xa")
    add("ReLU-slope-max", "ReLU", {"negative_slope": 0.1, "max_value": 2.0}, "xa", engine=())
    add("ReLU-threshold", "ReLU", {"threshold": 0.5}, "xa")
    add("ReLU-threshold-max", "ReLU", {"threshold": 0.5, "max_value": 1.0}, "xa", engine=())
    add("ReLU-all", "ReLU", {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5}, "xa")
    add("ReLU-slope-threshold", "ReLU", {"negative_slope": 0.3, "threshold": 1.0}, "xa")
    add("ReLU-masked", "ReLU", {"threshold": 0.1}, "xm", engine=(), implicit="masking")
    add("LeakyReLU-default", "LeakyReLU", {}, "xa")
    add("LeakyReLU-0.05", "LeakyReLU", {"negative_slope": 0.05}, "xa", engine=K3, export=K3)
    add("LeakyReLU-0.05", "LeakyReLU", {"alpha": 0.05}, "xa", engine=TFK, export=())
    add("LeakyReLU-alpha-0.05", "LeakyReLU", {"alpha": 0.05}, "xa", engine=())
    add("LeakyReLU-masked", "LeakyReLU", {}, "xm", engine=(), implicit="masking")
    add("PReLU-full", "PReLU", {}, "xa")
    add("PReLU-shared1", "PReLU", {"shared_axes": [1]}, "xa")
    add("PReLU-shared12", "PReLU", {"shared_axes": [1, 2]}, "xa")
    add("PReLU-conv-shared12", "PReLU", {"shared_axes": [1, 2]}, "x2", engine=())
    add("PReLU-masked", "PReLU", {}, "xm", engine=(), implicit="masking")
    add("ELU-default", "ELU", {}, "xa")
    add("ELU-0.4", "ELU", {"alpha": 0.4}, "xa")
    add("ELU-masked", "ELU", {"alpha": 2.0}, "xm", engine=(), implicit="masking")
    add("Softmax-default", "Softmax", {}, "xa")
    add("Softmax-axis1", "Softmax", {"axis": 1}, "xa")
    add("Softmax-axes12", "Softmax", {"axis": [1, 2]}, "xa")
    add("Softmax-explicit-mask", "Softmax", {}, "xa", mask="sm_mask")  # one row masked whole
    add("Softmax-broadcast-mask", "Softmax", {"axis": 1}, "xa", mask="sm_mask_b")
    add("Softmax-axes12-mask", "Softmax", {"axis": [1, 2]}, "xa", engine=(), mask="sm_mask")
    add("Softmax-float-mask", "Softmax", {}, "xa", engine=(), mask="sm_mask_f")
    add("Softmax-robust-mask", "Softmax", {"robust_masking": True}, "xa", engine=TFK, export=TFK, mask="sm_mask_f")
    add("Softmax-int-mask", "Softmax", {}, "xa", engine=(), mask="sm_mask_i")
    add("Softmax-soft-mask", "Softmax", {}, "xa", engine=(), mask="sm_mask_soft")
    add("Softmax-float64-mask", "Softmax", {"dtype": "float64"}, "xa", engine=(), export=TFK, mask="sm_mask_i")
    add("Softmax-keras-mask", "Softmax", {}, "xs", engine=(), implicit="xs_mask")  # one row masked whole
    add("ThresholdedReLU-default", "ThresholdedReLU", {}, "xa", engine=TFK, export=TFK)
    add("ThresholdedReLU-0.5", "ThresholdedReLU", {"theta": 0.5}, "xa", engine=TFK, export=())
    add("ThresholdedReLU-0.5-masked", "ThresholdedReLU", {"theta": 0.5}, "xm", engine=(), export=TFK,
        implicit="masking")


def _dot_and_identities(add: Add) -> None:
    # Dot
    add("Dot-axes2", "Dot", {"axes": 2}, ["xd", "yd"])
    add("Dot-axes-2-1", "Dot", {"axes": [2, 1]}, ["xd", "yd_t"])
    add("Dot-axes1-normalize", "Dot", {"axes": 1, "normalize": True}, ["xd", "yd_5"])
    add("Dot-vectors", "Dot", {"axes": -1}, ["v1", "v2"])
    add("Dot-vectors-normalize", "Dot", {"axes": 1, "normalize": True}, ["v1", "v2"])
    add("Dot-vector-seq", "Dot", {"axes": [1, 2]}, ["v1", "yd"])
    add("Dot-seq-vector", "Dot", {"axes": [2, 1]}, ["xd", "v2"])
    add("Dot-normalize-zero-row", "Dot", {"axes": 2, "normalize": True}, ["xd0", "yd"])
    add("Dot-rank4", "Dot", {"axes": [3, 1], "normalize": True}, ["x4d", "y3d"], engine=())
    # the layers that are the identity at inference (Keras called outside fit: training is False); the value and
    # the Keras mask handed on unchanged
    add("AlphaDropout-0.3", "AlphaDropout", {"rate": 0.3}, "xa", export=())
    add("AlphaDropout-masked", "AlphaDropout", {"rate": 0.3}, "xm", engine=(), implicit="masking")
    add("ActivityRegularization-l1-l2", "ActivityRegularization", {"l1": 0.01, "l2": 0.02}, "xa")
    add("SpatialDropout2D-cl", "SpatialDropout2D", {"rate": 0.5}, "x2")
    add("SpatialDropout2D-cf", "SpatialDropout2D", {"rate": 0.5, "data_format": CF}, "x2f")
    add("SpatialDropout3D-cl", "SpatialDropout3D", {"rate": 0.5}, "x3")
    add("SpatialDropout3D-cf", "SpatialDropout3D", {"rate": 0.5, "data_format": CF}, "x3f")


def _merges(add: Add) -> None:
    # Maximum and Minimum: two and three inputs, a size-1 axis broadcast, Keras masks arriving with the inputs
    for cls in ("Maximum", "Minimum"):
        add(f"{cls}-two", cls, {}, ["xa", "xd"])
        add(f"{cls}-three", cls, {}, ["xa", "xd", "xd0"])
        add(f"{cls}-broadcast-steps", cls, {}, ["xd", "xb1"])
        # both masked (two different masks), the first one only
        add(f"{cls}-masked-both", cls, {}, ["xa", "xd"], export=(), masks=("mk1", "mk2"))
        add(f"{cls}-masked-first", cls, {}, ["xa", "xd"], export=(), masks=("mk1", None))
        add(f"{cls}-masked-first", cls, {}, ["xm", "xm2"], engine=(), implicit="masking")  # passed on
    # the other elementwise merges with masks: Keras 3.4+ counts Multiply's masked entries as 1 and ORs the masks
    # when every input has one (else none); tf_keras ANDs the masks present and ignores them in the values
    for cls in ("Multiply", "Add", "Subtract", "Average"):
        add(f"{cls}-masked-both", cls, {}, ["xa", "xd"], export=(), masks=("mk1", "mk2"))
        add(f"{cls}-masked-first", cls, {}, ["xa", "xd"], export=(), masks=("mk1", None))
    add("Multiply-masked-three", "Multiply", {}, ["xa", "xd", "xd0"], export=(), masks=("mk1", "mk2", "mk1"))
    # Keras expands a lower-rank input at axis 1 (after the batch axis), where NumPy broadcasting would align the
    # last axes and, with batch == steps, merge a row's vector into another sample
    add("Maximum-vector-and-sequence", "Maximum", {}, ["xq", "v1"])
    add("Minimum-vector-and-sequence", "Minimum", {}, ["v1", "xq"])
    add("Add-vector-and-sequence", "Add", {}, ["xq", "v1"], export=())
    # tf_keras's Softmax of its own float64 with a mask: Keras computes all of it in float64
    add("Softmax-float64-mask", "Softmax", {"dtype": "float64"}, "xa", export=(), mask="sm_mask")


# TimeDistributed of each family (issue 15: "also inside TimeDistributed"): (id, wrapped class, its config, input,
# the engine's generations). The engine runs the 1D convolutions and pools without a mask; the export runs them
# all with the outer (steps) mask, which it must pass on.
TIME_DISTRIBUTED: tuple[tuple[str, str, dict[str, Any], str, tuple[str, ...]], ...] = (
    ("Conv1D-same-s2", "Conv1D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, "xt1", GENS),
    ("Conv1D-causal-d2-relu", "Conv1D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "padding": "causal",
                                         "activation": "relu"}, "xt1", GENS),
    ("Conv1D-valid-cf", "Conv1D", {"filters": 3, "kernel_size": 3, "data_format": CF}, "xt1f", GENS),
    ("SeparableConv1D-same-dm2", "SeparableConv1D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                                     "depth_multiplier": 2}, "xt1", GENS),
    ("SeparableConv1D-causal", "SeparableConv1D", {"filters": 2, "kernel_size": 3, "padding": "causal"}, "xt1",
     TFK),  # Keras 3's SeparableConv1D has no causal padding
    ("DepthwiseConv1D-valid-dm2", "DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2}, "xt1", GENS),
    ("DepthwiseConv1D-same-cf", "DepthwiseConv1D", {"kernel_size": 2, "padding": "same", "data_format": CF}, "xt1f",
     GENS),
    ("MaxPooling1D-p2", "MaxPooling1D", {"pool_size": 2}, "xt1", GENS),
    ("MaxPooling1D-same-s2", "MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, "xt1", GENS),
    ("AveragePooling1D-same-s2", "AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, "xt1", GENS),
    ("AveragePooling1D-valid-cf", "AveragePooling1D", {"pool_size": 2, "data_format": CF}, "xt1f", GENS),
    # 3 filters: with 2, the output's last axis (2) would be as long as its channel axis, where Keras 3 on
    # TensorFlow adds the bias along the wrong axis (see lstm_inspect/engine/layers/conv.py)
    ("Conv2D-same-s2-cf", "Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                                     "data_format": CF}, "xt2", ()),
    ("DepthwiseConv2D-same", "DepthwiseConv2D", {"kernel_size": 2, "padding": "same"}, "xt2", ()),
    ("AveragePooling2D-same-s2", "AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, "xt2", ()),
    ("GlobalAveragePooling1D", "GlobalAveragePooling1D", {"keepdims": True}, "xt1", ()),
    ("ZeroPadding1D", "ZeroPadding1D", {"padding": [1, 2]}, "xt1", ()),
    ("Cropping2D", "Cropping2D", {"cropping": [[1, 0], [0, 2]]}, "xt2", ()),
    ("UpSampling1D", "UpSampling1D", {"size": 2}, "xt1", ()),
    ("Softmax-axis1", "Softmax", {"axis": 1}, "xt1", ()),
    ("PReLU-shared1", "PReLU", {"shared_axes": [1]}, "xt1", ()),
    ("ReLU-all", "ReLU", {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5}, "xt1", ()),
    ("Permute", "Permute", {"dims": [2, 1]}, "xt1", ()),
)


def _time_distributed(add: Add) -> None:
    for cid, cls, config, x, engine in TIME_DISTRIBUTED:
        if engine:
            add(f"TimeDistributed-{cid}", "TimeDistributed", {"layer": {"class_name": cls, "config": config}}, x,
                engine=engine, export=())
    for cid, cls, config, x, _ in TIME_DISTRIBUTED:
        add(f"TimeDistributed-{cid}", "TimeDistributed", {"layer": {"class_name": cls, "config": config}}, x,
            engine=(), implicit="steps")


CASES: tuple[LayerCase, ...] = tuple(_table())

# (generation, case id) where the engine does not compute what Keras computes, as strict xfails with the reason
# (tests/helpers/keras.py: known_bug); the exports, which mirror the engine, are marked the same way.
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # none left: the three these cases found are fixed


def engine_cases() -> list[LayerCase]:
    """The cases tests/test_layers.py runs (in at least one generation)."""
    return [c for c in CASES if c.engine]


def export_cases() -> list[LayerCase]:
    """The cases tests/test_export_layers.py runs (in at least one generation)."""
    return [c for c in CASES if c.export]
