"""Your own layers for lstm-inspect: the worked example of README.md's "Your own layers" (`--layers my_layers.py`).

lstm-inspect never runs code from a model file: a custom class's `call` and a Lambda's bytecode stay in the file.
This module is the user's code instead, given on the command line (`--layers sample_models/my_layers.py`) or
loaded from Python (`lstm_inspect.load_layers(...)`, `lstm_inspect.register_layer(...)`):

- `LAYERS` maps a custom class name (as the file names it: `AttentionLayer`) or a Lambda layer's name
  (`last_minus_mean`) to a NumPy function `fn(config, weights, inputs, masks)`: the layer's settings as the file
  stores them, its stored weights by name in Keras's order, the arrays it is called on (a list) and their Keras
  masks (None where there is none); it returns the layer's output (an array, or a list for several outputs).
- `keras_classes(keras)` (optional) returns the same layers as Keras classes, for `verify` against Keras: it is
  handed the Keras that verify runs (Keras 3 or tf_keras), so one definition serves both generations.

The samples `*_user_attention` and `*_user_lambda` (sample_models/user_layer_samples.py) were written with
these Keras classes; the NumPy functions reproduce Keras's outputs within 1e-6.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def attention_layer(config: dict[str, Any], weights: dict[str, np.ndarray], inputs: list[np.ndarray],
                    masks: list[np.ndarray | None]) -> np.ndarray:
    """Bahdanau (additive) attention over an LSTM's outputs h (batch, steps, d), its last step as the query:
    score_t = v·tanh(h_t W + h_T U), a = softmax over steps, context = Σ_t a_t h_t (batch, d)."""
    (h,) = inputs
    W, U, v = weights.values()  # tf_keras stores them as W, U, v; Keras 3 as 0, 1, 2: the same order
    score = np.tanh(h @ W + (h[:, -1, :] @ U)[:, None, :]) @ v  # (batch, steps, 1)
    if masks[0] is not None:
        score = np.where(masks[0][:, :, None], score, -1e9)
    a = np.exp(score - score.max(axis=1, keepdims=True))
    a = a / a.sum(axis=1, keepdims=True)
    return (a * h).sum(axis=1)


def last_minus_mean(config: dict[str, Any], weights: dict[str, np.ndarray], inputs: list[np.ndarray],
                    masks: list[np.ndarray | None]) -> np.ndarray:
    """The Lambda `lambda t: t[:, -1, :] - mean(t, axis=1)`: the last step against the sequence's mean."""
    (t,) = inputs
    return t[:, -1, :] - t.mean(axis=1)


LAYERS = {"AttentionLayer": attention_layer, "last_minus_mean": last_minus_mean}


def keras_classes(keras: Any) -> dict[str, type]:
    """The same layers in Keras (verify's reference): TensorFlow is imported only when verify asks."""
    import tensorflow as tf

    class AttentionLayer(keras.layers.Layer):
        def __init__(self, units: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            d = int(input_shape[-1])
            self.W = self.add_weight(name="W", shape=(d, self.units), initializer="glorot_uniform")
            self.U = self.add_weight(name="U", shape=(d, self.units), initializer="glorot_uniform")
            self.v = self.add_weight(name="v", shape=(self.units, 1), initializer="glorot_uniform")
            super().build(input_shape)

        def call(self, h: Any) -> Any:
            query = tf.expand_dims(tf.matmul(h[:, -1, :], self.U), 1)
            score = tf.tensordot(tf.tanh(tf.tensordot(h, self.W, axes=1) + query), self.v, axes=1)
            a = tf.nn.softmax(score, axis=1)
            return tf.reduce_sum(a * h, axis=1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    class LastMinusMean(keras.layers.Layer):  # what the Lambda computes, as a layer verify can rebuild
        def call(self, t: Any) -> Any:
            return t[:, -1, :] - tf.reduce_mean(t, axis=1)

    return {"AttentionLayer": AttentionLayer, "last_minus_mean": LastMinusMean}
