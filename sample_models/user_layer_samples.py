"""Samples of models with the user's own layers (called by generate.py): see generate().

The same code builds each model in Keras 3 (prefix k3, .keras) and tf_keras (prefix tfk, .h5), with weights and
inputs from this module's own generator, so adding a sample here changes no other:

- ``*_user_attention``: LSTM(return_sequences) -> AttentionLayer (a user class with weights W, U, v, Bahdanau's
  additive attention as real models write it; `my_layers.keras_classes`) -> Dense;
- ``*_user_lambda``: LSTM(return_sequences) -> Lambda(lambda t: t[:, -1, :] - mean(t, axis=1)) -> Dense, the
  Lambda stored as bytecode.

`my_layers.py` beside this file holds the NumPy forms lstm-inspect runs them with (`--layers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf  # the Lambda's function reads it as a global, as a model's own script would

SEED = 2525


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, kinds, weights_rng=...)`; prefix is k3 or tfk."""
    import my_layers

    rng = np.random.default_rng(SEED)
    main = "keras" if prefix == "k3" else "h5"
    classes = my_layers.keras_classes(keras)

    series = keras.Input((7, 3), name="series")
    h = layers.LSTM(5, return_sequences=True, name="encoder")(series)
    context = classes["AttentionLayer"](units=4, name="attention")(h)
    out = layers.Dense(2, name="head")(context)
    save(f"{prefix}_user_attention", keras.Model(series, out), rng.normal(size=(4, 7, 3)).astype("float32"),
         (main,), weights_rng=rng)

    series = keras.Input((6, 3), name="series")
    h = layers.LSTM(4, return_sequences=True, name="encoder")(series)
    pooled = layers.Lambda(lambda t: t[:, -1, :] - tf.reduce_mean(t, axis=1), name="last_minus_mean")(h)
    out = layers.Dense(2, name="head")(pooled)
    save(f"{prefix}_user_lambda", keras.Model(series, out), rng.normal(size=(3, 6, 3)).astype("float32"),
         (main,), weights_rng=rng)
