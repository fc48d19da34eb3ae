"""The layers around recurrent layers as ONNX operators: one emitter per layer kind the engine runs.

Each emitter mirrors the engine's function for its kind (`lstm_inspect/engine/layers/core.py`), masks
included: the same Keras rules (`keras/src/layers/core/`, `normalization/`, `merging/`, `reshaping/` and
tf_keras's), written with ONNX operators on symbolic tensors (`Sym`). A kind with no emitter in the
registry (`registry.LAYERS`) is refused before anything is written.

- Dot: batch_dot over one axis of each input (normalize: Keras 3 caps 1/norm at 1e7, tf_keras floors the
  squared norm at 1e-12; `keras/src/layers/merging/dot.py`); Dot and Permute
  (`keras/src/layers/reshaping/permute.py`) output no mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.engine.layers.core import IDENTITY, MERGES, merge_mask_rule, merge_masks_keras34, wrapped_layer
from lstm_inspect.engine.layers.registry import LAYERS as ENGINE_LAYERS
from lstm_inspect.export.onnx.graph import Graph, Sym, activation
from lstm_inspect.export.onnx.registry import LAYERS, OnnxCall, layer, out_dim
from lstm_inspect.model.cells.base import activation_name, config_int


def layer_activation(c: OnnxCall, x: str, key: str = "activation", default: str = "linear") -> str:
    return activation(c.g, activation_name(c.config.get(key), default), x, c.ctx.hard_sigmoid)


@layer(*IDENTITY)
def identity(c: OnnxCall) -> list[Sym]:
    return [c.x]


@layer("Dense")
def dense(c: OnnxCall) -> list[Sym]:
    cfg = c.config
    use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
    units = config_int(cfg.get("units", cfg.get("output_dim")))
    if not c.weights or (units is not None and c.weights[0].shape[-1] != units):
        raise c.fail("its stored kernel does not fit its units")
    y = c.g.op("MatMul", c.float_input(), c.const(c.weights[0], "kernel"), hint=c.hint)
    if use_bias:
        y = c.g.op("Add", y, c.const(c.weights[1], "bias"), hint=c.hint)
    return [Sym(layer_activation(c, y), c.x.rank, mask=c.x.mask, dim=int(c.weights[0].shape[-1]))]


@layer("Activation")
def activation_layer(c: OnnxCall) -> list[Sym]:
    return [Sym(layer_activation(c, c.float_input()), c.x.rank, mask=c.x.mask, dim=c.x.dim)]


@layer("Embedding")
def embedding(c: OnnxCall) -> list[Sym]:
    table = c.weights[0]
    ids = c.x.name if c.x.kind == "int" else c.g.cast(c.x.name, "int")
    y = c.g.op("Gather", c.const(table, "embeddings"), ids, axis=0, hint=c.hint)
    mask = None
    if c.config.get("mask_zero"):
        mask = c.g.op("Not", c.g.op("Equal", ids, c.g.const(0, "zero_id", np.int64)), hint=f"{c.hint}.mask")
    return [Sym(y, c.x.rank + 1, mask=mask, dim=int(table.shape[1]))]


@layer("Masking")
def masking(c: OnnxCall) -> list[Sym]:
    g, x = c.g, c.float_input()
    value = c.config.get("mask_value", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise c.fail(f"mask_value {value!r} is not a number")
    differs = g.cast(g.op("Not", g.op("Equal", x, g.const(float(value)))), "float")
    keep = g.reduce("ReduceMax", differs, [-1], keepdims=False)
    mask = g.cast(keep, "bool")
    y = g.op("Mul", x, g.unsqueeze(keep, [-1]), hint=c.hint)
    return [Sym(y, c.x.rank, mask=mask, dim=c.x.dim)]


@layer("Flatten")
def flatten(c: OnnxCall) -> list[Sym]:
    return [Sym(c.g.op("Flatten", c.x.name, axis=1, hint=c.hint), 2, kind=c.x.kind)]


@layer("RepeatVector")
def repeat_vector(c: OnnxCall) -> list[Sym]:
    n = config_int(c.config.get("n"))
    if n is None:
        raise c.fail(f"RepeatVector's n is {c.config.get('n')!r}")
    y = c.g.op("Expand", c.g.unsqueeze(c.x.name, [1]), c.g.ints([1, n, 1]), hint=c.hint)
    return [Sym(y, 3, kind=c.x.kind, dim=c.x.dim)]


@layer("Reshape")
def reshape(c: OnnxCall) -> list[Sym]:
    target = c.config.get("target_shape")
    if not isinstance(target, list) or not all(isinstance(n, int) and not isinstance(n, bool) and (n > 0 or n == -1)
                                               for n in target) or target.count(-1) > 1:
        raise c.fail(f"Reshape's target_shape is {target!r}")
    y = c.g.op("Reshape", c.x.name, c.g.ints([0, *target]), hint=c.hint)
    return [Sym(y, 1 + len(target), kind=c.x.kind, dim=target[-1] if target and target[-1] > 0 else None)]


def _axis(c: OnnxCall, axis: Any, rank: int) -> int:
    axis = axis[0] if isinstance(axis, list) and axis else axis
    if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank:
        raise c.fail(f"axis {axis!r} does not fit an input of rank {rank}")
    return axis % rank


@layer("BatchNormalization")
def batch_norm(c: OnnxCall) -> list[Sym]:
    cfg, x = c.config, c.float_input()
    axis = _axis(c, cfg.get("axis", -1), c.x.rank)
    arrays = list(c.weights)
    gamma = arrays.pop(0) if cfg.get("scale", True) else None
    beta = arrays.pop(0) if cfg.get("center", True) else None
    if len(arrays) != 2:
        raise c.fail("the file does not store its moving mean and variance")
    mean, var = arrays
    shape = [1] * c.x.rank
    shape[axis] = -1
    dt = c.ctx.dtype
    # as the engine: (x - mean) / sqrt(var + eps) · gamma + beta, in the engine's precision
    std = np.sqrt(var.astype(dt) + dt(cfg.get("epsilon", 1e-3)))
    y = c.g.op("Div", c.g.op("Sub", x, c.const(mean.reshape(shape), "moving_mean")),
               c.const(std.reshape(shape), "std"), hint=c.hint)
    if gamma is not None:
        y = c.g.op("Mul", y, c.const(gamma.reshape(shape), "gamma"))
    if beta is not None:
        y = c.g.op("Add", y, c.const(beta.reshape(shape), "beta"))
    return [Sym(y, c.x.rank, mask=c.x.mask, dim=c.x.dim)]


@layer("LayerNormalization")
def layer_norm(c: OnnxCall) -> list[Sym]:
    cfg, g, x = c.config, c.g, c.float_input()
    axis = cfg.get("axis", -1)
    axes = [_axis(c, a, c.x.rank) for a in (axis if isinstance(axis, list) else [axis])]
    arrays = list(c.weights)
    gamma = arrays.pop(0) if cfg.get("scale", True) and arrays else None
    beta = arrays.pop(0) if cfg.get("center", True) and not cfg.get("rms_scaling") and arrays else None
    eps = c.g.const(c.ctx.dtype(cfg.get("epsilon", 1e-3)))
    if cfg.get("rms_scaling"):
        ms = g.reduce("ReduceMean", g.op("Mul", x, x), axes)
        y = g.op("Div", x, g.op("Sqrt", g.op("Add", ms, eps)), hint=c.hint)
    else:
        centered = g.op("Sub", x, g.reduce("ReduceMean", x, axes))
        var = g.reduce("ReduceMean", g.op("Mul", centered, centered), axes)
        y = g.op("Div", centered, g.op("Sqrt", g.op("Add", var, eps)), hint=c.hint)
    # gamma and beta span the normalized axes (as the engine broadcasts them)
    if gamma is not None:
        y = g.op("Mul", y, c.const(gamma, "gamma"))
    if beta is not None:
        y = g.op("Add", y, c.const(beta, "beta"))
    return [Sym(y, c.x.rank, mask=c.x.mask, dim=c.x.dim)]


@layer(*MERGES)
def merge(c: OnnxCall) -> list[Sym]:
    g, cls = c.g, c.node.class_name
    if len(c.inputs) < (2 if cls == "Subtract" else 1):
        raise c.fail(f"{cls} needs at least two inputs")
    xs = [c.float_input(k) for k in range(len(c.inputs))]
    rank = max(s.rank for s in c.inputs)
    dim = c.inputs[0].dim
    if cls == "Concatenate":
        axis = c.config.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise c.fail(f"axis {axis!r} is not an integer")
        y = g.op("Concat", *xs, axis=axis, hint=c.hint)
        dims = [s.dim for s in c.inputs]
        dim = sum(d for d in dims if d is not None) if axis in (-1, rank - 1) and None not in dims else None
    else:
        # a lower-rank input expanded at axis 1 until every input has the highest rank (Merge.call); it loses its
        # Keras mask for the values (a new tensor)
        grown = [s.rank < rank for s in c.inputs]
        xs = [g.unsqueeze(x, list(range(1, 1 + rank - s.rank))) if up else x for x, s, up in zip(xs, c.inputs, grown)]
        kept = [None if up else s.mask for s, up in zip(c.inputs, grown)]
        if merge_masks_keras34(c.ctx) and cls in ("Maximum", "Minimum", "Multiply") and any(kept):
            y, own = _masked_merge(c, cls, xs, kept)
            return [Sym(y, rank, mask=own if own is not None else merged_mask(c), dim=dim)]
        if cls == "Subtract":
            y = g.op("Sub", xs[0], xs[1], hint=c.hint)
        else:
            op = {"Add": "Sum", "Average": "Mean", "Maximum": "Max", "Minimum": "Min", "Multiply": "Mul"}[cls]
            if op == "Mul":
                y = xs[0]
                for other in xs[1:]:
                    y = g.op("Mul", y, other, hint=c.hint)
            else:
                y = g.op(op, *xs, hint=c.hint)
    return [Sym(y, rank, mask=merged_mask(c), dim=dim)]


def _masked_merge(c: OnnxCall, cls: str, xs: list[str], masks: list[str | None]) -> tuple[str, str | None]:
    """Keras 3.4+'s Maximum/Minimum and Multiply with their inputs' masks (`layers.core._masked_merge`): the output,
    and the mask the layer sets itself (the OR of the masks when every input has one), else None."""
    g = c.g
    wide = [None if m is None else g.unsqueeze(m, [-1]) for m in masks]  # (batch, steps, 1): broadcast by Where
    if cls == "Multiply":
        every = all(m is not None for m in masks)
        out = None
        for x, m in zip(xs, wide):
            if m is not None:
                x = g.op("Where", m, x, g.const(1.0))
            out = x if out is None else g.op("Mul", out, x)
        if not every:
            return out, None
        own = masks[0]
        for m in masks[1:]:
            own = g.op("Or", own, m)
        return g.op("Where", g.unsqueeze(own, [-1]), out, g.const(0.0), hint=c.hint), own
    op = "Max" if cls == "Maximum" else "Min"
    out, out_mask, own = xs[0], wide[0], masks[0]
    for x, m, m2 in zip(xs[1:], wide[1:], masks[1:]):
        if m is not None:
            x = g.op("Where", m, x, out)
        if out_mask is not None:
            out = g.op("Where", out_mask, out, x)
        if m is not None and out_mask is not None:
            out_mask, own = g.op("Or", out_mask, m), g.op("Or", own, m2)
        else:
            out_mask = own = None
        out = g.op(op, out, x)
    return g.op("Identity", out, hint=c.hint), own


def merged_mask(c: OnnxCall) -> str | None:
    """Keras's compute_mask of merge layers, by the engine's rule (`layers.core.merge_mask_rule`)."""
    g = c.g
    rule = merge_mask_rule(c.node.class_name, [s.mask is not None for s in c.inputs], c.ctx)
    if rule is None:
        return None
    how, fill = rule
    # an unmasked input taking part counts as all valid: true over (batch, steps)
    masks = [s.mask if s.mask is not None else g.filled(g.shape_range(s.name, 0, 2), True)
             for s in c.inputs if s.mask is not None or fill]
    out = masks[0]
    for m in masks[1:]:
        out = g.op("Or" if how == "or" else "And", out, m)
    return out


@layer("TimeDistributed")
def time_distributed(c: OnnxCall) -> list[Sym]:
    """The wrapped layer on (batch·steps, ...), reshaped back (as the engine runs it)."""
    g = c.g
    inner = wrapped_layer(c.node)
    fn = LAYERS.get(inner.class_name)
    if fn is None or inner.class_name == "TimeDistributed" or inner.class_name not in ENGINE_LAYERS:
        raise c.fail(f"TimeDistributed({inner.class_name}) has no ONNX form in lstm-inspect")
    if c.x.rank < 3:
        raise c.fail("TimeDistributed needs (batch, steps, ...)")
    lead = g.shape_range(c.x.name, 0, 2)
    flat = g.op("Reshape", c.x.name, g.op("Concat", g.ints([-1]), g.shape_range(c.x.name, 2), axis=0))
    (y,) = fn(OnnxCall(g, inner, [Sym(flat, c.x.rank - 1, kind=c.x.kind, dim=c.x.dim)], c.weights, c.ctx))[:1]
    back = g.op("Reshape", y.name, g.op("Concat", lead, g.shape_range(y.name, 1), axis=0), hint=c.hint)
    return [Sym(back, y.rank + 1, kind=y.kind, mask=c.x.mask, dim=y.dim)]


@layer("Permute")
def permute(c: OnnxCall) -> list[Sym]:
    dims = c.config.get("dims")
    if (not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
            or sorted(dims) != list(range(1, len(dims) + 1))):
        raise c.fail(f"Permute's dims {dims!r} are not a permutation of 1..n")
    if len(dims) != c.x.rank - 1:
        raise c.fail(f"Permute's dims {dims} need an input of rank {len(dims) + 1}")
    y = c.g.op("Transpose", c.x.name, perm=[0, *dims], hint=c.hint)
    return [Sym(y, c.x.rank, kind=c.x.kind, dim=out_dim(c))]


def _l2_normalize(g: Graph, x: str, axis: int, keras_major: int) -> str:
    """x / ‖x‖ along `axis`: Keras 3's ops.normalize caps 1/‖x‖ at 1e7, tf.linalg.l2_normalize floors ‖x‖² at
    1e-12 (the engine's core._l2_normalize)."""
    square_sum = g.reduce("ReduceSum", g.op("Mul", x, x), [axis])
    if keras_major >= 3:
        inv = g.op("Min", g.op("Div", g.const(1.0), g.op("Sqrt", square_sum)), g.const(1e7))
    else:
        inv = g.op("Div", g.const(1.0), g.op("Sqrt", g.op("Max", square_sum, g.const(1e-12))))
    return g.op("Mul", x, inv)


@layer("Dot")
def dot(c: OnnxCall) -> list[Sym]:
    g = c.g
    if len(c.inputs) != 2:
        raise c.fail(f"Dot needs exactly two inputs, it is given {len(c.inputs)}")
    xs, ys = c.inputs
    axes = c.config.get("axes", -1)
    pair = [axes, axes] if isinstance(axes, int) and not isinstance(axes, bool) else axes
    if (not isinstance(pair, list) or len(pair) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in pair)):
        raise c.fail(f"Dot's axes {axes!r} are not an integer or two")
    xr, yr = xs.rank, ys.rank
    if xr < 2 or yr < 2:
        raise c.fail(f"Dot needs two batched inputs of rank 2 or more, given ranks {xr} and {yr}")
    a0, a1 = pair[0] % xr, pair[1] % yr
    if 0 in (a0, a1):
        raise c.fail(f"axes {axes!r} contract the batch axis")
    x, y = c.float_input(0), c.float_input(1)
    if c.config.get("normalize"):
        x, y = _l2_normalize(g, x, a0, c.ctx.keras_major), _l2_normalize(g, y, a1, c.ctx.keras_major)
    # Keras's batch_dot: the contracted axis last in x, first after the batch in y
    x = g.op("Transpose", x, perm=[k for k in range(xr) if k != a0] + [a0])
    y = g.op("Transpose", y, perm=[0, a1] + [k for k in range(1, yr) if k != a1])
    x3 = g.op("Reshape", x, g.op("Concat", g.ints([0, -1]), g.shape_range(x, xr - 1), axis=0))
    y3 = g.op("Reshape", y, g.op("Concat", g.ints([0]), g.shape_range(y, 1, 2), g.ints([-1]), axis=0))
    out = g.op("MatMul", x3, y3)
    rank = xr + yr - 3  # (batch, x's other axes, y's other axes)
    if rank >= 2:
        shape = g.op("Concat", g.shape_range(x, 0, xr - 1), g.shape_range(y, 2), axis=0)
    else:  # two vectors: (batch, 1)
        shape = g.op("Concat", g.shape_range(x, 0, 1), g.ints([1]), axis=0)
    return [Sym(g.op("Reshape", out, shape, hint=c.hint), max(rank, 2))]
