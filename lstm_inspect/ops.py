"""Raw operations recorded in functional graphs, run in NumPy from a whitelist.

Keras 3 records the ops that compute masks (and any `a + b` a user wrote on Keras tensors) as graph
nodes of module `keras.src.ops.*`, named by their class (`NotEqual`, `Any`, `Add`...). Each op here
is looked up by that name in `OPS` and run from the config alone: nothing is imported or evaluated,
and an op outside the list is named in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.errors import InspectError

DTYPES = {"bool": np.bool_, "float16": np.float16, "float32": np.float32, "float64": np.float64,
          "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
          "complex64": np.complex64, "complex128": np.complex128}


def dtype_of(name: Any) -> Any:
    if isinstance(name, dict):  # a Keras 3 DTypePolicy or tf.DType serialized
        name = (name.get("config") or {}).get("name") if isinstance(name.get("config"), dict) else name.get("name")
    if name not in DTYPES:
        raise OpError(f"dtype {name!r} is not one lstm-inspect knows")
    return DTYPES[name]


class OpError(InspectError):
    """An op whose arguments do not fit (the graph runner adds which node)."""


@dataclass(frozen=True)
class Op:
    fn: Callable[..., Any]
    keywords: tuple[str, ...] = ()  # the keyword arguments the op takes from its config or call


def _axis(axis: Any, ndim: int) -> Any:
    if axis is None:
        return None
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not all(isinstance(a, int) and not isinstance(a, bool) and -ndim <= a < ndim for a in axes):
        raise OpError(f"axis {axis!r} does not fit an input of rank {ndim}")
    return tuple(axes) if isinstance(axis, (list, tuple)) else axis


def _reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = np.asarray(x)
        return fn(x, axis=_axis(axis, x.ndim), keepdims=bool(keepdims))
    return apply


def _expand_dims(x: Any, axis: Any = None) -> Any:
    x = np.asarray(x)
    if not isinstance(axis, int) or isinstance(axis, bool) or not -x.ndim - 1 <= axis <= x.ndim:
        raise OpError(f"ExpandDims needs an axis in [{-x.ndim - 1}, {x.ndim}], not {axis!r}")
    return np.expand_dims(x, axis)


def _squeeze(x: Any, axis: Any = None) -> Any:
    x = np.asarray(x)
    axis = _axis(axis, x.ndim)
    if axis is not None:
        for a in axis if isinstance(axis, tuple) else (axis,):
            if x.shape[a] != 1:
                raise OpError(f"Squeeze on axis {a} of size {x.shape[a]}")
    return np.squeeze(x, axis=axis)


def _like(fill: Callable[..., Any]) -> Callable[..., Any]:
    def apply(x: Any, dtype: Any = None) -> Any:
        return fill(np.asarray(x), dtype=None if dtype is None else dtype_of(dtype))
    return apply


def _concatenate(xs: Any, axis: Any = 0) -> Any:
    arrays = [np.asarray(x) for x in (xs if isinstance(xs, list) else [xs])]
    return np.concatenate(arrays, axis=_axis(axis, arrays[0].ndim))


def _cast(x: Any, dtype: Any = None) -> Any:
    return np.asarray(x).astype(dtype_of(dtype))


OPS: dict[str, Op] = {
    "NotEqual": Op(np.not_equal), "Equal": Op(np.equal), "Greater": Op(np.greater), "Less": Op(np.less),
    "GreaterEqual": Op(np.greater_equal), "LessEqual": Op(np.less_equal),
    "LogicalOr": Op(np.logical_or), "LogicalAnd": Op(np.logical_and), "LogicalNot": Op(np.logical_not),
    "Any": Op(_reduce(np.any), ("axis", "keepdims")), "All": Op(_reduce(np.all), ("axis", "keepdims")),
    "ExpandDims": Op(_expand_dims, ("axis",)), "Squeeze": Op(_squeeze, ("axis",)),
    "ZerosLike": Op(_like(np.zeros_like), ("dtype",)), "OnesLike": Op(_like(np.ones_like), ("dtype",)),
    "Concatenate": Op(_concatenate, ("axis",)), "Cast": Op(_cast, ("dtype",)),
    "Add": Op(np.add), "Subtract": Op(np.subtract), "Multiply": Op(np.multiply), "Divide": Op(np.divide),
    "Negative": Op(np.negative), "Tanh": Op(np.tanh), "Exp": Op(np.exp), "Abs": Op(np.abs), "Sqrt": Op(np.sqrt),
    "Square": Op(np.square),
}


def run_keras3_op(class_name: str, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    """One Keras 3 op node: its positional tensors `args`, keyword arguments from its config and call."""
    op = OPS.get(class_name)
    if op is None:
        raise OpError(f"the op {class_name} is not one the NumPy engine runs")
    options = {k: v for k, v in config.items() if k in op.keywords}
    options.update(kwargs)
    unknown = sorted(set(options) - set(op.keywords))
    if unknown:
        raise OpError(f"the op {class_name} does not take {', '.join(unknown)}")
    try:
        return np.asarray(op.fn(*args, **options))
    except TypeError as exc:
        raise OpError(f"the op {class_name} got arguments it does not take ({str(exc)[:120]})") from None
    except ValueError as exc:
        raise OpError(f"the op {class_name} cannot run on these inputs ({str(exc)[:120]})") from None


def op_name(node: Any) -> str:
    """The op a graph node runs, as lstm-inspect names it."""
    return str(node.class_name)


def op_supported(node: Any) -> str | None:
    """Why the engine cannot run this op node, or None when it can."""
    if node.class_name not in OPS:
        return f"the op {node.class_name} is not one the NumPy engine runs"
    return None


def run_op_layer(node: Any, args: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    """Run one op node of a functional graph on its computed arguments."""
    return run_keras3_op(node.class_name, node.config, args, kwargs)
