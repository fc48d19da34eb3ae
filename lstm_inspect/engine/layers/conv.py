"""Convolutions and the shape layers around them (CNN-LSTM models), as Keras computes them at inference.

Why: real recurrent models often read their input through convolutions first (Conv1D → MaxPooling1D →
LSTM, TimeDistributed(Conv2D) → LSTM, causal dilated Conv1D stacks); the engine runs the whole model, so
it runs these too. Registered here: Conv1D, Conv2D, SeparableConv1D/2D, DepthwiseConv1D/2D,
Conv1DTranspose/Conv2DTranspose (TimeDistributed of any of them comes from core.py), ZeroPadding1D/2D,
Cropping1D/2D, UpSampling1D.

The rules follow `keras/src/layers/convolutional/base_conv.py`, `conv1d.py` (causal padding),
`base_depthwise_conv.py`, `base_separable_conv.py`, the TensorFlow backend's `conv`, `depthwise_conv`
and `separable_conv` (`keras/src/backend/tensorflow/nn.py`), and `tf_keras/src/layers/convolutional/
base_conv.py`, `conv1d.py`, `depthwise_conv1d.py`, `separable_conv1d.py`; the padding and cropping
layers `keras/src/layers/reshaping/` and `tf_keras/src/layers/reshaping/`. Both generations compute
the same thing wherever both accept a configuration:

- "same" pads like TensorFlow: total = max((ceil(n/s) - 1)·s + (k-1)·d + 1 - n, 0), the smaller half
  before; "causal" (1-D only) pads d·(k-1) steps before and runs "valid". Keras 3 allows causal only on
  Conv1D, tf_keras on Conv1D and SeparableConv1D; the engine runs it on any 1-D kind whose config says so.
- strides > 1 with dilation_rate > 1: refused by both for Conv1D/2D (and by tf_keras for every kind);
  Keras 3 runs it for depthwise and separable convolutions (dilated stride-1 conv, then subsampled:
  `_depthwise_conv_stride_dilation_decomposition`), which is the same sum, so the engine runs it.
- groups (Conv only): the input channels split in `groups` blocks, block j convolved with filters
  j·F/groups...; the kernel is (*kernel_size, C/groups, F). Depthwise output channel c·M + m (TF's order).
- transposed convolutions (`conv1d_transpose.py`, `conv2d_transpose.py`, `base_conv_transpose.py`, the
  TensorFlow backend's `conv_transpose`, `compute_conv_transpose_output_shape` in
  `keras/src/backend/common/backend_utils.py`; tf_keras's `conv1d_transpose.py`, `conv2d_transpose.py`,
  `conv_utils.deconv_output_length`): kernel (*k, filters, C), output position i·s + p·d - before, the
  output's length and `before` as `TransposeSettings.crops` says (both generations agree); output_padding
  below the strides, strides and dilation not both above 1, no groups.
- the activation inside the layer follows the bias. ZeroPadding1D has data_format in Keras 3 only.
- the settings are read and checked once, for the engine and both exporters (`export/onnx/conv.py`,
  `export/torch/conv.py`): `conv_settings` (a `ConvSettings`), `spatial_format` and `upsampling_size` here,
  `pool_settings` in pooling.py; the padding amounts that do not depend on the input's length too
  (`fixed_pads`: valid, causal, "same" with stride 1), the others from `same_pads`.
- the bias goes on the channel axis. One Keras does not always do so: Keras 3's TensorFlow backend runs
  `ops.add(y, bias reshaped (1, F, 1...))` as tf.nn.bias_add on the *last* axis whenever that axis also
  has F entries (`keras/src/backend/tensorflow/numpy.py` `add`), so a channels_first convolution whose
  last spatial size equals its output channels gets its bias along that spatial axis when called
  eagerly. In `predict` (a graph, which TensorFlow rewrites) the bias came out per channel for strided
  and "same" Conv1D in our checks but not for a dilated "valid" one. The engine adds it per channel, as
  JAX and PyTorch do and as Keras means to: such a file can disagree with Keras 3 on TensorFlow (which
  disagrees with itself, eager against predict).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.engine.layers.core import activation_of
from lstm_inspect.engine.layers.registry import LayerCall, Site, Tensor, layer, same_dims
from lstm_inspect.model.cells.base import config_int
from lstm_inspect.model.checkpoint import check_sizes

# class name as Keras serializes it (aliases such as Convolution1D are the same class; Keras 1's Convolution1D
# had other settings and stays outside): (rank, kind)
CONV_KINDS = {"Conv1D": (1, "conv"), "Conv2D": (2, "conv"), "SeparableConv1D": (1, "separable"),
              "SeparableConv2D": (2, "separable"), "DepthwiseConv1D": (1, "depthwise"),
              "DepthwiseConv2D": (2, "depthwise")}


# ---------------------------------------------------------------- config reading (shared with pooling.py)

KERAS1_KEYS = ("pool_length", "stride", "border_mode", "dim_ordering", "length", "subsample_length", "nb_filter")


def refuse_keras1(c: LayerCall) -> None:
    """Keras 1 wrote these layers with other settings (pool_length, border_mode, dim_ordering...): refused
    rather than read with Keras 2 defaults."""
    old = [k for k in KERAS1_KEYS if k in c.config]
    if old:
        raise c.fail(f"a Keras 1 configuration ({', '.join(old)}), which the engine does not read; run the recurrent "
                     "layers alone with --layer")


def ints(c: LayerCall, key: str, rank: int, default: Any = None, allow_zero: bool = False) -> tuple[int, ...]:
    """A config's int-or-tuple setting as `rank` integers (Keras's standardize_tuple)."""
    value = c.config.get(key, default)
    if value is None:
        value = default
    items = [value] * rank if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (list, tuple)) or len(items) != rank
            or not all(isinstance(n, int) and not isinstance(n, bool) and (n > 0 or (allow_zero and n == 0))
                       for n in items)):
        raise c.fail(f"{key} is {value!r}, not {rank} positive integer(s)")
    return tuple(int(n) for n in items)


def data_format(c: LayerCall) -> str:
    fmt = c.config.get("data_format") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        raise c.fail(f"data_format is {fmt!r}")
    return str(fmt)


def padding_mode(c: LayerCall, allowed: tuple[str, ...]) -> str:
    mode = c.config.get("padding", "valid")
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in allowed:
        raise c.fail(f"padding is {mode!r}, not one of {', '.join(allowed)}")
    return str(mode)


def channels_last(x: np.ndarray, fmt: str, rank: int) -> np.ndarray:
    """(N, C, *spatial) → (N, *spatial, C) for channels_first; the channel axis is -1-rank."""
    return np.moveaxis(x, -1 - rank, -1) if fmt == "channels_first" else x


def back_to(y: np.ndarray, fmt: str, rank: int) -> np.ndarray:
    return np.moveaxis(y, -1, -1 - rank) if fmt == "channels_first" else y


def spatial_axes(fmt: str, rank: int) -> tuple[int, ...]:
    """The spatial axes of a (batch, ..., channels) input in data format `fmt`."""
    return tuple(range(1, rank + 1)) if fmt == "channels_last" else tuple(range(2, rank + 2))


def spatial_format(c: Site, rank: int, ndim: int | None, formatted: bool) -> str:
    """The padding, cropping and upsampling layers' input: Keras 1 refused, rank `rank` + 2 (unchecked when `ndim`
    is unknown), the data format read only where the layer has one (`formatted`)."""
    refuse_keras1(c)
    if ndim is not None and ndim != rank + 2:
        raise c.refuse(f"{c.node.class_name} needs an input of rank {rank + 2}",
                       f"it needs an input of rank {rank + 2}")
    return data_format(c) if formatted else "channels_last"


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: the smaller half before."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def fixed_pads(mode: str, kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]
               ) -> list[tuple[int, int]] | None:
    """(before, after) per spatial axis whatever the input's length, or None when they depend on it ("same" with a
    stride above 1: `same_pads`). "valid" pads nothing, "causal" d·(k-1) before, "same" with stride 1 (k-1)·d in
    all, the smaller half before."""
    if mode == "valid":
        return [(0, 0)] * len(kernel)
    if mode == "causal":
        return [(dilation[0] * (kernel[0] - 1), 0)]
    if any(s > 1 for s in strides):
        return None
    totals = [(k - 1) * d for k, d in zip(kernel, dilation)]  # same_pads with stride 1, whatever n
    return [(t // 2, t - t // 2) for t in totals]


def pads_for(c: LayerCall, mode: str, spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
             dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    if mode == "causal" and len(spatial) != 1:
        raise c.fail("causal padding is only for 1-D convolutions")
    pads = fixed_pads(mode, kernel, strides, dilation)
    if pads is not None:
        return pads
    return [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation)]


# What the padded input costs where it is built. The engine never builds it (`taps`), but Keras (verify) and the
# PyTorch export do: a causal Conv1D with dilation_rate 5e7 pads verify's (4, 7, 3) input to (4, 5e7, 3), 2.4 GB,
# which took 10.5 GB in TensorFlow's atrous convolution (about 4 copies) and 2.7 GB through the export's F.pad;
# a "same" MaxPooling1D of pool_size 5e7 as much. Charged as TensorFlow's copies, so every command refuses first.
PADDED_COPIES = 4


def need_padded(c: LayerCall, x: np.ndarray, pads: list[tuple[int, int]]) -> None:
    """Charge the padded input the layer's settings imply (channels-last x, (before, after) per spatial axis)."""
    padded = (x.shape[0], *(float(n) + a + b for n, (a, b) in zip(x.shape[1:-1], pads)), x.shape[-1])
    if any(a or b for a, b in pads):
        c.need(*[padded] * PADDED_COPIES, what=f"the padded input, {PADDED_COPIES} copies as Keras and the exports "
                                                "build it")


def output_sizes(c: LayerCall, spatial: tuple[int, ...], pads: list[tuple[int, int]], kernel: tuple[int, ...],
                 strides: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n, (a, b), k, s, d in zip(spatial, pads, kernel, strides, dilation):
        span = (k - 1) * d + 1
        if n + a + b < span:
            raise c.fail(f"a window of {span} does not fit the {n} positions of a spatial axis (padding "
                         f"{c.config.get('padding', 'valid')!r}); Keras refuses this input too")
        out.append((n + a + b - span) // s + 1)
    return tuple(out)


def taps(spatial: tuple[int, ...], out: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
         dilation: tuple[int, ...], pads: list[tuple[int, int]]) -> Any:
    """(kernel position, the output positions it reaches, the input positions they read) for every position of
    the window that reads at least one real input position; padding is never built (a position in it reads 0,
    or nothing for a pool), so absurd paddings or windows cost nothing.

    Output i of an axis reads input i·s + p·d - before at kernel position p: for each p the outputs that read
    a real position form one run of indices, and the inputs they read one strided slice.
    """
    per_axis = []
    for n, o, k, s, d, (before, _) in zip(spatial, out, kernel, strides, dilation, pads):
        axis = []
        low = max(0, -(-(before - (o - 1) * s) // d))
        for p in range(low, min(k - 1, (before + n - 1) // d) + 1):
            first = max(0, -(-(before - p * d) // s))
            last = min(o - 1, (n - 1 + before - p * d) // s)
            if first <= last:
                start = first * s + p * d - before
                axis.append((p, slice(first, last + 1), slice(start, start + (last - first) * s + 1, s)))
        per_axis.append(axis)
    for combo in itertools.product(*per_axis):
        yield (tuple(p for p, _, _ in combo), (slice(None), *(o for _, o, _ in combo)),
               (slice(None), *(i for _, _, i in combo)))


# ---------------------------------------------------------------- the convolutions

def _conv_input(x: np.ndarray, s: ConvSettings) -> tuple[np.ndarray, tuple[int, ...]]:
    """The input as (N, *spatial, C) in the engine's dtype, and the leading batch shape."""
    rank = s.rank
    lead = x.shape[: x.ndim - rank - 1]
    x = x.reshape((-1, *x.shape[x.ndim - rank - 1:]))  # tf_keras's Conv runs extra leading axes as batch
    return channels_last(x, s.data_format, rank), lead


@dataclass(frozen=True)
class ConvSettings:
    """A convolution's config, read and checked once (`conv_settings`) for the engine and both exporters."""

    rank: int  # spatial axes
    kind: str  # "conv", "separable" or "depthwise"
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str  # "valid", "same" or (1-D) "causal"
    data_format: str
    use_bias: bool
    filters: int | None  # conv and separable: the output channels; depthwise: None (C·depth_multiplier)
    groups: int  # conv: the input channels' blocks; 1 otherwise
    depth_multiplier: int  # depthwise and separable; 1 for conv

    def fixed_pads(self) -> list[tuple[int, int]] | None:
        return fixed_pads(self.padding, self.kernel, self.strides, self.dilation)


def conv_settings(c: Site, ndim: int) -> ConvSettings:
    """The settings of a convolution (`CONV_KINDS`) called on an input of rank `ndim`, checked in this order: Keras 1,
    kernel_size, strides, dilation_rate, padding, strides with dilation, the input's rank, data_format, filters and
    groups or depth_multiplier (and a separable one's filters)."""
    rank, kind = CONV_KINDS[c.node.class_name]
    refuse_keras1(c)
    kernel = ints(c, "kernel_size", rank)
    strides = ints(c, "strides", rank, 1)
    dilation = ints(c, "dilation_rate", rank, 1)
    mode = padding_mode(c, ("valid", "same", "causal") if rank == 1 else ("valid", "same"))
    if kind == "conv" and max(strides) > 1 and max(dilation) > 1:
        raise c.fail(f"strides {strides} with dilation_rate {dilation}: Keras refuses both above 1 at once")
    if ndim < rank + 2 or (kind != "conv" and ndim != rank + 2):  # tf_keras's Conv runs extra leading axes as batch
        raise c.refuse(f"{c.node.class_name} needs an input of rank {rank + 2}",
                       f"it needs an input of rank {rank + 2}")
    fmt = data_format(c)
    use_bias = bool(c.config.get("use_bias", True))
    filters, groups, mult = None, 1, 1
    if kind == "conv":
        filters = config_int(c.config.get("filters"))
        groups = config_int(c.config.get("groups", 1) or 1)
        if filters is None or groups is None:
            raise c.refuse(f"filters {c.config.get('filters')!r} / groups {c.config.get('groups')!r} are not "
                           "positive integers", "its filters or groups are not positive integers")
    else:
        mult = config_int(c.config.get("depth_multiplier", 1))
        if mult is None:
            raise c.refuse(f"depth_multiplier is {c.config.get('depth_multiplier')!r}",
                           "its depth_multiplier is not a positive integer")
        if kind == "separable":
            filters = config_int(c.config.get("filters")) or 0
            if not filters:
                raise c.refuse(f"filters is {c.config.get('filters')!r}", "its filters are not a positive integer")
    return ConvSettings(rank, kind, kernel, strides, dilation, mode, fmt, use_bias, filters, groups, mult)


def _conv_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    """Channels last: the filters (depthwise: C·depth_multiplier); channels first: the last spatial size."""
    cfg = node.config
    _, kind = CONV_KINDS.get(node.class_name, (1, "conv"))
    n = in_dims[0] if in_dims else None
    try:
        if (cfg.get("data_format") or "channels_last") == "channels_last":
            if kind == "depthwise":
                m = config_int(cfg.get("depth_multiplier", 1))
                return [n * m if n is not None and m is not None else None]
            return [config_int(cfg.get("filters"))]
        if n is None:
            return [None]
        k, s, d = (_last(cfg.get(key, dflt)) for key, dflt in (("kernel_size", None), ("strides", 1),
                                                             ("dilation_rate", 1)))
        return [conv_out_length(n, k, s, d, str(cfg.get("padding", "valid")).lower())]
    except (TypeError, ValueError):
        return [None]


def _last(value: Any) -> int:
    v = value[-1] if isinstance(value, (list, tuple)) else value
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(v)
    return v


def depthwise_weights(site: Site, read: Callable[[list[tuple[Any, ...]]], list[np.ndarray]], kind: str,
                      kernel: tuple[int, ...], mult: int, filters: int | None, use_bias: bool
                      ) -> tuple[list[np.ndarray], int, int, np.ndarray]:
    """A depthwise or separable convolution's stored arrays as both exporters take them: (the arrays, input
    channels C, output channels, the depthwise kernel as C·M groups of one, (C·M, 1, *k)). The pointwise kernel
    and the bias are checked against the depthwise kernel; `read` checks the stored shapes as the engine does."""
    ones = (1,) * len(kernel)
    if kind == "depthwise":
        w = read([(*kernel, None, mult)] + ([(None,)] if use_bias else []))
        cin = w[0].shape[-2]
        out_channels = cin * mult
    else:
        out_channels = filters or 0
        w = read([(*kernel, None, mult), (*ones, None, out_channels)] + ([(out_channels,)] if use_bias else []))
        cin = w[0].shape[-2]
        if w[1].shape[-2] != cin * mult:
            raise site.fail(f"its pointwise kernel takes {w[1].shape[-2]} channels, its depthwise one gives "
                            f"{cin * mult}")
    if use_bias and w[-1].shape[0] != out_channels:
        raise site.fail(f"its bias has {w[-1].shape[0]} entries for {out_channels} output channels")
    # (*k, C, M) → (C·M, 1, *k): group c makes the outputs c·M ... c·M + M - 1, TensorFlow's order
    depthwise = np.moveaxis(w[0].reshape(*kernel, cin * mult), -1, 0)[:, None]
    return w, cin, out_channels, depthwise


def conv_out_length(n: int, k: int, s: int, d: int, mode: str) -> int | None:
    """Keras's conv_output_length."""
    span = (k - 1) * d + 1
    length = n if mode in ("same", "causal") else n - span + 1
    return (length + s - 1) // s if length > 0 else None


@layer(*CONV_KINDS, dims=_conv_dims, weighted=True)
def convolution(c: LayerCall) -> list[Tensor]:
    x = c.x
    s = conv_settings(c, x.ndim)
    rank, kind, kernel, strides, dilation, mode = s.rank, s.kind, s.kernel, s.strides, s.dilation, s.padding
    fmt, use_bias = s.data_format, s.use_bias
    x, lead = _conv_input(x, s)
    cin = x.shape[-1]
    dtype = c.ctx.dtype
    if kind == "conv":
        filters, groups = s.filters, s.groups
        if cin % groups or filters % groups:
            raise c.fail(f"{cin} input channels and {filters} filters cannot be split in {groups} groups")
        c.expect([(*kernel, cin // groups, filters)] + ([(filters,)] if use_bias else []))
        w = c.weights[0].astype(dtype).reshape(*kernel, cin // groups, groups, filters // groups)
        out_channels = filters
    else:
        mult = s.depth_multiplier
        if kind == "depthwise":
            out_channels = cin * mult
            c.expect([(*kernel, cin, mult)] + ([(out_channels,)] if use_bias else []))
        else:
            out_channels = s.filters or 0
            c.expect([(*kernel, cin, mult), (*(1,) * rank, cin * mult, out_channels)]
                     + ([(out_channels,)] if use_bias else []))
        w = c.weights[0].astype(dtype)
    pads = pads_for(c, mode, x.shape[1:-1], kernel, strides, dilation)
    need_padded(c, x, pads)
    out = output_sizes(c, x.shape[1:-1], pads, kernel, strides, dilation)
    check_sizes((x.shape[0], *out, out_channels), f"layer {c.node.path} ({c.node.class_name}): its output")
    c.need((x.shape[0], *out, out_channels), (x.shape[0], *out, out_channels), what="its output and a temporary")
    if kind == "conv":
        y = np.zeros((x.shape[0], *out, groups, filters // groups), dtype=dtype)
        for pos, at, reads in taps(x.shape[1:-1], out, kernel, strides, dilation, pads):
            win = x[reads]
            y[at] += np.einsum("...gc,cgf->...gf", win.reshape(*win.shape[:-1], groups, cin // groups), w[pos])
        y = y.reshape(*y.shape[:-2], filters)
    else:
        y = np.zeros((x.shape[0], *out, cin, mult), dtype=dtype)
        for pos, at, reads in taps(x.shape[1:-1], out, kernel, strides, dilation, pads):
            y[at] += x[reads][..., None] * w[pos]
        y = y.reshape(*y.shape[:-2], cin * mult)
        if kind == "separable":
            y = y @ c.weights[1].astype(dtype).reshape(cin * mult, out_channels)
    if use_bias:
        y = y + c.weights[-1].astype(dtype)
    y = back_to(y, fmt, rank)
    y = activation_of(c)(y)
    y = np.asarray(y, dtype=dtype)
    return [Tensor(y.reshape(*lead, *y.shape[1:]))]


# ---------------------------------------------------------------- transposed convolutions

TRANSPOSE_KINDS = {"Conv1DTranspose": 1, "Conv2DTranspose": 2}


@dataclass(frozen=True)
class TransposeSettings:
    """A transposed convolution's config, read and checked once (`transpose_settings`) for the engine and both
    exporters."""

    rank: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str  # "valid" or "same"
    output_padding: tuple[int, ...] | None
    data_format: str
    use_bias: bool
    filters: int

    def crops(self) -> list[tuple[int, int]]:
        """(before, after) per spatial axis: what Keras's output keeps of the full transposed convolution, whose n
        inputs reach the (n-1)·s + (k-1)·d + 1 positions i·s + p·d. Keras's output length (the same in both
        generations: `compute_conv_transpose_output_shape`, tf_keras's `deconv_output_length`) is that full length
        + op - k' (valid: op defaults to max(k', s) - k') or + k' % 2 + op - k' (same: op defaults to s - k' % 2),
        k' = (k-1)·d + 1; TensorFlow (conv_transpose = the gradient of a convolution of that output) drops
        max(0, full - output) // 2 positions before, the rest after. Neither depends on n. An `after` below 0 is
        that many zeros (plus the bias) appended."""
        out = []
        for j, (k, s, d) in enumerate(zip(self.kernel, self.strides, self.dilation)):
            span = (k - 1) * d + 1
            op = None if self.output_padding is None else self.output_padding[j]
            if self.padding == "valid":
                extra = (max(span, s) - span) if op is None else op
            else:
                extra = (s - span) if op is None else span % 2 + op - span
            before = max(0, -extra) // 2
            out.append((before, -extra - before))
        return out


def transpose_settings(c: Site, ndim: int) -> TransposeSettings:
    """The settings of a Conv1DTranspose / Conv2DTranspose called on an input of rank `ndim`: Keras 1, kernel_size,
    strides, dilation_rate, padding, output_padding (below the strides, as both Keras generations require), strides
    with dilation (refused by both above 1 at once), the input's rank, data_format, filters; "same" with an even
    dilated kernel and no output_padding is refused as TensorFlow refuses it (its output is one position short of
    the convolution it is the gradient of)."""
    rank = TRANSPOSE_KINDS[c.node.class_name]
    refuse_keras1(c)
    kernel = ints(c, "kernel_size", rank)
    strides = ints(c, "strides", rank, 1)
    dilation = ints(c, "dilation_rate", rank, 1)
    mode = padding_mode(c, ("valid", "same"))
    op = None if c.config.get("output_padding") is None else ints(c, "output_padding", rank, allow_zero=True)
    if op is not None and any(p >= s for p, s in zip(op, strides)):
        raise c.fail(f"output_padding {op} is not below strides {strides}; Keras refuses it")
    if max(strides) > 1 and max(dilation) > 1:
        raise c.fail(f"strides {strides} with dilation_rate {dilation}: Keras refuses both above 1 at once")
    if ndim != rank + 2:
        raise c.refuse(f"{c.node.class_name} needs an input of rank {rank + 2}",
                       f"it needs an input of rank {rank + 2}")
    fmt = data_format(c)
    filters = config_int(c.config.get("filters"))
    if filters is None:
        raise c.refuse(f"filters is {c.config.get('filters')!r}", "its filters are not a positive integer")
    s = TransposeSettings(rank, kernel, strides, dilation, mode, op, fmt, bool(c.config.get("use_bias", True)),
                          filters)
    if mode == "same" and op is not None and any(((k - 1) * d + 1) % 2 + p == 0
                                                 for k, d, p in zip(kernel, dilation, op)):
        raise c.fail("'same' padding with an even kernel and output_padding 0: TensorFlow refuses it too")
    return s


def _transpose_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    """Channels last: the filters; channels first: the last spatial axis's output length."""
    cfg = node.config
    if (cfg.get("data_format") or "channels_last") == "channels_last":
        return [config_int(cfg.get("filters"))]
    n = in_dims[0] if in_dims else None
    try:
        k, s, d = (_last(cfg.get(key, dflt)) for key, dflt in (("kernel_size", None), ("strides", 1),
                                                             ("dilation_rate", 1)))
        ops = cfg.get("output_padding")
        op = None if ops is None else (ops[-1] if isinstance(ops, (list, tuple)) else ops)
        settings = TransposeSettings(1, (k,), (s,), (d,), str(cfg.get("padding", "valid")).lower(),
                                     None if op is None else (int(op),), "channels_first", True, 1)
        before, after = settings.crops()[0]
    except (TypeError, ValueError):
        return [None]
    return [None if n is None else (n - 1) * s + (k - 1) * d + 1 - before - after]


@layer(*TRANSPOSE_KINDS, dims=_transpose_dims, weighted=True)
def convolution_transpose(c: LayerCall) -> list[Tensor]:
    """y at o = i·s + p·d - before gets x[i] · W[p] (W[p] is (filters, C)), for the outputs Keras keeps."""
    s = transpose_settings(c, c.x.ndim)
    dtype = c.ctx.dtype
    x = channels_last(c.x, s.data_format, s.rank).astype(dtype, copy=False)
    cin, spatial = x.shape[-1], x.shape[1:-1]
    c.expect([(*s.kernel, s.filters, cin)] + ([(s.filters,)] if s.use_bias else []))
    w = c.weights[0].astype(dtype)
    crops = s.crops()
    out = tuple((n - 1) * st + (k - 1) * d + 1 - a - b
                for n, k, st, d, (a, b) in zip(spatial, s.kernel, s.strides, s.dilation, crops))
    check_sizes((x.shape[0], *out, s.filters), f"layer {c.node.path} ({c.node.class_name}): its output")
    c.need((x.shape[0], *out, s.filters), (x.shape[0], *out, s.filters), what="its output and a temporary")
    y = np.zeros((x.shape[0], *out, s.filters), dtype=dtype)
    per_axis = []
    for n, o, k, st, d, (before, _) in zip(spatial, out, s.kernel, s.strides, s.dilation, crops):
        axis = []
        for p in range(k):
            first = max(0, -(-(before - p * d) // st))
            last = min(n - 1, (o - 1 + before - p * d) // st)
            if first <= last:
                start = first * st + p * d - before
                axis.append((p, slice(start, start + (last - first) * st + 1, st), slice(first, last + 1)))
        per_axis.append(axis)
    for combo in itertools.product(*per_axis):
        pos = tuple(p for p, _, _ in combo)
        y[(slice(None), *(o for _, o, _ in combo))] += x[(slice(None), *(i for _, _, i in combo))] @ w[pos].T
    if s.use_bias:
        y = y + c.weights[1].astype(dtype)
    y = activation_of(c)(back_to(y, s.data_format, s.rank))
    return [Tensor(np.asarray(y, dtype=dtype))]


# ---------------------------------------------------------------- padding, cropping, upsampling

def conv_pair_list(c: LayerCall, key: str, rank: int, default: Any) -> list[tuple[int, int]]:
    """ZeroPadding/Cropping amounts: int, (a, b) for 1-D, or ((top, bottom), (left, right)) / (h, w) for 2-D."""
    value = c.config.get(key, default)
    if rank == 1:
        pair = [value, value] if isinstance(value, int) else value
        pairs = [pair]
    else:
        pairs = [[value, value]] * 2 if isinstance(value, int) else value
        if isinstance(pairs, (list, tuple)) and len(pairs) == 2:
            pairs = [[p, p] if isinstance(p, int) else p for p in pairs]
    ok = (isinstance(pairs, (list, tuple)) and len(pairs) == rank
          and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(
              isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in p) for p in pairs))
    if not ok:
        raise c.fail(f"{key} is {value!r}")
    return [(int(a), int(b)) for a, b in pairs]


def _spatial_input(c: LayerCall, rank: int, formatted: bool) -> tuple[np.ndarray, str]:
    x = c.x
    fmt = spatial_format(c, rank, x.ndim, formatted)
    return channels_last(x, fmt, rank), fmt


def _resize_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    """Channels last: unchanged; channels first: the last spatial axis padded or cropped."""
    cfg = node.config
    if (cfg.get("data_format") or "channels_last") == "channels_last":
        return same_dims(node, in_dims)
    n = in_dims[0] if in_dims else None
    value = cfg.get("padding" if node.class_name.startswith("ZeroPadding") else "cropping")
    try:
        # 1-D: n or (a, b); 2-D: n, (h, w) or ((top, bottom), (left, right)): the last axis's pair
        last = value if isinstance(value, int) or node.class_name.endswith("1D") else value[-1]
        a, b = (last, last) if isinstance(last, int) else last
        if not all(isinstance(v, int) for v in (a, b)) or n is None:
            return [None]
        sign = 1 if node.class_name.startswith("ZeroPadding") else -1
        size = n + sign * (a + b)
        return [size if size > 0 else None]
    except (TypeError, ValueError, IndexError):
        return [None]


@layer("ZeroPadding1D", "ZeroPadding2D", dims=_resize_dims)
def zero_padding(c: LayerCall) -> list[Tensor]:
    rank = 1 if c.node.class_name == "ZeroPadding1D" else 2
    pads = conv_pair_list(c, "padding", rank, 1)
    x, fmt = _spatial_input(c, rank, formatted=True)
    padded = (x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], pads)), x.shape[-1])
    check_sizes(padded, f"layer {c.node.path} ({c.node.class_name}): its output")
    c.need(padded)
    y = np.pad(x, [(0, 0), *pads, (0, 0)])
    return [Tensor(back_to(y, fmt, rank))]


@layer("Cropping1D", "Cropping2D", dims=_resize_dims)
def cropping(c: LayerCall) -> list[Tensor]:
    rank = 1 if c.node.class_name == "Cropping1D" else 2
    crops = conv_pair_list(c, "cropping", rank, (1, 1) if rank == 1 else 0)
    x, fmt = _spatial_input(c, rank, formatted=rank == 2)
    for n, (a, b) in zip(x.shape[1:-1], crops):
        if a + b >= n:
            raise c.fail(f"cropping {a}+{b} leaves nothing of an axis of {n}; Keras refuses it too")
    index = (slice(None), *(slice(a, n - b) for n, (a, b) in zip(x.shape[1:-1], crops)), slice(None))
    return [Tensor(back_to(x[index], fmt, rank))]


def upsampling_size(c: Site) -> int:
    size = config_int(c.config.get("size", 2))
    if size is None:
        raise c.refuse(f"size is {c.config.get('size')!r}", "its size is not a positive integer")
    return size


@layer("UpSampling1D", dims=same_dims)
def up_sampling(c: LayerCall) -> list[Tensor]:
    size = upsampling_size(c)
    x, _ = _spatial_input(c, 1, formatted=False)
    check_sizes((x.shape[0], x.shape[1] * size, x.shape[2]), f"layer {c.node.path} ({c.node.class_name}): its output")
    c.need((x.shape[0], x.shape[1] * size, x.shape[2]))
    return [Tensor(np.repeat(x, size, axis=1))]
