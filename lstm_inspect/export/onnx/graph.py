"""A small ONNX graph builder and Keras's activations as ONNX operators.

Every emitter writes nodes through `Graph.op`, constants through `Graph.const`; tensor names are
made unique here and carry only [A-Za-z0-9_.] (a layer name from the file is a hint, never the
name itself). Subgraphs (Scan bodies) share the name pool and put their constants in the outer
graph, which ONNX lets them read; every constant is stored once (`Graph.const`). Operators whose
signature changed between opsets (reductions, Split) are written for the opset in use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.activations import HARD_SIGMOID

DEFAULT_OPSET, MIN_OPSET = 17, 14
INT64_MIN = np.iinfo(np.int64).min


@dataclass
class Sym:
    """A tensor of the exported graph, as the emitters see it (the engine's `Tensor` in ONNX)."""

    name: str
    rank: int
    kind: str = "float"  # "float", "int" (token ids, int64) or "bool"
    mask: str | None = None  # Keras's propagated mask: a bool (batch, steps) tensor's name
    dim: int | None = None  # size of the last axis, when known


class Names:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.]", "_", str(hint))[:48].strip("._") or "t"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


@dataclass
class Graph:
    opset: int
    names: Names = field(default_factory=Names)
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)  # shared with subgraphs
    _consts: dict[tuple[Any, ...], str] = field(default_factory=dict)
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # values computed once per graph (not subgraph)

    def sub(self) -> Graph:
        """A subgraph's builder: its own nodes, the outer graph's names and constants."""
        return Graph(self.opset, self.names, [], self.initializers, self._consts)

    def op(self, op_type: str, *inputs: str, outputs: int = 1, hint: str | None = None, **attrs: Any) -> Any:
        """One node; returns its output name (or the list of them when outputs > 1)."""
        from onnx import helper

        base = hint or op_type.lower()
        outs = [self.names.fresh(base if outputs == 1 else f"{base}_{k}") for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.names.fresh(f"{base}_node"),
                                           **{k: v for k, v in attrs.items() if v is not None}))
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, hint: str = "const", dtype: Any = np.float32) -> str:
        """A constant (an initializer), stored once: equal arrays (a layer called twice, a weight two emitters
        read) share one initializer, named after the first hint."""
        from onnx import numpy_helper

        a = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        data = a.tobytes()
        key = (a.dtype.str, a.shape, data if a.size <= 16 else hashlib.sha256(data).digest())
        if key in self._consts:
            return self._consts[key]
        name = self.names.fresh(hint)
        self.initializers.append(numpy_helper.from_array(a, name))
        self._consts[key] = name
        return name

    def ints(self, values: Any, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint, np.int64)

    # ---- operators whose form depends on the opset, and small compositions

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: bool = True, hint: str | None = None) -> str:
        """ReduceSum/Mean/Max/Min: axes an input from opset 18 (ReduceSum from 13), an attribute before."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.ints(axes), keepdims=int(keepdims), hint=hint)
        return self.op(op_type, x, axes=list(axes), keepdims=int(keepdims), hint=hint)

    def unsqueeze(self, x: str, axes: list[int], hint: str | None = None) -> str:
        return self.op("Unsqueeze", x, self.ints(axes), hint=hint)

    def squeeze(self, x: str, axes: list[int], hint: str | None = None) -> str:
        return self.op("Squeeze", x, self.ints(axes), hint=hint)

    def split(self, x: str, sizes: list[int], axis: int, hint: str | None = None) -> list[str]:
        return list(self.op("Split", x, self.ints(sizes), axis=axis, outputs=len(sizes), hint=hint))

    def reverse(self, x: str, axis: int, hint: str | None = None) -> str:
        """x reversed along `axis` (a Slice with step -1)."""
        return self.op("Slice", x, self.ints([-1]), self.ints([INT64_MIN]), self.ints([axis]), self.ints([-1]),
                       hint=hint or "reversed")

    def cast(self, x: str, to: str) -> str:
        from onnx import TensorProto

        return self.op("Cast", x, to={"float": TensorProto.FLOAT, "int": TensorProto.INT64,
                                      "bool": TensorProto.BOOL, "int32": TensorProto.INT32}[to])

    def shape_range(self, x: str, start: int, end: int | None = None) -> str:
        """Shape(x)[start:end] as an int64 vector."""
        shape = self.op("Shape", x)
        return self.op("Slice", shape, self.ints([start]), self.ints([end if end is not None else 1 << 62]),
                       self.ints([0]))

    def filled(self, shape: str, value: Any) -> str:
        """A tensor of the (run-time) shape `shape` holding `value` (bool, int64 or float32)."""
        from onnx import numpy_helper

        dtype = np.bool_ if isinstance(value, bool) else np.int64 if isinstance(value, int) else np.float32
        return self.op("ConstantOfShape", shape, value=numpy_helper.from_array(np.array([value], dtype=dtype), "v"))

    def zeros_like(self, x: str) -> str:
        return self.filled(self.op("Shape", x), 0.0)


def value_info(name: str, kind: str, rank: int | None, dims: list[Any] | None = None) -> Any:
    """A typed graph input/output; dims: ints or symbolic names, None for unknown sizes."""
    from onnx import TensorProto, helper

    elem = {"float": TensorProto.FLOAT, "int": TensorProto.INT64, "bool": TensorProto.BOOL,
            "int32": TensorProto.INT32}[kind]
    shape = dims if dims is not None else ([None] * rank if rank is not None else None)
    return helper.make_tensor_value_info(name, elem, shape)


# ---------------------------------------------------------------- activations


def activation(g: Graph, name: str, x: str, hard_sigmoid: str) -> str:
    """Keras's activation `name` on x, as the engine defines it (`lstm_inspect.model.activations`)."""
    base, _, generation = str(name or "linear").partition(":")
    slope, offset = HARD_SIGMOID[generation or hard_sigmoid]
    if base in ("linear", "None", ""):
        return x
    simple = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus",
              "exponential": "Exp", "elu": "Elu"}
    if base in simple:
        return g.op(simple[base], x)
    if base == "hard_sigmoid":
        return g.op("HardSigmoid", x, alpha=float(slope), beta=float(offset))
    if base in ("hard_silu", "hard_swish"):
        return g.op("Mul", x, g.op("HardSigmoid", x, alpha=float(slope), beta=float(offset)))
    if base == "relu6":
        return g.op("Clip", x, g.const(0.0), g.const(6.0))
    if base == "selu":
        return g.op("Selu", x, alpha=1.6732632423543772, gamma=1.0507009873554805)
    if base in ("swish", "silu"):
        return g.op("Mul", x, g.op("Sigmoid", x))
    if base == "softmax":
        return g.op("Softmax", x, axis=-1)
    if base == "gelu":  # exact: x·Φ(x) = 0.5·x·(1 + erf(x/√2))
        erf = g.op("Erf", g.op("Div", x, g.const(np.sqrt(2.0))))
        return g.op("Mul", g.op("Mul", x, g.const(0.5)), g.op("Add", erf, g.const(1.0)))
    if base == "mish":
        return g.op("Mul", x, g.op("Tanh", g.op("Softplus", x)))
    if base == "log_sigmoid":
        return g.op("Neg", g.op("Softplus", g.op("Neg", x)))
    if base == "leaky_relu":
        return g.op("LeakyRelu", x, alpha=0.2)
    raise InspectError(f"activation {base!r} has no ONNX form in lstm-inspect")


# The activations ONNX's LSTM, GRU and RNN operators take, with their (alpha, beta): the Keras
# activation they compute exactly. Others run the step as a Scan.
RNN_OP_ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
    "linear": ("Affine", 1.0, 0.0), "elu": ("Elu", 1.0, None), "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
}


def rnn_op_activation(name: str, hard_sigmoid: str) -> tuple[str, float | None, float | None] | None:
    if name == "hard_sigmoid":
        slope, offset = HARD_SIGMOID[hard_sigmoid]
        return "HardSigmoid", float(slope), float(offset)
    return RNN_OP_ACTIVATIONS.get(name)
