"""The SimpleRNN cell in ONNX: the RNN operator (one gate h) and Keras's step for the Scan
(`lstm_inspect.model.cells.simple_rnn`, keras/src/layers/rnn/simple_rnn.py `SimpleRNNCell.call`).
"""

from __future__ import annotations

from lstm_inspect.export.onnx.graph import Graph
from lstm_inspect.export.onnx.registry import Act, OnnxCell, cell
from lstm_inspect.model.cells.base import CellSettings


@cell("SimpleRNN")
class SimpleRnnCell(OnnxCell):
    op, order, labels = "RNN", ("h",), "h"
    activation_order = "[f] = [activation]"

    def activations(self, settings: CellSettings) -> list[str]:
        return [settings.activation]

    def step(self, g: Graph, xp: str, states: list[str], w: dict[str, str], units: int, act: Act,
             rec: Act) -> list[str]:
        """h = φ(x·kernel + b + h·recurrent_kernel)."""
        (h,) = states
        return [act(g.op("Add", g.op("MatMul", h, w["recurrent_kernel"]), xp, hint="h"))]
