"""Pooling layers around recurrent layers, as Keras computes them at inference.

Why: CNN-LSTM models pool between their convolutions and their recurrent layers (MaxPooling1D,
TimeDistributed(MaxPooling2D)), and many sequence classifiers end an LSTM with a global pooling.
Registered here: MaxPooling1D/2D, AveragePooling1D/2D, GlobalMaxPooling1D/2D, GlobalAveragePooling1D/2D.

The rules follow `keras/src/layers/pooling/base_pooling.py`, `base_global_pooling.py`,
`global_average_pooling1d.py`, `global_max_pooling1d.py`, the TensorFlow backend's `max_pool` and
`average_pool` (`keras/src/backend/tensorflow/nn.py`: tf.nn.max_pool / avg_pool, channels_first
transposed to channels_last), and `tf_keras/src/layers/pooling/base_pooling1d.py`, `base_pooling2d.py`,
`base_global_pooling1d.py`, `global_average_pooling1d.py`, `global_max_pooling1d.py`:

- strides default to pool_size; "same" pads like TensorFlow (the smaller half before); max pooling never
  takes a padded position, average pooling divides by the number of real positions in each window
  (tf.nn.avg_pool's SAME), not by pool_size.
- GlobalAveragePooling1D honours the mask in both generations: the sum over unmasked steps divided by
  their number (Keras 3 `ops.where(mask, x, 0)`; tf_keras `x * mask`), and an all-masked row gives 0/0
  (NaN), as in Keras. GlobalMaxPooling1D takes no mask in either (the maximum over every step, padding
  included), nor do the 2-D global pools. All of them output no mask (compute_mask returns None, or the
  layer does not support masking and Keras 3 drops it). Local pools drop the mask too.
- keepdims keeps the pooled axes as 1s; data_format picks the axes.

A local pool's settings are read once (`pool_settings`, a `PoolSettings`), for the engine and both exporters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.engine.layers.conv import (
    back_to,
    channels_last,
    conv_out_length,
    data_format,
    fixed_pads,
    ints,
    need_padded,
    output_sizes,
    padding_mode,
    pads_for,
    refuse_keras1,
    spatial_axes,
    taps,
)
from lstm_inspect.engine.layers.registry import LayerCall, Site, Tensor, layer, same_dims

# class names as Keras serializes them (MaxPool1D and the like are aliases of the same classes): (rank, mode)
POOLS = {"MaxPooling1D": (1, "max"), "MaxPooling2D": (2, "max"), "AveragePooling1D": (1, "avg"),
         "AveragePooling2D": (2, "avg")}
GLOBAL_POOLS = {"GlobalMaxPooling1D": (1, "max"), "GlobalMaxPooling2D": (2, "max"),
                "GlobalAveragePooling1D": (1, "avg"), "GlobalAveragePooling2D": (2, "avg")}


def _pool_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    """Channels last: unchanged; channels first: the last spatial axis pooled."""
    cfg = node.config
    if (cfg.get("data_format") or "channels_last") == "channels_last":
        return same_dims(node, in_dims)
    n = in_dims[0] if in_dims else None
    try:
        size = cfg.get("pool_size", 2)
        k = size[-1] if isinstance(size, (list, tuple)) else size
        strides = cfg.get("strides")
        s = k if strides is None else (strides[-1] if isinstance(strides, (list, tuple)) else strides)
        if n is None or not all(isinstance(v, int) and v > 0 for v in (k, s)):
            return [None]
        return [conv_out_length(n, k, s, 1, str(cfg.get("padding", "valid")).lower())]
    except (TypeError, ValueError, IndexError):
        return [None]


@dataclass(frozen=True)
class PoolSettings:
    """A local pool's config, read and checked once (`pool_settings`) for the engine and both exporters."""

    rank: int  # spatial axes
    mode: str  # "max" or "avg"
    size: tuple[int, ...]
    strides: tuple[int, ...]  # pool_size when not given
    padding: str  # "valid" or "same"
    data_format: str

    def fixed_pads(self) -> list[tuple[int, int]] | None:
        """(before, after) per axis whatever the input's length, or None ("same" with a stride above 1)."""
        return fixed_pads(self.padding, self.size, self.strides, (1,) * self.rank)


def pool_settings(c: Site, ndim: int) -> PoolSettings:
    """The settings of a local pool (`POOLS`) called on an input of rank `ndim`, checked in this order: Keras 1, the
    input's rank, pool_size, strides, padding, data_format."""
    rank, mode = POOLS[c.node.class_name]
    refuse_keras1(c)
    if ndim != rank + 2:
        raise c.refuse(f"{c.node.class_name} needs an input of rank {rank + 2}",
                       f"it needs an input of rank {rank + 2}")
    size = ints(c, "pool_size", rank, 2)
    strides = ints(c, "strides", rank, size) if c.config.get("strides") is not None else size
    padding = padding_mode(c, ("valid", "same"))
    return PoolSettings(rank, mode, size, strides, padding, data_format(c))


@layer(*POOLS, dims=_pool_dims)
def pool(c: LayerCall) -> list[Tensor]:
    x = c.x
    s = pool_settings(c, x.ndim)
    rank, mode, size, strides, padding, fmt = s.rank, s.mode, s.size, s.strides, s.padding, s.data_format
    x = channels_last(x, fmt, rank)
    ones = (1,) * rank
    pads = pads_for(c, padding, x.shape[1:-1], size, strides, ones)
    need_padded(c, x, pads)
    out = output_sizes(c, x.shape[1:-1], pads, size, strides, ones)
    if mode == "max":
        y = np.full((x.shape[0], *out, x.shape[-1]), -np.inf, dtype=x.dtype)
        for _, at, reads in taps(x.shape[1:-1], out, size, strides, ones, pads):
            np.maximum(y[at], x[reads], out=y[at])
    else:
        y = np.zeros((x.shape[0], *out, x.shape[-1]), dtype=x.dtype)
        count = np.zeros((1, *out, 1), dtype=x.dtype)  # the real positions in each window
        for _, at, reads in taps(x.shape[1:-1], out, size, strides, ones, pads):
            y[at] += x[reads]
            count[at] += 1
        y = y / count
    return [Tensor(back_to(y, fmt, rank))]


def _global_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    """Channels last: the channels (the input's last axis); channels first: 1 with keepdims, else unknown."""
    if (node.config.get("data_format") or "channels_last") == "channels_last":
        return same_dims(node, in_dims)
    return [1 if node.config.get("keepdims") else None]


@layer(*GLOBAL_POOLS, dims=_global_dims)
def global_pool(c: LayerCall) -> list[Tensor]:
    rank, mode = GLOBAL_POOLS[c.node.class_name]
    x = c.x
    if x.ndim != rank + 2:
        raise c.fail(f"{c.node.class_name} needs an input of rank {rank + 2}")
    fmt = data_format(c)
    axes = spatial_axes(fmt, rank)
    keepdims = bool(c.config.get("keepdims", False))
    mask = c.mask
    if mode == "max":
        return [Tensor(np.max(x, axis=axes, keepdims=keepdims))]
    if mask is None or rank != 1:
        return [Tensor(np.mean(x, axis=axes, keepdims=keepdims))]
    # the mask (batch, steps) expanded on the channel axis, then broadcast as Keras broadcasts it
    m = np.expand_dims(np.asarray(mask, dtype=bool), 2 if fmt == "channels_last" else 1)
    try:
        kept = np.where(m, x, np.zeros((), dtype=x.dtype))
    except ValueError:
        raise c.fail(f"the mask {tuple(mask.shape)} does not broadcast against the input as Keras needs") from None
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.sum(kept, axis=axes, keepdims=keepdims) / np.sum(m.astype(x.dtype), axis=axes, keepdims=keepdims)
    return [Tensor(np.asarray(y, dtype=c.ctx.dtype))]
