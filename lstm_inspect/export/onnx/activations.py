"""The activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU) as ONNX operators.

Why: recurrent models put these between their LSTMs (a ReLU with a ceiling, learned PReLU slopes, a Softmax
over attention scores made with Dot), and `export --to onnx` must write the whole model. Each emitter
mirrors the engine's function (`lstm_inspect/engine/layers/activations.py`, whose readers give the settings),
whose rules follow `keras/src/layers/activations/` with `keras/src/activations/activations.py`,
`tf_keras/src/layers/activation/` with `tf_keras/src/backend.py`:

- ReLU: max_value, threshold and negative_slope as Keras's relu composes them; LeakyReLU (negative_slope,
  or tf_keras's alpha; 0.3 by default), PReLU, ELU and ThresholdedReLU are ONNX's own operators, which
  compute the same function. All of them pass the Keras mask on.
- Softmax with a mask (an explicit `mask=`, else the input's Keras mask, broadcast from the right): Keras 3
  puts -1e9 where it is False and zeroes those outputs; tf_keras adds (1 - mask)·(-1e9) in the layer's
  float type (robust_masking: puts -1e9) and keeps the outputs. The mask, as booleans, is passed on.

Dot and Permute are in `core` (where the engine has them).
"""

from __future__ import annotations

import numpy as np

from lstm_inspect.engine.layers.activations import (
    elu_alpha,
    leaky_relu_slope,
    prelu_alpha_shape,
    relu_settings,
    softmax_axes,
    softmax_mask_rule,
    softmax_own_dtype,
    thresholded_relu_theta,
)
from lstm_inspect.engine.layers.registry import LayerCall
from lstm_inspect.export.onnx.graph import Graph, Sym
from lstm_inspect.export.onnx.registry import OnnxCall, layer


def _same(c: OnnxCall, y: str) -> list[Sym]:
    """An elementwise layer's output: the input's rank, feature size and Keras mask."""
    return [Sym(y, c.x.rank, mask=c.x.mask, dim=c.x.dim)]


@layer("ReLU")
def relu(c: OnnxCall) -> list[Sym]:
    g, x = c.g, c.float_input()
    s = relu_settings(c)
    max_value, slope, threshold = s.max_value, s.negative_slope, s.threshold
    if slope != 0.0 and max_value is None and threshold == 0:
        return _same(c, g.op("LeakyRelu", x, alpha=slope, hint=c.hint))
    if threshold != 0:
        y = g.op("Where", g.op("Greater", x, g.const(threshold)), x, g.const(0.0))
    else:
        y = g.op("Relu", x)
    if max_value is not None:
        y = g.op("Clip", y, g.const(0.0), g.const(max_value))
    if slope != 0.0:  # minus slope · max(threshold - x, 0)
        negative = g.op("Relu", g.op("Sub", g.const(threshold), x))
        y = g.op("Sub", y, g.op("Mul", g.const(slope), negative))
    return _same(c, g.op("Identity", y, hint=c.hint))


@layer("LeakyReLU")
def leaky_relu(c: OnnxCall) -> list[Sym]:
    slope = leaky_relu_slope(c)
    return _same(c, c.g.op("LeakyRelu", c.float_input(), alpha=slope, hint=c.hint))


@layer("PReLU")
def prelu(c: OnnxCall) -> list[Sym]:
    """max(x, 0) - alpha·max(-x, 0), which is ONNX's PRelu (alpha·x below 0); alpha spans x's axes after the batch,
    the shared ones of size 1."""
    want = prelu_alpha_shape(c, (None,) * (c.x.rank - 1))  # None: any size
    LayerCall(c.node, [], c.weights, c.ctx).expect([want])
    return _same(c, c.g.op("PRelu", c.float_input(), c.const(c.weights[0], "alpha"), hint=c.hint))


@layer("ELU")
def elu(c: OnnxCall) -> list[Sym]:
    alpha = elu_alpha(c)
    return _same(c, c.g.op("Elu", c.float_input(), alpha=alpha, hint=c.hint))


@layer("ThresholdedReLU")
def thresholded_relu(c: OnnxCall) -> list[Sym]:
    theta = thresholded_relu_theta(c)
    return _same(c, c.g.op("ThresholdedRelu", c.float_input(), alpha=theta, hint=c.hint))


def softmax(g: Graph, x: str, axes: list[int], hint: str | None = None) -> str:
    """exp(x - max) / sum over `axes`, as the engine's softmax."""
    if len(axes) == 1:
        return g.op("Softmax", x, axis=axes[0], hint=hint)
    e = g.op("Exp", g.op("Sub", x, g.reduce("ReduceMax", x, axes)))
    return g.op("Div", e, g.reduce("ReduceSum", e, axes), hint=hint)


FLOAT_TYPES = {"float32": 1, "float64": 11}  # onnx.TensorProto.FLOAT, DOUBLE


@layer("Softmax")
def softmax_layer(c: OnnxCall) -> list[Sym]:
    g, x = c.g, c.float_input()
    rank = c.x.rank
    axes = sorted({a % rank for a in softmax_axes(c, rank)})
    explicit = c.kwargs.get("mask")
    if explicit is not None and not isinstance(explicit, Sym):
        raise c.fail("its mask is given as a constant, not a tensor")
    raw = explicit if explicit is not None else (Sym(c.x.mask, 2, kind="bool") if c.x.mask is not None else None)
    if raw is None:
        return [Sym(softmax(g, x, axes, hint=c.hint), rank, dim=c.x.dim)]
    if raw.rank > rank:
        raise c.fail(f"its mask has rank {raw.rank}, more than its input's {rank}")
    # Keras 3 and robust_masking read the mask as mask > 0.5 when it holds floats, nonzero otherwise
    mask = raw.name if raw.kind == "bool" else (
        g.op("Greater", raw.name, g.const(0.5)) if raw.kind == "float" else g.cast(raw.name, "bool"))
    rule = softmax_mask_rule(c)
    if rule == "keras3":
        y = softmax(g, g.op("Where", mask, x, g.const(-1e9)), axes)
        y = g.op("Where", mask, y, g.const(0.0), hint=c.hint)
    elif rule == "robust":
        y = softmax(g, g.op("Where", mask, x, g.const(-1e9)), axes, hint=c.hint)
    else:
        # x + (1 - mask)·(-1e9), the mask cast to numbers as it is, in the layer's own float type (in float32 the
        # sum rounds x away, which decides the outputs of a row masked whole); x where nothing is added
        own = softmax_own_dtype(c)
        if own not in FLOAT_TYPES:
            raise c.fail(f"a masked Softmax computing in {own} has no exact ONNX form in lstm-inspect")
        to = FLOAT_TYPES[own]
        np_own = np.dtype(own)
        adder = g.op("Mul", g.op("Sub", g.const(1.0, dtype=np_own), g.op("Cast", raw.name, to=to)),
                     g.const(-1e9, dtype=np_own))
        # the whole layer in that type (a float64 Softmax in a float32 model too), its output cast back
        xo = x if own == "float32" else g.op("Cast", x, to=to)
        kept = g.op("Where", g.op("Equal", adder, g.const(0.0, dtype=np_own)), xo, g.op("Add", xo, adder))
        if own == "float32":
            y = softmax(g, kept, axes, hint=c.hint)
        else:
            y = g.op("Cast", softmax(g, kept, axes), to=FLOAT_TYPES["float32"], hint=c.hint)
    return [Sym(y, rank, mask=mask, dim=c.x.dim)]  # Keras passes on the mask it was given, as booleans
