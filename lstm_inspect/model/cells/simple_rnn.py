"""The SimpleRNN cell: one gate, h_t = φ(x_t·kernel + h_{t-1}·recurrent_kernel + bias).

Keras stores kernel (N_i, N_c), recurrent_kernel (N_c, N_c) and bias (N_c,)
(`keras/src/layers/rnn/simple_rnn.py`, `SimpleRNNCell.call`: `h = inputs·kernel + bias;
output = h + prev_output·recurrent_kernel; output = activation(output)`). Keras 1 stored the same
three arrays as W, U, b. As one matrix on [x; h]: W = [kernel; recurrent_kernel]ᵀ, N_c × (N_i + N_c).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.model.activations import Activation
from lstm_inspect.model.cells.base import (
    Cell,
    CellSettings,
    CellWeights,
    StepVariant,
    StoredShapes,
    activation_name,
    config_int,
    register,
    sequence_settings,
)


class SimpleRNN(Cell):
    kind = "SimpleRNN"
    layer_classes = {"SimpleRNN": "keras"}
    cell_class = "SimpleRNNCell"
    gates = ("h",)
    gate_names = {"h": "state"}
    states = ("h",)
    trace_quantities = ("pre", "h")
    preactivations = ("pre",)
    gate_traces = {"h": ("h", "signed")}
    legend = "one W"

    def settings(self, cell_config: dict[str, Any], rnn_config: dict[str, Any], class_name: str,
                 keras_version: str | None) -> CellSettings:
        cfg = cell_config
        return CellSettings(
            units=config_int(cfg.get("units", cfg.get("output_dim"))),
            activation=activation_name(cfg.get("activation"), "tanh"), recurrent_activation=None,
            use_bias=bool(cfg.get("use_bias", cfg.get("bias", True))), **sequence_settings(rnn_config),
        )

    def check_shapes(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings
                     ) -> tuple[int | None, int | None, list[str]]:
        return self._check_fused(layer, storage, stored, settings, lambda n_c: [((n_c,), "N_c")])

    def weights_from(self, storage: str, arrays: list[np.ndarray], settings: CellSettings) -> CellWeights:
        return CellWeights(kernel=arrays[0], recurrent_kernel=arrays[1], bias=arrays[2] if len(arrays) > 2 else None)

    def step(self, w: CellWeights, settings: CellSettings, dtype: type, batch: int, hard_sigmoid: str,
             variant: StepVariant | None = None) -> _SimpleRNNStep:
        act, _ = self.activations(settings, hard_sigmoid, variant)
        return _SimpleRNNStep(w, dtype, batch, act)

    def equations(self, settings: CellSettings) -> list[str]:
        return [f"h = {settings.activation}(x·kernel + h_prev·recurrent_kernel + bias)"]


class _SimpleRNNStep:
    n_states = 1

    def __init__(self, w: CellWeights, dtype: type, batch: int, act: Activation) -> None:
        self.kernel = np.ascontiguousarray(w.kernel, dtype=dtype)
        self.recurrent_kernel = np.ascontiguousarray(w.recurrent_kernel, dtype=dtype)
        self.input_bias = None if w.bias is None else np.asarray(w.bias, dtype=dtype)
        self.act = act

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        (h,), (h_new,) = states, new
        np.matmul(h, self.recurrent_kernel, out=h_new)
        h_new += xp
        if record is not None:
            record["pre"][:, t] = h_new
        self.act(h_new, out=h_new)
        if record is not None:
            record["h"][:, t] = h_new


register(SimpleRNN())
