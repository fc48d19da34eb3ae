"""The ONNX target's registries and the types its families share.

`LAYERS` maps a Keras layer class to its emitter (registered with `@layer`, as the engine's
`lstm_inspect.engine.layers.LAYERS`); an emitter takes one `OnnxCall` and returns the symbolic
outputs. `CELLS` maps a cell kind ("LSTM", "GRU", "SimpleRNN") to this target's code for it, an
`OnnxCell` (registered with `@cell`): the ONNX operator of the kind, its gate layout and attributes, and
Keras's step equations for the Scan (`lstm_inspect.export.onnx.cells`). Every module that registers is
imported by the package's `__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS as ENGINE_LAYERS
from lstm_inspect.engine.layers.registry import Context
from lstm_inspect.export.onnx.graph import Graph, Sym
from lstm_inspect.model.cells.base import Cell, CellSettings, CellWeights
from lstm_inspect.model.checkpoint import RecurrentDirection


@dataclass
class OnnxCall:
    """One layer call to emit: the builder, the node, its symbolic inputs, its stored weights."""

    g: Graph
    node: Any  # LayerNode
    inputs: list[Sym]
    weights: list[np.ndarray]
    ctx: Context
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A layer Keras gives weights but the file stores none for (a model saved before it was built): refused
        as the engine refuses it, before any emitter indexes the empty list."""
        kind = ENGINE_LAYERS.get(self.node.class_name)
        if not self.weights and kind is not None and kind.has_weights(self.node):
            raise InspectError(f"layer {self.node.path} ({self.node.class_name}): the file stores no weights for it")

    @property
    def config(self) -> dict[str, Any]:
        return self.node.config

    @property
    def x(self) -> Sym:
        return self.inputs[0]

    @property
    def hint(self) -> str:
        return self.node.name

    def const(self, a: np.ndarray, what: str) -> str:
        return self.g.const(np.asarray(a, dtype=self.ctx.dtype), f"{self.node.name}.{what}", self.ctx.dtype)

    def fail(self, problem: str) -> InspectError:
        return InspectError(f"layer {self.node.path} ({self.node.class_name}) cannot be exported to ONNX: {problem}")

    def refuse(self, detail: str, plain: str | None = None) -> InspectError:
        """A shared decision's refusal, worded as the engine words it (`LayerCall.refuse`)."""
        return self.fail(detail)

    def float_input(self, k: int = 0) -> str:
        s = self.inputs[k]
        return s.name if s.kind == "float" else self.g.cast(s.name, "float")


Emitter = Callable[[OnnxCall], list[Sym]]
LAYERS: dict[str, Emitter] = {}  # Keras class name -> its emitter


def layer(*names: str) -> Callable[[Emitter], Emitter]:
    """Registers an emitter for these Keras classes (the engine's `@layer`)."""
    def register(fn: Emitter) -> Emitter:
        for name in names:
            LAYERS[name] = fn
        return fn
    return register


def out_dim(c: OnnxCall) -> int | None:
    """The size of the output's last axis, as the engine's registry says (for the next layers' checks)."""
    dims = ENGINE_LAYERS[c.node.class_name].dims
    try:
        return dims(c.node, [c.x.dim])[0] if dims is not None else None
    except (TypeError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- cells

Act = Callable[[str], str]  # an activation applied to a tensor of the step graph


class OnnxCell:
    """This target's code for one cell kind: the ONNX operator (onnx.ai/onnx/operators: LSTM, GRU, RNN) that
    computes it, its gate layout, and Keras's step equations for the Scan where the operator cannot."""

    op: str = ""  # "LSTM"
    order: tuple[str, ...] = ()  # this kind's gates in ONNX's block order
    labels: str = ""  # ONNX's names of those blocks, e.g. "i, o, f, c"
    activation_order: str = ""  # the slots of ONNX's `activations`, e.g. "[f, g, h] = [recurrent_activation, ...]"

    def attributes(self, settings: CellSettings) -> dict[str, Any]:
        """The ONNX operator's attributes this kind's settings decide (a GRU's linear_before_reset)."""
        return {}

    def activations(self, settings: CellSettings) -> list[str]:
        """The Keras activation names in the slots of ONNX's `activations` attribute (f, g, h order)."""
        return [str(settings.recurrent_activation), settings.activation, settings.activation]

    def arrays(self, cell: Cell, w: CellWeights) -> dict[str, np.ndarray]:
        """W (G·H, I), R (G·H, H), B (2·G·H) of one direction, ONNX's gate order."""
        b_in, b_rec = cell.bias_pair(w)
        return {
            "W": cell.reordered_T(w.kernel, self.order),
            "R": cell.reordered_T(w.recurrent_kernel, self.order),
            "B": np.concatenate([cell.reorder(b_in, self.order), cell.reorder(b_rec, self.order)]),
        }

    def direction_arrays(self, d: RecurrentDirection, w: CellWeights) -> dict[str, np.ndarray]:
        """W, R, B of the operator for this direction (as stored: a kind whose storage keeps more says so)."""
        return self.arrays(d.cell, w)

    def step_weights(self, d: RecurrentDirection, w: CellWeights, const: Callable[[Any, str], str]
                     ) -> tuple[np.ndarray | None, dict[str, str]]:
        """(the input bias, the step's constants) for the Scan, in Keras's stored gate order."""
        return w.bias, {"recurrent_kernel": const(w.recurrent_kernel, "recurrent_kernel")}

    def step(self, g: Graph, xp: str, states: list[str], w: dict[str, str], units: int, act: Act,
             rec: Act) -> list[str]:
        """The new states (h first) from x·kernel + b (`xp`) and the previous states, Keras's equations."""
        raise NotImplementedError


CELLS: dict[str, OnnxCell] = {}  # cell kind -> this target's code for it


def cell(kind: str) -> Callable[[type[OnnxCell]], type[OnnxCell]]:
    """Registers this target's code for a cell kind (`lstm_inspect.model.cells.CELLS` has the same kinds)."""
    def register(cls: type[OnnxCell]) -> type[OnnxCell]:
        CELLS[kind] = cls()
        return cls
    return register
