"""The GRU in the PyTorch export: torch.nn.GRU (gates r, z, n), or the explicit `KerasGRU` of model.py.

nn.GRU computes Keras's GRU (`lstm_inspect/model/cells/gru.py`) exactly in the reset_after=True form with tanh
and sigmoid; the reset-before form (Keras 1/2's default) or other activations run step by step in `KerasGRU`
with Keras's equations (`gru_step`, both forms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_inspect.export.torch.cells import TorchCell
from lstm_inspect.export.torch.code import snippet
from lstm_inspect.export.torch.registry import cell

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import CellSettings

snippet("gru_step", '''
def gru_step(xp, state, weight_hh, bias_hh, activation, recurrent_activation, reset_after=True):
    """Keras's GRU step on x·kernel + bias (xp); gates r, z, n (Keras's h̃) stacked as nn.GRU stacks them.

    reset_after=True (nn.GRU's form): n = φ(x_n + r ⊙ (h·W_hn + b_hn)); False (Keras's older form):
    n = φ(x_n + (r ⊙ h)·W_hn). Then h = z ⊙ h_prev + (1 − z) ⊙ n.
    """
    (h,) = state
    x_r, x_z, x_n = xp.chunk(3, dim=1)
    w_r, w_z, w_n = weight_hh.chunk(3, dim=0)
    b_r, b_z, b_n = bias_hh.chunk(3) if bias_hh is not None else (None, None, None)
    r = recurrent_activation(x_r + F.linear(h, w_r, b_r))
    z = recurrent_activation(x_z + F.linear(h, w_z, b_z))
    if reset_after:
        n = activation(x_n + r * F.linear(h, w_n, b_n))
    else:
        n = activation(x_n + F.linear(r * h, w_n, b_n))
    return [z * h + (1 - z) * n]
''', before="KerasCell")
snippet("KerasGRU", '''
class KerasGRU(KerasCell):
    """A Keras GRU direction, step by step (gates r, z, n), in either reset_after form."""

    gates, n_states = 3, 1

    def __init__(self, *args, reset_after=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after

    def step(self, xp, state):
        return gru_step(xp, state, self.weight_hh, self.bias_hh, self.activation, self.recurrent_activation,
                        self.reset_after)
''', needs=("KerasCell", "gru_step"), before="TorchDirection")


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
