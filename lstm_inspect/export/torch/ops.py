"""The raw operations of functional graphs in the PyTorch export, from the same whitelist as the engine.

Why: models compute masks and small transforms with ops on Keras tensors (`x != 0`, `tf.concat`,
`x[:, 1:]`), recorded in three dialects (see `lstm_inspect.engine.ops`): Keras 3 op nodes (`KERAS3_OPS`,
options by the engine's `keras3_options`), tf.keras's `TFOpLambda`/`SlicingOpLambda` (`TF_FUNCTIONS`,
arguments bound by `tf_function_arguments` to the engine function's own signature, which uses
TensorFlow's parameter names) and TF 2.2-2.3's `TensorFlowOpLayer` (`TF_RAW_OPS`, NodeDef inputs with
constants in their places by `node_def_inputs`, attributes read with the engine's `op_attr`). The
operators are looked up by the ops' canonical names (`ops.canonical_op`), one table for every
dialect. Each op here writes what the engine's NumPy version computes; an op the engine runs but
this module does not is refused with one line naming it. Constants from the config become literals
only after int()/float() checks; constant arrays become buffers in weights.safetensors. Ops output no
Keras mask (as in the engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.ops import (
    CANONICAL_KERAS3,
    CANONICAL_TF_FUNCTIONS,
    CANONICAL_TF_RAW,
    KERAS3_OPS,
    TF_FUNCTIONS,
    TF_RAW_OPS,
    OpError,
    dtype_of,
    flat,
    keras3_options,
    node_def_inputs,
    op_attr,
    op_ints,
    op_name,
    op_slice_masks,
    strided_slice_index,
    tf_function_arguments,
)
from lstm_inspect.export.torch.code import LayerEmit, Sym, kind_of, scalar, torch_dtype

Value = Any  # a Sym, or a constant from the config


def _fail(e: LayerEmit, problem: str) -> InspectError:
    return InspectError(f"{e.w.where}: graph op {e.node.path} ({e.kind}): {problem}")


def operand(e: LayerEmit, v: Value, what: str = "a constant") -> str:
    """A tensor's local, a checked scalar literal, or a constant array as a buffer."""
    if isinstance(v, Sym):
        return v.name
    if isinstance(v, (bool, int, float, np.number, np.bool_)):
        text = scalar(v, what)
        return f"({text})" if text.startswith("-") else text
    if isinstance(v, list):
        try:
            a = np.asarray(v)
        except ValueError:
            raise _fail(e, f"{what} is not a rectangular array of numbers") from None
        if a.dtype.kind not in "biuf":
            raise _fail(e, f"{what} is not an array of numbers")
        return e.w.buffer(f"{e.hint}_constant", a)
    raise _fail(e, f"{what} is a {type(v).__name__}, which lstm-inspect does not write")


def _tensor(e: LayerEmit, v: Value, what: str = "its input") -> Sym:
    if not isinstance(v, Sym):
        raise _fail(e, f"{what} is not a tensor")
    return v


def _index_ints(e: LayerEmit, value: Value, what: str) -> list[int]:
    if isinstance(value, Sym):
        raise _fail(e, f"{what} is a tensor; lstm-inspect writes it only as a constant")
    return op_ints(value, what)


def _index_int(e: LayerEmit, value: Value, what: str) -> int:
    ints = _index_ints(e, value, what)
    if len(ints) != 1:
        raise _fail(e, f"{what} holds {len(ints)} values, not one integer")
    return ints[0]


def _rank(e: LayerEmit, x: Sym) -> int:
    if x.rank is None:
        raise _fail(e, "the rank of its input is unknown (the model could not run on a made-up input)")
    return x.rank


# ---------------------------------------------------------------- shared forms


def binary(e: LayerEmit, op: str, a: Value, b: Value) -> str:
    """a <op> b for +, -, *, /, comparisons; 'max'/'min' as torch.maximum/minimum or a clamp against a scalar."""
    if not isinstance(a, Sym) and not isinstance(b, Sym):
        raise _fail(e, "none of its operands is a tensor")
    if op in ("max", "min"):
        if isinstance(a, Sym) and isinstance(b, Sym):
            return f"torch.{'maximum' if op == 'max' else 'minimum'}({a.name}, {b.name})"
        t, c = (a, b) if isinstance(a, Sym) else (b, a)
        return f"{t.name}.clamp({'min' if op == 'max' else 'max'}={operand(e, c)})"  # max(x, c): x at least c
    if op in ("or", "and"):
        fn = "torch.logical_or" if op == "or" else "torch.logical_and"
        left, right = (operand(e, v) if isinstance(v, Sym) else f"torch.tensor({operand(e, v)})" for v in (a, b))
        return f"{fn}({left}, {right})"
    return f"{operand(e, a)} {op} {operand(e, b)}"


def cast(e: LayerEmit, x: Sym, dtype: Any) -> str:
    """tf.cast / keras.ops.cast: complex to real keeps the real part; float to int truncates (as .to does)."""
    try:
        target = np.dtype(dtype_of(dtype))
    except OpError as exc:
        raise _fail(e, str(exc)) from None
    source = f"{x.name}.real" if x.kind == "complex" and target.kind != "c" else x.name
    return f"{source}.to({torch_dtype(target)})"


def fft(e: LayerEmit, fn: str, x: Sym, length: Value = None) -> str:
    """TensorFlow's FFTs over the last axis; single precision in, single precision out."""
    if fn in ("fft", "ifft"):
        source = x.name if x.kind == "complex" else f"{x.name}.to(torch.complex64)"
        return f"torch.fft.{fn}({source}, dim=-1)"
    n = "" if length is None else f", n={_index_ints(e, length, 'fft_length')[-1]}"
    if fn == "irfft" and x.kind != "complex":
        return f"torch.fft.irfft({x.name}.to(torch.complex64){n}, dim=-1)"
    return f"torch.fft.{fn}({x.name}{n}, dim=-1)"


def real_part(x: Sym, imaginary: bool) -> str:
    if x.kind == "complex":
        return f"{x.name}.{'imag' if imaginary else 'real'}"
    return f"torch.zeros_like({x.name})" if imaginary else x.name


def reduce(e: LayerEmit, fn: str, x: Sym, axis: Value, keepdims: Any) -> str:
    """any, all, mean, sum, amax over `axis` (an int, a list, or None for every axis)."""
    keep = bool(keepdims)
    if axis is None:
        out = f"{x.name}.{fn}()"
        return f"{out}.reshape({', '.join(['1'] * _rank(e, x))})" if keep and _rank(e, x) else out
    axes = _index_ints(e, axis, "axis")
    dims = str(axes[0]) if not isinstance(axis, list) and len(axes) == 1 else f"({', '.join(map(str, axes))},)"
    return f"torch.{fn}({x.name}, dim={dims}{', keepdim=True' if keep else ''})"


def squeeze(e: LayerEmit, x: Sym, axis: Value) -> str:
    if axis is None or axis == []:
        return f"{x.name}.squeeze()"
    axes = _index_ints(e, axis, "axis")
    return f"{x.name}.squeeze({axes[0] if len(axes) == 1 else tuple(axes)})"


def transpose(e: LayerEmit, x: Sym, perm: Value, conjugate: Any = False) -> str:
    axes = list(reversed(range(_rank(e, x)))) if perm is None else _index_ints(e, perm, "perm")
    out = f"{x.name}.permute({', '.join(map(str, axes))})"
    return f"{out}.conj()" if conjugate and x.kind == "complex" else out


def concat(e: LayerEmit, values: Value, axis: Value) -> str:
    items = values if isinstance(values, list) else [values]
    names = [_tensor(e, v, "a concatenated value").name for v in items]
    return f"torch.cat([{', '.join(names)}], dim={_index_int(e, axis, 'axis')})"


def _slice_text(start: int | None, stop: int | None, step: int | None) -> str:
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + (f":{step}" if step not in (None, 1) else "")


def index(e: LayerEmit, x: Sym, parts: list[Any]) -> str:
    """x[parts] for ints, slices, None (a new axis) and Ellipsis; torch has no negative slice steps."""
    texts = []
    for p in parts:
        if p is Ellipsis:
            texts.append("...")
        elif p is None:
            texts.append("None")
        elif isinstance(p, slice):
            bounds = [p.start, p.stop, p.step]
            if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
                raise _fail(e, "a slice bound is not an integer")
            if p.step is not None and p.step < 0:
                raise _fail(e, "a negative slice step has no PyTorch form in lstm-inspect yet")
            if p.step == 0:
                raise _fail(e, "a slice step is 0")
            texts.append(_slice_text(p.start, p.stop, p.step))
        elif isinstance(p, int) and not isinstance(p, bool):
            texts.append(str(int(p)))
        else:
            raise _fail(e, "an index is not one lstm-inspect writes (slices, integers, None and ... only)")
    return f"{x.name}[{', '.join(texts) or '...'}]"


def tf_slice(e: LayerEmit, x: Sym, begin: Value, size: Value) -> str:
    b, s = _index_ints(e, begin, "begin"), _index_ints(e, size, "size")
    if len(b) != len(s) or (x.rank is not None and len(b) != x.rank):
        raise _fail(e, "its begin and size do not fit its input")
    return index(e, x, [slice(lo, None if n == -1 else lo + n) for lo, n in zip(b, s)])


def getitem(e: LayerEmit, x: Sym, slice_spec: Value) -> str:
    parts = []
    for spec in slice_spec if isinstance(slice_spec, list) else [slice_spec]:
        if isinstance(spec, dict):
            if spec.get("class_name") == "__ellipsis__":
                parts.append(Ellipsis)
                continue
            parts.append(slice(spec.get("start"), spec.get("stop"), spec.get("step")))
        else:
            parts.append(spec)
    return index(e, x, parts)


def strided_slice(e: LayerEmit, x: Sym, begin: Value, end: Value, strides: Value, masks: dict[str, int]) -> str:
    """TensorFlow's StridedSlice (what x[...] records): one spec per position, masks by bit."""
    b, en, s = (_index_ints(e, v, n) for v, n in ((begin, "begin"), (end, "end"), (strides, "strides")))
    try:
        parts = strided_slice_index(b, en, s, masks)
    except OpError as exc:
        raise _fail(e, f"StridedSlice: {exc}") from None
    return index(e, x, parts)


def matmul(e: LayerEmit, a: Value, b: Value, transpose_a: Any = False, transpose_b: Any = False,
           adjoint_a: Any = False, adjoint_b: Any = False) -> str:
    def side(v: Value, flip: Any, adjoint: Any) -> str:
        text = operand(e, v, "a matmul operand")
        if flip or adjoint:
            text = f"{text}.transpose(-1, -2)"
            if adjoint and isinstance(v, Sym) and v.kind == "complex":
                text += ".conj()"
        return text

    return f"torch.matmul({side(a, transpose_a, adjoint_a)}, {side(b, transpose_b, adjoint_b)})"


# ---------------------------------------------------------------- the operators, by the ops' one name

# canonical op (`lstm_inspect.engine.ops.canonical_op`, whatever the dialect's name) -> its PyTorch operator
COMPARE = {"not_equal": "!=", "equal": "==", "greater": ">", "less": "<", "greater_equal": ">=", "less_equal": "<="}
BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "max": "max", "min": "min", "or": "or", "and": "and"}
UNARY = {"neg": "torch.neg", "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt", "square": "torch.square",
         "tanh": "torch.tanh", "sigmoid": "torch.sigmoid", "relu": "torch.relu", "abs": "torch.abs",
         "not": "torch.logical_not"}
OPERATORS = {**COMPARE, **BINARY, **UNARY}


# ---------------------------------------------------------------- Keras 3 op nodes

KERAS3_WRITTEN = frozenset({name for name, op in CANONICAL_KERAS3.items() if op in OPERATORS}
                           | {"Any", "All", "ExpandDims", "Squeeze", "ZerosLike", "OnesLike", "Concatenate", "Cast",
                              "ConvertToTensor"})


def keras3_op(e: LayerEmit, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    """(expression, kind) of one Keras 3 op node (`lstm_inspect.engine.ops.KERAS3_OPS`)."""
    op = e.kind
    canonical = CANONICAL_KERAS3.get(op)
    first = args[0] if args else None
    if canonical in COMPARE:
        return binary(e, COMPARE[canonical], *_two(e, args)), "bool"
    if canonical in BINARY:
        logical = canonical in ("or", "and")
        return binary(e, BINARY[canonical], *_two(e, args)), "bool" if logical else _kind(args)
    if canonical in UNARY:
        x = _tensor(e, first)
        return f"{UNARY[canonical]}({x.name})", "bool" if canonical == "not" else x.kind
    own = KERAS3_OWN.get(op)
    if own is not None:
        return own(e, first, args, options)
    raise _fail(e, "has no PyTorch form in lstm-inspect yet")


def _target_dtype(e: LayerEmit, dtype: Any) -> np.dtype:
    try:
        return np.dtype(dtype_of(dtype))
    except OpError as exc:
        raise _fail(e, str(exc)) from None


def _any_all(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    return reduce(e, e.kind.lower(), _tensor(e, first), options.get("axis"), options.get("keepdims", False)), "bool"


def _expand_dims(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    axis = options.get("axis")
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise _fail(e, "its axis is not an integer")
    x = _tensor(e, first)
    return f"{x.name}.unsqueeze({axis})", x.kind


def _squeeze(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    x = _tensor(e, first)
    return squeeze(e, x, options.get("axis")), x.kind


def _like(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    x = _tensor(e, first)
    fn = "torch.zeros_like" if e.kind == "ZerosLike" else "torch.ones_like"
    dtype = options.get("dtype")
    if dtype is None:
        return f"{fn}({x.name})", x.kind
    target = _target_dtype(e, dtype)
    return f"{fn}({x.name}, dtype={torch_dtype(target)})", "bool" if target.kind == "b" else "float"


def _concatenate(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    return concat(e, first, options.get("axis", 0)), _kind(first if isinstance(first, list) else [first])


def _cast(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    return cast(e, _tensor(e, first), options.get("dtype")), "float"


def _convert_to_tensor(e: LayerEmit, first: Value, args: list[Value], options: dict[str, Any]) -> tuple[str, str]:
    """keras.ops.convert_to_tensor: the tensor itself, cast when a dtype is given."""
    x = _tensor(e, first)
    dtype = options.get("dtype")
    dtype = args[1] if dtype is None and len(args) > 1 else dtype
    if dtype is None:
        return x.name, x.kind
    target = _target_dtype(e, dtype)
    return cast(e, x, dtype), kind_of(target)


# the Keras 3 ops with no operator of their own in the shared tables, by the op node's class name
Keras3Fn = Callable[[LayerEmit, Value, list[Value], dict[str, Any]], tuple[str, str]]
KERAS3_OWN: dict[str, Keras3Fn] = {
    "Any": _any_all, "All": _any_all, "ExpandDims": _expand_dims, "Squeeze": _squeeze, "ZerosLike": _like,
    "OnesLike": _like, "Concatenate": _concatenate, "Cast": _cast, "ConvertToTensor": _convert_to_tensor,
}


def _two(e: LayerEmit, args: list[Value]) -> tuple[Value, Value]:
    if len(args) != 2:
        raise _fail(e, f"takes two operands, it is given {len(args)}")
    return args[0], args[1]


def _kind(values: list[Value]) -> str:
    kinds = {v.kind for v in values if isinstance(v, Sym)}
    return "complex" if "complex" in kinds else "float" if "float" in kinds else (kinds.pop() if kinds else "float")


# ---------------------------------------------------------------- tf.keras TFOpLambda (TensorFlow API functions)

TfFn = Callable[[LayerEmit, dict[str, Any]], str]


def _tf_binary(op: str) -> TfFn:
    return lambda e, a: binary(e, op, a["x"], a["y"])


def _tf_unary(fn: str) -> TfFn:
    """fn on the function's one tensor parameter (x, or nn.relu's features)."""
    return lambda e, a: f"{fn}({_tensor(e, next(iter(a.values()))).name})"


TF_EMITTERS: dict[str, TfFn] = {
    **{name: _tf_binary(BINARY[op]) for name, op in CANONICAL_TF_FUNCTIONS.items() if op in BINARY},
    **{name: _tf_unary(UNARY[op]) for name, op in CANONICAL_TF_FUNCTIONS.items() if op in UNARY},
    "cast": lambda e, a: cast(e, _tensor(e, a["x"]), a["dtype"]),
    "signal.fft": lambda e, a: fft(e, "fft", _tensor(e, a["input"])),
    "signal.ifft": lambda e, a: fft(e, "ifft", _tensor(e, a["input"])),
    "signal.rfft": lambda e, a: fft(e, "rfft", _tensor(e, a["input_tensor"]), a["fft_length"]),
    "signal.irfft": lambda e, a: fft(e, "irfft", _tensor(e, a["input_tensor"]), a["fft_length"]),
    "math.real": lambda e, a: real_part(_tensor(e, a["input"]), False),
    "math.imag": lambda e, a: real_part(_tensor(e, a["input"]), True),
    "nn.softmax": lambda e, a: (f"torch.softmax({_tensor(e, a['logits']).name}, "
                                f"dim={-1 if a['axis'] is None else _index_int(e, a['axis'], 'axis')})"),
    "reshape": lambda e, a: (f"{_tensor(e, a['tensor']).name}.reshape("
                             f"{', '.join(map(str, _index_ints(e, a['shape'], 'shape')))})"),
    "expand_dims": lambda e, a: f"{_tensor(e, a['input']).name}.unsqueeze({_index_int(e, a['axis'], 'axis')})",
    "squeeze": lambda e, a: squeeze(e, _tensor(e, a["input"]), a["axis"]),
    "compat.v1.squeeze": lambda e, a: squeeze(e, _tensor(e, a["input"]),
                                              a["axis"] if a["axis"] is not None else a["squeeze_dims"]),
    "transpose": lambda e, a: transpose(e, _tensor(e, a["a"]), a["perm"], a["conjugate"]),
    "compat.v1.transpose": lambda e, a: transpose(e, _tensor(e, a["a"]), a["perm"], a["conjugate"]),
    "concat": lambda e, a: concat(e, a["values"], a["axis"]),
    "slice": lambda e, a: tf_slice(e, _tensor(e, a["input_"]), a["begin"], a["size"]),
    "__operators__.getitem": lambda e, a: getitem(e, _tensor(e, a["tensor"]), a["slice_spec"]),
    "math.reduce_mean": lambda e, a: reduce(e, "mean", _tensor(e, a["input_tensor"]), a["axis"], a["keepdims"]),
    "math.reduce_sum": lambda e, a: reduce(e, "sum", _tensor(e, a["input_tensor"]), a["axis"], a["keepdims"]),
    "math.reduce_max": lambda e, a: reduce(e, "amax", _tensor(e, a["input_tensor"]), a["axis"], a["keepdims"]),
    "linalg.matmul": lambda e, a: matmul(e, a["a"], a["b"], a["transpose_a"], a["transpose_b"], a["adjoint_a"],
                                         a["adjoint_b"]),
}


def tf_function(e: LayerEmit, name: str) -> str:
    """One TFOpLambda: its arguments bound as the engine binds them (TensorFlow's parameter names)."""
    emit = TF_EMITTERS.get(name)
    if name not in TF_FUNCTIONS or emit is None:
        raise _fail(e, "has no PyTorch form in lstm-inspect yet")
    try:
        arguments = tf_function_arguments(name, list(e.args.args), e.args.kwargs)
    except OpError:
        raise _fail(e, "is given arguments it does not take") from None
    return emit(e, arguments)


# ---------------------------------------------------------------- TF 2.2-2.3 TensorFlowOpLayer (NodeDefs)

RawFn = Callable[[LayerEmit, list[Value], dict[str, Any]], str]


def _raw_binary(op: str) -> RawFn:
    return lambda e, i, a: binary(e, op, i[0], i[1])


def _raw_unary(fn: str) -> RawFn:
    return lambda e, i, a: f"{fn}({_tensor(e, i[0]).name})"


RAW_EMITTERS: dict[str, RawFn] = {
    **{name: _raw_binary(BINARY[op]) for name, op in CANONICAL_TF_RAW.items() if op in BINARY},
    **{name: _raw_unary(UNARY[op]) for name, op in CANONICAL_TF_RAW.items() if op in UNARY},
    "Cast": lambda e, i, a: cast(e, _tensor(e, i[0]), op_attr(a, "DstT", "type")),
    "FFT": lambda e, i, a: fft(e, "fft", _tensor(e, i[0])),
    "IFFT": lambda e, i, a: fft(e, "ifft", _tensor(e, i[0])),
    "RFFT": lambda e, i, a: fft(e, "rfft", _tensor(e, i[0]), i[1]),
    "IRFFT": lambda e, i, a: fft(e, "irfft", _tensor(e, i[0]), i[1]),
    "Real": lambda e, i, a: real_part(_tensor(e, i[0]), False),
    "Imag": lambda e, i, a: real_part(_tensor(e, i[0]), True),
    "Reshape": lambda e, i, a: f"{_tensor(e, i[0]).name}.reshape({', '.join(map(str, _index_ints(e, i[1], 'shape')))})",
    "ExpandDims": lambda e, i, a: f"{_tensor(e, i[0]).name}.unsqueeze({_index_int(e, i[1], 'axis')})",
    "Squeeze": lambda e, i, a: squeeze(e, _tensor(e, i[0]), op_attr(a, "squeeze_dims", "ints") or None),
    "Transpose": lambda e, i, a: transpose(e, _tensor(e, i[0]), i[1]),
    "ConcatV2": lambda e, i, a: concat(e, list(i[:-1]), i[-1]),
    "Slice": lambda e, i, a: tf_slice(e, _tensor(e, i[0]), i[1], i[2]),
    "StridedSlice": lambda e, i, a: strided_slice(e, _tensor(e, i[0]), i[1], i[2], i[3], op_slice_masks(a)),
    "Mean": lambda e, i, a: reduce(e, "mean", _tensor(e, i[0]), i[1], op_attr(a, "keep_dims", "bool", False)),
    "Sum": lambda e, i, a: reduce(e, "sum", _tensor(e, i[0]), i[1], op_attr(a, "keep_dims", "bool", False)),
    "Max": lambda e, i, a: reduce(e, "amax", _tensor(e, i[0]), i[1], op_attr(a, "keep_dims", "bool", False)),
    "MatMul": lambda e, i, a: matmul(e, i[0], i[1], op_attr(a, "transpose_a", "bool"),
                                     op_attr(a, "transpose_b", "bool")),
    "BatchMatMulV2": lambda e, i, a: matmul(e, i[0], i[1], adjoint_a=op_attr(a, "adj_x", "bool"),
                                            adjoint_b=op_attr(a, "adj_y", "bool")),
}
RAW_EMITTERS["BatchMatMul"] = RAW_EMITTERS["BatchMatMulV2"]


def node_def(e: LayerEmit, op: str) -> str:
    """One TensorFlowOpLayer: its NodeDef's inputs in order, constants in their places (as the engine's
    `_run_node_def` assembles them)."""
    emit = RAW_EMITTERS.get(op)
    if emit is None or op not in TF_RAW_OPS:
        raise _fail(e, "has no PyTorch form in lstm-inspect yet")
    try:
        # constants stay as the config holds them: operand() checks them and writes them as literals or buffers
        inputs, attrs = node_def_inputs(e.node, [t for t in flat(e.args.args) if isinstance(t, Sym)], lambda v: v)
    except OpError as exc:
        raise _fail(e, str(exc)) from None
    try:
        return emit(e, inputs, attrs)
    except IndexError:
        raise _fail(e, f"it has too few inputs ({len(inputs)})") from None


# ---------------------------------------------------------------- the entry point


def op_kind(node: Any) -> str | None:
    """The op's name in lstm-inspect's tables (never the file's own text), or None when it has no PyTorch form."""
    name = op_name(node)
    if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
        return name if name in TF_EMITTERS and name in TF_FUNCTIONS else None
    if node.class_name == "TensorFlowOpLayer":
        return name if name in RAW_EMITTERS and name in TF_RAW_OPS else None
    return name if name in KERAS3_WRITTEN else None


def op_layer(e: LayerEmit) -> list[Sym]:
    """One op node of a functional graph: a local holding its result, no mask."""
    node = e.node
    try:
        if node.class_name in ("TFOpLambda", "SlicingOpLambda"):
            expr, kind = tf_function(e, e.kind), ""
        elif node.class_name == "TensorFlowOpLayer":
            expr, kind = node_def(e, e.kind), ""
        else:
            options, unknown = keras3_options(KERAS3_OPS[e.kind], node.config, e.args.kwargs)
            if unknown:
                raise _fail(e, f"does not take {', '.join(unknown)}")
            expr, kind = keras3_op(e, list(e.args.args), options)
    except OpError as exc:
        raise _fail(e, str(exc)) from None
    if not kind:
        firsts = [v for v in flat(e.args.args) if isinstance(v, Sym)]
        kind = firsts[0].kind if firsts else "float"
    return [e.w.let(e.hint, expr, kind)]
