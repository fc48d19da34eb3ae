"""Samples of RNN over stacked cells and of the transposed convolutions (called by generate.py): see generate().

- `*_stacked_cells`: RNN(StackedRNNCells([LSTMCell, GRUCell]), return_sequences=True) → Dense: the two cells run
  within one step of one loop (cell 1 reads cell 0's h at the same step).
- `*_stacked_cells_state`: RNN([LSTMCell, LSTMCell], return_state=True, go_backwards=True) after a Masking layer
  (Keras wraps the list in StackedRNNCells): the mask and go_backwards apply to the whole stack; the states come
  back as every cell's, in the cells' order (h0, c0, h1, c1).
- `*_stacked_cells_backwards`: RNN([LSTMCell, GRUCell], return_sequences=True, go_backwards=True) → Dense; tf_keras
  writes it as .h5 and as a TensorFlow checkpoint (tfk_stacked_cells_backwards_ckpt/ with its .json).
- `*_conv1d_transpose`: Conv1DTranspose ("same", strides 2) → LSTM; `*_conv2d_transpose`: TimeDistributed(
  Conv2DTranspose ("valid", strides 2, output_padding 1)) → TimeDistributed(Flatten) → GRU.

Weights and inputs come from this module's own generators (SEED), so adding a sample here changes no other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SEED = 20250


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, weights_rng=...)`; prefix is k3 or tfk."""
    p = prefix
    w_rng = np.random.default_rng(SEED)  # the weights, drawn for every sample even when --only skips it
    x_rng = np.random.default_rng(SEED + 1)  # the inputs

    def put(name: str, model: Any, x: Any) -> None:
        save(name, model, x, weights_rng=w_rng)

    put(f"{p}_stacked_cells",
        seq(layers.RNN(layers.StackedRNNCells([layers.LSTMCell(4), layers.GRUCell(3)]), return_sequences=True,
                       name="stacked"),
            layers.Dense(2), input_shape=(6, 3)),
        x_rng.normal(size=(3, 6, 3)).astype("float32"))

    x = x_rng.normal(size=(4, 6, 3)).astype("float32")
    for b in range(4):
        x[b, 6 - b % 3:] = 0.0  # right padding of 0, 1, 2 steps
    x[1, 2] = 0.0  # and one step masked in the middle
    inp = keras.Input((6, 3), name="series")
    outs = layers.RNN([layers.LSTMCell(4), layers.LSTMCell(3)], return_state=True, go_backwards=True,
                      name="stack")(layers.Masking(0.0, name="masking")(inp))
    # Keras returns the states nested per cell ([h0, c0], [h1, c1]); the model's outputs list them flat
    states = [s for cell in outs[1:] for s in (cell if isinstance(cell, (list, tuple)) else [cell])]
    put(f"{p}_stacked_cells_state", keras.Model(inp, [layers.Dense(2, name="head")(outs[0]), *states]), x)

    put(f"{p}_conv1d_transpose",
        seq(layers.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu"), layers.LSTM(3),
            input_shape=(5, 3)),
        x_rng.normal(size=(3, 5, 3)).astype("float32"))
    put(f"{p}_conv2d_transpose",
        seq(layers.TimeDistributed(layers.Conv2DTranspose(2, 3, strides=2, output_padding=1)),
            layers.TimeDistributed(layers.Flatten()), layers.GRU(3), input_shape=(3, 3, 3, 2)),
        x_rng.normal(size=(2, 3, 3, 3, 2)).astype("float32"))

    # going backwards and returning sequences (tf_keras: also as a TensorFlow checkpoint, cell/cells/<k>/ inside)
    save(f"{p}_stacked_cells_backwards",
         seq(layers.RNN([layers.LSTMCell(4), layers.GRUCell(3)], return_sequences=True, go_backwards=True,
                        name="stack"), layers.Dense(2, name="head"), input_shape=(6, 3)),
         x_rng.normal(size=(2, 6, 3)).astype("float32"),
         ("keras",) if p == "k3" else ("h5", "tf_ckpt"), weights_rng=w_rng)
