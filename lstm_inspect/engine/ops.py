"""Raw operations recorded in functional graphs, run in NumPy from a whitelist.

Three dialects record the ops a user wrote on Keras tensors (`tf.cast(x)`, `x * 2`, `x[:, 1:]`):

- Keras 3: graph nodes of module `keras.src.ops.*`, named by their class (`NotEqual`, `Any`,
  `Add`...), keyword arguments in the config and the call (`KERAS3_OPS`);
- tf.keras 2.4+ and tf_keras: `TFOpLambda` / `SlicingOpLambda` layers whose config names the
  TensorFlow API function (`"function": "math.multiply"`, `"__operators__.getitem"`); the call's
  first argument is the tensor (or list of tensors), the others are recorded by name
  (`tf_keras/src/layers/core/tf_op_layer.py`; `TF_FUNCTIONS`);
- tf.keras 2.2-2.3: `TensorFlowOpLayer`, whose config holds the op's `NodeDef` as JSON (`op`, `attr`,
  `input`) and `constants`, the values of the inputs that were not Keras tensors, by input index
  (`tensorflow/python/keras/engine/base_layer.py`, TF 2.3: `get_config` writes
  `json_format.MessageToDict(node_def)` and `{index: backend.get_value(c)}`; `TF_RAW_OPS`).

Every op is looked up in a whitelist and run from the config alone: nothing is imported or
evaluated, and an op outside the list is named in one line.

The exporters (`export/onnx/ops.py`, `export/torch/ops.py`) bind a node's arguments with the same
rules (`keras3_options`, `tf_function_arguments`, `node_def_inputs`) and know each operation by one
name whatever its dialect (`canonical_op`, from the `CANONICAL_*` tables here).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.base import budget
from lstm_inspect.base.errors import InspectError

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
    budget.need(*(a.shape for a in arrays), itemsize=max((a.dtype.itemsize for a in arrays), default=8))
    return np.concatenate(arrays, axis=_axis(axis, arrays[0].ndim))


def _cast(x: Any, dtype: Any = None) -> Any:
    return np.asarray(x).astype(dtype_of(dtype))


KERAS3_OPS: dict[str, Op] = {
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
    # keras.ops.convert_to_tensor: how Keras 3 records a mask handed on as a tensor (after Attention, say)
    "ConvertToTensor": Op(lambda x, dtype=None, sparse=None, ragged=None: _cast(x, dtype) if dtype else np.asarray(x),
                          ("dtype", "sparse", "ragged")),
}


def keras3_options(op: Op, config: dict[str, Any], kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A Keras 3 op node's keyword arguments: its keywords from the config, then the call's; and the names among
    them the op does not take (sorted), which the engine refuses."""
    options = {k: v for k, v in config.items() if k in op.keywords}
    options.update(kwargs)
    return options, sorted(set(options) - set(op.keywords))


def run_keras3_op(class_name: str, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    """One Keras 3 op node: its positional tensors `args`, keyword arguments from its config and call."""
    op = KERAS3_OPS.get(class_name)
    if op is None:
        raise OpError(f"the op {class_name} is not one the NumPy engine runs")
    options, unknown = keras3_options(op, config, kwargs)
    if unknown:
        raise OpError(f"the op {class_name} does not take {', '.join(unknown)}")
    try:
        return np.asarray(op.fn(*args, **options))
    except TypeError as exc:
        raise OpError(f"the op {class_name} got arguments it does not take ({str(exc)[:120]})") from None
    except ValueError as exc:
        raise OpError(f"the op {class_name} cannot run on these inputs ({str(exc)[:120]})") from None


# ---------------------------------------------------------------- TensorFlow ops (tf.keras op layers)

TF_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16", "DT_INT32": "int32",
             "DT_INT64": "int64", "DT_INT16": "int16", "DT_INT8": "int8", "DT_UINT8": "uint8", "DT_BOOL": "bool",
             "DT_COMPLEX64": "complex64", "DT_COMPLEX128": "complex128"}


def _array(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "biufc":
        raise OpError(f"an op input holds {a.dtype}, not numbers")
    return a


def _int(value: Any, what: str) -> int:
    """An axis given as one integer (or a list of one, as TensorFlow's converters write it)."""
    ints = op_ints(value, what)
    if len(ints) != 1:
        raise OpError(f"{what} holds {len(ints)} values, not one integer")
    return ints[0]


def op_ints(value: Any, what: str) -> list[int]:
    """A shape, axis list or index list: whole numbers, as a list."""
    items = np.asarray(value).reshape(-1).tolist() if not isinstance(value, list) else value
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
            raise OpError(f"{what} holds {v!r}, not an integer")
        out.append(int(v))
    return out


def tf_cast(x: Any, dtype: Any) -> np.ndarray:
    """tf.cast: complex to real keeps the real part; float to int truncates toward zero."""
    a, target = _array(x), np.dtype(dtype_of(dtype))
    if a.dtype.kind == "c" and target.kind != "c":
        a = a.real
    return a.astype(target)


def _complex(x: Any) -> np.ndarray:
    a = _array(x)
    return a if a.dtype.kind == "c" else a.astype(np.complex64)


def _same_precision(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """TensorFlow keeps single precision: complex64 in, complex64 (or float32) out."""
    single = like.dtype in (np.complex64, np.float32)
    if result.dtype.kind == "c":
        return result.astype(np.complex64 if single else np.complex128)
    return result.astype(np.float32 if single else np.float64)


def _need_fft(a: np.ndarray, n: int | None, what: str) -> None:
    """NumPy's FFT works in double precision: the input padded or cut to n, the spectrum, and its cast back to single
    precision, per lead position (about 24 bytes per point); checked against the memory budget before a file's
    fft_length makes them (2^25 points is gigabytes)."""
    length = a.shape[-1] if n is None or a.ndim == 0 else n
    if n is not None and n <= 0:
        raise OpError(f"{what}: fft_length must be positive, not {n}")
    lead = a.shape[:-1] if a.ndim else ()
    budget.need((*lead, length), (*lead, length), (*lead, length), itemsize=8, what=f"its {what} buffers")


def fft(x: Any) -> np.ndarray:
    a = _complex(x)
    _need_fft(a, None, "FFT")
    return _same_precision(np.fft.fft(a, axis=-1), a)


def ifft(x: Any) -> np.ndarray:
    a = _complex(x)
    _need_fft(a, None, "FFT")
    return _same_precision(np.fft.ifft(a, axis=-1), a)


def rfft(x: Any, fft_length: Any = None) -> np.ndarray:
    a = _array(x)
    n = None if fft_length is None else op_ints(fft_length, "fft_length")[-1]
    _need_fft(a, n, "FFT")
    return _same_precision(np.fft.rfft(a, n=n, axis=-1), a)


def irfft(x: Any, fft_length: Any = None) -> np.ndarray:
    a = _complex(x)
    n = None if fft_length is None else op_ints(fft_length, "fft_length")[-1]
    _need_fft(a, n, "inverse FFT")
    return _same_precision(np.fft.irfft(a, n=n, axis=-1), a)


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    return lambda x: fn(_array(x))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(x: Any, y: Any) -> np.ndarray:
        a, b = _array(x), _array(y)
        # a Python constant takes the tensor's dtype, as TensorFlow converts it
        if b.ndim == 0 and a.ndim > 0:
            b = b.astype(a.dtype)
        elif a.ndim == 0 and b.ndim > 0:
            a = a.astype(b.dtype)
        return fn(a, b)
    return apply


def tf_reshape(tensor: Any, shape: Any) -> np.ndarray:
    try:
        return _array(tensor).reshape(op_ints(shape, "a shape"))
    except ValueError as exc:
        raise OpError(f"reshape: {exc}") from None


def tf_expand_dims(x: Any, axis: Any) -> np.ndarray:
    return _expand_dims(_array(x), _int(axis, "axis"))


def tf_squeeze(x: Any, axis: Any = None, squeeze_dims: Any = None) -> np.ndarray:
    axis = axis if axis is not None else squeeze_dims
    a = _array(x)
    if axis is None or axis == []:
        return np.squeeze(a)
    return _squeeze(a, tuple(op_ints(axis, "axis")))


def tf_transpose(x: Any, perm: Any = None, conjugate: bool = False) -> np.ndarray:
    a = _array(x)
    axes = None if perm is None else op_ints(perm, "perm")
    if axes is not None and sorted(axes) != list(range(a.ndim)):
        raise OpError(f"transpose: perm {axes} does not fit an input of rank {a.ndim}")
    out = np.transpose(a, axes)
    return np.conj(out) if conjugate else out


def tf_concat(values: Any, axis: Any) -> np.ndarray:
    arrays = [_array(v) for v in (values if isinstance(values, list) else [values])]
    budget.need(*(a.shape for a in arrays), itemsize=max((a.dtype.itemsize for a in arrays), default=8))
    return np.concatenate(arrays, axis=_axis(_int(axis, "axis"), arrays[0].ndim))


def tf_slice(x: Any, begin: Any, size: Any) -> np.ndarray:
    a = _array(x)
    b, s = op_ints(begin, "begin"), op_ints(size, "size")
    if len(b) != a.ndim or len(s) != a.ndim:
        raise OpError(f"slice: begin {b} and size {s} do not fit an input of rank {a.ndim}")
    return a[tuple(slice(lo, None if n == -1 else lo + n) for lo, n in zip(b, s))]


def op_slice_index(spec: Any) -> Any:
    """One element of a recorded slice_spec: a slice dict, an int, None (new axis) or an ellipsis."""
    if isinstance(spec, dict):
        if spec.get("class_name") == "__ellipsis__":
            return Ellipsis
        parts = [spec.get(k) for k in ("start", "stop", "step")]
        if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
            raise OpError(f"a slice bound is {parts!r}, not an integer")
        if parts[2] == 0:
            raise OpError("a slice step is 0")
        return slice(*parts)
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        return spec
    raise OpError(f"the index {spec!r} is not one lstm-inspect runs (slices, integers, None and ... only)")


def tf_getitem(tensor: Any, slice_spec: Any) -> np.ndarray:
    specs = slice_spec if isinstance(slice_spec, list) else [slice_spec]
    try:
        return _array(tensor)[tuple(op_slice_index(s) for s in specs)]
    except IndexError as exc:
        raise OpError(f"getitem: {exc}") from None


def strided_slice_index(b: list[int], e: list[int], s: list[int], masks: dict[str, int]) -> list[Any]:
    """StridedSlice's begin, end, strides and bit masks as a Python index: one spec per position (Ellipsis, None
    for a new axis, an integer where the axis shrinks, else a slice). Shared by the engine and both exporters."""
    if not len(b) == len(e) == len(s):
        raise OpError("begin, end and strides differ in length")
    index: list[Any] = []
    for i in range(len(b)):
        bit = 1 << i
        if masks.get("ellipsis_mask", 0) & bit:
            index.append(Ellipsis)
        elif masks.get("new_axis_mask", 0) & bit:
            index.append(None)
        elif masks.get("shrink_axis_mask", 0) & bit:
            index.append(b[i])
        else:
            if s[i] == 0:
                raise OpError("a stride is 0")
            index.append(slice(None if masks.get("begin_mask", 0) & bit else b[i],
                               None if masks.get("end_mask", 0) & bit else e[i], s[i]))
    return index


def tf_strided_slice(x: Any, begin: Any, end: Any, strides: Any, begin_mask: int = 0, end_mask: int = 0,
                     ellipsis_mask: int = 0, new_axis_mask: int = 0, shrink_axis_mask: int = 0) -> np.ndarray:
    """TensorFlow's StridedSlice, the op `x[...]` records: one spec per position, masks by bit."""
    masks = {"begin_mask": begin_mask, "end_mask": end_mask, "ellipsis_mask": ellipsis_mask,
             "new_axis_mask": new_axis_mask, "shrink_axis_mask": shrink_axis_mask}
    try:
        index = strided_slice_index(op_ints(begin, "begin"), op_ints(end, "end"), op_ints(strides, "strides"), masks)
    except OpError as exc:
        raise OpError(f"StridedSlice: {exc}") from None
    try:
        return _array(x)[tuple(index)]
    except IndexError as exc:
        raise OpError(f"StridedSlice: {exc}") from None


def _tf_reduce(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(input_tensor: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        a = _array(input_tensor)
        axes = None if axis is None else tuple(op_ints(axis, "axis"))
        out = fn(a, axis=_axis(axes, a.ndim) if axes is not None else None, keepdims=bool(keepdims))
        return np.asarray(out).astype(a.dtype)
    return apply


def tf_matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False, adjoint_a: bool = False,
              adjoint_b: bool = False) -> np.ndarray:
    x, y = _array(a), _array(b)
    if x.ndim < 2 or y.ndim < 2:
        raise OpError("matmul needs two inputs of rank 2 or more")
    if transpose_a or adjoint_a:
        x = np.swapaxes(x, -1, -2).conj() if adjoint_a else np.swapaxes(x, -1, -2)
    if transpose_b or adjoint_b:
        y = np.swapaxes(y, -1, -2).conj() if adjoint_b else np.swapaxes(y, -1, -2)
    if x.shape[-1] != y.shape[-2]:
        raise OpError(f"matmul: shapes {x.shape} and {y.shape} do not fit")
    try:
        lead = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise OpError(f"matmul: shapes {x.shape} and {y.shape} do not fit") from None
    budget.need((*lead, x.shape[-2], y.shape[-1]), itemsize=max(x.dtype.itemsize, y.dtype.itemsize))
    return np.matmul(x, y.astype(x.dtype))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * np.tanh(0.5 * x) + 0.5).astype(x.dtype)


def _softmax(logits: Any, axis: Any = None) -> np.ndarray:
    a = _array(logits)
    ax = -1 if axis is None else _int(axis, "axis")
    e = np.exp(a - a.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


# TFOpLambda's `function` (a TensorFlow API name, as tf_keras records it) -> its NumPy version, whose
# parameter names are TensorFlow's own (the recorded call passes everything but the first by name).
TF_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "cast": tf_cast,
    "signal.fft": lambda input: fft(input), "signal.ifft": lambda input: ifft(input),
    "signal.rfft": lambda input_tensor, fft_length=None: rfft(input_tensor, fft_length),
    "signal.irfft": lambda input_tensor, fft_length=None: irfft(input_tensor, fft_length),
    "math.real": lambda input: np.real(_array(input)), "math.imag": lambda input: np.imag(_array(input)),
    "math.abs": _unary(np.abs),
    "__operators__.add": _binary(np.add), "math.add": _binary(np.add), "math.subtract": _binary(np.subtract),
    "math.multiply": _binary(np.multiply), "math.truediv": _binary(np.true_divide),
    "math.divide": _binary(np.true_divide), "math.maximum": _binary(np.maximum), "math.minimum": _binary(np.minimum),
    "math.negative": _unary(np.negative), "math.exp": _unary(np.exp), "math.log": _unary(np.log),
    "math.sqrt": _unary(np.sqrt), "math.square": _unary(np.square), "math.tanh": _unary(np.tanh),
    "math.sigmoid": _unary(_sigmoid), "nn.relu": lambda features: np.maximum(_array(features), 0),
    "nn.softmax": _softmax,
    "reshape": tf_reshape, "expand_dims": lambda input, axis: tf_expand_dims(input, axis),
    "squeeze": lambda input, axis=None: tf_squeeze(input, axis),
    "compat.v1.squeeze": lambda input, axis=None, squeeze_dims=None: tf_squeeze(input, axis, squeeze_dims),
    "transpose": lambda a, perm=None, conjugate=False: tf_transpose(a, perm, conjugate),
    "compat.v1.transpose": lambda a, perm=None, conjugate=False: tf_transpose(a, perm, conjugate),
    "concat": tf_concat, "slice": lambda input_, begin, size: tf_slice(input_, begin, size),
    "__operators__.getitem": tf_getitem,
    "math.reduce_mean": _tf_reduce(np.mean), "math.reduce_sum": _tf_reduce(np.sum),
    "math.reduce_max": _tf_reduce(np.max),
    "linalg.matmul": tf_matmul,
}


def op_attr(attrs: dict[str, Any], key: str, kind: str, default: Any = None) -> Any:
    """One attribute of a NodeDef as MessageToDict writes it: {"type": "DT_FLOAT"}, {"b": true}, {"i": "3"}..."""
    value = attrs.get(key)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise OpError(f"attribute {key} is {value!r}")
    if kind == "type":
        name = TF_DTYPES.get(value.get("type"))
        if name is None:
            raise OpError(f"attribute {key} has type {value.get('type')!r}, not one lstm-inspect runs")
        return name
    if kind == "int":  # protobuf's JSON writes int64 as a string
        text = str(value.get("i", "0"))
        if not text.lstrip("-").isdigit() or len(text) > 20:
            raise OpError(f"attribute {key} is {value!r}, not an integer")
        return int(text)
    if kind == "bool":
        return bool(value.get("b", False))
    if kind == "ints":
        items = (value.get("list") or {}).get("i", []) if isinstance(value.get("list"), dict) else []
        if not isinstance(items, list) or not all(str(v).lstrip("-").isdigit() for v in items):
            raise OpError(f"attribute {key} is {value!r}, not a list of integers")
        return [int(v) for v in items]
    raise OpError(f"attribute {key}: unknown kind {kind}")


def op_slice_masks(attrs: dict[str, Any]) -> dict[str, int]:
    names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
    return {n: op_attr(attrs, n, "int", 0) for n in names}


RawOp = Callable[[list[Any], dict[str, Any]], np.ndarray]


def _raw_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> RawOp:
    return lambda i, a: _binary(fn)(i[0], i[1])


def _raw_unary(fn: Callable[[np.ndarray], np.ndarray]) -> RawOp:
    return lambda i, a: fn(_array(i[0]))


def _raw_reduce(fn: Callable[..., np.ndarray]) -> RawOp:
    return lambda i, a: _tf_reduce(fn)(i[0], i[1], op_attr(a, "keep_dims", "bool", False))


# TensorFlowOpLayer's NodeDef `op` -> (its NumPy version on the op's inputs and attributes, the attributes verify
# may hand back to TensorFlow). Inputs are in the NodeDef's order, constants in their places.
TF_RAW_OPS: dict[str, tuple[RawOp, tuple[str, ...]]] = {
    "Cast": (lambda i, a: tf_cast(i[0], op_attr(a, "DstT", "type")), ("SrcT", "DstT", "Truncate")),
    "FFT": (lambda i, a: fft(i[0]), ("Tcomplex",)), "IFFT": (lambda i, a: ifft(i[0]), ("Tcomplex",)),
    "RFFT": (lambda i, a: rfft(i[0], i[1]), ("Treal", "Tcomplex")),
    "IRFFT": (lambda i, a: irfft(i[0], i[1]), ("Treal", "Tcomplex")),
    "Real": (lambda i, a: np.real(_array(i[0])), ("T", "Tout")),
    "Imag": (lambda i, a: np.imag(_array(i[0])), ("T", "Tout")),
    "ComplexAbs": (lambda i, a: np.abs(_array(i[0])), ("T", "Tout")),
    "Abs": (lambda i, a: np.abs(_array(i[0])), ("T",)),
    **{op: (_raw_binary(fn), ("T",)) for op, fn in (
        ("AddV2", np.add), ("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("RealDiv", np.true_divide),
        ("Maximum", np.maximum), ("Minimum", np.minimum))},
    **{op: (_raw_unary(fn), ("T",)) for op, fn in (
        ("Neg", np.negative), ("Exp", np.exp), ("Log", np.log), ("Sqrt", np.sqrt), ("Square", np.square),
        ("Tanh", np.tanh), ("Sigmoid", _sigmoid), ("Relu", lambda x: np.maximum(x, 0)))},
    "Reshape": (lambda i, a: tf_reshape(i[0], i[1]), ("T", "Tshape")),
    "ExpandDims": (lambda i, a: tf_expand_dims(i[0], i[1]), ("T", "Tdim")),
    "Squeeze": (lambda i, a: tf_squeeze(i[0], op_attr(a, "squeeze_dims", "ints") or None), ("T", "squeeze_dims")),
    "Transpose": (lambda i, a: tf_transpose(i[0], i[1]), ("T", "Tperm")),
    "ConcatV2": (lambda i, a: tf_concat(list(i[:-1]), i[-1]), ("T", "N", "Tidx")),
    "Slice": (lambda i, a: tf_slice(i[0], i[1], i[2]), ("T", "Index")),
    "StridedSlice": (lambda i, a: tf_strided_slice(i[0], i[1], i[2], i[3], **op_slice_masks(a)),
                     ("T", "Index", "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")),
    **{op: (_raw_reduce(fn), ("T", "Tidx", "keep_dims")) for op, fn in (
        ("Mean", np.mean), ("Sum", np.sum), ("Max", np.max))},
    "MatMul": (lambda i, a: tf_matmul(i[0], i[1], op_attr(a, "transpose_a", "bool"), op_attr(a, "transpose_b", "bool")),
               ("T", "transpose_a", "transpose_b")),
    "BatchMatMulV2": (lambda i, a: tf_matmul(i[0], i[1], adjoint_a=op_attr(a, "adj_x", "bool"),
                                             adjoint_b=op_attr(a, "adj_y", "bool")), ("T", "adj_x", "adj_y")),
}
TF_RAW_OPS["BatchMatMul"] = TF_RAW_OPS["BatchMatMulV2"]


# One name per operation, whatever the dialect calls it (`canonical_op`): the exporters write each operation once
# (ONNX: one emitter per name; PyTorch: its operator tables). Every name on the left is one the engine runs.
CANONICAL_KERAS3 = {
    "NotEqual": "not_equal", "Equal": "equal", "Greater": "greater", "Less": "less", "GreaterEqual": "greater_equal",
    "LessEqual": "less_equal", "LogicalOr": "or", "LogicalAnd": "and", "LogicalNot": "not", "Any": "any",
    "All": "all", "ExpandDims": "expand_dims", "Squeeze": "squeeze", "ZerosLike": "zeros_like",
    "OnesLike": "ones_like", "Concatenate": "concat", "Cast": "cast", "Add": "add", "Subtract": "sub",
    "Multiply": "mul", "Divide": "div", "Negative": "neg", "Tanh": "tanh", "Exp": "exp", "Abs": "abs",
    "Sqrt": "sqrt", "Square": "square", "ConvertToTensor": "convert"}
CANONICAL_TF_FUNCTIONS = {
    "cast": "cast", "signal.fft": "fft", "signal.ifft": "ifft", "math.real": "real", "math.imag": "imag",
    "math.abs": "abs", "__operators__.add": "add", "math.add": "add", "math.subtract": "sub",
    "math.multiply": "mul", "math.truediv": "div", "math.divide": "div", "math.maximum": "max",
    "math.minimum": "min", "math.negative": "neg", "math.exp": "exp", "math.log": "log", "math.sqrt": "sqrt",
    "math.square": "square", "math.tanh": "tanh", "math.sigmoid": "sigmoid", "nn.relu": "relu",
    "nn.softmax": "softmax", "reshape": "reshape", "expand_dims": "expand_dims", "squeeze": "squeeze",
    "compat.v1.squeeze": "squeeze", "transpose": "transpose", "compat.v1.transpose": "transpose",
    "concat": "concat", "slice": "slice", "__operators__.getitem": "getitem", "math.reduce_mean": "mean",
    "math.reduce_sum": "sum", "math.reduce_max": "max_over", "linalg.matmul": "matmul"}
CANONICAL_TF_RAW = {
    "Cast": "cast", "FFT": "fft", "IFFT": "ifft", "Real": "real", "Imag": "imag", "ComplexAbs": "abs",
    "Abs": "abs", "AddV2": "add", "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "Maximum": "max",
    "Minimum": "min", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Square": "square",
    "Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu", "Reshape": "reshape", "ExpandDims": "expand_dims",
    "Squeeze": "squeeze", "Transpose": "transpose", "ConcatV2": "concat", "Slice": "slice",
    "StridedSlice": "strided_slice", "Mean": "mean", "Sum": "sum", "Max": "max_over", "MatMul": "matmul",
    "BatchMatMulV2": "matmul", "BatchMatMul": "matmul"}


def canonical_op(node: Any) -> str | None:
    """The operation an op node runs, by its one name (`CANONICAL_*`), or None when it has none."""
    name = op_name(node)
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        return CANONICAL_TF_FUNCTIONS.get(name)
    if node.class_name == "TensorFlowOpLayer":
        return CANONICAL_TF_RAW.get(name)
    return CANONICAL_KERAS3.get(name)


def op_name(node: Any) -> str:
    """The op a graph node runs, as its dialect names it."""
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        return str(node.config.get("function"))
    if node.class_name == "TensorFlowOpLayer":
        node_def = node.config.get("node_def")
        return str(node_def.get("op")) if isinstance(node_def, dict) else "?"
    return str(node.class_name)


def op_supported(node: Any) -> str | None:
    """Why the engine cannot run this op node (one line), or None when it can."""
    name = op_name(node)
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        known = name in TF_FUNCTIONS
    elif node.class_name == "TensorFlowOpLayer":
        known = name in TF_RAW_OPS
    else:
        known = name in KERAS3_OPS
    if not known:
        return f"the op {name} ({node.class_name}) is not one the NumPy engine runs"
    return None


def need_broadcast(values: list[Any]) -> None:
    """An op's output is at most its array arguments broadcast together (elementwise ops; a constant (1, N) and
    another (N, 1) make N×N): refused before it is made when that passes the memory budget. A list of numbers from
    the config (`math.add(x, y=[0.0] * N)`) is an array to NumPy and counts by its shape. The ops that grow
    otherwise (matmul, FFT, concat) check their own output."""
    shapes = [s for v in values for s in _argument_shapes(v)]
    if not shapes:
        return
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        shape = max(shapes, key=budget.values)
    itemsizes = [a.dtype.itemsize for a in flat(values) if isinstance(a, np.ndarray)]
    budget.need(shape, shape, itemsize=max(8, *itemsizes), what="its output and a temporary")


MAX_LIST_DEPTH = 32  # NumPy's arrays have at most 64 axes; no op's constant needs more than a few


def _argument_shapes(value: Any) -> list[tuple[int, ...]]:
    """The shapes an argument brings to a broadcast: an array's; a nested list of numbers', read down its first
    elements (depth-bounded, so a list nested absurdly deep is refused in constant time); a list holding arrays
    (a call's list of tensors), each element's."""
    if isinstance(value, np.ndarray):
        return [value.shape]
    if not isinstance(value, list):
        return []
    shape, inner = [], value
    while isinstance(inner, list):
        if len(shape) >= MAX_LIST_DEPTH:
            raise OpError(f"a constant nested more than {MAX_LIST_DEPTH} lists deep")
        shape.append(len(inner))
        inner = inner[0] if inner else None
    if isinstance(inner, np.ndarray) or not all(isinstance(v, (int, float, bool)) or v is None
                                                for v in _first_level(value)):
        return [s for v in value for s in _argument_shapes(v)]
    return [tuple(shape)]


def _first_level(value: list[Any]) -> list[Any]:
    """The first leaf's siblings: enough to tell a list of numbers from a list of tensors."""
    while value and isinstance(value[0], list):
        value = value[0]
    return value


def run_op_layer(node: Any, args: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    """Run one op node of a functional graph on its computed arguments."""
    problem = op_supported(node)
    if problem:
        raise OpError(problem)
    need_broadcast([*args, *kwargs.values()])
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        fn = TF_FUNCTIONS[op_name(node)]
        options = tf_call_options(kwargs)
        try:
            return np.asarray(fn(*args, **options))
        except TypeError as exc:
            raise OpError(f"{op_name(node)} got arguments it does not take ({str(exc)[:120]})") from None
        except ValueError as exc:
            raise OpError(f"{op_name(node)} cannot run on these inputs ({str(exc)[:120]})") from None
    if node.class_name == "TensorFlowOpLayer":
        return _run_node_def(node, args)
    return run_keras3_op(node.class_name, node.config, args, kwargs)


def tf_call_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A TFOpLambda call's keyword arguments for the TensorFlow function: all but the layer's `name`."""
    return {k: v for k, v in kwargs.items() if k != "name"}


def tf_function_arguments(name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A TFOpLambda's arguments bound to the parameters of the engine's function (TensorFlow's names), defaults
    filled in, as the engine's call binds them."""
    try:
        bound = inspect.signature(TF_FUNCTIONS[name]).bind(*args, **tf_call_options(kwargs))
    except TypeError as exc:
        raise OpError(f"{name} got arguments it does not take ({str(exc)[:120]})") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def node_def_inputs(node: Any, tensors: list[Any], constant: Callable[[Any], Any] = np.asarray
                    ) -> tuple[list[Any], dict[str, Any]]:
    """A TensorFlowOpLayer's inputs in its NodeDef's order: `constant(value)` where its config's `constants` holds
    that index, the call's `tensors` in turn elsewhere (at most 64 inputs); and the NodeDef's attributes."""
    node_def = node.config.get("node_def")
    constants = node.config.get("constants") or {}
    if not isinstance(node_def, dict) or not isinstance(constants, dict):
        raise OpError("its node_def or constants are not objects")
    names = node_def.get("input") or []
    tensors = list(tensors)
    count = len(names) if isinstance(names, list) and names else len(tensors) + len(constants)
    if count > 64:
        raise OpError(f"the op takes {count} inputs")
    inputs: list[Any] = []
    for index in range(count):
        if str(index) in constants:
            inputs.append(constant(constants[str(index)]))
        elif tensors:
            inputs.append(tensors.pop(0))
        else:
            raise OpError(f"input {index} is neither a tensor nor a constant")
    attrs = node_def.get("attr") or {}
    if not isinstance(attrs, dict):
        raise OpError("its attributes are not an object")
    return inputs, attrs


def _run_node_def(node: Any, args: list[Any]) -> np.ndarray:
    inputs, attrs = node_def_inputs(node, flat(args))
    need_broadcast(inputs)
    fn, _ = TF_RAW_OPS[op_name(node)]
    try:
        return np.asarray(fn(inputs, attrs))
    except IndexError:
        raise OpError(f"{op_name(node)} has too few inputs ({len(inputs)})") from None
    except (TypeError, ValueError) as exc:
        raise OpError(f"{op_name(node)} cannot run on these inputs ({str(exc)[:120]})") from None


def flat(obj: Any) -> list[Any]:
    """A call's arguments flattened: nested lists of tensors as one list, in order."""
    if isinstance(obj, list):
        return [t for v in obj for t in flat(v)]
    return [obj]
