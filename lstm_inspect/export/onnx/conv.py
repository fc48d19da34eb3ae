"""Convolutions, padding, cropping and upsampling as ONNX operators (CNN-LSTM models in `export --to onnx`).

Why: the engine runs the layers that read a recurrent model's input through convolutions
(`lstm_inspect/engine/layers/conv.py`), so the ONNX export must write them too. Each emitter
mirrors the engine's function for its kind, which follows `keras/src/layers/convolutional/` (base_conv.py,
conv1d.py, base_depthwise_conv.py, base_separable_conv.py), `keras/src/layers/reshaping/` and the
TensorFlow backend's `conv`, `depthwise_conv`, `separable_conv` (`keras/src/backend/tensorflow/nn.py`),
and their `tf_keras/src/layers/` counterparts; the rules are documented beside the engine's functions,
which also read the settings for this module (`conv_settings`, `spatial_format`, `upsampling_size`) and
give the padding amounts that do not depend on the input's length (`fixed_pads`). In ONNX:

- ONNX's Conv is channels first: a channels_last input is transposed in and out (`to_first`,
  `from_first`, which the pools use too).
- "same" pads like TensorFlow (the smaller half before): with stride 1 the pads are fixed, (k-1)·d in all,
  and go in the operator's pads; with a stride above 1 they depend on the input's length, so they are
  computed from its shape at run time and written as a Pad node (`same_padded`; never auto_pad, whose
  dilated form runtimes refuse). "causal" pads d·(k-1) before.
- The Keras kernel (*k, C/groups, F) becomes ONNX's (F, C/groups, *k); a depthwise kernel (*k, C, M) a
  grouped Conv with C groups and C·M outputs in TensorFlow's order (c·M + m); separable = depthwise then a
  1×1 Conv carrying the bias. The bias goes per channel, the activation after it, on the output's layout.
- Conv1DTranspose/Conv2DTranspose: ONNX's ConvTranspose, the Keras kernel (*k, F, C) as (C, F, *k); what
  Keras keeps of the full output (`TransposeSettings.crops`, fixed whatever the input's length) goes in its
  pads, and the zeros Keras appends after in its output_padding.
- None of these layers passes a Keras mask on.

The pools are in `pooling`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.engine.layers.conv import (
    CONV_KINDS,
    TRANSPOSE_KINDS,
    conv_pair_list,
    conv_settings,
    depthwise_weights,
    spatial_axes,
    spatial_format,
    transpose_settings,
    upsampling_size,
)
from lstm_inspect.engine.layers.registry import LayerCall
from lstm_inspect.export.onnx.core import layer_activation
from lstm_inspect.export.onnx.graph import Graph, Sym
from lstm_inspect.export.onnx.registry import OnnxCall, layer, out_dim

INT64_MAX = (1 << 63) - 1


def to_first(g: Graph, x: str, fmt: str, rank: int) -> str:
    """(N, *spatial, C) → (N, C, *spatial) for a channels_last input; channels_first is ONNX's layout already."""
    if fmt == "channels_first":
        return x
    return g.op("Transpose", x, perm=[0, rank + 1, *range(1, rank + 1)])


def from_first(g: Graph, y: str, fmt: str, rank: int, hint: str | None = None) -> str:
    if fmt == "channels_first":
        return y
    return g.op("Transpose", y, perm=[0, *range(2, rank + 2), 1], hint=hint)


def onnx_pads(pads: list[tuple[int, int]] | None) -> list[int] | None:
    """ONNX's pads attribute (every axis's before, then every axis's after) for the settings' `fixed_pads`, or None
    when "same" padding depends on the input's length (a stride above 1)."""
    if pads is None:
        return None
    return [a for a, _ in pads] + [b for _, b in pads]


def same_padded(g: Graph, x: str, kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                value: float = 0.0) -> str:
    """x (N, C, *spatial) padded as TensorFlow's "same", the pads computed from its shape at run time:
    total = max((ceil(n/s) - 1)·s + (k-1)·d + 1 - n, 0), the smaller half before (layers.conv.same_pads)."""
    n = g.shape_range(x, 2)
    s = g.ints(strides)
    out = g.op("Div", g.op("Add", n, g.ints([v - 1 for v in strides])), s)  # ceil(n / s), n > 0
    span = g.ints([(k - 1) * d + 1 for k, d in zip(kernel, dilation)])
    total = g.op("Max", g.op("Sub", g.op("Add", g.op("Mul", g.op("Sub", out, g.ints([1] * len(kernel))), s), span), n),
                 g.ints([0] * len(kernel)))
    before = g.op("Div", total, g.ints([2] * len(kernel)))
    after = g.op("Sub", total, before)
    pads = g.op("Concat", g.ints([0, 0]), before, g.ints([0, 0]), after, axis=0, hint="same_pads")
    return g.op("Pad", x, pads, g.const(value, "pad_value"), mode="constant", hint="same_padded")


def _weights(c: OnnxCall, shapes: list[tuple[Any, ...]]) -> list[np.ndarray]:
    """The stored arrays, checked as the engine checks them (None: any size)."""
    LayerCall(c.node, [], c.weights, c.ctx).expect(shapes)
    return list(c.weights)


# ---------------------------------------------------------------- the convolutions


@layer(*CONV_KINDS)
def convolution(c: OnnxCall) -> list[Sym]:
    g = c.g
    r = c.x.rank
    s = conv_settings(c, r)
    rank, kind, kernel, strides, dilation = s.rank, s.kind, s.kernel, s.strides, s.dilation
    fmt, use_bias = s.data_format, s.use_bias
    ones = (1,) * rank
    if kind == "conv":
        filters, groups = s.filters, s.groups
        w = _weights(c, [(*kernel, None, filters)] + ([(filters,)] if use_bias else []))
        cin = w[0].shape[-2] * groups
        if filters % groups:
            raise c.fail(f"{filters} filters cannot be split in {groups} groups")
        # Keras (*k, C/groups, F) → ONNX (F, C/groups, *k)
        kernels = [(np.transpose(w[0], (rank + 1, rank, *range(rank))), groups, "kernel")]
    else:
        mult = s.depth_multiplier
        w, cin, _, depthwise = depthwise_weights(c, lambda shapes: _weights(c, shapes), kind, kernel,
                                                 mult, s.filters, use_bias)
        kernels = [(depthwise, cin, "depthwise_kernel")]
        if kind == "separable":  # (*1s, C·M, F) → (F, C·M, *1s)
            kernels.append((np.transpose(w[1], (rank + 1, rank, *range(rank))), 1, "pointwise_kernel"))
    if fmt == "channels_last" and c.x.dim is not None and c.x.dim != cin:
        raise c.fail(f"its kernel takes {cin} input channels, its input has {c.x.dim}")

    x = c.float_input()
    lead = None
    if r > rank + 2:  # tf_keras's Conv runs extra leading axes as batch
        lead = g.shape_range(x, 0, r - rank - 1)
        x = g.op("Reshape", x, g.op("Concat", g.ints([-1]), g.shape_range(x, r - rank - 1), axis=0))
    y = to_first(g, x, fmt, rank)
    pads = onnx_pads(s.fixed_pads())
    if pads is None:
        y = same_padded(g, y, kernel, strides, dilation)
        pads = [0] * 2 * rank
    bias = c.const(w[-1], "bias") if use_bias else None
    for k, (kern, group, what) in enumerate(kernels):
        last = k == len(kernels) - 1
        args = [y, c.const(kern, what)] + ([bias] if last and bias else [])
        if k == 0:
            y = g.op("Conv", *args, kernel_shape=list(kernel), strides=list(strides), dilations=list(dilation),
                     pads=pads, group=group, hint=c.hint)
        else:  # the pointwise 1×1 convolution of a separable one
            y = g.op("Conv", *args, kernel_shape=list(ones), hint=c.hint)
    y = from_first(g, y, fmt, rank)
    if lead is not None:
        y = g.op("Reshape", y, g.op("Concat", lead, g.shape_range(y, 1), axis=0))
    return [Sym(layer_activation(c, y), r, dim=out_dim(c))]


@layer(*TRANSPOSE_KINDS)
def convolution_transpose(c: OnnxCall) -> list[Sym]:
    g = c.g
    s = transpose_settings(c, c.x.rank)
    rank = s.rank
    w = _weights(c, [(*s.kernel, s.filters, None)] + ([(s.filters,)] if s.use_bias else []))
    cin = w[0].shape[-1]
    if s.data_format == "channels_last" and c.x.dim is not None and c.x.dim != cin:
        raise c.fail(f"its kernel takes {cin} input channels, its input has {c.x.dim}")
    crops = s.crops()
    pads = [a for a, _ in crops] + [max(b, 0) for _, b in crops]
    extra = [max(-b, 0) for _, b in crops]
    args = [to_first(g, c.float_input(), s.data_format, rank),
            c.const(np.transpose(w[0], (rank + 1, rank, *range(rank))), "kernel")]  # (*k, F, C) → (C, F, *k)
    if s.use_bias:
        args.append(c.const(w[1], "bias"))
    y = g.op("ConvTranspose", *args, kernel_shape=list(s.kernel), strides=list(s.strides),
             dilations=list(s.dilation), pads=pads, output_padding=extra, hint=c.hint)
    y = from_first(g, y, s.data_format, rank)
    return [Sym(layer_activation(c, y), rank + 2, dim=out_dim(c))]


# ---------------------------------------------------------------- padding, cropping, upsampling


def _spatial(c: OnnxCall, rank: int, formatted: bool) -> tuple[str, list[int]]:
    """The data format (read only where the engine reads it) and the spatial axes of the input."""
    fmt = spatial_format(c, rank, c.x.rank, formatted)
    return fmt, list(spatial_axes(fmt, rank))


@layer("ZeroPadding1D", "ZeroPadding2D")
def zero_padding(c: OnnxCall) -> list[Sym]:
    rank = 1 if c.node.class_name == "ZeroPadding1D" else 2
    pads = conv_pair_list(c, "padding", rank, 1)
    _, axes = _spatial(c, rank, formatted=True)
    before, after = [0] * (rank + 2), [0] * (rank + 2)
    for axis, (a, b) in zip(axes, pads):
        before[axis], after[axis] = a, b
    y = c.g.op("Pad", c.x.name, c.g.ints(before + after), mode="constant", hint=c.hint)
    return [Sym(y, c.x.rank, kind=c.x.kind, dim=out_dim(c))]


@layer("Cropping1D", "Cropping2D")
def cropping(c: OnnxCall) -> list[Sym]:
    rank = 1 if c.node.class_name == "Cropping1D" else 2
    crops = conv_pair_list(c, "cropping", rank, (1, 1) if rank == 1 else 0)
    _, axes = _spatial(c, rank, formatted=rank == 2)  # Cropping1D has no data_format (the engine's rule)
    g = c.g
    y = g.op("Slice", c.x.name, g.ints([a for a, _ in crops]), g.ints([-b if b else INT64_MAX for _, b in crops]),
             g.ints(axes), hint=c.hint)
    return [Sym(y, c.x.rank, kind=c.x.kind, dim=out_dim(c))]


@layer("UpSampling1D")
def up_sampling(c: OnnxCall) -> list[Sym]:
    size = upsampling_size(c)
    _spatial(c, 1, formatted=False)
    g, x = c.g, c.x.name
    # each step repeated `size` times in place: (N, T, 1, C) tiled to (N, T, size, C), then (N, T·size, C)
    tiled = g.op("Tile", g.unsqueeze(x, [2]), g.ints([1, 1, size, 1]))
    shape = g.op("Concat", g.shape_range(x, 0, 1), g.ints([-1]), g.shape_range(x, 2), axis=0)
    return [Sym(g.op("Reshape", tiled, shape, hint=c.hint), 3, kind=c.x.kind, dim=c.x.dim)]
