"""The SimpleRNN in the PyTorch export: torch.nn.RNN, or the explicit `KerasSimpleRNN` of model.py.

nn.RNN computes Keras's SimpleRNN (`lstm_inspect/model/cells/simple_rnn.py`) exactly with tanh or relu
(its nonlinearity); any other activation runs step by step in `KerasSimpleRNN` (`simple_rnn_step`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lstm_inspect.export.torch.cells import TorchCell
from lstm_inspect.export.torch.code import snippet
from lstm_inspect.export.torch.registry import cell

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import CellSettings

snippet("simple_rnn_step", '''
def simple_rnn_step(xp, state, weight_hh, bias_hh, activation):
    """Keras's SimpleRNN step on x·kernel + bias (xp): h = φ(xp + h_prev·recurrent_kernel)."""
    (h,) = state
    return [activation(xp + F.linear(h, weight_hh, bias_hh))]
''', before="KerasCell")
snippet("KerasSimpleRNN", '''
class KerasSimpleRNN(KerasCell):
    """A Keras SimpleRNN direction, step by step."""

    def step(self, xp, state):
        return simple_rnn_step(xp, state, self.weight_hh, self.bias_hh, self.activation)
''', needs=("KerasCell", "simple_rnn_step"), before="TorchDirection")


@cell("SimpleRNN")
class SimpleRNN(TorchCell):
    module, order, labels, explicit = "torch.nn.RNN", ("h",), "h", "KerasSimpleRNN"

    def problem(self, settings: CellSettings) -> str | None:
        if settings.activation not in ("tanh", "relu"):
            return f"torch.nn.RNN has nonlinearity tanh or relu; this layer's activation is {settings.activation}"
        return None

    def options(self, settings: CellSettings) -> dict[str, Any]:
        """torch.nn.RNN's nonlinearity (where it has none of Keras's, `problem` says so)."""
        return {"nonlinearity": settings.activation if settings.activation in ("tanh", "relu") else "tanh"}
