"""The ConvLSTM cell (`lstm_inspect.model.cells.conv_lstm`) in ONNX: not written yet.

Its export is a Conv inside a Scan (issue 25); until then `export` refuses a ConvLSTM layer in one line
(`Checkpoint.refuse_not_yet`) before any target code runs, so this registration only keeps the targets' cell
registries in line with the model's (tests/test_registries.py).
"""

from __future__ import annotations

from lstm_inspect.export.onnx.registry import OnnxCell, cell


@cell("ConvLSTM")
class ConvLstmCell(OnnxCell):
    """Registered, never reached: `export` refuses ConvLSTM first."""
