"""Samples of the layers around recurrent layers (called by generate.py): see generate().

Convolutions (CNN-LSTM, causal dilated stacks, TimeDistributed(Conv2D), grouped, separable and depthwise,
channels_first), pooling (local and global, with masks), padding/cropping/upsampling, the activation
layers, Dot and Permute: every model holds at least one LSTM, GRU or SimpleRNN, as real ones do. The
same code writes both generations (Keras 3: k3_*, tf_keras: tfk_*), except where a layer or a setting
exists in one only (ZeroPadding1D's data_format: Keras 3; ThresholdedReLU: tf_keras).

channels_first: with TensorFlow 2.21 both generations run every channels_first convolution and pool used here on
the CPU (convolutions through oneDNN; Keras 3 transposes pools to channels_last), so these samples carry
Keras's own outputs (plain TensorFlow without oneDNN refuses NCHW convolutions on the CPU). No
channels_first convolution here has a last spatial size equal to its channel count: there Keras 3's
TensorFlow backend may add the bias along the wrong axis (see lstm_inspect/engine/layers/conv.py).

Weights and inputs come from this module's own generators (SEED), so adding a sample here changes no other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SEED = 20150


def _seq(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype("float32")


def _padded_ids(rng: np.random.Generator, batch: int, steps: int, vocab: int) -> np.ndarray:
    """Token ids with right padding of varying length (0 is the masked id), one row padded in the middle too."""
    ids = rng.integers(1, vocab, size=(batch, steps)).astype("int32")
    for b in range(batch):
        ids[b, steps - b % 4:] = 0
    ids[1, 2] = 0
    return ids


def _padded_seq(rng: np.random.Generator, batch: int, steps: int, features: int) -> np.ndarray:
    x = _seq(rng, batch, steps, features)
    for b in range(batch):
        x[b, steps - b % 3:] = 0.0
    x[1, 2] = 0.0
    return x


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, kinds, weights_rng=...)`; prefix is k3 or tfk."""
    p = prefix
    k3 = p == "k3"
    w_rng = np.random.default_rng(SEED)  # the weights, drawn for every sample even when --only skips it
    x_rng = np.random.default_rng(SEED + 1)  # the inputs

    def put(name: str, model: Any, x: Any) -> None:
        save(name, model, x, weights_rng=w_rng)

    # ---------------------------------------------------------------- convolutions
    # CNN-LSTM: Conv1D → MaxPooling1D → LSTM
    put(f"{p}_cnn_lstm", seq(layers.Conv1D(4, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
                             layers.LSTM(5), layers.Dense(2), input_shape=(10, 3)), _seq(x_rng, 4, 10, 3))
    # WaveNet-like causal dilated stack, then a strided valid Conv1D without bias, into a GRU
    put(f"{p}_cnn_causal_gru",
        seq(layers.Conv1D(4, 2, padding="causal", dilation_rate=2, activation="tanh"),
            layers.Conv1D(4, 3, padding="causal", dilation_rate=3),
            layers.Conv1D(3, 3, strides=2, use_bias=False), layers.GRU(4), input_shape=(12, 3)),
        _seq(x_rng, 3, 12, 3))
    # Conv1D + grouped Conv1D + AveragePooling1D("same", stride 1) → Bidirectional GRU
    put(f"{p}_cnn_bigru",
        seq(layers.Conv1D(6, 3, activation="relu"), layers.Conv1D(6, 3, groups=2, padding="same"),
            layers.AveragePooling1D(3, strides=1, padding="same"), layers.Bidirectional(layers.GRU(3)),
            layers.Dense(2), input_shape=(9, 4)),
        _seq(x_rng, 3, 9, 4))
    # SeparableConv1D, DepthwiseConv1D, MaxPooling1D("same", stride 2) → SimpleRNN
    put(f"{p}_cnn_separable",
        seq(layers.SeparableConv1D(4, 3, padding="same", depth_multiplier=2, activation="relu"),
            layers.DepthwiseConv1D(3, depth_multiplier=2), layers.MaxPooling1D(3, strides=2, padding="same"),
            layers.SimpleRNN(3), input_shape=(11, 3)),
        _seq(x_rng, 3, 11, 3))
    # CNN-GRU over frames: TimeDistributed(Conv2D) → TimeDistributed(MaxPooling2D) → TimeDistributed(Flatten)
    put(f"{p}_cnn_td_conv2d",
        seq(layers.TimeDistributed(layers.Conv2D(3, (2, 2), padding="same", activation="relu")),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(layers.Conv2D(2, (2, 1), strides=(1, 2))),
            layers.TimeDistributed(layers.Flatten()), layers.GRU(4), layers.Dense(1), input_shape=(4, 6, 6, 2)),
        _seq(x_rng, 2, 4, 6, 6, 2))
    # separable and depthwise 2-D convolutions per frame, a global pool per frame, then an LSTM
    put(f"{p}_cnn_td_separable",
        seq(layers.TimeDistributed(layers.SeparableConv2D(3, 3, padding="same", depth_multiplier=2)),
            layers.TimeDistributed(layers.DepthwiseConv2D((2, 3), strides=(2, 1), activation="relu")),
            layers.TimeDistributed(layers.AveragePooling2D((2, 2), strides=1, padding="same")),
            layers.TimeDistributed(layers.GlobalMaxPooling2D()), layers.LSTM(3), input_shape=(3, 5, 6, 2)),
        _seq(x_rng, 2, 3, 5, 6, 2))
    # channels_first: (batch, channels, steps) between two Permutes
    cf = "channels_first"
    put(f"{p}_cnn_channels_first",
        seq(layers.Permute((2, 1)), layers.Conv1D(4, 3, padding="same", data_format=cf, activation="elu"),
            layers.MaxPooling1D(2, data_format=cf), layers.AveragePooling1D(2, strides=1, padding="same",
                                                                           data_format=cf),
            *([layers.ZeroPadding1D((1, 0), data_format=cf)] if k3 else []),
            layers.Conv1D(5, 2, dilation_rate=2, data_format=cf), layers.Permute((2, 1)), layers.LSTM(4),
            input_shape=(14, 3)),
        _seq(x_rng, 3, 14, 3))
    put(f"{p}_cnn_td_channels_first",
        seq(layers.TimeDistributed(layers.Conv2D(3, 3, padding="same", data_format=cf)),
            layers.TimeDistributed(layers.AveragePooling2D(2, padding="same", data_format=cf)),
            layers.TimeDistributed(layers.ZeroPadding2D(((1, 0), (0, 1)), data_format=cf)),
            layers.TimeDistributed(layers.Cropping2D(((0, 1), (1, 0)), data_format=cf)),
            layers.TimeDistributed(layers.MaxPooling2D((2, 1), data_format=cf)),
            layers.TimeDistributed(layers.Flatten()), layers.GRU(3), input_shape=(3, 2, 5, 5)),
        _seq(x_rng, 2, 3, 2, 5, 5))
    # ZeroPadding1D, Cropping1D, UpSampling1D around a Conv1D, LSTM → GlobalMaxPooling1D
    put(f"{p}_cnn_shapes",
        seq(layers.ZeroPadding1D((1, 2)), layers.Conv1D(4, 3), layers.Cropping1D((2, 1)), layers.UpSampling1D(2),
            layers.LSTM(4, return_sequences=True), layers.GlobalMaxPooling1D(), input_shape=(8, 3)),
        _seq(x_rng, 3, 8, 3))

    # ---------------------------------------------------------------- global pooling and masks
    # Embedding(mask_zero) → LSTM → the masked mean (GlobalAveragePooling1D honours the mask), the max (which
    # ignores it), and the mean over time of a channels_first view
    ids = keras.Input((9,), dtype="int32", name="ids")
    seqs = layers.LSTM(5, return_sequences=True, name="lstm")(layers.Embedding(20, 4, mask_zero=True,
                                                                                name="embedding")(ids))
    mean = layers.GlobalAveragePooling1D(name="masked_mean")(seqs)
    top = layers.GlobalMaxPooling1D(name="max")(seqs)
    mean_cf = layers.GlobalAveragePooling1D(data_format=cf, name="mean_cf")(layers.Permute((2, 1), name="swap")(seqs))
    out = layers.Dense(2, name="head")(layers.Concatenate(name="join")([mean, top, mean_cf]))
    put(f"{p}_pool_global_masked", keras.Model(ids, out), _padded_ids(x_rng, 5, 9, 20))
    # Masking → LSTM → keepdims pools (one step each) feeding LSTMs
    put(f"{p}_pool_keepdims",
        seq(layers.Masking(0.0), layers.LSTM(4, return_sequences=True), layers.GlobalAveragePooling1D(keepdims=True),
            layers.LSTM(3), input_shape=(7, 3)),
        _padded_seq(x_rng, 4, 7, 3))
    put(f"{p}_pool_max_keepdims",
        seq(layers.LSTM(4, return_sequences=True), layers.GlobalMaxPooling1D(keepdims=True),
            layers.SimpleRNN(2), input_shape=(7, 3)),
        _seq(x_rng, 3, 7, 3))

    # ---------------------------------------------------------------- activation layers
    tail = [layers.ThresholdedReLU(theta=0.1)] if not k3 else []
    put(f"{p}_act_layers",
        seq(layers.LSTM(6, return_sequences=True), layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.05),
            layers.LeakyReLU(), layers.PReLU(shared_axes=[1]), layers.ELU(alpha=0.7),
            layers.LSTM(4, return_sequences=True), layers.LeakyReLU(0.05), layers.Softmax(axis=1), *tail,
            layers.ReLU(max_value=6.0), layers.LSTM(3), layers.PReLU(), layers.Dense(2), input_shape=(7, 3)),
        _seq(x_rng, 4, 7, 3))
    # the mask of an Embedding(mask_zero) through activation layers into the next LSTM
    put(f"{p}_act_masked",
        seq(layers.Embedding(15, 4, mask_zero=True), layers.LSTM(5, return_sequences=True), layers.ReLU(threshold=0.1),
            layers.PReLU(), layers.ELU(), layers.LeakyReLU(), layers.LSTM(3), layers.Dense(2),
            input_shape=(8,), dtype="int32"),
        _padded_ids(x_rng, 5, 8, 15))

    # ---------------------------------------------------------------- Dot and Permute around LSTMs
    inp = keras.Input((6, 3), name="series")
    a = layers.LSTM(5, return_sequences=True, name="encoder")(inp)
    scores = layers.Dot(axes=2, name="scores")([a, a])
    weights = layers.Softmax(name="attention")(scores)
    context = layers.Dot(axes=(2, 1), name="context")([weights, a])
    both = layers.Concatenate(name="join")([context, a])
    last = layers.LSTM(4, name="decoder")(both)
    across = layers.LSTM(3, name="across_features")(layers.Permute((2, 1), name="transpose")(context))
    cosine = layers.Dot(axes=1, normalize=True, name="cosine")([last, layers.Dense(4, name="proj")(across)])
    put(f"{p}_act_dot_permute", keras.Model(inp, [layers.Dense(2, name="head")(last), cosine]),
        _seq(x_rng, 3, 6, 3))
