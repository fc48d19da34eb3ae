"""The GRU cell in ONNX: the GRU operator's layout (gates z, r, h; linear_before_reset is Keras's reset_after)
and Keras's step for the Scan, both forms (`lstm_inspect.model.cells.gru`, keras/src/layers/rnn/gru.py
`GRUCell.call`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lstm_inspect.export.onnx.cells import split_units
from lstm_inspect.export.onnx.graph import Graph
from lstm_inspect.export.onnx.registry import Act, OnnxCell, cell
from lstm_inspect.model.cells.base import CellSettings, CellWeights
from lstm_inspect.model.checkpoint import RecurrentDirection


@cell("GRU")
class GruCell(OnnxCell):
    op, order, labels = "GRU", ("z", "r", "h"), "z, r, h"
    activation_order = "[f, g] = [recurrent_activation, activation]"

    def attributes(self, settings: CellSettings) -> dict[str, Any]:
        return {"linear_before_reset": int(bool(settings.reset_after))}

    def activations(self, settings: CellSettings) -> list[str]:
        return [str(settings.recurrent_activation), settings.activation]

    def step_weights(self, d: RecurrentDirection, w: CellWeights, const: Callable[[Any, str], str]
                     ) -> tuple[np.ndarray | None, dict[str, str]]:
        """The reset_after form keeps the recurrent bias row apart (inside the reset gate); the reset-before
        form splits the recurrent kernel into its z, r part and its h part."""
        bias = w.bias
        consts: dict[str, str] = {}
        reset_after = bool(d.settings.reset_after)
        if bias is not None and bias.ndim == 2 and not reset_after:
            bias = bias[0] + bias[1]  # as the engine's step: the reset-before form has one bias
        if reset_after:
            consts["recurrent_kernel"] = const(w.recurrent_kernel, "recurrent_kernel")
            consts["reset_after"] = ""
            if bias is not None and bias.ndim == 2:
                consts["recurrent_bias"] = const(bias[1], "recurrent_bias")
        else:
            u = w.units
            consts["recurrent_zr"] = const(w.recurrent_kernel[:, : 2 * u], "recurrent_zr")
            consts["recurrent_h"] = const(w.recurrent_kernel[:, 2 * u:], "recurrent_h")
        return None if bias is None else (bias[0] if bias.ndim == 2 else bias), consts

    def step(self, g: Graph, xp: str, states: list[str], w: dict[str, str], units: int, act: Act,
             rec: Act) -> list[str]:
        """z, r = σ(x_zr + h·U_zr); h̃ = φ(x_h + r⊙(h·U_h + b_h)) or φ(x_h + (r⊙h)·U_h); h = z⊙h + (1−z)⊙h̃."""
        (h,) = states
        x_z, x_r, x_h = split_units(g, xp, 3, units)
        if "recurrent_bias" in w or "reset_after" in w:
            hp = g.op("MatMul", h, w["recurrent_kernel"])
            if "recurrent_bias" in w:
                hp = g.op("Add", hp, w["recurrent_bias"])
            r_z, r_r, r_h = split_units(g, hp, 3, units)
            z, r = rec(g.op("Add", x_z, r_z)), rec(g.op("Add", x_r, r_r))
            hh = act(g.op("Add", g.op("Mul", r, r_h), x_h))
        else:
            zr = g.op("Add", g.op("MatMul", h, w["recurrent_zr"]), g.op("Concat", x_z, x_r, axis=1))
            z, r = split_units(g, rec(zr), 2, units)
            hh = act(g.op("Add", g.op("MatMul", g.op("Mul", r, h), w["recurrent_h"]), x_h))
        one_minus_z = g.op("Sub", g.const(1.0), z)
        return [g.op("Add", g.op("Mul", z, h), g.op("Mul", one_minus_z, hh), hint="h")]
