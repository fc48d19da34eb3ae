"""Raw op layers (Keras 3 op nodes, tf.keras TFOpLambda and TensorFlowOpLayer) as ONNX operators.

The three dialects (`lstm_inspect.engine.ops`) name the same operations differently; each node is first
bound to its arguments by the engine's own rules (`lstm_inspect.engine.ops`: `tf_function_arguments`, the
engine function's signature; `node_def_inputs`, the NodeDef's inputs, constants in their places, and
attributes; `keras3_options`), then named by its canonical op (`ops.canonical_op`: `add`, `reshape`,
`fft`...) whose emitter writes ONNX. Complex tensors (tf.signal.fft and what
follows it) are float tensors with a trailing (real, imaginary) axis, as ONNX's DFT takes them;
complex values reach only the ops that define them (cast, fft, ifft, real, imag, abs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import Context
from lstm_inspect.engine.ops import (
    KERAS3_OPS,
    TF_DTYPES,
    OpError,
    canonical_op,
    flat,
    keras3_options,
    node_def_inputs,
    op_attr,
    op_name,
    op_slice_index,
    op_slice_masks,
    op_supported,
    strided_slice_index,
    tf_function_arguments,
)
from lstm_inspect.export.onnx.graph import INT64_MIN, Graph, Sym

INT64_MAX = np.iinfo(np.int64).max

KIND_OF_DTYPE = {"bool": "bool", "float16": "float", "float32": "float", "float64": "float", "int8": "int",
                 "int16": "int", "int32": "int", "int64": "int", "uint8": "int", "complex64": "complex",
                 "complex128": "complex"}
TF_TYPE_KIND = {"DT_FLOAT": "float", "DT_DOUBLE": "float", "DT_HALF": "float", "DT_INT32": "int", "DT_INT64": "int",
                "DT_BOOL": "bool", "DT_COMPLEX64": "complex", "DT_COMPLEX128": "complex"}

def onnx_op_problem(node: Any) -> str | None:
    """Why this op node has no ONNX form (None: it has one)."""
    problem = op_supported(node)
    if problem:
        return problem
    if canonical_op(node) not in EMITTERS:
        return f"the op {op_name(node)} ({node.class_name}) has no ONNX form in lstm-inspect yet"
    return None


class OpCall:
    """One op node, bound: `args` in the engine function's parameter order (Syms or constants)."""

    def __init__(self, g: Graph, node: Any, op: str, args: list[Any], attrs: dict[str, Any], ctx: Context) -> None:
        self.g, self.node, self.op, self.args, self.attrs, self.ctx = g, node, op, args, attrs, ctx

    def fail(self, problem: str) -> InspectError:
        return InspectError(f"graph op {self.node.name} ({op_name(self.node)}) cannot be exported to ONNX: {problem}")

    def tensor(self, k: int, like: Sym | None = None) -> Sym:
        """Argument k as a graph tensor; a constant takes the kind of `like` (as TensorFlow converts it)."""
        a = self.args[k]
        if isinstance(a, Sym):
            return a
        value = np.asarray(a)
        if value.dtype.kind not in "biuf":
            raise self.fail(f"argument {k} is {type(a).__name__}, not a tensor or a number")
        kind = like.kind if like is not None and like.kind != "complex" else (
            "bool" if value.dtype.kind == "b" else "int" if value.dtype.kind in "iu" else "float")
        dtype = {"float": np.float32, "int": np.int64, "bool": np.bool_}[kind]
        return Sym(self.g.const(value, f"{self.node.name}.const", dtype), value.ndim, kind=kind)

    def ints(self, k: int, what: str) -> list[int] | None:
        a = self.args[k] if k < len(self.args) else None
        if a is None:
            return None
        if isinstance(a, Sym):
            raise self.fail(f"its {what} is computed by the graph; only constants are exported")
        items = np.asarray(a).reshape(-1).tolist()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in items):
            raise self.fail(f"its {what} {a!r} is not a list of integers")
        return [int(v) for v in items]


def _bind(node: Any, args: Any, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The node's arguments in its engine function's parameter order (defaults filled in), and its attributes."""
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        return list(tf_function_arguments(op_name(node), args, kwargs).values()), {}
    if node.class_name == "TensorFlowOpLayer":
        return node_def_inputs(node, flat(args))
    op = KERAS3_OPS[node.class_name]
    options, unknown = keras3_options(op, node.config, kwargs)
    if unknown:
        raise OpError(f"the op {node.class_name} does not take {', '.join(unknown)}")
    return [*args, *[options.get(k) for k in op.keywords]], {"keywords": op.keywords}


def emit_op(g: Graph, node: Any, args: Any, ctx: Context) -> Sym:
    op = canonical_op(node)
    if op is None or op not in EMITTERS:
        raise InspectError(f"graph op {node.name}: {onnx_op_problem(node)}")
    try:
        bound, attrs = _bind(node, list(args.args), dict(args.kwargs))
    except OpError as exc:
        raise InspectError(f"graph op {node.name}: {exc}") from exc
    return EMITTERS[op](OpCall(g, node, op, bound, attrs, ctx))


# ---------------------------------------------------------------- emitters

OpEmitter = Callable[[OpCall], Sym]
EMITTERS: dict[str, OpEmitter] = {}


def emits(*names: str) -> Callable[[OpEmitter], OpEmitter]:
    def register(fn: OpEmitter) -> OpEmitter:
        for name in names:
            EMITTERS[name] = fn
        return fn
    return register


def _real(c: OpCall, s: Sym) -> Sym:
    if s.kind == "complex":
        raise c.fail("complex values reach it; lstm-inspect exports complex values only through cast, fft, ifft, "
                     "real, imag and abs")
    return s


def _as(c: OpCall, s: Sym, kind: str) -> str:
    return s.name if s.kind == kind else c.g.cast(s.name, kind)


BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}


@emits(*BINARY)
def binary(c: OpCall) -> Sym:
    first = c.args[0] if isinstance(c.args[0], Sym) else (c.args[1] if isinstance(c.args[1], Sym) else None)
    a, b = _real(c, c.tensor(0, first)), _real(c, c.tensor(1, first))
    kind = "float" if "float" in (a.kind, b.kind) or c.op == "div" else a.kind
    if kind == "bool":
        kind = "int"
    y = c.g.op(BINARY[c.op], _as(c, a, kind), _as(c, b, kind), hint=c.node.name)
    return Sym(y, max(a.rank, b.rank), kind=kind)


COMPARE = {"equal": "Equal", "greater": "Greater", "less": "Less", "greater_equal": "GreaterOrEqual",
           "less_equal": "LessOrEqual", "not_equal": "Equal"}


@emits(*COMPARE)
def compare(c: OpCall) -> Sym:
    first = c.args[0] if isinstance(c.args[0], Sym) else c.args[1]
    a, b = _real(c, c.tensor(0, first)), _real(c, c.tensor(1, first))
    kind = "float" if "float" in (a.kind, b.kind) else ("int" if "int" in (a.kind, b.kind) else "bool")
    if kind == "bool" and c.op not in ("equal", "not_equal"):
        kind = "int"
    y = c.g.op(COMPARE[c.op], _as(c, a, kind), _as(c, b, kind))
    if c.op == "not_equal":
        y = c.g.op("Not", y)
    return Sym(y, max(a.rank, b.rank), kind="bool")


@emits("or", "and")
def logical(c: OpCall) -> Sym:
    a, b = c.tensor(0), c.tensor(1)
    y = c.g.op("Or" if c.op == "or" else "And", _as(c, a, "bool"), _as(c, b, "bool"))
    return Sym(y, max(a.rank, b.rank), kind="bool")


@emits("not")
def logical_not(c: OpCall) -> Sym:
    a = c.tensor(0)
    return Sym(c.g.op("Not", _as(c, a, "bool")), a.rank, kind="bool")


UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh", "sigmoid": "Sigmoid",
         "relu": "Relu"}


@emits(*UNARY, "square")
def unary(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    x = a.name
    kind = a.kind
    if c.op in ("exp", "log", "sqrt", "tanh", "sigmoid"):
        x, kind = _as(c, a, "float"), "float"
    y = c.g.op("Mul", x, x) if c.op == "square" else c.g.op(UNARY[c.op], x)
    return Sym(y, a.rank, kind=kind)


@emits("abs")
def absolute(c: OpCall) -> Sym:
    a = c.tensor(0)
    if a.kind == "complex":  # |re + i·im| over the trailing pair
        sq = c.g.op("Mul", a.name, a.name)
        return Sym(c.g.op("Sqrt", c.g.reduce("ReduceSum", sq, [-1], keepdims=False)), a.rank)
    return Sym(c.g.op("Abs", a.name), a.rank, kind=a.kind)


@emits("softmax")
def softmax(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    axis = c.ints(1, "axis")
    return Sym(c.g.op("Softmax", _as(c, a, "float"), axis=axis[0] if axis else -1), a.rank)


def _dtype_kind(c: OpCall, value: Any) -> str:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name") if isinstance(value.get("config"), dict) else value.get("name")
    kind = KIND_OF_DTYPE.get(str(value)) or KIND_OF_DTYPE.get(TF_DTYPES.get(str(value), ""))
    if kind is None:
        raise c.fail(f"dtype {value!r} is not one lstm-inspect exports")
    return kind


def _half(value: Any) -> bool:
    """A dtype that is float16: its values are rounded to half precision (and carried on in float32)."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name") if isinstance(value.get("config"), dict) else value.get("name")
    return str(value) in ("float16", "DT_HALF")


def _rounded_to_half(c: OpCall, x: str) -> str:
    from onnx import TensorProto

    return c.g.op("Cast", c.g.op("Cast", x, to=TensorProto.FLOAT16), to=TensorProto.FLOAT)


def _zeros_pair(c: OpCall, x: str) -> str:
    """x (real) as complex: (x, 0) along a new trailing axis."""
    re = c.g.unsqueeze(x, [-1])
    return c.g.op("Concat", re, c.g.zeros_like(re), axis=-1)


def _part(c: OpCall, a: Sym, k: int) -> str:
    g = c.g
    return g.squeeze(g.op("Slice", a.name, g.ints([k]), g.ints([k + 1]), g.ints([-1])), [-1])


@emits("cast")
def cast(c: OpCall) -> Sym:
    a = c.tensor(0)
    if c.node.class_name == "TensorFlowOpLayer":
        target = (c.attrs.get("DstT") or {}).get("type")
        dst = TF_TYPE_KIND.get(str(target))
        if dst is None:
            raise c.fail(f"DstT {c.attrs.get('DstT')!r} is not a type lstm-inspect exports")
    else:
        target = c.args[1]
        dst = _dtype_kind(c, target)
    if dst == "complex":
        if a.kind == "complex":
            return a
        return Sym(_zeros_pair(c, _as(c, a, "float")), a.rank, kind="complex")
    if a.kind == "complex":  # tf.cast keeps the real part
        a = Sym(_part(c, a, 0), a.rank)
    y = _as(c, a, dst)
    return Sym(_rounded_to_half(c, y) if dst == "float" and _half(target) else y, a.rank, kind=dst)


@emits("convert")
def convert(c: OpCall) -> Sym:
    """keras.ops.convert_to_tensor: the tensor itself, cast when a dtype is given."""
    a = c.tensor(0)
    dtype = c.args[1] if len(c.args) > 1 else None
    if dtype is None:
        return a
    kind = _dtype_kind(c, dtype)
    y = _as(c, a, kind)
    return Sym(_rounded_to_half(c, y) if kind == "float" and _half(dtype) else y, a.rank, kind=kind, mask=a.mask)


@emits("real", "imag")
def real_imag(c: OpCall) -> Sym:
    a = c.tensor(0)
    if a.kind != "complex":
        return Sym(a.name if c.op == "real" else c.g.zeros_like(_as(c, a, "float")), a.rank,
                   kind=a.kind if c.op == "real" else "float")
    return Sym(_part(c, a, 0 if c.op == "real" else 1), a.rank)


@emits("fft", "ifft")
def dft(c: OpCall) -> Sym:
    """tf.signal.fft / ifft over the last axis: ONNX DFT (1/N on the inverse, as TensorFlow)."""
    g, a = c.g, c.tensor(0)
    x = a.name if a.kind == "complex" else _zeros_pair(c, _as(c, a, "float"))
    if a.rank < 2:
        raise c.fail("ONNX's DFT needs a batch axis before the signal axis")
    inverse = int(c.op == "ifft")
    if g.opset < 17:
        raise c.fail("ONNX has DFT from opset 17: export with --opset 17 or newer")
    if g.opset >= 20:  # the axis became an input, by default -2: the last signal axis
        y = g.op("DFT", x, inverse=inverse, hint=c.node.name)
    else:
        y = g.op("DFT", x, axis=a.rank - 1, inverse=inverse, hint=c.node.name)
    return Sym(y, a.rank, kind="complex")


@emits("reshape")
def reshape(c: OpCall) -> Sym:
    a = c.tensor(0)
    shape = c.ints(1, "shape")
    if not shape or any(n == 0 or n < -1 for n in shape) or shape.count(-1) > 1:
        raise c.fail(f"the shape {shape} is not one lstm-inspect exports (sizes > 0 and at most one -1)")
    target = shape + ([2] if a.kind == "complex" else [])
    return Sym(c.g.op("Reshape", a.name, c.g.ints(target), hint=c.node.name), len(shape), kind=a.kind)


@emits("expand_dims")
def expand_dims(c: OpCall) -> Sym:
    a = c.tensor(0)
    axis = (c.ints(1, "axis") or [None])[0]
    if axis is None or not -a.rank - 1 <= axis <= a.rank:
        raise c.fail(f"axis {axis} does not fit an input of rank {a.rank}")
    axis = axis % (a.rank + 1)
    return Sym(c.g.unsqueeze(a.name, [axis]), a.rank + 1, kind=a.kind)


@emits("squeeze")
def squeeze(c: OpCall) -> Sym:
    a = c.tensor(0)
    if c.node.class_name == "TensorFlowOpLayer":
        axes = op_attr(c.attrs, "squeeze_dims", "ints") or None
    else:
        axes = None
        for k in range(1, len(c.args)):
            axes = axes or c.ints(k, "axis")
    if not axes:
        raise c.fail("a squeeze of every size-1 axis depends on the run-time shape; name the axis")
    axes = [x % a.rank for x in axes]
    return Sym(c.g.squeeze(a.name, axes), a.rank - len(set(axes)), kind=a.kind)


@emits("transpose")
def transpose(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    perm = c.ints(1, "perm") or list(range(a.rank))[::-1]
    if sorted(perm) != list(range(a.rank)):
        raise c.fail(f"perm {perm} does not fit an input of rank {a.rank}")
    return Sym(c.g.op("Transpose", a.name, perm=perm), a.rank, kind=a.kind)


@emits("concat")
def concat(c: OpCall) -> Sym:
    if c.node.class_name == "TensorFlowOpLayer":
        parts, axis_arg = c.args[:-1], c.args[-1]
    else:
        parts, axis_arg = c.args[0], c.args[1]
    parts = parts if isinstance(parts, list) else [parts]
    if isinstance(axis_arg, Sym):
        raise c.fail("its axis is computed by the graph")
    axis = int(np.asarray(axis_arg).reshape(-1)[0]) if axis_arg is not None else 0
    first = next((p for p in parts if isinstance(p, Sym)), None)
    syms = [_real(c, p if isinstance(p, Sym) else OpCall(c.g, c.node, c.op, [p], {}, c.ctx).tensor(0, first))
            for p in parts]
    kind = "float" if any(s.kind == "float" for s in syms) else syms[0].kind
    rank = syms[0].rank
    return Sym(c.g.op("Concat", *[_as(c, s, kind) for s in syms], axis=axis, hint=c.node.name), rank, kind=kind)


@emits("slice")
def tf_slice(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    begin, size = c.ints(1, "begin"), c.ints(2, "size")
    if begin is None or size is None or len(begin) != a.rank or len(size) != a.rank:
        raise c.fail(f"begin {begin} and size {size} do not fit an input of rank {a.rank}")
    ends = [INT64_MAX if n == -1 else b + n for b, n in zip(begin, size)]
    y = c.g.op("Slice", a.name, c.g.ints(begin), c.g.ints(ends), c.g.ints(list(range(a.rank))))
    return Sym(y, a.rank, kind=a.kind)


def _index(c: OpCall, a: Sym, specs: list[Any]) -> Sym:
    """x[specs]: slices, integers, None (a new axis) and one Ellipsis, as NumPy indexes."""
    g = c.g
    n_real = sum(1 for s in specs if s is not None and s is not Ellipsis)
    if n_real > a.rank:
        raise c.fail(f"{n_real} indexes into a tensor of rank {a.rank}")
    expanded: list[Any] = []
    for s in specs:
        if s is Ellipsis:
            expanded += [slice(None)] * (a.rank - n_real)
        else:
            expanded.append(s)
    if Ellipsis not in specs:
        expanded += [slice(None)] * (a.rank - n_real)
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    axis, out_axis = 0, 0
    for s in expanded:
        if s is None:
            new.append(out_axis)
            out_axis += 1
            continue
        if isinstance(s, slice):
            step = 1 if s.step is None else s.step
            start = s.start if s.start is not None else (0 if step > 0 else INT64_MAX)
            stop = s.stop if s.stop is not None else (INT64_MAX if step > 0 else INT64_MIN)
            if (start, stop, step) != (0, INT64_MAX, 1):
                starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
            out_axis += 1
        else:
            starts.append(s), ends.append(s + 1 if s != -1 else INT64_MAX), axes.append(axis), steps.append(1)
            drop.append(axis)
        axis += 1
    y = a.name
    if axes:
        y = g.op("Slice", y, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps), hint=c.node.name)
    if drop:
        y = g.squeeze(y, drop)
    if new:
        y = g.unsqueeze(y, new)
    return Sym(y, a.rank - len(drop) + len(new), kind=a.kind)


@emits("getitem")
def getitem(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    specs = c.args[1] if isinstance(c.args[1], list) else [c.args[1]]
    try:
        return _index(c, a, [op_slice_index(s) for s in specs])
    except OpError as exc:
        raise c.fail(str(exc)) from None


@emits("strided_slice")
def strided_slice(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    b, e, s = c.ints(1, "begin"), c.ints(2, "end"), c.ints(3, "strides")
    masks = op_slice_masks(c.attrs)
    if b is None or e is None or s is None:
        raise c.fail("begin, end and strides differ in length")
    try:
        specs = strided_slice_index(b, e, s, masks)
    except OpError as exc:
        raise c.fail(str(exc)) from None
    return _index(c, a, specs)


REDUCE = {"mean": "ReduceMean", "sum": "ReduceSum", "max_over": "ReduceMax", "any": "ReduceMax", "all": "ReduceMin"}


@emits(*REDUCE)
def reduce(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    if c.node.class_name == "TensorFlowOpLayer":
        axes, keep = c.ints(1, "axis"), op_attr(c.attrs, "keep_dims", "bool", False)
    else:
        axes, keep = c.ints(1, "axis"), bool(c.args[2]) if len(c.args) > 2 and c.args[2] is not None else False
    axes = [x % a.rank for x in axes] if axes is not None else list(range(a.rank))
    x, kind = a.name, a.kind
    if c.op in ("any", "all"):
        x, kind = c.g.cast(_as(c, a, "bool"), "int"), "bool"
    elif c.op == "mean":
        x, kind = _as(c, a, "float"), "float"
    y = c.g.reduce(REDUCE[c.op], x, axes, keepdims=keep)
    if kind == "bool":
        y = c.g.cast(y, "bool")
    return Sym(y, a.rank if keep else a.rank - len(set(axes)), kind=kind)


@emits("zeros_like", "ones_like")
def filled_like(c: OpCall) -> Sym:
    a = _real(c, c.tensor(0))
    dtype = c.args[1] if len(c.args) > 1 else None
    kind = _dtype_kind(c, dtype) if dtype is not None else a.kind
    value: Any = {"float": 0.0, "int": 0, "bool": False}[kind]
    if c.op == "ones_like":
        value = {"float": 1.0, "int": 1, "bool": True}[kind]
    return Sym(c.g.filled(c.g.op("Shape", a.name), value), a.rank, kind=kind)


@emits("matmul")
def matmul(c: OpCall) -> Sym:
    first = c.args[0] if isinstance(c.args[0], Sym) else c.args[1]
    a, b = _real(c, c.tensor(0, first)), _real(c, c.tensor(1, first))
    if c.node.class_name == "TensorFlowOpLayer":
        op = op_name(c.node)
        keys = ("transpose_a", "transpose_b") if op == "MatMul" else ("adj_x", "adj_y")
        ta, tb = (op_attr(c.attrs, k, "bool") for k in keys)
    else:
        ta = bool(c.args[2]) or bool(c.args[4])
        tb = bool(c.args[3]) or bool(c.args[5])

    def swap(s: Sym) -> str:
        perm = list(range(s.rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return c.g.op("Transpose", _as(c, s, "float"), perm=perm)

    x = swap(a) if ta else _as(c, a, "float")
    y = swap(b) if tb else _as(c, b, "float")
    return Sym(c.g.op("MatMul", x, y, hint=c.node.name), max(a.rank, b.rank))
