"""The SimpleRNN in the PyTorch export: torch.nn.RNN, or the explicit `KerasSimpleRNN` of model.py.

nn.RNN computes Keras's SimpleRNN (`lstm_inspect/model/cells/simple_rnn.py`) exactly with tanh or relu
(its nonlinearity); any other activation runs step by step in `KerasSimpleRNN` (`simple_rnn_step`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lstm_inspect.export.torch.cells import TorchCell, loop_snippet
from lstm_inspect.export.torch.code import TYPING, snippet
from lstm_inspect.export.torch.registry import cell

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import CellSettings

snippet("simple_rnn_step", '''
def simple_rnn_step(xp: Tensor, state: List[Tensor], weight_hh: Tensor, bias_hh: Optional[Tensor], activation: str,
                    recurrent_activation: str, option: bool) -> List[Tensor]:
    """Keras's SimpleRNN step on x·kernel + bias (xp): h = φ(xp + h_prev·recurrent_kernel). The gate arguments
    are unused (the loop's signature is every kind's)."""
    return [keras_activation(activation, xp + F.linear(state[0], weight_hh, bias_hh))]
''', imports=TYPING, before="KerasRNN")
loop_snippet("simple_rnn_loop", "simple_rnn_step")
snippet("KerasSimpleRNN", '''
class KerasSimpleRNN(KerasRNN):
    """A Keras SimpleRNN layer; fused: torch.nn.RNN's op (tanh or relu)."""

    def fused_run(self, x: Tensor, state: List[Tensor], params: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        if self.activation == "relu":
            y, h = torch.rnn_relu(x, state[0][None], params, len(params) == 4, 1, 0.0, False, False, True)
        else:
            y, h = torch.rnn_tanh(x, state[0][None], params, len(params) == 4, 1, 0.0, False, False, True)
        return y, [h[0]]

    def fused_packed(self, data: Tensor, batch_sizes: Tensor, state: List[Tensor], params: List[Tensor]
                     ) -> Tuple[Tensor, List[Tensor]]:
        if self.activation == "relu":
            y, h = torch.rnn_relu(data, batch_sizes, state[0], params, len(params) == 4, 1, 0.0, False, False)
        else:
            y, h = torch.rnn_tanh(data, batch_sizes, state[0], params, len(params) == 4, 1, 0.0, False, False)
        return y, [h]

    def loop(self, xp: Tensor, mask: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
        return simple_rnn_loop(xp, mask, state, weight_hh, bias_hh, self.activation, self.recurrent_activation,
                               False, zero_output_for_mask)
''', needs=("KerasRNN", "simple_rnn_loop"))


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
