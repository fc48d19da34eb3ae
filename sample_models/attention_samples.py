"""Samples of Keras's attention layers around recurrent layers (called by generate.py): see generate().

The same code builds each model in Keras 3 (prefix k3, .keras) and tf_keras (prefix tfk, .h5), with
weights and inputs drawn from this module's own generator, so adding a sample here changes no other.
Each model holds a recurrent layer, as real ones do:

- ``*_att_bilstm_text``: Embedding(mask_zero) -> Bidirectional(LSTM) -> Attention(use_scale)([h, h]), the
  implicit masks of query and value, Flatten -> Dense (the BiLSTM + attention text classifier);
- ``*_att_additive_causal``: Masking (left and right padding) -> LSTM -> AdditiveAttention with
  use_causal_mask and return_attention_scores (a padded first step leaves a whole row of scores masked),
  the scores a model output;
- ``*_att_concat_key``: Attention(score_mode="concat", use_scale) on [query, value, key] of different lengths;
- ``*_att_seq2seq_mha``: an encoder-decoder: the decoder LSTM starts from the encoder's states, causal
  MultiHeadAttention over its own outputs, then MultiHeadAttention (value_dim != key_dim, an output_shape)
  over the encoder's masked outputs;
- ``*_att_mha_explicit_mask``: MultiHeadAttention on [query, value, key] with an `attention_mask` model input
  (one query step fully masked) and a 2-D output_shape; Keras 3 writes it as .keras and as a legacy .h5;
- ``*_att_mha_padded_query``: MultiHeadAttention self-attention on padded tokens, so padded query steps have
  every score masked, once without and once with return_attention_scores (Keras 3 computes the two
  differently there, and from 3.8 the first clears the masks of the tensors it reads, so the second runs
  unmasked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SEED = 4242


def _padded_ids(rng: np.random.Generator, batch: int, steps: int, vocab: int) -> np.ndarray:
    """Token ids with right padding of varying length (0 is the masked id)."""
    ids = rng.integers(1, vocab, size=(batch, steps)).astype("int32")
    for b in range(batch):
        ids[b, steps - b % 4:] = 0
    return ids


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, kinds, weights_rng=...)`; prefix is k3 or tfk."""
    rng = np.random.default_rng(SEED)
    main = "keras" if prefix == "k3" else "h5"

    ids = keras.Input((9,), dtype="int32", name="tokens")
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bilstm")(
        layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids))
    att = layers.Attention(use_scale=True, name="attention")([h, h])
    out = layers.Dense(3, activation="softmax", name="label")(layers.Flatten(name="flat")(att))
    save(f"{prefix}_att_bilstm_text", keras.Model(ids, out), _padded_ids(rng, 5, 9, 30), (main,), weights_rng=rng)

    series = keras.Input((6, 3), name="series")
    h = layers.LSTM(5, return_sequences=True, name="lstm")(layers.Masking(0.0, name="masking")(series))
    context, scores = layers.AdditiveAttention(name="additive")([h, h], use_causal_mask=True,
                                                                 return_attention_scores=True)
    out = layers.Dense(2, name="head")(layers.Flatten(name="flat")(context))
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    x[0, 4:] = 0.0  # right padding
    x[1, :2] = 0.0  # left padding: step 0 attends to nothing unmasked
    x[2, 3] = 0.0  # one masked step in the middle
    save(f"{prefix}_att_additive_causal", keras.Model(series, [out, scores]), x, (main,), weights_rng=rng)

    a = keras.Input((5, 3), name="queries")
    b = keras.Input((7, 2), name="values")
    q = layers.LSTM(4, return_sequences=True, name="query_lstm")(a)
    v = layers.LSTM(4, return_sequences=True, name="value_lstm")(b)
    k = layers.Dense(4, activation="tanh", name="key_dense")(v)
    att = layers.Attention(use_scale=True, score_mode="concat", name="concat_attention")([q, v, k])
    out = layers.Dense(2, name="head")(layers.LSTM(3, name="summary")(att))
    save(f"{prefix}_att_concat_key", keras.Model([a, b], out),
         [rng.normal(size=(3, 5, 3)).astype("float32"), rng.normal(size=(3, 7, 2)).astype("float32")],
         (main,), weights_rng=rng)

    source = keras.Input((7,), dtype="int32", name="source_ids")
    target = keras.Input((5, 3), name="target_steps")
    encoded, h, c = layers.LSTM(6, return_sequences=True, return_state=True, name="encoder")(
        layers.Embedding(15, 4, mask_zero=True, name="source_embedding")(source))
    decoded = layers.LSTM(6, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    itself = layers.MultiHeadAttention(2, 3, name="self_attention")(decoded, decoded, use_causal_mask=True)
    crossed = layers.MultiHeadAttention(2, 4, value_dim=3, output_shape=(5,), name="cross_attention")(
        itself, encoded)
    out = layers.Dense(12, activation="softmax", name="next")(layers.Concatenate(name="join")([decoded, crossed]))
    save(f"{prefix}_att_seq2seq_mha", keras.Model([source, target], out),
         [_padded_ids(rng, 4, 7, 15), rng.normal(size=(4, 5, 3)).astype("float32")], (main,), weights_rng=rng)

    # No implicit masks here (Keras 3's legacy .h5 writer leaves the ops that carry them unloadable): an
    # explicit attention_mask input instead, with a fully masked query step, and a key apart from the value.
    queries = keras.Input((5, 3), name="queries")
    memory = keras.Input((6, 2), name="memory")
    allowed = keras.Input((5, 6), name="attention_mask")
    q = layers.LSTM(4, return_sequences=True, name="query_lstm")(queries)
    v = layers.LSTM(3, return_sequences=True, name="memory_lstm")(memory)
    k = layers.Dense(5, name="keys")(v)
    att = layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=(2, 3), name="mha")(q, v, k,
                                                                                       attention_mask=allowed)
    out = layers.Dense(2, name="head")(layers.Flatten(name="flat")(att))
    mask = (rng.random((4, 5, 6)) > 0.3).astype("float32")
    mask[1, 0] = 0.0  # a query step that may attend to nothing
    save(f"{prefix}_att_mha_explicit_mask", keras.Model([queries, memory, allowed], out),
         [rng.normal(size=(4, 5, 3)).astype("float32"), rng.normal(size=(4, 6, 2)).astype("float32"), mask],
         ("keras", "h5") if prefix == "k3" else (main,), weights_rng=rng)

    ids = keras.Input((6,), dtype="int32", name="tokens")
    h = layers.LSTM(4, return_sequences=True, name="lstm")(layers.Embedding(20, 4, mask_zero=True,
                                                                            name="embedding")(ids))
    plain = layers.MultiHeadAttention(2, 2, name="mha")(h, h)
    scored, weights = layers.MultiHeadAttention(1, 3, use_bias=False, name="mha_scores")(
        h, h, return_attention_scores=True)
    joined = layers.Concatenate(name="join")([plain, scored])
    out = layers.Dense(2, name="head")(layers.Flatten(name="flat")(joined))
    save(f"{prefix}_att_mha_padded_query", keras.Model(ids, [out, weights]), _padded_ids(rng, 4, 6, 20),
         (main,), weights_rng=rng)
