"""The GRU in the PyTorch export: torch.nn.GRU (gates r, z, n), or the explicit `KerasGRU` of model.py.

nn.GRU computes Keras's GRU (`lstm_inspect/model/cells/gru.py`) exactly in the reset_after=True form with tanh
and sigmoid; the reset-before form (Keras 1/2's default) or other activations run step by step in `KerasGRU`
with Keras's equations (`gru_step`, both forms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_inspect.export.torch.cells import TorchCell, loop_snippet
from lstm_inspect.export.torch.code import TYPING, snippet
from lstm_inspect.export.torch.registry import cell

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import CellSettings

snippet("gru_step", '''
def gru_step(xp: Tensor, state: List[Tensor], weight_hh: Tensor, bias_hh: Optional[Tensor], activation: str,
             recurrent_activation: str, reset_after: bool) -> List[Tensor]:
    """Keras's GRU step on x·kernel + bias (xp); gates r, z, n (Keras's h̃) stacked as nn.GRU stacks them.

    reset_after=True (nn.GRU's form): n = φ(x_n + r ⊙ (h·W_hn + b_hn)); False (Keras's older form):
    n = φ(x_n + (r ⊙ h)·W_hn). Then h = z ⊙ h_prev + (1 − z) ⊙ n.
    """
    h = state[0]
    units = h.shape[1]
    x_r, x_z, x_n = xp.chunk(3, dim=1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=1)
    r = keras_activation(recurrent_activation, x_r + h_r)
    z = keras_activation(recurrent_activation, x_z + h_z)
    if reset_after:
        n = keras_activation(activation, x_n + r * h_n)
    else:
        bias_n: Optional[Tensor] = None
        if bias_hh is not None:
            bias_n = bias_hh[2 * units:]
        n = keras_activation(activation, x_n + F.linear(r * h, weight_hh[2 * units:], bias_n))
    return [z * h + (1 - z) * n]
''', imports=TYPING, before="KerasRNN")
loop_snippet("gru_loop", "gru_step")
snippet("KerasGRU", '''
class KerasGRU(KerasRNN):
    """A Keras GRU layer (gates r, z, n), in either reset_after form; fused: torch.nn.GRU's op (reset_after=True,
    tanh and sigmoid)."""

    gates, n_states = 3, 1

    def __init__(self, *args, reset_after: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after

    def fused_run(self, x: Tensor, state: List[Tensor], params: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, h = torch.gru(x, state[0][None], params, len(params) == 4, 1, 0.0, False, False, True)
        return y, [h[0]]

    def fused_packed(self, data: Tensor, batch_sizes: Tensor, state: List[Tensor], params: List[Tensor]
                     ) -> Tuple[Tensor, List[Tensor]]:
        y, h = torch.gru(data, batch_sizes, state[0], params, len(params) == 4, 1, 0.0, False, False)
        return y, [h]

    def loop(self, xp: Tensor, mask: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
        return gru_loop(xp, mask, state, weight_hh, bias_hh, self.activation, self.recurrent_activation,
                        self.reset_after, zero_output_for_mask)
''', needs=("KerasRNN", "gru_loop"))


@cell("GRU")
class GRU(TorchCell):
    module, order, labels, explicit = "torch.nn.GRU", ("r", "z", "h"), "r, z, n", "KerasGRU"

    def refusal(self, settings: CellSettings) -> str | None:
        if settings.reset_after:
            return None
        return (f"{self.problem(settings)}, so there is no torch.nn.GRU state_dict for it; use --layout onnx "
                "(linear_before_reset=0) or --layout keras")

    def problem(self, settings: CellSettings) -> str | None:
        if not settings.reset_after:
            return ("torch.nn.GRU computes the reset_after=True form (r multiplies W_hn·h + b_hn); this layer has "
                    "reset_after=False (r multiplies h before the product)")
        return super().problem(settings)
