"""The LSTM in the PyTorch export: torch.nn.LSTM (gates i, f, g, o), or the explicit `KerasLSTM` of model.py.

nn.LSTM computes Keras's LSTM (`lstm_inspect/model/cells/lstm.py`) exactly with tanh and sigmoid; any other
activation runs step by step in `KerasLSTM`'s loop with Keras's equations (`lstm_step`);
with them, KerasLSTM calls nn.LSTM's op (torch.lstm), with a mask (in eager PyTorch and TorchScript) on each
row's valid steps packed (`packed_valid` in `cells/__init__.py`).
"""

from __future__ import annotations

from lstm_inspect.export.torch.cells import TorchCell, loop_snippet
from lstm_inspect.export.torch.code import TYPING, snippet
from lstm_inspect.export.torch.registry import cell

snippet("lstm_step", '''
def lstm_step(xp: Tensor, state: List[Tensor], weight_hh: Tensor, bias_hh: Optional[Tensor], activation: str,
              recurrent_activation: str, option: bool) -> List[Tensor]:
    """Keras's LSTM step on x·kernel + bias (xp); gates i, f, g (Keras's c), o stacked as nn.LSTM stacks them.
    `option` is unused (the loop's signature is every kind's)."""
    h, c = state[0], state[1]
    i, f, g, o = (xp + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=1)
    c = (keras_activation(recurrent_activation, f) * c
         + keras_activation(recurrent_activation, i) * keras_activation(activation, g))
    return [keras_activation(recurrent_activation, o) * keras_activation(activation, c), c]
''', imports=TYPING, before="KerasRNN")
loop_snippet("lstm_loop", "lstm_step")
snippet("KerasLSTM", '''
class KerasLSTM(KerasRNN):
    """A Keras LSTM layer (gates i, f, g, o); fused: torch.nn.LSTM's op (tanh and sigmoid)."""

    gates, n_states = 4, 2

    def fused_run(self, x: Tensor, state: List[Tensor], params: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, h, c = torch.lstm(x, [state[0][None], state[1][None]], params, len(params) == 4, 1, 0.0, False, False,
                             True)
        return y, [h[0], c[0]]

    def fused_packed(self, data: Tensor, batch_sizes: Tensor, state: List[Tensor], params: List[Tensor]
                     ) -> Tuple[Tensor, List[Tensor]]:
        y, h, c = torch.lstm(data, batch_sizes, state, params, len(params) == 4, 1, 0.0, False, False)
        return y, [h, c]

    def loop(self, xp: Tensor, mask: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
        return lstm_loop(xp, mask, state, weight_hh, bias_hh, self.activation, self.recurrent_activation, False,
                         zero_output_for_mask)
''', needs=("KerasRNN", "lstm_loop"))


@cell("LSTM")
class LSTM(TorchCell):
    module, order, labels, explicit = "torch.nn.LSTM", ("i", "f", "c", "o"), "i, f, g, o", "KerasLSTM"
