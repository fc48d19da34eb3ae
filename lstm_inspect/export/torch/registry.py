"""The PyTorch target's registries, named as the engine's (`lstm_inspect/engine/layers/registry.py`).

`LAYERS`: Keras class name -> the emitter writing that layer's forward() lines (and its attribute), registered
with `@layer("Dense", ...)` in the family module named as the engine's (core, conv, pooling, activations,
attention). `CELLS`: cell kind ("LSTM", "GRU", "SimpleRNN") -> this target's code for it (a `cells.TorchCell`:
the torch.nn module, its gate order, the explicit cell written when torch.nn has no exact form), registered with
`@cell("LSTM")` in `cells/lstm.py`, `gru.py`, `simple_rnn.py`. `lstm_inspect/export/torch/__init__.py` imports
every one of those modules, so both registries are complete once the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from lstm_inspect.export.torch.cells import TorchCell
    from lstm_inspect.export.torch.code import LayerEmit, Sym

Emitter = Callable[["LayerEmit"], "list[Sym]"]
LAYERS: dict[str, Emitter] = {}


def layer(*names: str) -> Callable[[Emitter], Emitter]:
    """Register an emitter for the Keras class names `names` (as the engine's `layer(...)` registers them)."""

    def register(fn: Emitter) -> Emitter:
        for name in names:
            LAYERS[name] = fn
        return fn

    return register


CELLS: dict[str, TorchCell] = {}
T = TypeVar("T", bound="type[TorchCell]")


def cell(kind: str) -> Callable[[T], T]:
    """Register a TorchCell subclass (one instance) as this target's code for the cell kind `kind`."""

    def register(cls: T) -> T:
        instance = cls()
        instance.kind = kind
        CELLS[kind] = instance
        return cls

    return register
