"""Pooling layers as ONNX operators (CNN-LSTM models and pooled sequence classifiers in `export --to onnx`).

Why: the engine runs the pools around a recurrent model's layers (`lstm_inspect/engine/layers/pooling.py`,
which follows `keras/src/layers/pooling/` and `tf_keras/src/layers/pooling/` and reads the settings for
this module, `pool_settings`), so the ONNX export must write them too. In ONNX:

- ONNX's pools are channels first: a channels_last input is transposed in and out (`conv.to_first`).
- "same" pads like TensorFlow (the smaller half before): fixed pads go in the operator's pads; pads that
  depend on the input's length are computed from its shape at run time and written as a Pad node
  (`conv.same_padded`).
- Max pooling never takes a padded position (padded with -inf at run time); average pooling divides by
  the real positions only (count_include_pad=0, or the pooled sum of ones when padded at run time).
- None of these layers passes a Keras mask on; GlobalAveragePooling1D averages the unmasked steps only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.engine.layers.conv import data_format, spatial_axes
from lstm_inspect.engine.layers.pooling import GLOBAL_POOLS, POOLS, pool_settings
from lstm_inspect.export.onnx.conv import from_first, onnx_pads, same_padded, to_first
from lstm_inspect.export.onnx.graph import Sym
from lstm_inspect.export.onnx.registry import OnnxCall, layer, out_dim


@layer(*POOLS)
def pool(c: OnnxCall) -> list[Sym]:
    g = c.g
    s = pool_settings(c, c.x.rank)
    rank, mode, size, strides, fmt = s.rank, s.mode, s.size, s.strides, s.data_format
    ones = (1,) * rank
    x = to_first(g, c.float_input(), fmt, rank)
    pads = onnx_pads(s.fixed_pads())
    attrs: dict[str, Any] = {"kernel_shape": list(size), "strides": list(strides)}
    if mode == "max":
        if pads is None:  # padded with -inf: never the maximum of a window, which always holds a real position
            x, pads = same_padded(g, x, size, strides, ones, -np.inf), [0] * 2 * rank
        y = g.op("MaxPool", x, pads=pads, **attrs, hint=c.hint)
    elif pads is not None:  # the mean of each window's real positions
        y = g.op("AveragePool", x, pads=pads, count_include_pad=0, **attrs, hint=c.hint)
    else:
        # padded at run time: the pooled padded input over the pooled padded ones (the real positions' share)
        real = g.filled(g.op("Concat", g.ints([1, 1]), g.shape_range(x, 2), axis=0), 1.0)
        total = g.op("AveragePool", same_padded(g, x, size, strides, ones), **attrs)
        share = g.op("AveragePool", same_padded(g, real, size, strides, ones), **attrs)
        y = g.op("Div", total, share, hint=c.hint)
    return [Sym(from_first(g, y, fmt, rank, hint=c.hint), rank + 2, dim=out_dim(c))]


@layer(*GLOBAL_POOLS)
def global_pool(c: OnnxCall) -> list[Sym]:
    """Max or mean over the spatial axes; GlobalAveragePooling1D averages the unmasked steps only (an all-masked
    row gives 0/0, NaN, as in Keras). No output mask."""
    g = c.g
    rank, mode = GLOBAL_POOLS[c.node.class_name]
    if c.x.rank != rank + 2:
        raise c.fail(f"{c.node.class_name} needs an input of rank {rank + 2}")
    fmt = data_format(c)
    axes = list(spatial_axes(fmt, rank))
    keep = bool(c.config.get("keepdims", False))
    x = c.float_input()
    out_rank = rank + 2 if keep else 2
    if mode == "max":
        y = g.reduce("ReduceMax", x, axes, keepdims=keep, hint=c.hint)
    elif c.x.mask is None or rank != 1:
        y = g.reduce("ReduceMean", x, axes, keepdims=keep, hint=c.hint)
    else:
        m = g.unsqueeze(c.x.mask, [2 if fmt == "channels_last" else 1])
        kept = g.reduce("ReduceSum", g.op("Where", m, x, g.const(0.0)), axes, keepdims=keep)
        y = g.op("Div", kept, g.reduce("ReduceSum", g.cast(m, "float"), axes, keepdims=keep), hint=c.hint)
    return [Sym(y, out_rank, dim=out_dim(c))]
