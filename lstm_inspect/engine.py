"""The LSTM forward pass in NumPy, exactly as Keras computes it.

For each time step t (in processing order: reversed when go_backwards), with σ the
`recurrent_activation` and φ the `activation`:

    z_t = x_t · kernel + h_{t-1} · recurrent_kernel + bias        (batch, 4·units), gates i, f, c, o
    i_t = σ(z_i)      f_t = σ(z_f)      c̃_t = φ(z_c)      o_t = σ(z_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    h_t = o_t ⊙ φ(c_t)

The input part `x_t · kernel + bias` of every step is one matrix product over the whole
sequence; only the recurrence loops over time.

Masked steps (Masking layer, Embedding mask_zero) follow Keras's RNN loop: the new h and c are
computed but not kept, so the state carries through; the output at a masked step is 0 when
`zero_output_for_mask` (Bidirectional forces it for return_sequences) and otherwise repeats the
previous output (0 before the first unmasked step, as on Keras's TensorFlow backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lstm_inspect.errors import InspectError
from lstm_inspect.gates import LSTMWeights

Activation = Callable[[np.ndarray], np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + e^-x) written through tanh: the same function, and no overflow for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    """Keras 1/2, tf.keras, tf_keras: clip(0.2·x + 0.5, 0, 1)."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    """Keras 3: relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1)."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return 0.5 * x * (1.0 + np.vectorize(erf, otypes=[x.dtype])(x / sqrt(2.0)))


def activation_fn(name: str, hard_sigmoid: str = "keras3") -> Activation:
    """Keras's activation `name`; hard_sigmoid as the Keras generation that wrote the file defines it."""
    table: dict[str, Activation] = {
        "tanh": np.tanh,
        "sigmoid": sigmoid,
        "hard_sigmoid": hard_sigmoid_keras3 if hard_sigmoid == "keras3" else hard_sigmoid_keras2,
        "linear": lambda x: x,
        "relu": lambda x: np.maximum(x, 0),
        "relu6": lambda x: np.clip(x, 0, 6),
        "elu": _elu,
        "selu": _selu,
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.logaddexp(0, x),
        "swish": lambda x: x * sigmoid(x),
        "silu": lambda x: x * sigmoid(x),
        "exponential": np.exp,
        "softmax": _softmax,
        "gelu": _gelu,
        "hard_silu": lambda x: x * hard_sigmoid_keras3(x),
        "hard_swish": lambda x: x * hard_sigmoid_keras3(x),
        "mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
        "log_sigmoid": lambda x: -np.logaddexp(0, -x),
        "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    }
    if name in (None, "None", ""):
        name = "linear"
    if name not in table:
        raise InspectError(f"activation {name!r} is not one lstm-inspect knows; it knows: {', '.join(table)}")
    return table[name]


@dataclass
class LSTMTrace:
    """Every intermediate of every step, (batch, steps, units) each, in processing order."""

    z: np.ndarray  # pre-activations, (batch, steps, 4·units), gates i, f, c, o
    i: np.ndarray
    f: np.ndarray
    c_tilde: np.ndarray
    o: np.ndarray
    c: np.ndarray
    h: np.ndarray


@dataclass
class LSTMResult:
    outputs: np.ndarray  # (batch, steps, units) in processing order (reversed for go_backwards)
    h: np.ndarray  # final carried state h_T (batch, units)
    c: np.ndarray  # final carried state c_T
    trace: LSTMTrace | None = None

    @property
    def last_output(self) -> np.ndarray:
        return self.outputs[:, -1]


def lstm_forward(
    x: np.ndarray,
    weights: LSTMWeights,
    activation: Activation = np.tanh,
    recurrent_activation: Activation = sigmoid,
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    initial_state: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: type = np.float32,
    trace: bool = False,
) -> LSTMResult:
    """One LSTM direction over x of shape (batch, steps, input_dim)."""
    units = weights.units
    kernel = weights.kernel.astype(dtype, copy=False)
    recurrent_kernel = weights.recurrent_kernel.astype(dtype, copy=False)
    x = np.asarray(x, dtype=dtype)
    if go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    batch, steps = x.shape[0], x.shape[1]

    # The input projection of every step at once: (batch, steps, 4·units).
    x_proj = x @ kernel
    if weights.bias is not None:
        x_proj += weights.bias.astype(dtype, copy=False)

    if initial_state is None:
        h = np.zeros((batch, units), dtype=dtype)
        c = np.zeros((batch, units), dtype=dtype)
    else:
        h, c = (np.asarray(s, dtype=dtype) for s in initial_state)
    outputs = np.empty((batch, steps, units), dtype=dtype)
    prev_output = np.zeros((batch, units), dtype=dtype)
    rec = _trace_buffers(batch, steps, units, dtype) if trace else None

    s_i, s_f, s_c, s_o = (slice(k * units, (k + 1) * units) for k in range(4))
    for t in range(steps):
        z = x_proj[:, t] + h @ recurrent_kernel
        i = recurrent_activation(z[:, s_i])
        f = recurrent_activation(z[:, s_f])
        c_tilde = activation(z[:, s_c])
        o = recurrent_activation(z[:, s_o])
        c_new = f * c + i * c_tilde
        h_new = o * activation(c_new)
        if mask is None:
            h, c, out = h_new, c_new, h_new
        else:
            m = mask[:, t, None]
            h = np.where(m, h_new, h)
            c = np.where(m, c_new, c)
            out = np.where(m, h_new, 0.0 if zero_output_for_mask else prev_output).astype(dtype, copy=False)
        outputs[:, t] = out
        prev_output = out
        if rec is not None:
            for name, value in (("z", z), ("i", i), ("f", f), ("c_tilde", c_tilde), ("o", o), ("c", c_new),
                                ("h", h_new)):
                rec[name][:, t] = value
    return LSTMResult(outputs, h, c, LSTMTrace(**rec) if rec is not None else None)


def _trace_buffers(batch: int, steps: int, units: int, dtype: type) -> dict[str, np.ndarray]:
    out = {name: np.empty((batch, steps, units), dtype=dtype) for name in ("i", "f", "c_tilde", "o", "c", "h")}
    out["z"] = np.empty((batch, steps, 4 * units), dtype=dtype)
    return out


def merge_bidirectional(forward: np.ndarray, backward: np.ndarray, merge_mode: str | None) -> np.ndarray | list[np.ndarray]:
    """Keras Bidirectional's merge of the forward output and the (already time-aligned) backward output."""
    if merge_mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / 2
    if merge_mode is None:
        return [forward, backward]
    raise InspectError(f"Bidirectional merge_mode {merge_mode!r} is not one Keras defines")
