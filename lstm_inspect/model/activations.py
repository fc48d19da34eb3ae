"""Keras's activation functions in NumPy, as the Keras generation that wrote a file defines them.

Most are the same in every Keras; the one that is not is `hard_sigmoid`: Keras 1/2, tf.keras and
tf_keras define it as clip(0.2·x + 0.5, 0, 1) (`tf_keras/src/activations.py`), Keras 3 as
relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1) (`keras/src/activations/activations.py`). Every function
takes `out=` so the recurrent cells can run them in place on preallocated buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from math import erf, sqrt

import numpy as np

from lstm_inspect.base.errors import InspectError

Activation = Callable[..., np.ndarray]  # f(x, out=None): writes into `out` when given

# The two hard_sigmoid generations, as (slope, offset) of clip(slope·x + offset, 0, 1).
HARD_SIGMOID = {"keras2": (0.2, 0.5), "keras3": (1.0 / 6.0, 0.5)}
HARD_SIGMOID_FORMULA = {"keras2": "clip(0.2·x + 0.5, 0, 1)", "keras3": "clip(x/6 + 0.5, 0, 1)"}


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


def elementwise(fn: Callable[[np.ndarray], np.ndarray]) -> Activation:
    """An activation written as a plain function, given the `out=` convention of the others."""

    def apply(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        result = fn(x)
        if out is None:
            return np.asarray(result, dtype=np.asarray(x).dtype)
        out[...] = result
        return out

    return apply


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU (Keras's default, approximate=False): x·Φ(x)."""
    return 0.5 * x * (1.0 + np.vectorize(erf, otypes=[np.float64])(x / sqrt(2.0)).astype(x.dtype))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros((), x.dtype), x)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": tanh,
    "sigmoid": sigmoid,
    "linear": linear,
    "relu": relu,
    "relu6": elementwise(lambda x: np.clip(x, 0, 6)),
    "elu": elementwise(elu),
    "selu": elementwise(selu),
    "softsign": elementwise(lambda x: x / (1 + np.abs(x))),
    "softplus": elementwise(_softplus),
    "swish": elementwise(lambda x: x * sigmoid(x)),
    "silu": elementwise(lambda x: x * sigmoid(x)),
    "exponential": elementwise(np.exp),
    "softmax": elementwise(softmax),
    "gelu": elementwise(gelu),
    "mish": elementwise(lambda x: x * np.tanh(_softplus(x))),
    "log_sigmoid": elementwise(lambda x: -_softplus(-x)),
    "leaky_relu": elementwise(lambda x: np.where(x > 0, x, 0.2 * x)),  # keras.activations.leaky_relu's 0.2
}


def activation_fn(name: str | None, hard_sigmoid: str = "keras3") -> Activation:
    """Keras's activation `name`; hard_sigmoid (and what is built on it) as generation `hard_sigmoid` defines it.

    A name may carry the generation itself, e.g. "hard_sigmoid:keras2" (used by `diagnose`).
    """
    name = name if name not in (None, "None", "") else "linear"
    base, _, generation = str(name).partition(":")
    hard = hard_sigmoid_keras3 if (generation or hard_sigmoid) == "keras3" else hard_sigmoid_keras2
    if base == "hard_sigmoid":
        return hard
    if base in ("hard_silu", "hard_swish"):
        return elementwise(lambda x: x * hard(x))
    if base not in ACTIVATIONS:
        known = ", ".join([*ACTIVATIONS, "hard_sigmoid", "hard_silu"])
        raise InspectError(f"activation {base!r} is not one lstm-inspect knows; it knows: {known}")
    return ACTIVATIONS[base]
