"""The activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU), as Keras computes them.

Why: models put these between and after their recurrent layers as layers of their own, with settings
an `Activation("relu")` cannot carry (a slope, a ceiling, learned slopes). All of them pass the mask
on unchanged (supports_masking in both generations).

The rules follow `keras/src/layers/activations/` (relu.py, leaky_relu.py, prelu.py, elu.py,
softmax.py) with `keras/src/activations/activations.py` (`relu`'s static_call) and the TensorFlow
backend's `leaky_relu`/`elu`, and `tf_keras/src/layers/activation/` (relu.py, leaky_relu.py, prelu.py,
elu.py, softmax.py, thresholded_relu.py) with `tf_keras/src/backend.py` (`relu`, `elu`). Where the
generations differ:

- LeakyReLU: Keras 3 writes `negative_slope`, tf_keras (Keras 2) `alpha`; both layers default to 0.3,
  while the `leaky_relu` *activation* (keras.activations.leaky_relu, tf.nn.leaky_relu) defaults to 0.2.
  Keras 3 still accepts `alpha` in a config (deprecated), so either key is read.
- Softmax with a mask (an explicit `mask=` argument, else the Keras mask of its input; broadcast from the
  right as both do): Keras 3 puts -1e9 where the mask is False (`where`) and zeroes those outputs after
  the softmax; tf_keras adds (1 - mask)·(-1e9) to the input and leaves the outputs as the softmax gives
  them (with `robust_masking=True`, a `where` like Keras 3 but still no zeroing). The output mask is
  the mask the layer was given, in both.
- ThresholdedReLU (x where x > theta, else 0) exists in Keras 2 only; Keras 3 removed it.
- ReLU: f(x) = max_value (clipped) for x ≥ max_value, x for threshold < x, negative_slope·(x - threshold)
  otherwise; the same in both (Keras 3's relu is tf_keras's backend.relu ported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_inspect.layers import LayerCall, Tensor, layer, same_dims


def _number(c: LayerCall, key: str, default: float | None, *aliases: str, minimum: float | None = None
            ) -> float | None:
    cfg = c.config
    value = next((cfg[k] for k in (key, *aliases) if k in cfg), default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise c.fail(f"{key} is {value!r}, not a number")
    if minimum is not None and value < minimum:
        raise c.fail(f"{key} is {value!r}; Keras refuses values below {minimum}")
    return float(value)


def relu(x: np.ndarray, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
         ) -> np.ndarray:
    """Keras's relu with its three settings (keras.activations.relu / tf_keras backend.relu)."""
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))
    negative = np.maximum(threshold - x, 0) if negative_slope != 0.0 else None
    y = np.where(x > threshold, x, 0).astype(x.dtype) if threshold != 0 else np.maximum(x, 0)
    if max_value is not None:
        y = np.clip(y, 0, max_value)
    if negative is not None:
        y = y - x.dtype.type(negative_slope) * negative
    return y.astype(x.dtype)


@layer("ReLU", dims=same_dims)
def relu_layer(c: LayerCall) -> list[Tensor]:
    max_value = _number(c, "max_value", None, minimum=0.0)
    slope = _number(c, "negative_slope", 0.0, minimum=0.0) or 0.0
    threshold = _number(c, "threshold", 0.0, minimum=0.0) or 0.0
    return [Tensor(relu(c.x, slope, max_value, threshold), c.mask)]


@layer("LeakyReLU", dims=same_dims)
def leaky_relu(c: LayerCall) -> list[Tensor]:
    slope = _number(c, "negative_slope", 0.3, "alpha")  # the layer's default in both generations
    x = c.x
    return [Tensor(np.where(x > 0, x, x * x.dtype.type(slope)), c.mask)]


def _prelu_shape(c: LayerCall, x: np.ndarray) -> tuple[int, ...]:
    shared = c.config.get("shared_axes")
    shape = list(x.shape[1:])
    axes = [] if shared is None else (shared if isinstance(shared, list) else [shared])
    for a in axes:
        if not isinstance(a, int) or isinstance(a, bool) or not 1 <= a <= len(shape):
            raise c.fail(f"shared_axes {shared!r} do not fit an input of rank {x.ndim}")
        shape[a - 1] = 1
    return tuple(shape)


@layer("PReLU", dims=same_dims, weighted=True)
def prelu(c: LayerCall) -> list[Tensor]:
    x = c.x
    c.expect([_prelu_shape(c, x)])
    alpha = c.weights[0].astype(c.ctx.dtype)
    return [Tensor(np.maximum(x, 0) - alpha * np.maximum(-x, 0), c.mask)]


@layer("ELU", dims=same_dims)
def elu(c: LayerCall) -> list[Tensor]:
    alpha = _number(c, "alpha", 1.0)
    x = c.x
    res = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if alpha != 1.0:
        res = np.where(x > 0, res, x.dtype.type(alpha) * res)
    return [Tensor(res.astype(x.dtype), c.mask)]


@layer("ThresholdedReLU", dims=same_dims)
def thresholded_relu(c: LayerCall) -> list[Tensor]:
    theta = _number(c, "theta", 1.0, minimum=0.0)
    x = c.x
    return [Tensor(x * (x > theta).astype(x.dtype), c.mask)]


def _softmax_axes(c: LayerCall, x: np.ndarray) -> tuple[int, ...]:
    axis = c.config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) and -x.ndim <= a < x.ndim for a in axes):
        raise c.fail(f"axis {axis!r} does not fit an input of rank {x.ndim}")
    return tuple(axes)


def softmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


@layer("Softmax", dims=same_dims)
def softmax_layer(c: LayerCall) -> list[Tensor]:
    x = c.x
    axes = _softmax_axes(c, x)
    explicit = c.kwargs.get("mask")
    given: Any = explicit.value if isinstance(explicit, Tensor) else explicit
    mask = np.asarray(given) if given is not None else c.mask
    if mask is None:
        return [Tensor(softmax(x, axes), None)]
    raw = np.asarray(mask)
    if raw.dtype.kind not in "biuf":
        raise c.fail(f"the mask holds {raw.dtype}, not booleans or numbers")
    mask = raw > 0.5 if raw.dtype.kind == "f" else raw.astype(bool)  # Keras 3 and robust_masking: greater(0.5)
    if mask.ndim > x.ndim or any(m not in (1, n) for m, n in zip(mask.shape[::-1], x.shape[::-1])):
        raise c.fail(f"the mask of shape {mask.shape} does not broadcast to the input, as Keras requires")
    big = x.dtype.type(-1e9)
    if c.ctx.keras_major >= 3:
        y = softmax(np.where(mask, x, big), axes)
        y = np.where(mask, y, x.dtype.type(0))
    elif c.config.get("robust_masking"):
        y = softmax(np.where(mask, x, big), axes)
    else:
        # x + (1 - mask)·(-1e9), the mask cast to numbers as it is, in the layer's own float type: in float32
        # the sum rounds x away, which decides the outputs of a row masked whole
        own = np.dtype(c.config.get("dtype") if c.config.get("dtype") in ("float16", "float32", "float64")
                       else "float32")
        adder = (1 - raw.astype(own)) * own.type(-1e9)
        shifted = (x.astype(own) + adder).astype(x.dtype)
        y = softmax(np.where(adder == 0, x, shifted), axes)
    return [Tensor(np.asarray(y, dtype=x.dtype), mask)]  # Keras passes on the mask it was given
