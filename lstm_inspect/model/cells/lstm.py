"""The LSTM cell: how Keras stores it, splits it into gates and computes one step.

Keras stores an LSTM direction as three arrays, gates side by side in the order i, f, c, o
(`keras/src/layers/rnn/lstm.py`, `tf_keras/src/layers/rnn/lstm.py`):

    kernel            (N_i, 4·N_c)    acts on x_t
    recurrent_kernel  (N_c, 4·N_c)    acts on h_{t-1}
    bias              (4·N_c,)

and computes, for each step, with σ the recurrent_activation and φ the activation:

    z = x_t · kernel + h_{t-1} · recurrent_kernel + bias           gates i, f, c, o
    i = σ(z_i)   f = σ(z_f)   c̃ = φ(z_c)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ c̃
    h_t = o ⊙ φ(c_t)

Per gate on [x; h]: W_g = [kernel[:, s_g]; recurrent_kernel[:, s_g]]ᵀ, N_c × (N_i + N_c).

Two older layouts are converted into that one, as Keras's own h5 loader converts them
(`tf_keras/src/saving/legacy/hdf5_format.py`, `_convert_rnn_weights` and
`preprocess_weights_for_loading`): CuDNNLSTM (each gate's blocks flattened for cuDNN, and an input
and a recurrent bias that cuDNN adds) and Keras 1 (twelve arrays W, U, b per gate, stored in the
order i, c, f, o: Keras 1.2.2's `LSTM.build` sets `trainable_weights = [W_i, U_i, b_i, W_c, U_c,
b_c, W_f, U_f, b_f, W_o, U_o, b_o]` although its math runs i, f, c, o).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.model.activations import ACTIVATIONS, Activation, activation_fn, sigmoid, tanh
from lstm_inspect.model.cells.base import (
    Cell,
    CellSettings,
    CellWeights,
    StepVariant,
    StoredShapes,
    activation_name,
    config_int,
    default_recurrent_activation,
    register,
    sequence_settings,
    split_gates,
)

GATES = ("i", "f", "c", "o")
SOFTMAX = ACTIVATIONS["softmax"]
KERAS1_GATE_ORDER = ("i", "c", "f", "o")


def cudnn_kernels(kernel: np.ndarray, recurrent_kernel: np.ndarray, n_gates: int) -> tuple[np.ndarray, np.ndarray]:
    """A CuDNN layer's kernels in the plain layout (shared by CuDNNLSTM and CuDNNGRU).

    The CuDNN layer hands cuDNN each gate's column block flattened row-major without a transpose,
    and cuDNN reads it back as a (units, input_dim) row-major matrix: the plain block is that
    matrix transposed. Recurrent blocks are simply transposed.
    """
    n_i, units = kernel.shape[0], recurrent_kernel.shape[0]
    k = [b.reshape(units, n_i).T for b in split_gates(kernel, n_gates)]
    r = [b.reshape(units, units).T for b in split_gates(recurrent_kernel, n_gates)]
    return np.concatenate(k, axis=1), np.concatenate(r, axis=1)


class LSTMGates:
    """What every LSTM kind shares, whatever computes its gates (matrices here, convolutions in ConvLSTM): the gates
    i, f, c, o, the states (h, c) and the quantities a trace keeps."""

    gates = GATES
    gate_names = {"i": "input", "f": "forget", "c": "cell candidate", "o": "output"}
    states = ("h", "c")
    trace_quantities = ("z", "i", "f", "c_tilde", "o", "c", "h")
    fused_trace, preactivations, forget_gate = "z", ("z",), "f"
    gate_traces = {"i": ("i", "unit"), "f": ("f", "unit"), "c": ("c_tilde", "signed"), "o": ("o", "unit")}


class LSTM(LSTMGates, Cell):
    kind = "LSTM"
    layer_classes = {"LSTM": "keras", "CuDNNLSTM": "cudnn"}
    cell_class = "LSTMCell"
    legacy_arrays = 12
    legend = "gates i, f, c, o, each W_g"
    def settings(self, cell_config: dict[str, Any], rnn_config: dict[str, Any], class_name: str,
                 keras_version: str | None) -> CellSettings:
        """From a cell-level config (LSTM or LSTMCell) and the sequence-level one (the same dict for LSTM).

        Keras 1 says output_dim, inner_activation and forget_bias_init where later versions say
        units, recurrent_activation and unit_forget_bias. CuDNNLSTM is tanh/sigmoid by construction.
        """
        cfg = cell_config
        if class_name == "CuDNNLSTM":
            activation, recurrent_activation = "tanh", "sigmoid"
        else:
            activation = activation_name(cfg.get("activation"), "tanh")
            recurrent_activation = activation_name(cfg.get("recurrent_activation", cfg.get("inner_activation")),
                                                   default_recurrent_activation(keras_version))
        unit_forget_bias = cfg.get("unit_forget_bias")
        if unit_forget_bias is None:
            unit_forget_bias = cfg.get("forget_bias_init") == "one" or class_name == "CuDNNLSTM"
        return CellSettings(
            units=config_int(cfg.get("units", cfg.get("output_dim"))),
            activation=activation, recurrent_activation=recurrent_activation,
            use_bias=bool(cfg.get("use_bias", cfg.get("bias", True))), unit_forget_bias=bool(unit_forget_bias),
            **sequence_settings(rnn_config),
        )

    def check_shapes(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings
                     ) -> tuple[int | None, int | None, list[str]]:
        if storage == "keras1":
            return _check_keras1(layer, stored, settings.units, KERAS1_GATE_ORDER)

        def bias_shapes(n_c: int) -> list[tuple[tuple[int, ...], str]]:
            if storage == "cudnn":
                return [((8 * n_c,), "8·N_c, CuDNNLSTM input and recurrent biases")]
            return [((4 * n_c,), "4·N_c")]

        return self._check_fused(layer, storage, stored, settings, bias_shapes)

    def weights_from(self, storage: str, arrays: list[np.ndarray], settings: CellSettings) -> CellWeights:
        if storage == "keras1":
            by_gate = {g: arrays[3 * k: 3 * k + 3] for k, g in enumerate(KERAS1_GATE_ORDER)}
            return CellWeights(kernel=np.concatenate([by_gate[g][0] for g in GATES], axis=1),
                               recurrent_kernel=np.concatenate([by_gate[g][1] for g in GATES], axis=1),
                               bias=np.concatenate([by_gate[g][2] for g in GATES], axis=0))
        if storage == "cudnn":
            kernel, recurrent = cudnn_kernels(arrays[0], arrays[1], 4)
            units = arrays[1].shape[0]
            # cuDNN adds its input and recurrent biases: Keras's loader sums the two halves.
            return CellWeights(kernel=kernel, recurrent_kernel=recurrent,
                               bias=arrays[2][: 4 * units] + arrays[2][4 * units:])
        return CellWeights(kernel=arrays[0], recurrent_kernel=arrays[1], bias=arrays[2] if len(arrays) > 2 else None)

    def step(self, w: CellWeights, settings: CellSettings, dtype: type, batch: int, hard_sigmoid: str,
             variant: StepVariant | None = None) -> LSTMStep:
        act, rec = self.activations(settings, hard_sigmoid, variant)
        options = (variant.options if variant else {}) or {}
        cell_act = act
        if "cell_activation" in options:
            cell_act = activation_fn(options["cell_activation"], hard_sigmoid)
        assert rec is not None
        # Two porting mistakes diagnose tries (never Keras's own math): TF1's forget bias added after the sigmoid,
        # f = σ(z_f) + forget_bias (apache/tvm PR #3410), and the cell state clipped, c_t = clip(c_t, ±cell_clip)
        # (TF1's LSTMCell(cell_clip=...), tf.raw_ops.LSTMBlockCell's default 3, TFLite's fused LSTM's 10).
        clip = options.get("cell_clip")
        return LSTMStep(w, dtype, batch, act, rec, cell_act,
                        forget_offset=float(options.get("forget_bias_after_sigmoid", 0.0)),
                        cell_clip=None if clip is None else float(clip))

    def equations(self, settings: CellSettings) -> list[str]:
        s, phi = settings.recurrent_activation, settings.activation
        return [
            "z = x·kernel + h·recurrent_kernel + bias  (blocks i, f, c, o of N_c each)",
            f"i = {s}(z_i); f = {s}(z_f); c̃ = {phi}(z_c); o = {s}(z_o)",
            "c = f⊙c_prev + i⊙c̃",
            f"h = o⊙{phi}(c)",
        ]


def _check_keras1(layer: str, stored: StoredShapes, units: int | None, order: tuple[str, ...]
                  ) -> tuple[int | None, int | None, list[str]]:
    """Keras 1's per-gate arrays: W (N_i, N_c), U (N_c, N_c), b (N_c,) for each gate, in `order`."""
    n = 3 * len(order)
    if len(stored.items) != n:
        return None, units, [f"layer {layer}: a Keras 1 layer of this kind has {n} arrays, found {len(stored.items)}"]
    w_key, w_shape = stored.items[0]
    if len(w_shape) != 2:
        return None, units, [f"layer {layer}: dataset {w_key} should be 2-D (N_i, N_c), found {w_shape}"]
    n_i, n_c = w_shape
    problems = []
    for k, (key, shape) in enumerate(stored.items):
        expected = [(n_i, n_c), (n_c, n_c), (n_c,)][k % 3]
        if tuple(shape) != expected:
            problems.append(f"layer {layer}: dataset {key} should be {expected} "
                            f"({['W', 'U', 'b'][k % 3]}_{order[k // 3]}), found {tuple(shape)}")
    return n_i, n_c, problems


check_keras1 = _check_keras1


# The step keeps its gate blocks in the order i, f, o, c so that one call of the recurrent
# activation covers the three σ gates; `z` is recorded in Keras's order i, f, c, o.
_INTERNAL = (0, 1, 3, 2)  # internal block k holds Keras block _INTERNAL[k]


class LSTMStep:
    """One LSTM step on preallocated buffers: nothing is allocated inside the time loop.

    With Keras's default activations (σ gates, tanh), all four blocks take one tanh: σ(z) =
    (tanh(z/2) + 1)/2, and the σ blocks' columns of kernel, recurrent_kernel and bias are halved
    beforehand, which is exact (a power of two), so the step computes bit for bit what the
    separate sigmoid computes, in fewer NumPy calls.
    """

    n_states = 2

    def __init__(self, w: CellWeights, dtype: type, batch: int, act: Activation, rec: Activation,
                 cell_act: Activation, forget_offset: float = 0.0, cell_clip: float | None = None) -> None:
        u = w.units
        self.fused = rec is sigmoid and act is tanh and cell_act is tanh
        scale = np.ones(4 * u, dtype=dtype)
        if self.fused:
            scale[: 3 * u] = 0.5  # the σ blocks i, f, o (internal order)
        def order(a: np.ndarray) -> np.ndarray:  # one copy of the weights, scaled in place
            out = np.ascontiguousarray(np.concatenate([split_gates(a, 4)[k] for k in _INTERNAL], axis=-1),
                                       dtype=dtype)
            if self.fused:
                out *= scale
            return out

        self.kernel = order(w.kernel)
        self.recurrent_kernel = order(w.recurrent_kernel)
        self.input_bias = order(w.bias) if w.bias is not None else None
        self.units, self.act, self.rec, self.cell_act = u, act, rec, cell_act
        self.z = np.empty((batch, 4 * u), dtype=dtype)
        self.scratch = np.empty((batch, u), dtype=dtype)
        self.i, self.f, self.o, self.c_tilde = (self.z[:, k * u:(k + 1) * u] for k in range(4))
        self.sigma_block = self.z[:, : 3 * u]
        self.forget_offset, self.cell_clip = forget_offset, cell_clip  # 0 and None in Keras (see LSTM.step)

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        h, c = states
        h_new, c_new = new
        z = self.z
        # z = x_t · kernel + h_{t-1} · recurrent_kernel + bias  (xp holds x_t · kernel + bias)
        np.matmul(h, self.recurrent_kernel, out=z)
        z += xp
        if record is not None:
            u = self.units
            unscale = 2.0 if self.fused else 1.0
            for k, keras_block in enumerate(_INTERNAL):
                record["z"][:, t, keras_block * u:(keras_block + 1) * u] = z[:, k * u:(k + 1) * u] * (
                    unscale if k < 3 else 1.0)
        if self.fused:
            # tanh of all four blocks; then σ = (tanh(z/2) + 1)/2 on i, f, o (their z already halved)
            np.tanh(z, out=z)
            self.sigma_block *= 0.5
            self.sigma_block += 0.5
        else:
            # i = σ(z_i), f = σ(z_f), o = σ(z_o) in one call (one per gate for softmax, which is not
            # elementwise: Keras applies it to each gate); c̃ = φ(z_c)
            if self.rec is SOFTMAX:
                for gate in (self.i, self.f, self.o):
                    self.rec(gate, out=gate)
            else:
                self.rec(self.sigma_block, out=self.sigma_block)
            self.act(self.c_tilde, out=self.c_tilde)
        if self.forget_offset:  # a port's mistake, not Keras: f = σ(z_f) + forget_bias
            self.f += self.forget_offset
        # c_t = f ⊙ c_{t-1} + i ⊙ c̃
        np.multiply(self.f, c, out=c_new)
        c_new += np.multiply(self.i, self.c_tilde, out=self.scratch)
        if self.cell_clip is not None:  # a port's mistake, not Keras: c_t = clip(c_t, -cell_clip, cell_clip)
            np.clip(c_new, -self.cell_clip, self.cell_clip, out=c_new)
        # h_t = o ⊙ φ(c_t)
        np.multiply(self.o, self.cell_act(c_new, out=self.scratch), out=h_new)
        if record is not None:
            for name, value in (("i", self.i), ("f", self.f), ("c_tilde", self.c_tilde), ("o", self.o),
                                ("c", c_new), ("h", h_new)):
                record[name][:, t] = value


register(LSTM())
