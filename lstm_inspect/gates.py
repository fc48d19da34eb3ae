"""The gate model: a Keras LSTM's fused weights split into one matrix per gate.

Keras stores an LSTM direction as three arrays, gates side by side in the order i, f, c, o:

    kernel            (N_i, 4·N_c)    acts on x_t
    recurrent_kernel  (N_c, 4·N_c)    acts on h_{t-1}
    bias              (4·N_c,)

and computes, for each gate g with column block s_g = [g·N_c, (g+1)·N_c):

    z_g = x_t · kernel[:, s_g] + h_{t-1} · recurrent_kernel[:, s_g] + bias[s_g]

Written per gate on the concatenated input [x_t; h_{t-1}], that is z_g = W_g · [x; h] + b_g with

    W_g = [kernel[:, s_g]; recurrent_kernel[:, s_g]]ᵀ      shape N_c × (N_i + N_c)

Two older layouts are converted here into that one: CuDNNLSTM (per-gate blocks flattened for
cuDNN, and two biases) and Keras 1 (twelve arrays in the order i, c, f, o).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATES: tuple[str, ...] = ("i", "f", "c", "o")
GATE_NAMES: dict[str, str] = {"i": "input", "f": "forget", "c": "cell candidate", "o": "output"}

# Keras 1 (consume_less 'cpu'/'mem') stores W_*, U_*, b_* gate by gate in the order i, c, f, o:
# its LSTM.build ends with `self.trainable_weights = [W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f,
# W_o, U_o, b_o]` (keras 1.2.2 keras/layers/recurrent.py), although its math runs i, f, c, o.
KERAS1_GATE_ORDER: tuple[str, ...] = ("i", "c", "f", "o")


@dataclass(frozen=True)
class Gate:
    """One gate of one LSTM direction: z = W_x·x + W_h·h + b, with W = [W_x | W_h]."""

    name: str
    W_x: np.ndarray  # (units, input_dim): the input block
    W_h: np.ndarray  # (units, units): the recurrent block
    b: np.ndarray  # (units,): zeros when the layer has use_bias=False

    @property
    def W(self) -> np.ndarray:
        """W_g of shape units × (input_dim + units), acting on [x; h]."""
        return np.concatenate([self.W_x, self.W_h], axis=1)


@dataclass(frozen=True)
class LSTMWeights:
    """An LSTM direction's weights in the Keras LSTM layout (after any conversion)."""

    kernel: np.ndarray  # (input_dim, 4·units)
    recurrent_kernel: np.ndarray  # (units, 4·units)
    bias: np.ndarray | None  # (4·units,), None when use_bias=False

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.kernel.shape[0])

    def gate(self, g: str) -> Gate:
        k = GATES.index(g)
        s_g = slice(k * self.units, (k + 1) * self.units)
        b = self.bias[s_g] if self.bias is not None else np.zeros(self.units, dtype=self.kernel.dtype)
        return Gate(name=g, W_x=self.kernel[:, s_g].T, W_h=self.recurrent_kernel[:, s_g].T, b=b)

    def gates(self) -> dict[str, Gate]:
        return {g: self.gate(g) for g in GATES}


def from_cudnn(kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray) -> LSTMWeights:
    """CuDNNLSTM weights into the LSTM layout, as Keras's own h5 loader converts them.

    CuDNNLSTM hands cuDNN each gate's column block flattened row-major without a transpose,
    and cuDNN reads it back as a (units, input_dim) row-major matrix; so the effective Keras
    block is that matrix transposed. The bias holds cuDNN's input biases then its recurrent
    biases, both i, f, c, o; cuDNN adds the two.
    """
    n_i, units = kernel.shape[0], recurrent_kernel.shape[0]
    k_blocks, r_blocks = [], []
    for k in range(4):
        s_g = slice(k * units, (k + 1) * units)
        k_blocks.append(kernel[:, s_g].reshape(units, n_i).T)
        r_blocks.append(recurrent_kernel[:, s_g].reshape(units, units).T)
    return LSTMWeights(
        kernel=np.concatenate(k_blocks, axis=1),
        recurrent_kernel=np.concatenate(r_blocks, axis=1),
        bias=bias[: 4 * units] + bias[4 * units :],
    )


def from_keras1(arrays: list[np.ndarray]) -> LSTMWeights:
    """Keras 1's twelve per-gate arrays (W_*, U_*, b_* in the order i, c, f, o) into the LSTM layout."""
    by_gate = {g: arrays[3 * k : 3 * k + 3] for k, g in enumerate(KERAS1_GATE_ORDER)}
    return LSTMWeights(
        kernel=np.concatenate([by_gate[g][0] for g in GATES], axis=1),
        recurrent_kernel=np.concatenate([by_gate[g][1] for g in GATES], axis=1),
        bias=np.concatenate([by_gate[g][2] for g in GATES], axis=0),
    )


def check_lstm_shapes(
    layer: str, storage: str, shapes: list[tuple[str, tuple[int, ...]]], units: int | None, use_bias: bool
) -> tuple[int | None, int | None, list[str]]:
    """Check a direction's stored arrays against the LSTM layouts; return (N_i, N_c, problems).

    `shapes` is [(dataset name, shape)] in storage order. Each problem names the layer, the
    dataset, the expected and the found shape.
    """
    problems: list[str] = []

    def bad(key: str, expected: str, found: tuple[int, ...]) -> None:
        problems.append(f"layer {layer}: dataset {key} should be {expected}, found {tuple(found)}")

    if storage == "keras1":
        if len(shapes) != 12:
            return None, units, [f"layer {layer}: a Keras 1 LSTM has 12 arrays, found {len(shapes)}"]
        w_key, w_shape = shapes[0]
        if len(w_shape) != 2:
            return None, units, [f"layer {layer}: dataset {w_key} should be 2-D (N_i, N_c), found {w_shape}"]
        n_i, n_c = w_shape
        for k, (key, shape) in enumerate(shapes):
            expected = [(n_i, n_c), (n_c, n_c), (n_c,)][k % 3]
            if tuple(shape) != expected:
                bad(key, f"{expected} ({['W', 'U', 'b'][k % 3]}_{KERAS1_GATE_ORDER[k // 3]})", shape)
        return n_i, n_c, problems

    want = 3 if use_bias else 2
    if len(shapes) != want:
        names = ", ".join(k for k, _ in shapes) or "none"
        return None, units, [f"layer {layer}: expected {want} arrays (kernel, recurrent_kernel"
                             f"{', bias' if use_bias else ''}), found {len(shapes)} ({names})"]
    (k_key, k_shape), (r_key, r_shape) = shapes[0], shapes[1]
    if len(r_shape) != 2 or r_shape[1] != 4 * r_shape[0]:
        n_c = units if units is not None else (r_shape[0] if r_shape else None)
        bad(r_key, f"(N_c, 4·N_c) = ({n_c}, {4 * n_c if n_c else '4·N_c'}) (recurrent_kernel)", r_shape)
        return (k_shape[0] if k_shape else None), n_c, problems
    n_c = r_shape[0]
    if units is not None and units != n_c:
        bad(r_key, f"({units}, {4 * units}) for units={units} in the config (recurrent_kernel)", r_shape)
    if len(k_shape) != 2 or k_shape[1] != 4 * n_c:
        bad(k_key, f"(N_i, {4 * n_c}) (kernel)", k_shape)
    n_i = k_shape[0] if k_shape else None
    if use_bias:
        b_key, b_shape = shapes[2]
        n_bias = 8 * n_c if storage == "cudnn" else 4 * n_c
        if tuple(b_shape) != (n_bias,):
            what = "8·N_c, CuDNNLSTM input and recurrent biases" if storage == "cudnn" else "4·N_c"
            bad(b_key, f"({n_bias},) ({what})", b_shape)
    return n_i, n_c, problems
