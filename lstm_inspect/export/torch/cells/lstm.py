"""The LSTM in the PyTorch export: torch.nn.LSTM (gates i, f, g, o), or the explicit `KerasLSTM` of model.py.

nn.LSTM computes Keras's LSTM (`lstm_inspect/model/cells/lstm.py`) exactly with tanh and sigmoid; any other
activation runs step by step in `KerasLSTM` with Keras's equations (`lstm_step`).
"""

from __future__ import annotations

from lstm_inspect.export.torch.cells import TorchCell
from lstm_inspect.export.torch.code import snippet
from lstm_inspect.export.torch.registry import cell

snippet("lstm_step", '''
def lstm_step(xp, state, weight_hh, bias_hh, activation, recurrent_activation):
    """Keras's LSTM step on x·kernel + bias (xp); gates i, f, g (Keras's c), o stacked as nn.LSTM stacks them."""
    h, c = state
    i, f, g, o = (xp + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=1)
    c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
    return [recurrent_activation(o) * activation(c), c]
''', before="KerasCell")
snippet("KerasLSTM", '''
class KerasLSTM(KerasCell):
    """A Keras LSTM direction, step by step (gates i, f, g, o)."""

    gates, n_states = 4, 2

    def step(self, xp, state):
        return lstm_step(xp, state, self.weight_hh, self.bias_hh, self.activation, self.recurrent_activation)
''', needs=("KerasCell", "lstm_step"), before="TorchDirection")


@cell("LSTM")
class LSTM(TorchCell):
    module, order, labels, explicit = "torch.nn.LSTM", ("i", "f", "c", "o"), "i, f, g, o", "KerasLSTM"
