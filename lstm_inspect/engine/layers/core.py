"""Core layers around recurrent layers, as Keras computes them at inference.

Dense (and TimeDistributed of any registered layer), Activation, Embedding, Masking, Flatten,
RepeatVector, Reshape, Permute, BatchNormalization, LayerNormalization, the merges (Dot included), and
the layers that are the identity at inference (dropout and noise). Sources: `keras/src/layers/core/`,
`keras/src/layers/normalization/`, `keras/src/layers/merging/`, `keras/src/layers/reshaping/` and their
tf_keras counterparts.

Dot (`keras/src/layers/merging/dot.py`, `tf_keras/src/layers/merging/dot.py`): batch_dot over one axis
of each input; both inputs 2-D give (batch, 1). normalize=True L2-normalizes each input along its axis
first, with a different floor per generation: Keras 3 `ops.normalize` caps 1/norm at 1/epsilon (1e-7),
tf_keras `tf.linalg.l2_normalize` floors the squared norm at 1e-12. Dot and Permute output no mask.

The elementwise merges (Add, Subtract, Multiply, Average, Maximum, Minimum; `Merge.call` of both
generations) first expand a lower-rank input at axis 1 (after the batch axis) until every input has the
highest rank. Their masks follow two rules (`merge_masks_keras34`):
- tf_keras (and Keras 3.0-3.3): the values ignore the masks; the output mask is the AND of the masks present.
- Keras 3.4+ (keras-team/keras#19685, `_apply_merge_op_and_or_mask` and `Multiply._merge_function`):
  Maximum and Minimum leave each input's masked entries out (an entry masked in every input so far takes the
  next input's value); Multiply counts a masked entry as 1, and zeroes the entries masked in every input
  when every input has a mask; the output mask is the OR of the masks when every input has one, else none.
  An input expanded to a higher rank has lost its mask by then (a new tensor), for its values only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.engine.layers.registry import LAYERS, LayerCall, Tensor, config_dims, layer, same_dims
from lstm_inspect.model.activations import activation_fn
from lstm_inspect.model.architecture import LayerNode
from lstm_inspect.model.cells.base import activation_name, config_int, keras_major_minor

IDENTITY = ("InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
            "GaussianDropout", "AlphaDropout", "ActivityRegularization")
MERGES = ("Concatenate", "Add", "Multiply", "Average", "Subtract", "Maximum", "Minimum")


def activation_of(c: LayerCall, key: str = "activation", default: str = "linear") -> Any:
    return activation_fn(activation_name(c.config.get(key), default), c.ctx.hard_sigmoid)


@layer(*IDENTITY, dims=same_dims)
def identity(c: LayerCall) -> list[Tensor]:
    return [c.inputs[0]]


@layer("Dense", dims=config_dims("units", "output_dim"), weighted=True)
def dense(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
    units = config_int(cfg.get("units", cfg.get("output_dim")))
    x = c.x
    c.expect([(x.shape[-1], units)] + ([(units,)] if use_bias else []))
    y = x @ c.weights[0].astype(c.ctx.dtype)
    if use_bias:
        y = y + c.weights[1].astype(c.ctx.dtype)
    return [Tensor(activation_of(c)(y), c.mask)]


def wrapped_layer(node: Any) -> Any:
    """The wrapped layer of a TimeDistributed, as a node of its own."""
    inner = node.config.get("layer") if isinstance(node.config.get("layer"), dict) else {}
    cfg = inner.get("config") if isinstance(inner.get("config"), dict) else {}
    return LayerNode(name=node.name, path=node.path, class_name=str(inner.get("class_name")), config=cfg,
                     entry=inner)


def _time_distributed_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    inner = wrapped_layer(node)
    kind = LAYERS.get(inner.class_name)
    return kind.dims(inner, in_dims) if kind is not None and kind.dims is not None else [None]


def _inner_weighted(node: Any) -> bool:
    inner = wrapped_layer(node)
    kind = LAYERS.get(inner.class_name)
    return kind is not None and kind.has_weights(inner)


@layer("TimeDistributed", dims=_time_distributed_dims, nested=("layer",), weighted=_inner_weighted)
def time_distributed(c: LayerCall) -> list[Tensor]:
    """The wrapped layer applied to each time step: on (batch·steps, ...) and reshaped back."""
    inner = wrapped_layer(c.node)
    kind = LAYERS.get(inner.class_name)
    if kind is None or inner.class_name == "TimeDistributed":
        raise c.fail(f"TimeDistributed({inner.class_name}) is not one the NumPy engine runs")
    x = np.asarray(c.inputs[0].value)
    if x.ndim < 3:
        raise c.fail("TimeDistributed needs (batch, steps, ...)")
    batch, steps = x.shape[:2]
    flat = LayerCall(inner, [Tensor(x.reshape(batch * steps, *x.shape[2:]))], c.weights, c.ctx)
    (y,) = kind.run(flat)[:1]
    return [Tensor(y.value.reshape(batch, steps, *y.value.shape[1:]), c.mask)]


@layer("Activation", dims=same_dims)
def activation(c: LayerCall) -> list[Tensor]:
    return [Tensor(activation_of(c)(c.x), c.mask)]


@layer("Embedding", dims=config_dims("output_dim"), weighted=True)
def embedding(c: LayerCall) -> list[Tensor]:
    c.expect([(config_int(c.config.get("input_dim")), config_int(c.config.get("output_dim")))])
    ids = np.asarray(c.inputs[0].value).astype(np.int64)
    table = c.weights[0].astype(c.ctx.dtype)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise c.fail(f"token ids must lie in [0, {table.shape[0] - 1}], found {ids.min()}..{ids.max()}")
    c.need((*ids.shape, table.shape[1]))
    mask = ids != 0 if c.config.get("mask_zero") else None
    return [Tensor(table[ids], mask)]


@layer("Masking", dims=same_dims)
def masking(c: LayerCall) -> list[Tensor]:
    x = c.x
    kept = x != _number(c, "mask_value", 0.0)
    mask = np.all(kept, axis=-1) if c.ctx.masking_any else np.any(kept, axis=-1)  # Keras: masked if ALL equal
    return [Tensor(x * mask[..., None].astype(c.ctx.dtype), mask)]


def _flatten_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    return [None]


@layer("Flatten", dims=_flatten_dims)
def flatten(c: LayerCall) -> list[Tensor]:
    x = np.asarray(c.inputs[0].value)
    return [Tensor(x.reshape(x.shape[0], -1))]


@layer("RepeatVector", dims=same_dims)
def repeat_vector(c: LayerCall) -> list[Tensor]:
    n = config_int(c.config.get("n"))
    if n is None:
        raise c.fail(f"RepeatVector's n is {c.config.get('n')!r}")
    x = np.asarray(c.inputs[0].value)
    c.need((x.shape[0], n, *x.shape[1:]))
    return [Tensor(np.repeat(np.asarray(c.inputs[0].value)[:, None, :], n, axis=1))]


def _reshape_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    target = node.config.get("target_shape")
    return [config_int(target[-1]) if isinstance(target, list) and target else None]


@layer("Reshape", dims=_reshape_dims)
def reshape(c: LayerCall) -> list[Tensor]:
    x = np.asarray(c.inputs[0].value)
    target = c.config.get("target_shape")
    if not isinstance(target, list) or not all(_is_int(n) and (n > 0 or n == -1) for n in target):
        raise c.fail(f"Reshape's target_shape is {target!r}")
    try:
        return [Tensor(x.reshape((x.shape[0], *target)))]
    except ValueError:
        raise c.fail(f"{x.shape[1:]} cannot be reshaped to {tuple(target)}") from None


def _axis(c: LayerCall, x: np.ndarray) -> int:
    axis = c.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and axis else axis
    if not _is_int(axis) or not -x.ndim <= axis < x.ndim:
        raise c.fail(f"axis {axis!r} does not fit an input of rank {x.ndim}")
    return axis


def _is_int(value: Any) -> bool:
    """A whole number from a config (JSON's true and false are not: Python reads them as 1 and 0)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _number(c: LayerCall, key: str, default: float) -> float:
    """A real, finite setting (an epsilon, a mask value) from the layer's config, else one line saying what it is."""
    value = c.config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise c.fail(f"{key} is {str(value)[:40]!r}, not a finite number")
    return float(value)


@layer("BatchNormalization", dims=same_dims, weighted=True)
def batch_norm(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    x = c.x
    axis = _axis(c, x)
    n = x.shape[axis]
    scale, center = cfg.get("scale", True), cfg.get("center", True)
    c.expect([(n,)] * (2 + bool(scale) + bool(center)))
    arrays = list(c.weights)
    gamma = arrays.pop(0) if scale else None
    beta = arrays.pop(0) if center else None
    mean, var = arrays[0], arrays[1]
    shape = [1] * x.ndim
    shape[axis] = -1
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + _number(c, "epsilon", 1e-3))
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return [Tensor(y.astype(c.ctx.dtype), c.mask)]


@layer("LayerNormalization", dims=same_dims,
       weighted=lambda n: bool(n.config.get("scale", True) or n.config.get("center", True)))
def layer_norm(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    x = c.x
    axis = cfg.get("axis", -1)
    axes = tuple(axis) if isinstance(axis, list) else (axis,)
    if not all(_is_int(a) and -x.ndim <= a < x.ndim for a in axes):
        raise c.fail(f"axis {axis!r} does not fit an input of rank {x.ndim}")
    arrays = list(c.weights)
    gamma = arrays.pop(0) if cfg.get("scale", True) and arrays else None
    beta = arrays.pop(0) if cfg.get("center", True) and not cfg.get("rms_scaling") and arrays else None
    eps = _number(c, "epsilon", 1e-3)
    if cfg.get("rms_scaling"):
        y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    else:
        mean = x.mean(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return [Tensor(y.astype(c.ctx.dtype), c.mask)]


def _merge_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    if node.class_name == "Concatenate":
        if node.config.get("axis", -1) in (-1, 2) and in_dims and all(isinstance(d, int) for d in in_dims):
            return [sum(d for d in in_dims if d is not None)]
        return [None]
    return [in_dims[0] if in_dims else None]


@layer(*MERGES, dims=_merge_dims)
def merge(c: LayerCall) -> list[Tensor]:
    """Keras's merge layers (keras/src/layers/merging/*.py). One file can list the same tensor K times: the output
    is charged (a Concatenate's is K inputs long) and Add/Multiply/Average/Maximum/Minimum accumulate into it one
    input at a time (as Keras's `_merge_function` loops), never stacking K copies."""
    values = [np.asarray(a.value) for a in c.inputs]  # cast one at a time below: a cast of each would be K copies
    cls = c.node.class_name
    if len(values) < (2 if cls == "Subtract" else 1):
        raise c.fail(f"{cls} needs at least two inputs")
    try:
        if cls == "Concatenate":
            y = _concatenate(c, values)
        else:
            top = max(v.ndim for v in values)
            values = [v.reshape(v.shape[:1] + (1,) * (top - v.ndim) + v.shape[1:]) for v in values]
            if cls == "Subtract":
                y = values[0].astype(c.ctx.dtype) - values[1].astype(c.ctx.dtype)
            elif merge_masks_keras34(c.ctx) and cls in ("Maximum", "Minimum", "Multiply"):
                kept = [None if a.mask is None or np.ndim(a.value) < top else np.asarray(a.mask, dtype=bool)
                        for a in c.inputs]
                y, own_mask = _masked_merge(cls, [v.astype(c.ctx.dtype, copy=False) for v in values], kept)
                if own_mask is not None:
                    return [Tensor(np.asarray(y, dtype=c.ctx.dtype), own_mask)]
            else:
                y = _accumulate(cls, values, c.ctx.dtype)
    except (ValueError, np.exceptions.AxisError) as exc:
        raise c.fail(f"the inputs {[v.shape for v in values]} cannot be merged ({str(exc)[:120]})") from None
    return [Tensor(np.asarray(y, dtype=c.ctx.dtype), merged_mask(cls, c.inputs, c.ctx))]


def _concatenate(c: LayerCall, values: list[np.ndarray]) -> np.ndarray:
    """np.concatenate, its output (the inputs' sizes along the axis summed) charged before it is made."""
    axis = c.config.get("axis", -1)
    if not _is_int(axis):
        raise c.fail(f"axis {axis!r} is not an integer")
    first = values[0].shape
    if values[0].ndim and -values[0].ndim <= axis < values[0].ndim:
        along = sum(float(v.shape[axis]) if v.ndim == values[0].ndim else 0.0 for v in values)
        c.need((*first[:axis % len(first)], along, *first[axis % len(first) + 1:]), what="the concatenated output")
    return np.concatenate(values, axis=axis, dtype=c.ctx.dtype, casting="unsafe")


_ACCUMULATE = {"Add": np.add, "Average": np.add, "Multiply": np.multiply, "Maximum": np.maximum,
               "Minimum": np.minimum}


def _accumulate(cls: str, values: list[np.ndarray], dtype: Any) -> np.ndarray:
    """The elementwise merge of broadcastable inputs, in place in one output: a copy of the first, then each next
    combined into it (the output and one cast input at a time, as the precheck charged)."""
    shape = np.broadcast_shapes(*(v.shape for v in values))
    out = np.array(np.broadcast_to(values[0], shape), dtype=dtype)
    op = _ACCUMULATE[cls]
    for v in values[1:]:
        op(out, v.astype(dtype, copy=False), out=out)
    if cls == "Average":
        out /= out.dtype.type(len(values))
    return out


def merge_masks_keras34(ctx: Any) -> bool:
    """Whether the writing Keras merges masks as Keras 3.4+ does (keras-team/keras#19685); else tf_keras's rule."""
    major, minor = keras_major_minor(ctx.keras_version)
    major = major if major is not None else ctx.keras_major
    return major >= 3 and (minor is None or minor >= 4)


def _per_entry(mask: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (batch, steps) mask over every entry of x (batch, steps, ...), as ops.broadcast_to(expand_dims(mask, -1))."""
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape)


def _masked_merge(cls: str, values: list[np.ndarray], masks: list[np.ndarray | None]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Keras 3.4+'s Maximum/Minimum (`_apply_merge_op_and_or_mask`) and Multiply with the inputs' masks: the
    values, and the mask the layer sets on its output itself (None: compute_mask's, `merged_mask`)."""
    if cls == "Multiply":
        has_output_mask = all(m is not None for m in masks)
        out = out_mask = None
        for x, m in zip(values, masks):
            if m is not None:
                m = _per_entry(m, x)
                x = np.where(m, x, x.dtype.type(1))
                if has_output_mask:
                    out_mask = m if out_mask is None else out_mask | m
            out = x if out is None else out * x
        if not has_output_mask or out_mask is None:
            return out, None
        return np.where(out_mask, out, out.dtype.type(0)), np.any(out_mask, axis=-1)
    op = np.maximum if cls == "Maximum" else np.minimum
    out, out_mask = values[0], None if masks[0] is None else _per_entry(masks[0], values[0])
    for x, m in zip(values[1:], masks[1:]):
        m = None if m is None else _per_entry(m, x)
        if m is not None:
            x = np.where(m, x, out)
        if out_mask is not None:
            out = np.where(out_mask, out, x)
        out_mask = out_mask | m if m is not None and out_mask is not None else None
        out = op(out, x)
    return out, None if out_mask is None else np.any(out_mask, axis=-1)


def merge_mask_rule(cls: str, masked: list[bool], ctx: Any) -> tuple[str, bool] | None:
    """Keras's compute_mask of merge layers, as (how the masks combine: "and" or "or", whether an unmasked input
    takes part as all valid), or None for no output mask: AND of the masks present (tf_keras, Keras 3.0-3.3);
    Keras 3.4+ OR of the masks when every input has one, else none; Keras 3's Concatenate ORs, an unmasked input
    counting as all valid (tf_keras's ANDs it so). The engine and both exporters combine the masks by it."""
    if not any(masked):
        return None
    if cls == "Concatenate":
        return ("or" if ctx.keras_major >= 3 else "and"), True
    if merge_masks_keras34(ctx):
        return None if not all(masked) else ("or", False)
    return "and", False


def merged_mask(cls: str, args: list[Tensor], ctx: Any) -> np.ndarray | None:
    rule = merge_mask_rule(cls, [a.mask is not None for a in args], ctx)
    if rule is None:
        return None
    how, fill = rule
    masks = [np.asarray(a.mask, dtype=bool) if a.mask is not None else np.ones(a.value.shape[:2], dtype=bool)
             for a in args if a.mask is not None or fill]
    combine = np.logical_or if how == "or" else np.logical_and
    out = masks[0]
    for m in masks[1:]:  # one at a time: reducing the list would stack K copies
        out = combine(out, m)
    return out


def _permute_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    dims = node.config.get("dims")
    if isinstance(dims, list) and dims and dims[-1] == len(dims):
        return same_dims(node, in_dims)  # the last axis stays where it is
    return [None]


@layer("Permute", dims=_permute_dims)
def permute(c: LayerCall) -> list[Tensor]:
    x = np.asarray(c.inputs[0].value)
    dims = c.config.get("dims")
    if (not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
            or sorted(dims) != list(range(1, len(dims) + 1))):
        raise c.fail(f"Permute's dims {dims!r} are not a permutation of 1..n")
    if len(dims) != x.ndim - 1:
        raise c.fail(f"Permute's dims {dims} need an input of rank {len(dims) + 1}")
    y = np.transpose(x, (0, *dims))
    return [Tensor(y.astype(c.ctx.dtype) if y.dtype.kind == "f" else y)]


def _l2_normalize(x: np.ndarray, axis: int, keras_major: int) -> np.ndarray:
    square_sum = np.sum(x * x, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        if keras_major >= 3:
            inv = np.minimum(1 / np.sqrt(square_sum), x.dtype.type(1 / 1e-7))  # ops.normalize, epsilon 1e-7
        else:
            inv = 1 / np.sqrt(np.maximum(square_sum, x.dtype.type(1e-12)))  # tf.linalg.l2_normalize
    return x * inv


@layer("Dot", dims=lambda node, in_dims: [None])
def dot(c: LayerCall) -> list[Tensor]:
    if len(c.inputs) != 2:
        raise c.fail(f"Dot needs exactly two inputs, it is given {len(c.inputs)}")
    x, y = (np.asarray(t.value, dtype=c.ctx.dtype) for t in c.inputs)
    axes = c.config.get("axes", -1)
    pair = [axes, axes] if isinstance(axes, int) and not isinstance(axes, bool) else axes
    if (not isinstance(pair, list) or len(pair) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in pair)):
        raise c.fail(f"Dot's axes {axes!r} are not an integer or two")
    if x.ndim < 2 or y.ndim < 2 or x.shape[0] != y.shape[0]:
        raise c.fail(f"Dot needs two batched inputs of rank 2 or more, given {x.shape} and {y.shape}")
    a0, a1 = pair[0] % x.ndim, pair[1] % y.ndim
    if 0 in (a0, a1) or x.shape[a0] != y.shape[a1]:
        raise c.fail(f"axes {axes!r} do not pair {x.shape} with {y.shape}")
    if c.config.get("normalize"):
        x, y = _l2_normalize(x, a0, c.ctx.keras_major), _l2_normalize(y, a1, c.ctx.keras_major)
    # Keras's batch_dot: the contracted axis last in x, first after the batch in y
    x, y = np.moveaxis(x, a0, -1), np.moveaxis(y, a1, 1)
    batch, n = x.shape[0], x.shape[-1]
    c.need((batch, *x.shape[1:-1], *y.shape[2:]), (batch, *x.shape[1:-1], *y.shape[2:]))
    out = np.matmul(x.reshape(batch, -1, n), y.reshape(batch, n, -1)).reshape(batch, *x.shape[1:-1], *y.shape[2:])
    if out.ndim == 1:
        out = out.reshape(batch, 1)
    return [Tensor(np.asarray(out, dtype=c.ctx.dtype))]
