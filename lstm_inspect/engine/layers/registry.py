"""The one registry of the layers the NumPy engine runs around recurrent layers.

Each layer kind is registered once, with everything the rest of lstm-inspect needs to know about
it: how to run it (a small function from its input tensors, their Keras masks and its stored
weights to its outputs, as Keras computes it at inference), how it changes the feature size (for
`show`'s shape checks), and that `verify` may rebuild it with Keras. The engine runs exactly the
registered kinds, `show` checks shapes through them, and `verify` rebuilds only them: one list, so
the three cannot drift apart.

Modules, one per family: `core` (Dense, Embedding, Activation, TimeDistributed, shapes, Permute,
normalization, the merges and Dot, identities at inference), `conv` (convolutions, padding, cropping,
upsampling), `pooling`, `activations` (ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU),
`attention` (Attention, AdditiveAttention, MultiHeadAttention). The exporters' forms of each kind
live in `lstm_inspect.export.onnx` and `lstm_inspect.export.torch`, in family modules of the same
names, each target with its own `LAYERS` and `@layer`. A new family is a module in this folder that imports
this registry, named in `engine/layers/__init__.py`'s import line, plus one in each export target.

Each family module also holds the decisions its exporters share with the engine (reading a layer's
config with its defaults and Keras 1/2/3 key names, which rule a Keras release follows, padding
amounts): one function or frozen dataclass each, called by the engine function and by both emitters.
They take the call as a `Site` (the engine's `LayerCall`, the ONNX export's `OnnxCall`, the PyTorch
export's `LayerEmit`), so each refusal keeps the wording of the target that raises it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lstm_inspect.base import budget
from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.cells.base import config_int

if TYPE_CHECKING:
    from lstm_inspect.model.architecture import LayerNode


@dataclass
class Tensor:
    value: np.ndarray
    mask: np.ndarray | None = None  # (batch, steps) booleans, Keras's propagated mask


@dataclass(frozen=True)
class Context:
    """What every layer function may need besides its inputs: the arithmetic and the writing Keras."""

    dtype: type
    keras_version: str | None
    keras_major: int  # 1, 2 or 3 (2 when not recorded)
    masking_any: bool = False  # a port's mistake (see `check.diagnose`): Masking masks a step where ANY feature
    # equals mask_value, where Keras masks it only when ALL do

    @property
    def hard_sigmoid(self) -> str:
        return "keras3" if self.keras_major >= 3 else "keras2"


@dataclass
class LayerCall:
    """One call of a layer: its node, its input tensors (positional, flattened), its other arguments."""

    node: LayerNode
    inputs: list[Tensor]
    weights: list[np.ndarray]
    ctx: Context
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.node.config

    @property
    def x(self) -> np.ndarray:
        """The first input as an array of the engine's dtype."""
        return np.asarray(self.inputs[0].value, dtype=self.ctx.dtype)

    @property
    def mask(self) -> np.ndarray | None:
        return self.inputs[0].mask

    def expect(self, shapes: list[tuple[Any, ...]]) -> None:
        """The stored arrays have the count and shapes the config and input imply (None: any size)."""
        node, w = self.node, self.weights
        if not w:
            raise InspectError(f"layer {node.path} ({node.class_name}): the file stores no weights for it")
        if len(w) != len(shapes):
            raise InspectError(f"layer {node.path} ({node.class_name}): expected {len(shapes)} weight arrays, "
                               f"found {len(w)}")
        for k, (a, want) in enumerate(zip(w, shapes)):
            if a.ndim != len(want) or any(n is not None and int(n) != m for n, m in zip(want, a.shape)):
                expected = "(" + ", ".join("?" if n is None else str(n) for n in want) + ")"
                raise InspectError(f"layer {node.path} ({node.class_name}): weight {k} should have shape "
                                   f"{expected}, found {a.shape}")
            if a.dtype.kind != "f":
                raise InspectError(f"layer {node.path} ({node.class_name}): weight {k} holds {a.dtype}, not numbers")

    def need(self, *shapes: tuple[int, ...], what: str = "its output") -> None:
        """Refuse, before allocating them, arrays of these shapes (in the engine's dtype) that would take the run
        past its memory budget (`lstm_inspect.base.budget`): where a layer computes a size its config decides."""
        budget.need(*shapes, itemsize=max(4, np.dtype(self.ctx.dtype).itemsize), what=what)

    def fail(self, problem: str) -> InspectError:
        """An error about this layer on this input, for the layer functions to raise."""
        shape = self.inputs[0].value.shape if self.inputs else "?"
        return InspectError(f"layer {self.node.path} ({self.node.class_name}) cannot run on its input of shape "
                            f"{shape}: {problem}")

    def refuse(self, detail: str, plain: str | None = None) -> InspectError:
        """A refusal a shared decision raises: `detail` names the file's values; `plain` is the PyTorch export's
        wording of it (`LayerEmit.refuse`), unused here."""
        return self.fail(detail)


class Site(Protocol):
    """What the shared decisions of the layer modules read of a call, whichever target makes it: the engine's
    `LayerCall`, the ONNX export's `OnnxCall` or the PyTorch export's `LayerEmit`."""

    node: Any  # LayerNode
    inputs: list[Any]  # positional tensors: the engine's Tensor, or an exporter's Sym

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def kwargs(self) -> dict[str, Any]: ...

    @property
    def ctx(self) -> Context: ...

    def fail(self, problem: str) -> InspectError: ...

    def refuse(self, detail: str, plain: str | None = None) -> InspectError: ...


LayerFn = Callable[[LayerCall], list[Tensor]]
DimsFn = Callable[["LayerNode", list[int | None]], list[int | None]]


@dataclass(frozen=True)
class LayerKind:
    """A Keras layer class the engine runs."""

    name: str
    run: LayerFn
    dims: DimsFn | None = None  # feature size of each output from those of the inputs (None: unknown)
    nested: tuple[str, ...] = ()  # config keys holding a wrapped layer's config (TimeDistributed: "layer")
    weighted: Callable[[LayerNode], bool] | bool = False  # whether Keras gives the layer weights (checkpoint order)

    def has_weights(self, node: LayerNode) -> bool:
        return self.weighted(node) if callable(self.weighted) else self.weighted


LAYERS: dict[str, LayerKind] = {}


def layer(*names: str, dims: DimsFn | None = None, nested: tuple[str, ...] = (),
          weighted: Callable[[LayerNode], bool] | bool = False) -> Callable[[LayerFn], LayerFn]:
    """Register a layer function for the Keras class names `names`."""

    def register(fn: LayerFn) -> LayerFn:
        for name in names:
            LAYERS[name] = LayerKind(name, fn, dims, nested, weighted)
        return fn

    return register


def same_dims(node: LayerNode, in_dims: list[int | None]) -> list[int | None]:
    return [in_dims[0] if in_dims else None]


def config_dims(key: str, *fallbacks: str) -> DimsFn:
    """Output feature size read from the config (Dense's units, Embedding's output_dim)."""
    def dims(node: LayerNode, in_dims: list[int | None]) -> list[int | None]:
        for k in (key, *fallbacks):
            if k in node.config:
                return [config_int(node.config[k])]
        return [None]

    return dims
