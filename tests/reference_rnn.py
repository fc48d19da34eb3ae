"""Textbook recurrent layers in plain NumPy, written for the tests and sharing no code with lstm-inspect.

Each runs one direction step by step from the equations in Keras's documentation, with every
knob a port might turn the wrong way (gate order, activations, biases, time order, masks, states,
precision) exposed as an argument, so tests can plant a mistake without going through the engine
they check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Fn = Callable[[np.ndarray], np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACT: dict[str, Fn] = {"sigmoid": sigmoid, "tanh": np.tanh, "linear": lambda x: x, "relu": lambda x: np.maximum(x, 0),
                      "hard_sigmoid:keras2": hard_sigmoid_keras2, "hard_sigmoid:keras3": hard_sigmoid_keras3}


def act(name: str, generation: str = "keras3") -> Fn:
    if name == "hard_sigmoid":
        name = f"hard_sigmoid:{generation}"
    return ACT[name]


def blocks(a: np.ndarray, n: int) -> list[np.ndarray]:
    u = a.shape[-1] // n
    return [a[..., k * u:(k + 1) * u] for k in range(n)]


def permuted(a: np.ndarray, n: int, order: list[int]) -> np.ndarray:
    """Block k of the result is block order[k] of `a`."""
    b = blocks(a, n)
    return np.concatenate([b[k] for k in order], axis=-1)


def _loop(x: np.ndarray, mask: np.ndarray | None, go_backwards: bool, zero_output_for_mask: bool,
          states: list[np.ndarray], step: Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]],
          return_sequences: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    steps = x.shape[1]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs = []
    last = np.zeros_like(states[0])
    for t in order:
        new = step(x[:, t], states)
        if mask is None:
            states, last = new, new[0]
        else:
            m = mask[:, t][:, None]
            states = [np.where(m, n, s) for n, s in zip(new, states)]
            last = np.where(m, new[0], 0.0 if zero_output_for_mask else last)
        outputs.append(last)
    seq = np.stack(outputs, axis=1)
    return (seq if return_sequences else seq[:, -1]), states


def lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None, *,
         activation: Fn = np.tanh, recurrent_activation: Fn = sigmoid, cell_activation: Fn | None = None,
         mask: np.ndarray | None = None, go_backwards: bool = False, zero_output_for_mask: bool = False,
         h0: np.ndarray | None = None, c0: np.ndarray | None = None, dtype: type = np.float64,
         return_sequences: bool = True, forget_offset: float = 0.0,
         cell_clip: float | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gates i, f, c, o side by side: i = σ(x·W_i + h·U_i + b_i) ..., c = f·c + i·φ(.), h = o·φ(c).
    Two departures a port makes: `forget_offset` added to f after σ, c clipped to ±`cell_clip`."""
    x, kernel, recurrent = (np.asarray(a, dtype) for a in (x, kernel, recurrent))
    u = recurrent.shape[0]
    b = np.zeros(4 * u, dtype) if bias is None else np.asarray(bias, dtype)
    W, U, B = blocks(kernel, 4), blocks(recurrent, 4), blocks(b, 4)
    cell_activation = cell_activation or activation

    def step(xt: np.ndarray, states: list[np.ndarray]) -> list[np.ndarray]:
        h, c = states
        i = recurrent_activation(xt @ W[0] + h @ U[0] + B[0])
        f = recurrent_activation(xt @ W[1] + h @ U[1] + B[1]) + forget_offset
        g = activation(xt @ W[2] + h @ U[2] + B[2])
        o = recurrent_activation(xt @ W[3] + h @ U[3] + B[3])
        c = f * c + i * g
        if cell_clip is not None:
            c = np.clip(c, -cell_clip, cell_clip)
        return [(o * cell_activation(c)).astype(dtype), c.astype(dtype)]

    batch = x.shape[0]
    states = [np.zeros((batch, u), dtype) if h0 is None else np.asarray(h0, dtype),
              np.zeros((batch, u), dtype) if c0 is None else np.asarray(c0, dtype)]
    return _loop(x, mask, go_backwards, zero_output_for_mask, states, step, return_sequences)


def gru(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None, *, reset_after: bool,
        activation: Fn = np.tanh, recurrent_activation: Fn = sigmoid, update_inverted: bool = False,
        mask: np.ndarray | None = None, go_backwards: bool = False, zero_output_for_mask: bool = False,
        h0: np.ndarray | None = None, dtype: type = np.float64,
        return_sequences: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gates z, r, h side by side; bias (2, 3u) [input; recurrent] for reset_after, else (3u,)."""
    x, kernel, recurrent = (np.asarray(a, dtype) for a in (x, kernel, recurrent))
    u = recurrent.shape[0]
    if bias is None:
        b_in, b_rec = np.zeros(3 * u, dtype), np.zeros(3 * u, dtype)
    elif np.ndim(bias) == 2:
        b_in, b_rec = np.asarray(bias[0], dtype), np.asarray(bias[1], dtype)
    else:
        b_in, b_rec = np.asarray(bias, dtype), np.zeros(3 * u, dtype)
    W, U, Bi, Br = blocks(kernel, 3), blocks(recurrent, 3), blocks(b_in, 3), blocks(b_rec, 3)

    def step(xt: np.ndarray, states: list[np.ndarray]) -> list[np.ndarray]:
        (h,) = states
        z = recurrent_activation(xt @ W[0] + Bi[0] + h @ U[0] + Br[0])
        r = recurrent_activation(xt @ W[1] + Bi[1] + h @ U[1] + Br[1])
        if reset_after:
            hh = activation(xt @ W[2] + Bi[2] + r * (h @ U[2] + Br[2]))
        else:
            hh = activation(xt @ W[2] + Bi[2] + (r * h) @ U[2] + Br[2])
        new = (1 - z) * h + z * hh if update_inverted else z * h + (1 - z) * hh
        return [new.astype(dtype)]

    h = np.zeros((x.shape[0], u), dtype) if h0 is None else np.asarray(h0, dtype)
    return _loop(x, mask, go_backwards, zero_output_for_mask, [h], step, return_sequences)


def simple_rnn(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None, *,
               activation: Fn = np.tanh, mask: np.ndarray | None = None, go_backwards: bool = False,
               zero_output_for_mask: bool = False, h0: np.ndarray | None = None, dtype: type = np.float64,
               return_sequences: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    x, kernel, recurrent = (np.asarray(a, dtype) for a in (x, kernel, recurrent))
    u = recurrent.shape[0]
    b = np.zeros(u, dtype) if bias is None else np.asarray(bias, dtype)

    def step(xt: np.ndarray, states: list[np.ndarray]) -> list[np.ndarray]:
        return [activation(xt @ kernel + b + states[0] @ recurrent).astype(dtype)]

    h = np.zeros((x.shape[0], u), dtype) if h0 is None else np.asarray(h0, dtype)
    return _loop(x, mask, go_backwards, zero_output_for_mask, [h], step, return_sequences)
