"""The GRU cell: how Keras stores it, splits it into gates and computes one step.

Keras stores a GRU direction as kernel (N_i, 3·N_c), recurrent_kernel (N_c, 3·N_c) and a bias,
gates side by side in the order z (update), r (reset), h (candidate); `keras/src/layers/rnn/gru.py`
`GRUCell.call` computes, with σ the recurrent_activation and φ the activation:

    reset_after=True (the default since TF 2; bias (2, 3·N_c): input bias b, recurrent bias b_h)
        x_z, x_r, x_h = split(x·kernel + b)        r_z, r_r, r_h = split(h·recurrent_kernel + b_h)
        z = σ(x_z + r_z)   r = σ(x_r + r_r)   h̃ = φ(x_h + r ⊙ r_h)
    reset_after=False (Keras 2's old default; bias (3·N_c,))
        x_z, x_r, x_h = split(x·kernel + b)
        z = σ(x_z + h·U_z)   r = σ(x_r + h·U_r)   h̃ = φ(x_h + (r ⊙ h)·U_h)
    then, in both:  h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃

PyTorch's nn.GRU is the reset_after form with its gates stored r, z, n and the same
h = (1 − z)·n + z·h_{t-1}.

Which form a file computes: its config's `reset_after`. Keras configs before 2.1.x have no such
key and computed the reset_after=False form (the key appeared between Keras 2.1.0 and 2.1.6, with
default False; tf.keras 2 and Keras 3 default to True and always write it). CuDNNGRU is the
reset_after form with tanh/sigmoid, its bias (6·N_c,) the two rows flattened; its kernels are
converted as for CuDNNLSTM (`tf_keras/src/saving/legacy/hdf5_format.py`, `_convert_rnn_weights`).
Keras 1 stored nine arrays W, U, b per gate in the order z, r, h (Keras 1.2.2 `GRU.build`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.model.activations import ACTIVATIONS, Activation
from lstm_inspect.model.cells.base import (
    Cell,
    CellSettings,
    CellWeights,
    StepVariant,
    StoredShapes,
    activation_name,
    config_int,
    default_recurrent_activation,
    is_multi_backend_keras2,
    register,
    sequence_settings,
)
from lstm_inspect.model.cells.lstm import check_keras1, cudnn_kernels

GATES = ("z", "r", "h")


class GRU(Cell):
    kind = "GRU"
    layer_classes = {"GRU": "keras", "CuDNNGRU": "cudnn"}
    cell_class = "GRUCell"
    gates = GATES
    gate_names = {"z": "update", "r": "reset", "h": "candidate"}
    states = ("h",)
    trace_quantities = ("z", "r", "h_tilde", "h")
    gate_traces = {"z": ("z", "unit"), "r": ("r", "unit"), "h": ("h_tilde", "signed")}
    legacy_arrays = 9

    legend, legend_extra = "gates z, r, h, each W_g", " (reset_after: also a recurrent bias b_hg)"
    cudnn_settings = {"reset_after": True}  # CuDNNGRU computes the reset_after form
    # Keras before 2.1.x wrote no reset_after and computed the reset-before form; tf_keras and Keras 3 would
    # assume their own default (True)
    missing_settings = {"reset_after": False}

    def flags(self, settings: CellSettings) -> dict[str, str]:
        if settings.reset_after is False:
            return {"reset-before": "GRU reset_after=False (r applied before the recurrent product)"}
        return {}

    def kind_settings(self, settings: CellSettings) -> dict[str, Any]:
        return {"reset_after": bool(settings.reset_after)}

    def shape_settings(self, class_name: str, shapes: list[tuple[int, ...]], keras_version: str | None
                       ) -> dict[str, Any]:
        """A bias of two rows (or CuDNN's) is the reset_after form; one row, the reset-before form. Without a bias
        the shapes cannot tell: the writing Keras's default, reset-before for multi-backend Keras before 2.4
        (Keras 1, 2.0-2.3), reset_after for tf.keras, tf_keras and Keras 3 (a TF checkpoint or a file with no
        version is one of those)."""
        if len(shapes) == 3:
            return {"reset_after": len(shapes[2]) == 2 or self.layer_classes.get(class_name) == "cudnn"}
        return {"reset_after": not is_multi_backend_keras2(keras_version, (2, 4))}

    def settings(self, cell_config: dict[str, Any], rnn_config: dict[str, Any], class_name: str,
                 keras_version: str | None) -> CellSettings:
        cfg = cell_config
        if class_name == "CuDNNGRU":
            activation, recurrent_activation, reset_after = "tanh", "sigmoid", True
        else:
            activation = activation_name(cfg.get("activation"), "tanh")
            recurrent_activation = activation_name(cfg.get("recurrent_activation", cfg.get("inner_activation")),
                                                   default_recurrent_activation(keras_version))
            # No key: a Keras before 2.1.x (or Keras 1), which had only the reset-before form.
            reset_after = bool(cfg.get("reset_after", False))
        return CellSettings(
            units=config_int(cfg.get("units", cfg.get("output_dim"))),
            activation=activation, recurrent_activation=recurrent_activation,
            use_bias=bool(cfg.get("use_bias", cfg.get("bias", True))), reset_after=reset_after,
            **sequence_settings(rnn_config),
        )

    def check_shapes(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings
                     ) -> tuple[int | None, int | None, list[str]]:
        if storage == "keras1":
            return check_keras1(layer, stored, settings.units, GATES)

        def bias_shapes(n_c: int) -> list[tuple[tuple[int, ...], str]]:
            if storage == "cudnn":
                return [((6 * n_c,), "6·N_c, CuDNNGRU input and recurrent biases")]
            if settings.reset_after:
                return [((2, 3 * n_c), "reset_after=True: input and recurrent bias rows of 3·N_c")]
            return [((3 * n_c,), "reset_after=False: 3·N_c")]

        return self._check_fused(layer, storage, stored, settings, bias_shapes)

    def weights_from(self, storage: str, arrays: list[np.ndarray], settings: CellSettings) -> CellWeights:
        if storage == "keras1":
            return CellWeights(kernel=np.concatenate(arrays[0::3], axis=1),
                               recurrent_kernel=np.concatenate(arrays[1::3], axis=1),
                               bias=np.concatenate(arrays[2::3], axis=0))
        if storage == "cudnn":
            kernel, recurrent = cudnn_kernels(arrays[0], arrays[1], 3)
            return CellWeights(kernel=kernel, recurrent_kernel=recurrent, bias=arrays[2].reshape(2, -1))
        return CellWeights(kernel=arrays[0], recurrent_kernel=arrays[1], bias=arrays[2] if len(arrays) > 2 else None)

    def step(self, w: CellWeights, settings: CellSettings, dtype: type, batch: int, hard_sigmoid: str,
             variant: StepVariant | None = None) -> _GRUStep:
        act, rec = self.activations(settings, hard_sigmoid, variant)
        options = (variant.options if variant else {}) or {}
        assert rec is not None
        return _GRUStep(w, dtype, batch, act, rec, reset_after=options.get("reset_after", bool(settings.reset_after)),
                        update_inverted=bool(options.get("update_inverted", False)))

    def equations(self, settings: CellSettings) -> list[str]:
        s, phi = settings.recurrent_activation, settings.activation
        if settings.reset_after:
            lines = ["x_z, x_r, x_h = split(x·kernel + bias[0]); r_z, r_r, r_h = split(h·recurrent_kernel + bias[1])",
                     f"z = {s}(x_z + r_z); r = {s}(x_r + r_r); h̃ = {phi}(x_h + r⊙r_h)"]
        else:
            lines = ["x_z, x_r, x_h = split(x·kernel + bias); U_z, U_r, U_h = split(recurrent_kernel)",
                     f"z = {s}(x_z + h·U_z); r = {s}(x_r + h·U_r); h̃ = {phi}(x_h + (r⊙h)·U_h)"]
        return [*lines, "h = z⊙h_prev + (1 − z)⊙h̃"]


class _GRUStep:
    """One GRU step on preallocated buffers."""

    n_states = 1

    def __init__(self, w: CellWeights, dtype: type, batch: int, act: Activation, rec: Activation,
                 reset_after: bool, update_inverted: bool) -> None:
        u = w.units
        self.kernel = np.ascontiguousarray(w.kernel, dtype=dtype)
        self.recurrent_kernel = np.ascontiguousarray(w.recurrent_kernel, dtype=dtype)
        self.recurrent_zr = np.ascontiguousarray(self.recurrent_kernel[:, : 2 * u])
        self.recurrent_h = np.ascontiguousarray(self.recurrent_kernel[:, 2 * u:])
        bias = None if w.bias is None else np.asarray(w.bias, dtype=dtype)
        if bias is not None and bias.ndim == 2 and not reset_after:
            # the reset-before form has no separate recurrent bias: a port computing it adds both rows
            bias = bias[0] + bias[1]
        self.input_bias = None if bias is None else (bias[0] if bias.ndim == 2 else bias)
        self.recurrent_bias = bias[1] if bias is not None and bias.ndim == 2 else None
        self.units, self.act, self.rec = u, act, rec
        self.reset_after, self.update_inverted = reset_after, update_inverted
        self.hp = np.empty((batch, 3 * u), dtype=dtype)
        self.zr = np.empty((batch, 2 * u), dtype=dtype)
        self.hh = np.empty((batch, u), dtype=dtype)
        self.scratch = np.empty((batch, u), dtype=dtype)

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        (h,), (h_new,) = states, new
        u, zr, hh, scratch = self.units, self.zr, self.hh, self.scratch
        if self.reset_after:
            # r_z, r_r, r_h = split(h · recurrent_kernel + recurrent bias)
            np.matmul(h, self.recurrent_kernel, out=self.hp)
            if self.recurrent_bias is not None:
                self.hp += self.recurrent_bias
            np.add(xp[:, : 2 * u], self.hp[:, : 2 * u], out=zr)
        else:
            np.matmul(h, self.recurrent_zr, out=zr)
            zr += xp[:, : 2 * u]
        # z = σ(x_z + r_z), r = σ(x_r + r_r) in one call
        if self.rec is ACTIVATIONS["softmax"]:  # not elementwise: Keras applies it to each gate
            self.rec(zr[:, :u], out=zr[:, :u])
            self.rec(zr[:, u:], out=zr[:, u:])
        else:
            self.rec(zr, out=zr)
        z, r = zr[:, :u], zr[:, u:]
        if self.reset_after:
            np.multiply(r, self.hp[:, 2 * u:], out=hh)  # r ⊙ (h·U_h + b_h)
        else:
            np.multiply(r, h, out=scratch)
            np.matmul(scratch, self.recurrent_h, out=hh)  # (r ⊙ h)·U_h
        hh += xp[:, 2 * u:]
        self.act(hh, out=hh)  # h̃
        # h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃, in Keras's order of operations
        np.subtract(1.0, z, out=scratch)
        if not self.update_inverted:
            np.multiply(z, h, out=h_new)
            scratch *= hh
        else:  # a port with the update gate the other way round: (1 − z) ⊙ h_{t-1} + z ⊙ h̃
            np.multiply(scratch, h, out=h_new)
            np.multiply(z, hh, out=scratch)
        h_new += scratch
        if record is not None:
            record["z"][:, t] = z
            record["r"][:, t] = r
            record["h_tilde"][:, t] = hh
            record["h"][:, t] = h_new


register(GRU())
