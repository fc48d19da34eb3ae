"""The LSTM cell in ONNX: the LSTM operator's layout (gates i, o, f, c) and Keras's step for the Scan.

The step is `lstm_inspect.model.cells.lstm`'s (keras/src/layers/rnn/lstm.py `LSTMCell.call`). A CuDNNLSTM
stores its input and recurrent biases apart; the operator's B keeps them in its two halves.
"""

from __future__ import annotations

import numpy as np

from lstm_inspect.export.onnx.cells import split_units
from lstm_inspect.export.onnx.graph import Graph
from lstm_inspect.export.onnx.registry import Act, OnnxCell, cell
from lstm_inspect.model.cells.base import CellWeights
from lstm_inspect.model.checkpoint import RecurrentDirection


@cell("LSTM")
class LstmCell(OnnxCell):
    op, order, labels = "LSTM", ("i", "o", "f", "c"), "i, o, f, c"
    activation_order = "[f, g, h] = [recurrent_activation, activation, activation]"

    def direction_arrays(self, d: RecurrentDirection, w: CellWeights) -> dict[str, np.ndarray]:
        """W, R, B of the operator; a CuDNNLSTM's input and recurrent biases kept in B's two halves (Keras's loader
        adds them into one bias; the operator adds its two halves the same way)."""
        arrays = self.arrays(d.cell, w)
        if d.storage == "cudnn" and w.bias is not None:
            raw = d.source.read([d.arrays[2].key])[0]
            n = raw.shape[0] // 2
            if n == w.bias.shape[0] and np.allclose(raw[:n] + raw[n:], w.bias):
                order = self.order
                arrays["B"] = np.concatenate([d.cell.reorder(raw[:n], order), d.cell.reorder(raw[n:], order)])
        return arrays

    def step(self, g: Graph, xp: str, states: list[str], w: dict[str, str], units: int, act: Act,
             rec: Act) -> list[str]:
        """z = x·kernel + b + h·recurrent_kernel; c = f⊙c + i⊙φ(z_c); h = o⊙φ(c)  (lstm_inspect.model.cells.lstm)."""
        h, c = states
        z = g.op("Add", g.op("MatMul", h, w["recurrent_kernel"]), xp, hint="z")
        zi, zf, zc, zo = split_units(g, z, 4, units)
        i, f, c_tilde, o = rec(zi), rec(zf), act(zc), rec(zo)
        c_new = g.op("Add", g.op("Mul", f, c), g.op("Mul", i, c_tilde), hint="c")
        return [g.op("Mul", o, act(c_new), hint="h"), c_new]
