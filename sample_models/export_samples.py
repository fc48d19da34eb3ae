"""Samples for `lstm-inspect export` (called by generate.py): every path a recurrent layer takes in an export.

The same code builds each model in Keras 3 (prefix k3, .keras) and tf_keras (prefix tfk, .h5), with
weights and inputs drawn from this module's own generator, so adding a sample here changes no other.

- ``*_mask_paths``: Embedding(mask_zero) feeding five recurrent layers, each a model output: a forward
  LSTM with return_sequences (masked steps repeat the last output), a go_backwards LSTM, a
  Bidirectional GRU (merge sum: zero_output_for_mask), a SimpleRNN's last output and states, and an
  LSTM with a linear activation and hard_sigmoid gates (the ONNX operator's Affine and HardSigmoid
  parameters side by side). Beside the usual ``NAME.io.npz`` (an input with holes),
  ``NAME.paths.npz`` holds Keras's outputs for three more inputs: ``suffix_*`` (right padding, one row
  all padding), ``prefix_*`` (left padding: pad_sequences' default) and ``holes_*`` (zeros in the
  middle), keys ``<kind>_x`` and ``<kind>_y0``, ``<kind>_y1``...
- ``*_merge_none``: Bidirectional(LSTM, return_state) with merge_mode=None: the two halves and the four
  states as six model outputs.
- ``*_scan_activations``: recurrent layers whose activations no ONNX recurrent operator has (selu,
  gelu, swish), one of them go_backwards, no mask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEED = 5151
HERE = Path(__file__).resolve().parent
STEPS, VOCAB = 8, 20


def padded(rng: np.random.Generator, kind: str) -> np.ndarray:
    ids = rng.integers(1, VOCAB, size=(5, STEPS)).astype("int32")
    for b in range(ids.shape[0]):
        n = (b * 2) % STEPS  # padding per row: 0, 2, 4, 6, 0 (suffix: row 4 all padding)
        if kind == "suffix":
            if n:
                ids[b, STEPS - n:] = 0
            if b == 4:
                ids[b] = 0
        elif kind == "prefix":
            ids[b, :n] = 0
        else:  # holes: zeros in the middle (and one row with none)
            if b < 4:
                ids[b, 2 + b % 3] = 0
                ids[b, 5] = 0
    return ids


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, kinds, weights_rng=...)`; prefix is k3 or tfk."""
    rng = np.random.default_rng(SEED)
    main = "keras" if prefix == "k3" else "h5"

    ids = keras.Input((STEPS,), dtype="int32", name="tokens")
    e = layers.Embedding(VOCAB, 5, mask_zero=True, name="embedding")(ids)
    forward = layers.LSTM(4, return_sequences=True, name="forward")(e)
    backward = layers.LSTM(3, return_sequences=True, go_backwards=True, name="backward")(e)
    bigru = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum", name="bigru")(e)
    last, state = layers.SimpleRNN(3, return_state=True, name="simple")(e)
    affine = layers.LSTM(3, activation="linear", recurrent_activation="hard_sigmoid", name="affine")(e)
    model = keras.Model(ids, [forward, backward, bigru, last, state, affine])
    name = f"{prefix}_mask_paths"
    save(name, model, padded(rng, "holes"), (main,), weights_rng=rng)
    paths: dict[str, np.ndarray] = {}
    for kind in ("suffix", "prefix", "holes"):
        x = padded(rng, kind)
        paths[f"{kind}_x"] = x
        for k, y in enumerate(model.predict(x, verbose=0)):
            paths[f"{kind}_y{k}"] = np.asarray(y)
    np.savez(HERE / f"{name}.paths.npz", **paths)

    series = keras.Input((7, 3), name="series")
    h = layers.LSTM(4, activation="selu", return_sequences=True, go_backwards=True, name="selu_backwards")(series)
    h = layers.GRU(3, activation="gelu", recurrent_activation="swish", return_sequences=True, name="gelu_gru")(h)
    out = layers.SimpleRNN(2, activation="swish", name="swish_rnn")(h)
    save(f"{prefix}_scan_activations", keras.Model(series, out), rng.normal(size=(3, 7, 3)).astype("float32"),
         (main,), weights_rng=rng)

    series = keras.Input((6, 3), name="series")
    halves = layers.Bidirectional(layers.LSTM(3, return_sequences=True, return_state=True), merge_mode=None,
                                  name="bilstm")(series)
    save(f"{prefix}_merge_none", keras.Model(series, list(halves)), rng.normal(size=(3, 6, 3)).astype("float32"),
         (main,), weights_rng=rng)
