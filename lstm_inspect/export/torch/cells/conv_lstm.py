"""The ConvLSTM cell (`lstm_inspect.model.cells.conv_lstm`) in the PyTorch export: not written yet.

Its export is an explicit ConvLSTM cell over torch.nn.functional.conv{1,2,3}d (issue 25); until then `export`
refuses a ConvLSTM layer in one line (`Checkpoint.refuse_not_yet`) before any target code runs, so this
registration only keeps the targets' cell registries in line with the model's (tests/test_registries.py).
"""

from __future__ import annotations

from lstm_inspect.export.torch.cells import TorchCell
from lstm_inspect.export.torch.registry import cell


@cell("ConvLSTM")
class ConvLstmCell(TorchCell):
    """Registered, never reached: `export` refuses ConvLSTM first."""
