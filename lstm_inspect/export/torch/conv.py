"""Convolutions, padding, cropping and upsampling for the PyTorch export (CNN-LSTM models; pools: `pooling`).

Why: the engine runs the layers that read a recurrent model's input through convolutions
(`lstm_inspect/engine/layers/conv.py`, `pooling.py`), so `export --to pytorch` must write them too, readably:
one nn.Conv1d/nn.Conv2d attribute per convolution, named after its Keras layer, the Keras kernel
transposed into PyTorch's layout in weights.safetensors;
padding, cropping and upsampling as a line of forward(). Each emitter mirrors the engine's function,
which follows `keras/src/layers/convolutional/`, `keras/src/layers/pooling/`, `keras/src/layers/reshaping/`,
the TensorFlow backend's conv and pool ops (`keras/src/backend/tensorflow/nn.py`) and their
`tf_keras/src/layers/` counterparts (the rules are documented beside the engine's functions, which also
read the settings for this module: `conv_settings`, `spatial_format`, `upsampling_size`,
and give the padding amounts that do not depend on the input's length, `fixed_pads`). In PyTorch:

- PyTorch's convolutions and pools are channels first: a channels_last input is moved in and out
  (movedim), and the activation follows the bias on the output's own layout (softmax: its last axis).
- "same" pads like TensorFlow, the smaller half before: with stride 1 the pads are fixed ((k-1)·d in all),
  symmetric ones go in the module's padding, the others in an F.pad line; with a stride above 1 they
  depend on the input's length, so `same_pad` computes them in forward(). "causal" pads d·(k-1) before.
- Max pooling never takes a padded position (-inf); average pooling divides by the real positions only
  (count_include_pad=False, or the pooled ones when padded by `same_pad`).
- Kernels: Keras (*k, C/groups, F) → PyTorch (F, C/groups, *k); depthwise (*k, C, M) → a Conv with C groups
  and C·M outputs in TensorFlow's order (c·M + m); separable = that depthwise Conv, then a 1×1 Conv
  carrying the bias. None of these layers passes a Keras mask on.
- Conv1DTranspose/Conv2DTranspose: nn.ConvTranspose1d/2d, the Keras kernel (*k, F, C) as (C, F, *k); what
  Keras keeps of the full output (`TransposeSettings.crops`) is the module's padding when it drops as many
  positions on both sides, else a slice in forward(); the zeros Keras appends are the module's output_padding.

The pools (plain and global) are in `pooling.py`, as in the engine; Dot and Permute in `core.py`, the activation
layers in `activations.py`.
"""

from __future__ import annotations

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
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, snippet
from lstm_inspect.export.torch.registry import layer

snippet("same_pad", '''
def same_pad(x: Tensor, kernel: List[int], strides: List[int], dilation: Optional[List[int]] = None,
             value: float = 0.0) -> Tensor:
    """x (batch, channels, *spatial) padded as TensorFlow's "same" padding: per axis max((ceil(n/s) - 1)·s +
    (k-1)·d + 1 - n, 0) positions, the smaller half before."""
    pads: List[int] = []
    for j in range(len(kernel) - 1, -1, -1):  # F.pad's order: the last axis first
        n, k, s = x.shape[2 + j], kernel[j], strides[j]
        d = 1 if dilation is None else dilation[j]
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    return F.pad(x, pads, value=value)
''', imports=TYPING)


def tuple_text(values: tuple[int, ...]) -> str:
    """A size as PyTorch takes it: one int for 1-D, a tuple for 2-D."""
    return str(values[0]) if len(values) == 1 else f"({', '.join(str(int(v)) for v in values)})"


def channels_first(x: str, fmt: str) -> str:
    return x if fmt == "channels_first" else f"{x}.movedim(-1, 1)"


def channels_back(y: str, fmt: str) -> str:
    return y if fmt == "channels_first" else f"{y}.movedim(1, -1)"


def f_pad(pads: list[tuple[int, int]]) -> str:
    """F.pad's argument for the trailing spatial axes: the last axis's (before, after) first."""
    return f"({', '.join(f'{a}, {b}' for a, b in reversed(pads))})"


def input_rank(e: LayerEmit, rank: int) -> int:
    """The input's rank (from the engine's run on a made-up input; rank + 2 when that run is unknown)."""
    return e.x.rank if e.x.rank is not None else rank + 2


# ---------------------------------------------------------------- the convolutions


@layer(*CONV_KINDS)
def convolution(e: LayerEmit) -> list[Sym]:
    rank, _ = CONV_KINDS[e.kind]
    r = input_rank(e, rank)
    s = conv_settings(e, r)
    kind, kernel, strides, dilation, mode = s.kind, s.kernel, s.strides, s.dilation, s.padding
    fmt, use_bias = s.data_format, s.use_bias
    conv = f"nn.Conv{rank}d"
    options = "".join([f", stride={tuple_text(strides)}" if max(strides) > 1 else "",
                       f", dilation={tuple_text(dilation)}" if max(dilation) > 1 else ""])
    pads = s.fixed_pads()
    symmetric = pads is not None and all(a == b for a, b in pads)
    if symmetric and pads and max(a for a, _ in pads) > 0:
        options += f", padding={tuple_text(tuple(a for a, _ in pads))}"
    if kind == "conv":
        filters, groups = s.filters, s.groups
        w = e.read([(*kernel, None, filters)] + ([(filters,)] if use_bias else []))
        cin = w[0].shape[-2] * groups
        if filters % groups:
            raise e.fail(f"{filters} filters cannot be split in {groups} groups")
        arrays = {"weight": np.transpose(w[0], (rank + 1, rank, *range(rank)))} | ({"bias": w[1]} if use_bias else {})
        group = f", groups={groups}" if groups > 1 else ""
        ctor = f"{conv}({cin}, {filters}, {tuple_text(kernel)}{options}{group}{'' if use_bias else ', bias=False'})"
        modules = [e.w.module(e.key, e.hint, ctor, arrays)]
    else:
        mult = s.depth_multiplier
        w, cin, filters, depthwise = depthwise_weights(e, e.read, kind, kernel, mult, s.filters, use_bias)
        depth_bias = use_bias and kind == "depthwise"
        ctor = (f"{conv}({cin}, {cin * mult}, {tuple_text(kernel)}{options}, groups={cin}"
                f"{'' if depth_bias else ', bias=False'})")
        if kind == "depthwise":
            modules = [e.w.module(e.key, e.hint, ctor, {"weight": depthwise} | ({"bias": w[1]} if use_bias else {}))]
        else:
            pointwise = {"weight": np.transpose(w[1], (rank + 1, rank, *range(rank)))} | (
                {"bias": w[2]} if use_bias else {})
            modules = [e.w.module(f"{e.key}:depthwise", f"{e.hint}_depthwise", ctor, {"weight": depthwise}),
                       e.w.module(f"{e.key}:pointwise", f"{e.hint}_pointwise",
                                  f"{conv}({cin * mult}, {filters}, 1{'' if use_bias else ', bias=False'})", pointwise)]
    if fmt == "channels_last" and e.x.shape is not None and e.x.shape[-1] != cin:
        raise e.fail(f"its kernel takes {cin} input channels, its input has {e.x.shape[-1]}")

    x = e.x.name
    tail = rank + 1  # the axes a convolution reads: channels and spatial
    if r > rank + 2:  # tf_keras's Conv runs extra leading axes as batch
        x = e.w.let(f"{e.hint}_flat", f"{x}.reshape([-1] + list({x}.shape[-{tail}:]))").name
    h = channels_first(x, fmt)
    comment = ""
    if pads is None:
        e.w.need("same_pad")
        h = f"same_pad({h}, {list(kernel)}, {list(strides)}, {list(dilation)})"
        comment = "TensorFlow's same padding"
    elif not symmetric:
        h = f"F.pad({h}, {f_pad(pads)})"
        comment = "causal: zeros before the steps" if mode == "causal" else "TensorFlow's same padding"
    for attr in modules:
        h = f"self.{attr}({h})"
    y = channels_back(h, fmt)
    if r > rank + 2:
        y = e.w.let(f"{e.hint}_conv", y, comment=comment).name
        y, comment = f"{y}.reshape(list({e.x.name}.shape[:-{tail}]) + list({y}.shape[1:]))", ""
    act = e.w.act(e.activation(), y, f"layer {e.node.path}")
    return [e.w.let(e.hint, act, comment=comment)]


@layer(*TRANSPOSE_KINDS)
def convolution_transpose(e: LayerEmit) -> list[Sym]:
    rank = TRANSPOSE_KINDS[e.kind]
    s = transpose_settings(e, input_rank(e, rank))
    w = e.read([(*s.kernel, s.filters, None)] + ([(s.filters,)] if s.use_bias else []))
    cin = w[0].shape[-1]
    if s.data_format == "channels_last" and e.x.shape is not None and e.x.shape[-1] != cin:
        raise e.fail(f"its kernel takes {cin} input channels, its input has {e.x.shape[-1]}")
    crops = s.crops()
    symmetric = all(a == b for a, b in crops)
    options = "".join([f", stride={tuple_text(s.strides)}" if max(s.strides) > 1 else "",
                       f", dilation={tuple_text(s.dilation)}" if max(s.dilation) > 1 else "",
                       f", padding={tuple_text(tuple(a for a, _ in crops))}"
                       if symmetric and max(a for a, _ in crops) > 0 else "",
                       f", output_padding={tuple_text(tuple(max(-b, 0) for _, b in crops))}"
                       if min(b for _, b in crops) < 0 else "",
                       "" if s.use_bias else ", bias=False"])
    arrays = {"weight": np.transpose(w[0], (rank + 1, rank, *range(rank)))} | ({"bias": w[1]} if s.use_bias else {})
    ctor = f"nn.ConvTranspose{rank}d({cin}, {s.filters}, {tuple_text(s.kernel)}{options})"
    attr = e.w.module(e.key, e.hint, ctor, arrays)
    h = f"self.{attr}({channels_first(e.x.name, s.data_format)})"
    comment = ""
    if not symmetric:  # the positions Keras drops before and after (TensorFlow's crop of the full output)
        index = ", ".join(_slice(a, max(b, 0)) for a, b in crops)
        h, comment = f"{h}[:, :, {index}]", "the positions TensorFlow's transposed convolution drops"
    act = e.w.act(e.activation(), channels_back(h, s.data_format), f"layer {e.node.path}")
    return [e.w.let(e.hint, act, comment=comment)]


# ---------------------------------------------------------------- padding, cropping, upsampling


def _spatial(e: LayerEmit, rank: int, formatted: bool) -> list[int]:
    """The spatial axes of the input (the data format read only where the engine reads it)."""
    return list(spatial_axes(spatial_format(e, rank, e.x.rank, formatted), rank))


@layer("ZeroPadding1D", "ZeroPadding2D")
def zero_padding(e: LayerEmit) -> list[Sym]:
    rank = 1 if e.kind == "ZeroPadding1D" else 2
    pads = conv_pair_list(e, "padding", rank, 1)
    axes = _spatial(e, rank, formatted=True)
    per_axis = [(0, 0)] * (rank + 2)
    for axis, pair in zip(axes, pads):
        per_axis[axis] = pair
    trailing = per_axis[min(axes):]  # F.pad lists the last axis first, down to the first padded one
    return [e.w.let(e.hint, f"F.pad({e.x.name}, {f_pad(trailing)})", e.x.kind,
                    comment="zeros before and after, the last axis first")]


def _slice(a: int, b: int) -> str:
    return f"{a}:-{b}" if b else f"{a}:"


@layer("Cropping1D", "Cropping2D")
def cropping(e: LayerEmit) -> list[Sym]:
    rank = 1 if e.kind == "Cropping1D" else 2
    crops = conv_pair_list(e, "cropping", rank, (1, 1) if rank == 1 else 0)
    axes = _spatial(e, rank, formatted=rank == 2)  # Cropping1D has no data_format (the engine's rule)
    index = [":"] * (max(axes) + 1)
    for axis, (a, b) in zip(axes, crops):
        index[axis] = _slice(a, b)
    return [e.w.let(e.hint, f"{e.x.name}[{', '.join(index)}]", e.x.kind)]


@layer("UpSampling1D")
def up_sampling(e: LayerEmit) -> list[Sym]:
    size = upsampling_size(e)
    _spatial(e, 1, formatted=False)
    return [e.w.let(e.hint, f"{e.x.name}.repeat_interleave({size}, dim=1)", e.x.kind,
                    comment="each step repeated in place")]
