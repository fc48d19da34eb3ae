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

Activation = Callable[..., np.ndarray]  # f(x, out=None): writes into `out` when given


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # 1 / (1 + e^-x) written through tanh: the same function, and no overflow for large |x|.
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def hard_sigmoid_keras2(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Keras 1/2, tf.keras, tf_keras: clip(0.2·x + 0.5, 0, 1)."""
    out = np.multiply(x, 0.2, out=out)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def hard_sigmoid_keras3(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Keras 3: relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1)."""
    out = np.divide(x, 6.0, out=out)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(x, out=out)


def linear(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return x
    if out is not x:
        out[...] = x
    return out


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(x, 0, out=out)


def _elementwise(fn: Callable[[np.ndarray], np.ndarray]) -> Activation:
    """An activation written as a plain function, given the `out=` convention of the others."""

    def apply(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        result = fn(x)
        if out is None:
            return result
        out[...] = result
        return out

    return apply


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
        "tanh": tanh,
        "sigmoid": sigmoid,
        "hard_sigmoid": hard_sigmoid_keras3 if hard_sigmoid == "keras3" else hard_sigmoid_keras2,
        "linear": linear,
        "relu": relu,
        "relu6": _elementwise(lambda x: np.clip(x, 0, 6)),
        "elu": _elementwise(_elu),
        "selu": _elementwise(_selu),
        "softsign": _elementwise(lambda x: x / (1 + np.abs(x))),
        "softplus": _elementwise(lambda x: np.logaddexp(0, x)),
        "swish": _elementwise(lambda x: x * sigmoid(x)),
        "silu": _elementwise(lambda x: x * sigmoid(x)),
        "exponential": _elementwise(np.exp),
        "softmax": _elementwise(_softmax),
        "gelu": _elementwise(_gelu),
        "hard_silu": _elementwise(lambda x: x * hard_sigmoid_keras3(x)),
        "hard_swish": _elementwise(lambda x: x * hard_sigmoid_keras3(x)),
        "mish": _elementwise(lambda x: x * np.tanh(np.logaddexp(0, x))),
        "log_sigmoid": _elementwise(lambda x: -np.logaddexp(0, -x)),
        "leaky_relu": _elementwise(lambda x: np.where(x > 0, x, 0.2 * x)),
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


# The input projection is computed this many (batch·step·4·units) values at a time, so memory
# stays O(batch·units) however long the sequence (8 MB of float32 per chunk).
PROJECTION_CHUNK = 2 << 20


def lstm_forward(
    x: np.ndarray,
    weights: LSTMWeights,
    activation: Activation = tanh,
    recurrent_activation: Activation = sigmoid,
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    initial_state: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: type = np.float32,
    trace: bool = False,
    return_sequences: bool = True,
    cell_activation: Activation | None = None,
) -> LSTMResult:
    """One LSTM direction over x of shape (batch, steps, input_dim).

    `outputs` holds every step when return_sequences, else only the last one. Keras applies the
    same `activation` to c̃ and to c; `cell_activation` may differ only to model a port's mistake.
    """
    cell_activation = cell_activation or activation
    units = weights.units
    kernel = weights.kernel.astype(dtype, copy=False)
    recurrent_kernel = weights.recurrent_kernel.astype(dtype, copy=False)
    bias = weights.bias.astype(dtype, copy=False) if weights.bias is not None else None
    x = np.asarray(x, dtype=dtype)
    if go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    batch, steps, input_dim = x.shape

    if initial_state is None:
        h = np.zeros((batch, units), dtype=dtype)
        c = np.zeros((batch, units), dtype=dtype)
    else:
        h, c = (np.array(s, dtype=dtype) for s in initial_state)
    # Preallocated buffers: no array is created inside the time loop.
    z = np.empty((batch, 4 * units), dtype=dtype)
    h_new, c_new = np.empty_like(h), np.empty_like(c)
    scratch = np.empty_like(h)
    outputs = np.empty((batch, steps if return_sequences else 1, units), dtype=dtype)
    last = np.zeros((batch, units), dtype=dtype)  # the previous output (masking repeats it)
    rec = _trace_buffers(batch, steps, units, dtype) if trace else None
    i, f, c_tilde, o = (z[:, k * units : (k + 1) * units] for k in range(4))  # views into z

    chunk = max(1, min(steps, PROJECTION_CHUNK // max(1, batch * 4 * units)))
    projection = np.empty((batch * chunk, 4 * units), dtype=dtype)
    for t0 in range(0, steps, chunk):
        t1 = min(steps, t0 + chunk)
        # x_t · kernel + bias for the steps t0..t1 in one matrix product: (batch, steps, 4·units)
        rows = projection[: batch * (t1 - t0)]
        np.matmul(x[:, t0:t1].reshape(-1, input_dim), kernel, out=rows)
        if bias is not None:
            rows += bias
        x_proj = rows.reshape(batch, t1 - t0, 4 * units)
        for t in range(t0, t1):
            # z = x_t · kernel + h_{t-1} · recurrent_kernel + bias
            np.matmul(h, recurrent_kernel, out=z)
            z += x_proj[:, t - t0]
            if rec is not None:
                rec["z"][:, t] = z
            # i = σ(z_i), f = σ(z_f), c̃ = φ(z_c), o = σ(z_o), each in place in its block of z
            recurrent_activation(i, out=i)
            recurrent_activation(f, out=f)
            activation(c_tilde, out=c_tilde)
            recurrent_activation(o, out=o)
            # c_t = f ⊙ c_{t-1} + i ⊙ c̃
            np.multiply(f, c, out=c_new)
            c_new += np.multiply(i, c_tilde, out=scratch)
            # h_t = o ⊙ φ(c_t)
            np.multiply(o, cell_activation(c_new, out=scratch), out=h_new)
            if rec is not None:
                for name, value in (("i", i), ("f", f), ("c_tilde", c_tilde), ("o", o), ("c", c_new), ("h", h_new)):
                    rec[name][:, t] = value
            if mask is None:
                h, h_new = h_new, h  # the new state becomes the carried one (buffers swap, no copy)
                c, c_new = c_new, c
                last[...] = h
            else:
                # a masked step keeps the old state and outputs 0 or the previous output
                m = mask[:, t, None]
                np.copyto(h, h_new, where=m)
                np.copyto(c, c_new, where=m)
                if zero_output_for_mask:
                    last[...] = 0.0
                np.copyto(last, h_new, where=m)
            outputs[:, t if return_sequences else 0] = last
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
