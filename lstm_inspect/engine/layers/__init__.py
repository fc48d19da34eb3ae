"""The layers the engine runs around recurrent ones, one module per family; `registry` holds `LAYERS` and `@layer`.

Importing the package imports every family, so `LAYERS` is complete whichever module asks for it first.
"""

from lstm_inspect.engine.layers import activations, attention, conv, core, pooling  # noqa: F401  (they register)
from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, LayerKind, Site, Tensor, layer

__all__ = ["LAYERS", "Context", "LayerCall", "LayerKind", "Site", "Tensor", "layer"]
