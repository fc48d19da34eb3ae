"""Regenerate the sample checkpoints in this folder with Keras itself.

    python sample_models/generate.py            # both generations, each in its own process
    python sample_models/generate.py keras3     # Keras 3 only (.keras, legacy .h5, .weights.h5)
    python sample_models/generate.py tf_keras   # tf_keras (Keras 2) only (.h5 full and weights-only)
    python sample_models/generate.py tf_keras --only tfk_tf_ops,tfk_declared   # rewrite only these samples
    python sample_models/generate.py tf215      # TF 2.15's Keras, in its own venv (generate_tf215.py): SavedModel
                                                # folders, TF checkpoints, the 2.12-2.15 .keras, to_json files

`--only` rewrites the samples whose names start with one of the prefixes and leaves every other
file as it is (the random weights are still drawn in the same order, so nothing else changes).

Every model gets seeded random weights (biases included, so a dropped bias shows),
a seeded input and Keras's own output. Beside each checkpoint NAME:

- ``NAME.io.npz``: ``x`` (or ``x0``, ``x1``...), and ``y`` (or ``y0``, ``y1``...) from ``model.predict``;
- ``NAME.ref.npz``: what ``get_weights()`` reports for every LSTM direction, keyed
  ``<layer path>:kernel|recurrent_kernel|bias``, the reference the gate tests slice;
- ``NAME.json``: ``model.to_json()``, beside every weights-only file, for ``--config``.

Needs the ``keras`` extra (tensorflow, tf-keras). Nothing here is imported by the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 1234
ONLY: tuple[str, ...] = ()  # set by --only: the sample name prefixes to write


def wanted(name: str) -> bool:
    return not ONLY or name.startswith(ONLY)


def random_weights(model: Any, rng: np.random.Generator) -> None:
    """Replace every weight by seeded values in a trained-looking range."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            random_weights(layer, rng)
            continue
        ws = layer.get_weights()
        if not ws:
            continue
        new = [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ws]
        if type(layer).__name__ == "BatchNormalization":
            new[-1] = np.abs(new[-1]) + 0.5  # a moving variance is positive
        layer.set_weights(new)


RECURRENT = ("LSTM", "CuDNNLSTM", "GRU", "CuDNNGRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def lstm_directions(model: Any, prefix: str = "") -> dict[str, Any]:
    """Map '<path>' to each recurrent direction layer (LSTM, GRU, SimpleRNN; forward/backward of a Bidirectional)."""
    out: dict[str, Any] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        path = f"{prefix}{layer.name}"
        if kind in ("Sequential", "Functional", "Model"):
            out.update(lstm_directions(layer, prefix=f"{path}/"))
        elif kind == "Bidirectional":
            out[f"{path}/{layer.forward_layer.name}"] = layer.forward_layer
            out[f"{path}/{layer.backward_layer.name}"] = layer.backward_layer
        elif kind == "RNN" and type(layer.cell).__name__ == "StackedRNNCells":
            out.update({f"{path}/cell_{k}": cell for k, cell in enumerate(layer.cell.cells)})
        elif kind in RECURRENT:
            out[path] = layer
    return out


def _save_refs(name: str, model: Any, x: Any, weights_from: Any = None) -> None:
    """Write NAME.io.npz (input, Keras output) and NAME.ref.npz (get_weights per direction)."""
    if not wanted(name):
        return
    ref_model = weights_from if weights_from is not None else model
    refs: dict[str, np.ndarray] = {}
    for path, layer in lstm_directions(ref_model).items():
        ws = layer.get_weights()
        for role, w in zip(("kernel", "recurrent_kernel", "bias"), ws):
            refs[f"{path}:{role}"] = w
    np.savez(HERE / f"{name}.ref.npz", **refs)
    y = model.predict(x, verbose=0)
    io: dict[str, np.ndarray] = {}
    if isinstance(x, (list, tuple)):
        io.update({f"x{k}": v for k, v in enumerate(x)})
    else:
        io["x"] = x
    if isinstance(y, (list, tuple)):
        io.update({f"y{k}": np.asarray(v) for k, v in enumerate(y)})
    else:
        io["y"] = np.asarray(y)
    np.savez(HERE / f"{name}.io.npz", **io)


def seq_input(rng: np.random.Generator, batch: int, steps: int, features: int) -> np.ndarray:
    return rng.normal(size=(batch, steps, features)).astype("float32")


def padded_ids(rng: np.random.Generator, batch: int, steps: int, vocab: int) -> np.ndarray:
    """Token ids with right padding of varying length (0 is the masked id)."""
    ids = rng.integers(1, vocab, size=(batch, steps)).astype("int32")
    for b in range(batch):
        ids[b, steps - b % 4 :] = 0
    return ids


def _padded_seq(rng: np.random.Generator, batch: int, steps: int, features: int) -> np.ndarray:
    x = seq_input(rng, batch, steps, features)
    for b in range(batch):
        x[b, steps - b % 3 :] = 0.0
    x[1, 2] = 0.0  # one masked step in the middle, too
    return x


def _layer_zoo(keras: Any, layers: Any, save: Callable[..., None], x: np.ndarray, rng: np.random.Generator) -> None:
    """Every layer kind the engine runs around LSTMs, in two functional graphs (the same code for both Keras)."""
    T, F = x.shape[1], x.shape[2]
    inp = keras.Input((T, F), name="series")
    a = layers.LSTM(5, return_sequences=True, name="lstm_a")(inp)
    a = layers.BatchNormalization(name="bn")(a)
    a = layers.LayerNormalization(name="ln")(a)
    a = layers.TimeDistributed(layers.Dense(4, activation="tanh"), name="td")(a)
    a = layers.SpatialDropout1D(0.2, name="sdrop")(a)
    a = layers.GaussianNoise(0.3, name="noise")(a)
    a = layers.GaussianDropout(0.2, name="gdrop")(a)
    a = layers.Dropout(0.5, name="drop")(a)
    a = layers.Activation("relu", name="relu")(a)
    b = layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_b")(inp)
    added = layers.Add(name="add")([a, b])
    multiplied = layers.Multiply(name="mul")([a, b])
    averaged = layers.Average(name="avg")([added, multiplied])
    last = layers.LSTM(3, name="lstm_c")(averaged)
    flat = layers.Dense(6, activation="softplus", name="dense_flat")(layers.Flatten(name="flat")(averaged))
    again = layers.Reshape((2, 6), name="reshape")(layers.RepeatVector(2, name="repeat")(flat))
    tail = layers.LSTM(2, activation="relu", name="lstm_d")(again)
    out = layers.Dense(1, name="out")(layers.Concatenate(name="concat")([last, tail]))
    save(f"{PREFIX[keras.__name__]}_layer_zoo", keras.Model(inp, out), x)

    # Masks through merges: Masking feeds an LSTM and a Bidirectional, joined by a Concatenate.
    inp = keras.Input((T, F), name="padded")
    m = layers.Masking(0.0, name="mask")(inp)
    left = layers.LSTM(4, return_sequences=True, name="left")(m)
    right = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="mul", name="right")(m)
    joined = layers.Concatenate(name="join")([left, right])
    out = layers.Dense(2, name="head")(layers.LSTM(3, name="top")(joined))
    save(f"{PREFIX[keras.__name__]}_masked_merge", keras.Model(inp, out), _padded_seq(rng, 4, T, F))


def _seq2seq(keras: Any, layers: Any, save: Callable[..., None], rng: np.random.Generator) -> None:
    """Encoder-decoders: the decoder LSTM starts from the encoder's final h and c (the Keras seq2seq example)."""
    prefix = PREFIX[keras.__name__]
    enc_in = keras.Input((6, 4), name="encoder_input")
    dec_in = keras.Input((5, 3), name="decoder_input")
    _, h, c = layers.LSTM(6, return_state=True, name="encoder")(enc_in)
    seq = layers.LSTM(6, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    out = layers.Dense(3, activation="softmax", name="next")(seq)
    save(f"{prefix}_seq2seq", keras.Model([enc_in, dec_in], out),
         [seq_input(rng, 4, 6, 4), seq_input(rng, 4, 5, 3)])

    # Token ids with padding on both sides, Embedding(mask_zero) on each.
    enc_in = keras.Input((7,), name="source_ids", dtype="int32")
    dec_in = keras.Input((6,), name="target_ids", dtype="int32")
    _, h, c = layers.LSTM(5, return_state=True, name="encoder")(layers.Embedding(15, 4, mask_zero=True,
                                                                                 name="source_embedding")(enc_in))
    dec = layers.Embedding(12, 4, mask_zero=True, name="target_embedding")(dec_in)
    seq = layers.LSTM(5, return_sequences=True, name="decoder")(dec, initial_state=[h, c])
    out = layers.Dense(12, activation="softmax", name="next")(seq)
    save(f"{prefix}_seq2seq_embedding", keras.Model([enc_in, dec_in], out),
         [padded_ids(rng, 5, 7, 15), padded_ids(rng, 5, 6, 12)])

    # A Bidirectional decoder started from the four states of a Bidirectional encoder.
    enc_in = keras.Input((6, 4), name="encoder_input")
    dec_in = keras.Input((5, 3), name="decoder_input")
    _, hf, cf, hb, cb = layers.Bidirectional(layers.LSTM(4, return_state=True), name="encoder")(enc_in)
    seq = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="decoder")(
        dec_in, initial_state=[hf, cf, hb, cb])
    out = layers.Dense(2, name="head")(seq)
    save(f"{prefix}_seq2seq_bidirectional", keras.Model([enc_in, dec_in], out),
         [seq_input(rng, 4, 6, 4), seq_input(rng, 4, 5, 3)])


def _declared_shapes(keras: Any, layers: Any, save: Callable[..., None], rng: np.random.Generator) -> None:
    """input_shape written on every layer, as many tutorials do: Keras uses only the first one's."""
    model = keras.Sequential([layers.LSTM(5, return_sequences=True, input_shape=(9, 1)),
                              layers.LSTM(4, input_shape=(9, 1)), layers.Dense(1)])
    save(f"{PREFIX[keras.__name__]}_declared_shapes", model, seq_input(rng, 3, 9, 1))


PREFIX = {"keras": "k3", "tf_keras": "tfk"}


def _gru_and_simple_rnn(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], x: np.ndarray,
                        rng: np.random.Generator, weights_kind: str) -> None:
    """GRU in both reset_after forms and with hard_sigmoid, Bidirectional GRU, Embedding → GRU → LSTM, SimpleRNN
    (tanh and relu), RNN(GRUCell) and RNN(SimpleRNNCell), a GRU encoder-decoder (the same code for both Keras)."""
    p = PREFIX[keras.__name__]
    main = "keras" if p == "k3" else "h5"
    T, F = x.shape[1], x.shape[2]
    save(f"{p}_gru", seq(layers.GRU(5, return_sequences=True), layers.Dense(2)), x, (main, weights_kind))
    save(f"{p}_gru_reset_before", seq(layers.GRU(5, reset_after=False, return_sequences=True)), x)
    save(f"{p}_gru_hard_sigmoid", seq(layers.GRU(4, recurrent_activation="hard_sigmoid", return_sequences=True),
                                      layers.GRU(3, recurrent_activation="hard_sigmoid", reset_after=False)), x)
    save(f"{p}_bidir_gru", seq(layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode="sum"),
                               layers.Bidirectional(layers.GRU(3))), x)
    save(f"{p}_embedding_gru_lstm",
         seq(layers.Embedding(20, 6, mask_zero=True), layers.GRU(5, return_sequences=True), layers.LSTM(4),
             layers.Dense(3), input_shape=(9,), dtype="int32"),
         padded_ids(rng, 5, 9, 20))
    save(f"{p}_simple_rnn", seq(layers.SimpleRNN(5, return_sequences=True), layers.SimpleRNN(3, activation="relu")),
         x, (main, weights_kind))
    save(f"{p}_rnn_cells", seq(layers.RNN(layers.GRUCell(4), return_sequences=True),
                               layers.RNN(layers.SimpleRNNCell(3), go_backwards=True),
                               layers.Dense(2)), x)
    save(f"{p}_bidir_simple_rnn", seq(layers.Masking(0.0), layers.Bidirectional(layers.SimpleRNN(3,
                                                                                                return_sequences=True))),
         _padded_seq(rng, 4, T, F))

    enc_in = keras.Input((6, 4), name="encoder_input")
    dec_in = keras.Input((5, 3), name="decoder_input")
    _, h = layers.GRU(6, return_state=True, name="encoder")(enc_in)
    out = layers.GRU(6, return_sequences=True, name="decoder")(dec_in, initial_state=[h])
    save(f"{p}_gru_seq2seq", keras.Model([enc_in, dec_in], layers.Dense(3, activation="softmax", name="next")(out)),
         [seq_input(rng, 4, 6, 4), seq_input(rng, 4, 5, 3)])


# ---------------------------------------------------------------- Keras 3

def generate_keras3() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # channels_first convolutions run on every CPU
    import keras
    from keras import layers

    rng = np.random.default_rng(SEED)
    T, F = 7, 3

    def seq(*ls: Any, input_shape: tuple = (T, F), dtype: str = "float32") -> Any:
        return keras.Sequential([keras.Input(input_shape, dtype=dtype), *ls])

    def save(name: str, model: Any, x: Any, kinds: tuple[str, ...] = ("keras",),
             weights_rng: np.random.Generator | None = None) -> None:
        keras.utils.set_random_seed(SEED)
        random_weights(model, weights_rng if weights_rng is not None else rng)
        for kind in kinds if wanted(name) else ():
            if kind == "keras":
                model.save(HERE / f"{name}.keras")
            elif kind == "h5":
                model.save(HERE / f"{name}.h5")  # Keras 3's legacy HDF5 writer
            elif kind == "weights":
                model.save_weights(HERE / f"{name}.weights.h5")
                (HERE / f"{name}.json").write_text(model.to_json())
        _save_refs(name, model, x)

    x = seq_input(rng, 4, T, F)
    save("k3_single", seq(layers.LSTM(5)), x, ("keras", "h5", "weights"))
    save("k3_return_sequences", seq(layers.LSTM(6, return_sequences=True)), x)
    save(
        "k3_stacked",
        seq(layers.LSTM(8, return_sequences=True), layers.LSTM(6, return_sequences=True),
            layers.LSTM(4), layers.Dense(2)),
        x, ("keras", "h5", "weights"),
    )
    save("k3_bidir_concat", seq(layers.Bidirectional(layers.LSTM(5, return_sequences=True)), layers.Dense(2)),
         x, ("keras", "h5"))
    save("k3_bidir_sum", seq(layers.Bidirectional(layers.LSTM(4), merge_mode="sum")), x)
    save("k3_go_backwards", seq(layers.LSTM(5, go_backwards=True, return_sequences=True)), x)
    save("k3_hard_sigmoid", seq(layers.LSTM(5, recurrent_activation="hard_sigmoid")), x, ("keras", "h5"))
    save("k3_no_bias", seq(layers.LSTM(5, use_bias=False, return_sequences=True)), x)
    save(
        "k3_embedding_mask_zero",
        seq(layers.Embedding(20, 6, mask_zero=True), layers.LSTM(5), layers.Dense(3),
            input_shape=(9,), dtype="int32"),
        padded_ids(rng, 5, 9, 20),
    )
    save("k3_masking", seq(layers.Masking(0.0), layers.LSTM(5, return_sequences=True)), _padded_seq(rng, 4, T, F))
    save("k3_rnn_lstmcell", seq(layers.RNN(layers.LSTMCell(5), return_sequences=True)), x, ("keras", "h5"))

    inp = keras.Input((T, F), name="series")
    out, h, c = layers.LSTM(5, return_state=True, name="encoder")(inp)
    head = layers.Dense(2, name="head")(out)
    save("k3_functional_state", keras.Model(inp, [head, h, c]), x)

    inner = keras.Sequential([keras.Input((T, F)), layers.LSTM(4, return_sequences=True, name="inner_lstm")],
                             name="inner_seq")
    inp = keras.Input((T, F))
    y = layers.LSTM(3, name="outer_lstm")(inner(inp))
    save("k3_nested", keras.Model(inp, y), x, ("keras", "h5"))

    a = keras.Input((T, F), name="a")
    b = keras.Input((5, 2), name="b")
    ya = layers.LSTM(4, name="lstm_a")(a)
    yb = layers.Bidirectional(layers.LSTM(3), name="bidir_b")(b)
    y = layers.Dense(2, name="out")(layers.Concatenate(name="concat")([ya, yb]))
    save("k3_two_inputs", keras.Model([a, b], y), [x, seq_input(rng, 4, 5, 2)])

    _layer_zoo(keras, layers, save, x, rng)
    _seq2seq(keras, layers, save, rng)
    save("k3_conv1d_lstm", seq(layers.Conv1D(4, 3, padding="same"), layers.LSTM(3)), x)

    # Files with no LSTM lstm-inspect can read, for the error messages.
    save("k3_gru_dense", seq(layers.GRU(4), layers.Dense(2)), x)
    save("k3_convlstm2d", seq(layers.ConvLSTM2D(2, (3, 3), padding="same"), input_shape=(3, 5, 5, 1)),
         rng.normal(size=(2, 3, 5, 5, 1)).astype("float32"))
    _declared_shapes(keras, layers, save, rng)
    _gru_and_simple_rnn(keras, layers, save, seq, x, rng, weights_kind="weights")
    _more_layers(keras, layers, save, seq)
    _stacked_and_transposed(keras, layers, save, seq)

    # dropout and recurrent_dropout set (Keras drops nothing at inference): diagnose's "dropout applied at
    # inference" candidates scale x or h by (1 - rate). Its own seeded generator, so no other sample changes.
    drop_rng = np.random.default_rng(SEED + 24)
    save("k3_dropout", seq(layers.LSTM(4, dropout=0.3, recurrent_dropout=0.2, return_sequences=True, name="lstm"),
                           layers.GRU(3, dropout=0.25, recurrent_dropout=0.4, return_sequences=True, name="gru"),
                           layers.SimpleRNN(2, dropout=0.5, recurrent_dropout=0.1, return_sequences=True,
                                            name="simple_rnn")),
         seq_input(drop_rng, 3, T, F), weights_rng=drop_rng)
    _conv_lstm(keras, layers, save, "k3_", channels_first=True)


def _conv_lstm(keras: Any, layers: Any, save: Callable[..., None], prefix: str, channels_first: bool) -> None:
    """ConvLSTM1D/2D/3D (issue 25): tiny feature maps, every setting the cell reads. Their own seeded generator,
    so no other sample changes."""
    rng = np.random.default_rng(SEED + 25)

    def maps(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype("float32")

    def seq(*ls: Any, input_shape: tuple) -> Any:
        return keras.Sequential([keras.Input(input_shape), *ls])

    save(f"{prefix}convlstm1d", seq(layers.ConvLSTM1D(3, 3, return_sequences=True), layers.ConvLSTM1D(2, 2, strides=2),
                                    input_shape=(4, 7, 2)), maps(2, 4, 7, 2), weights_rng=rng)
    save(f"{prefix}convlstm2d_seq",
         seq(layers.ConvLSTM2D(3, (3, 3), padding="same", return_sequences=True),
             layers.ConvLSTM2D(2, (2, 3), strides=(2, 1), go_backwards=True), input_shape=(3, 5, 6, 2)),
         maps(2, 3, 5, 6, 2), ("keras", "h5", "weights") if prefix == "k3_" else ("h5", "weights"), weights_rng=rng)
    save(f"{prefix}convlstm2d_dilated",
         seq(layers.ConvLSTM2D(2, 3, padding="same", dilation_rate=2, recurrent_activation="hard_sigmoid",
                               use_bias=False, return_sequences=True), input_shape=(3, 6, 6, 1)),
         maps(2, 3, 6, 6, 1), weights_rng=rng)
    inp = keras.Input((3, 5, 5, 2), name="frames")
    y, h, c = layers.ConvLSTM2D(2, 3, padding="same", return_sequences=True, return_state=True, go_backwards=True,
                                name="conv_lstm")(inp)
    save(f"{prefix}convlstm2d_state", keras.Model(inp, [y, h, c]), maps(2, 3, 5, 5, 2), weights_rng=rng)
    save(f"{prefix}convlstm3d", seq(layers.ConvLSTM3D(2, 2, padding="same", return_sequences=True),
                                    input_shape=(3, 3, 4, 4, 1)), maps(2, 3, 3, 4, 4, 1), weights_rng=rng)
    save(f"{prefix}convlstm2d_bidir",
         seq(layers.Bidirectional(layers.ConvLSTM2D(2, 3, padding="same", return_sequences=True)),
             input_shape=(3, 4, 4, 1)), maps(2, 3, 4, 4, 1), weights_rng=rng)
    # masks: Masking gives one per pixel (batch, steps, h, w), which Keras's loop applies per pixel; a whole
    # frame of zeros masks the step everywhere
    masked = maps(2, 4, 4, 4, 1)
    masked[0, 2:] = 0.0
    masked[1, 1, :2, :3] = 0.0
    save(f"{prefix}convlstm2d_mask", seq(layers.Masking(0.0), layers.ConvLSTM2D(2, 3, padding="same",
                                                                                  return_sequences=True),
                                         input_shape=(4, 4, 4, 1)), masked, weights_rng=rng)
    if channels_first:
        save(f"{prefix}convlstm2d_cf", seq(layers.ConvLSTM2D(2, 3, data_format="channels_first", return_sequences=True),
                                           input_shape=(3, 2, 5, 6)), maps(2, 3, 2, 5, 6), weights_rng=rng)


# ---------------------------------------------------------------- tf_keras (Keras 2)

def generate_tf_keras() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # channels_first convolutions run on every CPU
    import tf_keras as keras
    from tf_keras import layers
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    rng = np.random.default_rng(SEED + 1)
    T, F = 7, 3

    def seq(*ls: Any, input_shape: tuple = (T, F), dtype: str = "float32") -> Any:
        return keras.Sequential([keras.Input(input_shape, dtype=dtype), *ls])

    def save(name: str, model: Any, x: Any, kinds: tuple[str, ...] = ("h5",),
             weights_rng: np.random.Generator | None = None) -> None:
        keras.utils.set_random_seed(SEED)
        random_weights(model, weights_rng if weights_rng is not None else rng)
        for kind in kinds if wanted(name) else ():
            if kind == "h5":
                model.save(HERE / f"{name}.h5", save_format="h5")
            elif kind == "weights":
                model.save_weights(HERE / f"{name}.weights_only.h5", save_format="h5")
                (HERE / f"{name}.json").write_text(model.to_json())
            elif kind == "tf_ckpt":  # a TensorFlow checkpoint (save_weights' TF format) and its architecture
                model.save_weights(HERE / f"{name}_ckpt" / "cp.ckpt")
                (HERE / f"{name}.json").write_text(model.to_json())
        _save_refs(name, model, x)

    x = seq_input(rng, 4, T, F)
    save("tfk_single", seq(layers.LSTM(5)), x, ("h5", "weights"))
    save("tfk_stacked_hard_sigmoid",
         seq(layers.LSTM(6, return_sequences=True, recurrent_activation="hard_sigmoid"),
             layers.LSTM(4, recurrent_activation="hard_sigmoid"), layers.Dense(2)),
         x, ("h5", "weights"))
    save("tfk_bidir_concat", seq(layers.Bidirectional(layers.LSTM(5, return_sequences=True)),
                                 layers.Bidirectional(layers.LSTM(3), merge_mode="ave")), x)
    save("tfk_go_backwards", seq(layers.LSTM(5, go_backwards=True, return_sequences=True)), x)
    save("tfk_embedding_mask_zero_bilstm",
         seq(layers.Embedding(20, 6, mask_zero=True), layers.Bidirectional(layers.LSTM(4)), layers.Dense(3),
             input_shape=(9,), dtype="int32"),
         padded_ids(rng, 5, 9, 20))
    save("tfk_masking", seq(layers.Masking(0.0), layers.LSTM(5, return_sequences=True)), _padded_seq(rng, 4, T, F))
    save("tfk_rnn_lstmcell", seq(layers.RNN(layers.LSTMCell(5), return_sequences=True), layers.Dense(2)), x)

    inp = keras.Input((T, F), name="series")
    out, h, c = layers.LSTM(5, return_state=True, name="encoder")(inp)
    save("tfk_functional_state", keras.Model(inp, [layers.Dense(2, name="head")(out), h, c]), x)

    inner = keras.Sequential([keras.Input((T, F)), layers.LSTM(4, return_sequences=True, name="inner_lstm")],
                             name="inner_seq")
    inp = keras.Input((T, F))
    save("tfk_nested", keras.Model(inp, layers.LSTM(3, name="outer_lstm")(inner(inp))), x)

    _layer_zoo(keras, layers, save, x, rng)
    _seq2seq(keras, layers, save, rng)

    # CuDNNLSTM: tf_keras builds and saves one on a CPU but cannot run it. Keras's own
    # loader converts its weights into a plain LSTM; that LSTM gives the outputs and
    # the reference weights the gate model must equal.
    cudnn = seq(CuDNNLSTM(5, return_sequences=True), layers.Dense(2))
    keras.utils.set_random_seed(SEED)
    random_weights(cudnn, rng)
    _save_cudnn(keras, layers, seq, cudnn, x, write=wanted("tfk_cudnn"))
    _declared_shapes(keras, layers, save, rng)

    # TensorFlow op layers around an LSTM: TFOpLambda (tf_keras) and TensorFlowOpLayer (tf.keras 2.3)
    import tf_ops

    ops_model = tf_ops.build(keras, layers)
    x_ops = seq_input(rng, 4, 8, 4)
    save("tfk_tf_ops", ops_model, x_ops)
    if wanted("tfk_tf_ops_v23"):
        def close(a: np.ndarray, b: np.ndarray) -> None:
            assert np.max(np.abs(a - b)) < 1e-6, "the TF 2.3 form computes something else"

        tf_ops.save_tf23_copy(keras, ops_model, HERE / "tfk_tf_ops.h5", HERE / "tfk_tf_ops_v23.h5", x_ops, close)
        for kind in ("io", "ref"):
            shutil.copy(HERE / f"tfk_tf_ops.{kind}.npz", HERE / f"tfk_tf_ops_v23.{kind}.npz")

    # time_major=True (tf.keras only): the layer reads axis 0 as time, whatever the model's input is
    save("tfk_time_major", seq(layers.LSTM(5, time_major=True, return_sequences=True), layers.Dense(2)), x)

    _gru_and_simple_rnn(keras, layers, save, seq, x, rng, weights_kind="weights")

    # CuDNNGRU: like CuDNNLSTM, built and saved on a CPU, run through Keras's conversion into GRU(reset_after=True)
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU

    cudnn_gru = seq(CuDNNGRU(4, return_sequences=True), layers.Dense(2))
    keras.utils.set_random_seed(SEED)
    random_weights(cudnn_gru, rng)
    plain_gru = seq(layers.GRU(4, return_sequences=True, reset_after=True), layers.Dense(2))
    if wanted("tfk_cudnn_gru"):
        cudnn_gru.save(HERE / "tfk_cudnn_gru.h5", save_format="h5")
        cudnn_gru.save_weights(HERE / "tfk_cudnn_gru.weights_only.h5", save_format="h5")
        (HERE / "tfk_cudnn_gru.json").write_text(cudnn_gru.to_json())
        plain_gru.load_weights(HERE / "tfk_cudnn_gru.weights_only.h5")
        refs = {f"{cudnn_gru.layers[0].name}:{r}": w
                for r, w in zip(("kernel", "recurrent_kernel", "bias"), plain_gru.layers[0].get_weights())}
        np.savez(HERE / "tfk_cudnn_gru.ref.npz", **refs)
        np.savez(HERE / "tfk_cudnn_gru.io.npz", x=x, y=plain_gru.predict(x, verbose=0))

    _more_layers(keras, layers, save, seq)
    _stacked_and_transposed(keras, layers, save, seq)
    _conv_lstm(keras, layers, save, "tfk_", channels_first=False)  # tf_keras on a CPU: NHWC convolutions only


def _more_layers(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any]) -> None:
    """The layers around recurrent layers in their own modules, each with its own seeded generator (so adding a
    sample to one changes no other): convolutions, pooling, activation and shape layers; attention."""
    import attention_samples
    import export_samples
    import layer_samples
    import user_layer_samples

    layer_samples.generate(keras, layers, save, seq, PREFIX[keras.__name__])
    attention_samples.generate(keras, layers, save, seq, PREFIX[keras.__name__])
    export_samples.generate(keras, layers, save, seq, PREFIX[keras.__name__])
    user_layer_samples.generate(keras, layers, save, seq, PREFIX[keras.__name__])


def _stacked_and_transposed(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any]) -> None:
    """RNN over StackedRNNCells and the transposed convolutions (issue 25), with their own seeded generators."""
    import stacked_samples

    stacked_samples.generate(keras, layers, save, seq, PREFIX[keras.__name__])


def _save_cudnn(keras: Any, layers: Any, seq: Callable[..., Any], cudnn: Any, x: np.ndarray, write: bool) -> None:
    plain = seq(layers.LSTM(5, return_sequences=True), layers.Dense(2))  # built either way: layer names count
    if not write:
        return
    cudnn.save(HERE / "tfk_cudnn.h5", save_format="h5")
    cudnn.save_weights(HERE / "tfk_cudnn.weights_only.h5", save_format="h5")
    (HERE / "tfk_cudnn.json").write_text(cudnn.to_json())
    plain.load_weights(HERE / "tfk_cudnn.weights_only.h5")
    renamed = {f"{cudnn.layers[0].name}": plain.layers[0]}
    refs = {f"{k}:{r}": w for k, layer in renamed.items()
            for r, w in zip(("kernel", "recurrent_kernel", "bias"), layer.get_weights())}
    np.savez(HERE / "tfk_cudnn.ref.npz", **refs)
    np.savez(HERE / "tfk_cudnn.io.npz", x=x, y=plain.predict(x, verbose=0))


def generate_tf215() -> None:
    subprocess.run([sys.executable, str(HERE / "generate_tf215.py")], check=True)


GENERATORS: dict[str, Callable[[], None]] = {"keras3": generate_keras3, "tf_keras": generate_tf_keras,
                                             "tf215": generate_tf215}

if __name__ == "__main__":
    args = sys.argv[1:]
    only: list[str] = []
    if "--only" in args:
        at = args.index("--only")
        only = args[at + 1].split(",")
        args = args[:at] + args[at + 2:]
    ONLY = tuple(only)
    which_ones = args or list(GENERATORS)
    if len(which_ones) > 1:
        # Keras 3 and tf_keras each want the process to themselves.
        for which in which_ones:
            subprocess.run([sys.executable, __file__, which, *(["--only", ",".join(only)] if only else [])],
                           check=True)
    else:
        GENERATORS[which_ones[0]]()
        print(f"{which_ones[0]}: wrote samples to {HERE}" + (f" (only {', '.join(only)})" if only else ""))
