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

The settings (`relu_settings`, `leaky_relu_slope`, `elu_alpha`, `thresholded_relu_theta`, `prelu_alpha_shape`,
`softmax_axes`, `softmax_mask_rule`, `softmax_own_dtype`) are read and checked here once, for the engine and
for both exporters (`export/onnx/activations.py`, `export/torch/activations.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.engine.layers.registry import LayerCall, Site, Tensor, layer, same_dims

# ---------------------------------------------------------------- the settings (shared with the exporters)


def config_number(c: Site, key: str, default: float | None, *aliases: str, minimum: float | None = None
                  ) -> float | None:
    """A number of the layer's config (`key`, else the first of `aliases` present, else `default`), checked."""
    cfg = c.config
    value = next((cfg[k] for k in (key, *aliases) if k in cfg), default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise c.refuse(f"{key} is {value!r}, not a number", f"its {key} is not a number")
    if minimum is not None and value < minimum:
        raise c.refuse(f"{key} is {value!r}; Keras refuses values below {minimum}",
                       f"its {key} is below {minimum}, which Keras refuses")
    return float(value)


@dataclass(frozen=True)
class ReluSettings:
    """ReLU's three settings (relu's max_value, negative_slope, threshold), read in this order."""

    max_value: float | None
    negative_slope: float
    threshold: float


def relu_settings(c: Site) -> ReluSettings:
    max_value = config_number(c, "max_value", None, minimum=0.0)
    slope = config_number(c, "negative_slope", 0.0, minimum=0.0) or 0.0
    threshold = config_number(c, "threshold", 0.0, minimum=0.0) or 0.0
    return ReluSettings(max_value, slope, threshold)


def leaky_relu_slope(c: Site) -> float | None:
    """Keras 3's negative_slope or tf_keras's alpha; 0.3, the layer's default in both generations."""
    return config_number(c, "negative_slope", 0.3, "alpha")


def elu_alpha(c: Site) -> float | None:
    return config_number(c, "alpha", 1.0)


def thresholded_relu_theta(c: Site) -> float | None:
    return config_number(c, "theta", 1.0, minimum=0.0)


def prelu_alpha_shape(c: Site, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """PReLU's alpha: the input's `shape` after the batch axis, the shared_axes of size 1."""
    shared = c.config.get("shared_axes")
    sizes = list(shape)
    for a in [] if shared is None else (shared if isinstance(shared, list) else [shared]):
        if not isinstance(a, int) or isinstance(a, bool) or not 1 <= a <= len(sizes):
            raise c.refuse(f"shared_axes {shared!r} do not fit an input of rank {len(sizes) + 1}",
                           "its shared_axes do not fit its input")
        sizes[a - 1] = 1
    return tuple(sizes)


def softmax_axes(c: Site, rank: int | None) -> tuple[int, ...]:
    """Softmax's axis (one or a list), checked against the input's rank when it is known."""
    axis = c.config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise c.refuse(f"axis {axis!r} does not fit an input of rank {rank}",
                       "its axis is not an axis or a list of axes")
    if rank is not None and not all(-rank <= a < rank for a in axes):
        raise c.refuse(f"axis {axis!r} does not fit an input of rank {rank}")
    return tuple(axes)


def softmax_mask_rule(c: Site) -> str:
    """How a masked Softmax applies its mask: "keras3" (-1e9 where False, those outputs zeroed), "robust" (tf_keras's
    robust_masking: -1e9 where False) or "add" (tf_keras: x + (1 - mask)·(-1e9) in `softmax_own_dtype`)."""
    if c.ctx.keras_major >= 3:
        return "keras3"
    return "robust" if c.config.get("robust_masking") else "add"


def softmax_own_dtype(c: Site) -> str:
    """The float type tf_keras's Softmax adds its (1 - mask)·(-1e9) in: the layer's own (float32 unless it says)."""
    dtype = c.config.get("dtype")
    return str(dtype) if dtype in ("float16", "float32", "float64") else "float32"


# ---------------------------------------------------------------- the layers


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
    s = relu_settings(c)
    return [Tensor(relu(c.x, s.negative_slope, s.max_value, s.threshold), c.mask)]


@layer("LeakyReLU", dims=same_dims)
def leaky_relu(c: LayerCall) -> list[Tensor]:
    slope = leaky_relu_slope(c)
    x = c.x
    return [Tensor(np.where(x > 0, x, x * x.dtype.type(slope)), c.mask)]


@layer("PReLU", dims=same_dims, weighted=True)
def prelu(c: LayerCall) -> list[Tensor]:
    x = c.x
    c.expect([prelu_alpha_shape(c, x.shape[1:])])
    alpha = c.weights[0].astype(c.ctx.dtype)
    return [Tensor(np.maximum(x, 0) - alpha * np.maximum(-x, 0), c.mask)]


@layer("ELU", dims=same_dims)
def elu(c: LayerCall) -> list[Tensor]:
    alpha = elu_alpha(c)
    x = c.x
    res = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if alpha != 1.0:
        res = np.where(x > 0, res, x.dtype.type(alpha) * res)
    return [Tensor(res.astype(x.dtype), c.mask)]


@layer("ThresholdedReLU", dims=same_dims)
def thresholded_relu(c: LayerCall) -> list[Tensor]:
    theta = thresholded_relu_theta(c)
    x = c.x
    return [Tensor(x * (x > theta).astype(x.dtype), c.mask)]


def softmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


@layer("Softmax", dims=same_dims)
def softmax_layer(c: LayerCall) -> list[Tensor]:
    x = c.x
    axes = softmax_axes(c, x.ndim)
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
    rule = softmax_mask_rule(c)
    if rule == "keras3":
        y = softmax(np.where(mask, x, big), axes)
        y = np.where(mask, y, x.dtype.type(0))
    elif rule == "robust":
        y = softmax(np.where(mask, x, big), axes)
    else:
        # x + (1 - mask)·(-1e9), the mask cast to numbers as it is, in the layer's own float type: in float32
        # the sum rounds x away, which decides the outputs of a row masked whole
        # the whole layer runs in that type (a float64 Softmax in a float32 model too), its output cast back
        own = np.dtype(softmax_own_dtype(c))
        adder = (1 - raw.astype(own)) * own.type(-1e9)
        xo = x.astype(own)
        y = softmax(np.where(adder == 0, xo, xo + adder), axes).astype(x.dtype)
    return [Tensor(np.asarray(y, dtype=x.dtype), mask)]  # Keras passes on the mask it was given
