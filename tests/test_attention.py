"""Keras's attention layers in the engine: variants against Keras's own outputs, and the release rules.

The samples `*_att_*` (sample_models/attention_samples.py) run in test_engine, test_verify, test_show,
test_gates and test_interop like every sample. Here: small models of each option (use_scale, score_mode,
causal masks, implicit and explicit masks, return_attention_scores, dropout, MultiHeadAttention with
value_dim != key_dim, an output_shape, no bias, two attention axes, Keras 3's gate and sliding window),
built, saved and run by Keras 3 and by tf_keras in this process, then read and run by lstm-inspect; the
Keras 3 rules of earlier releases (which only these releases compute) checked on known values; the weights
of MultiHeadAttention in a TF checkpoint and in a TF 2.12-2.15 `.keras`; errors in one line.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.keras_ref import import_keras

from conftest import SAMPLES

RNG = np.random.default_rng(7)


def _ids(batch: int, steps: int, vocab: int, left: bool = False) -> np.ndarray:
    """Token ids padded with 0 on the right (and on the left of one row when asked)."""
    ids = RNG.integers(1, vocab, size=(batch, steps)).astype("int32")
    for b in range(batch):
        ids[b, steps - b % 3:] = 0
    if left:
        ids[-1, :2] = 0
    return ids


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype("float32")


# Each variant: (keras, layers) -> (model, inputs). The same code builds it in both generations.

def attention_plain(keras: Any, layers: Any) -> tuple[Any, Any]:
    inp = keras.Input((6, 3))
    h = layers.LSTM(4, return_sequences=True)(inp)
    return keras.Model(inp, layers.Attention(name="att")([h, h])), _x(3, 6, 3)


def attention_scale_concat_scores(keras: Any, layers: Any) -> tuple[Any, Any]:
    a, b = keras.Input((5, 3)), keras.Input((7, 2))
    q = layers.LSTM(4, return_sequences=True)(a)
    v = layers.LSTM(4, return_sequences=True)(b)
    out, scores = layers.Attention(use_scale=True, score_mode="concat")([q, v], return_attention_scores=True)
    return keras.Model([a, b], [out, scores]), [_x(3, 5, 3), _x(3, 7, 2)]


def attention_causal_dropout_masking(keras: Any, layers: Any) -> tuple[Any, Any]:
    inp = keras.Input((6, 3))
    h = layers.LSTM(4, return_sequences=True)(layers.Masking(0.0)(inp))
    x = _x(4, 6, 3)
    x[0, 4:], x[1, :2] = 0.0, 0.0
    return keras.Model(inp, layers.Attention(dropout=0.3)([h, h], use_causal_mask=True)), x


def attention_explicit_masks(keras: Any, layers: Any) -> tuple[Any, Any]:
    a, b = keras.Input((5, 3)), keras.Input((6, 3))
    qm, vm = keras.Input((5,), dtype="bool"), keras.Input((6,), dtype="bool")
    q = layers.LSTM(4, return_sequences=True)(a)
    v = layers.LSTM(4, return_sequences=True)(b)
    out = layers.Attention(use_scale=True)([q, v], mask=[qm, vm])
    masks = [RNG.random((4, 5)) > 0.3, RNG.random((4, 6)) > 0.3]
    masks[1][:, 0] = True
    return keras.Model([a, b, qm, vm], out), [_x(4, 5, 3), _x(4, 6, 3), *masks]


def additive_no_scale_key(keras: Any, layers: Any) -> tuple[Any, Any]:
    a, b = keras.Input((5, 3)), keras.Input((6, 2))
    q = layers.LSTM(4, return_sequences=True)(a)
    v = layers.LSTM(3, return_sequences=True)(b)
    k = layers.Dense(4)(v)
    return keras.Model([a, b], layers.AdditiveAttention(use_scale=False)([q, v, k])), [_x(3, 5, 3), _x(3, 6, 2)]


def additive_mask_zero_scores(keras: Any, layers: Any) -> tuple[Any, Any]:
    ids = keras.Input((7,), dtype="int32")
    h = layers.LSTM(4, return_sequences=True)(layers.Embedding(12, 3, mask_zero=True)(ids))
    out, scores = layers.AdditiveAttention()([h, h], return_attention_scores=True)
    return keras.Model(ids, [out, scores]), _ids(4, 7, 12, left=True)


def mha_value_dim_output_shape(keras: Any, layers: Any) -> tuple[Any, Any]:
    src, dec = keras.Input((7,), dtype="int32"), keras.Input((5, 3))
    enc = layers.LSTM(4, return_sequences=True)(layers.Embedding(12, 3, mask_zero=True)(src))
    d = layers.LSTM(4, return_sequences=True)(dec)
    out, scores = layers.MultiHeadAttention(3, 2, value_dim=4, output_shape=(6,))(d, enc,
                                                                                   return_attention_scores=True)
    return keras.Model([src, dec], [out, scores]), [_ids(4, 7, 12), _x(4, 5, 3)]


def mha_causal_masked(keras: Any, layers: Any) -> tuple[Any, Any]:
    ids = keras.Input((6,), dtype="int32")
    h = layers.LSTM(4, return_sequences=True)(layers.Embedding(12, 4, mask_zero=True)(ids))
    return keras.Model(ids, layers.MultiHeadAttention(2, 3)(h, h, use_causal_mask=True)), _ids(4, 6, 12, left=True)


def mha_dropout_no_bias(keras: Any, layers: Any) -> tuple[Any, Any]:
    """dropout > 0 takes Keras 3 off dot_product_attention onto its Softmax layer, which zeroes the fully
    masked rows of padded query steps (tf_keras leaves them uniform)."""
    ids = keras.Input((6,), dtype="int32")
    h = layers.LSTM(4, return_sequences=True)(layers.Embedding(12, 4, mask_zero=True)(ids))
    return keras.Model(ids, layers.MultiHeadAttention(2, 2, dropout=0.2, use_bias=False)(h, h)), _ids(3, 6, 12)


def mha_two_attention_axes(keras: Any, layers: Any) -> tuple[Any, Any]:
    inp = keras.Input((6, 3))
    grid = layers.Reshape((2, 3, 5))(layers.LSTM(5, return_sequences=True)(inp))
    return keras.Model(inp, layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))(grid, grid)), _x(3, 6, 3)


def mha_gate_sliding_window(keras: Any, layers: Any) -> tuple[Any, Any]:  # Keras 3.14 / 3.15
    inp = keras.Input((6, 3))
    h = layers.LSTM(4, return_sequences=True)(inp)
    return keras.Model(inp, layers.MultiHeadAttention(2, 2, use_gate=True, sliding_window=2)(h, h)), _x(3, 6, 3)


BOTH = [attention_plain, attention_scale_concat_scores, attention_causal_dropout_masking, attention_explicit_masks,
        additive_no_scale_key, additive_mask_zero_scores, mha_value_dim_output_shape, mha_causal_masked,
        mha_dropout_no_bias, mha_two_attention_axes]
CASES = [("keras3", v) for v in [*BOTH, mha_gate_sliding_window]] + [("tf_keras", v) for v in BOTH]


def _random_weights(model: Any, rng: np.random.Generator) -> None:
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ws])


def _saved(gen: str, build: Callable[[Any, Any], tuple[Any, Any]], folder: Path
           ) -> tuple[Path, Any, list[np.ndarray]]:
    """The variant built, given seeded weights and saved by `gen`; its inputs and Keras's outputs."""
    keras = import_keras(gen)
    model, xs = build(keras, keras.layers)
    _random_weights(model, np.random.default_rng(3))
    path = folder / f"{build.__name__}.{'keras' if gen == 'keras3' else 'h5'}"
    if gen == "keras3":
        model.save(path)
    else:
        model.save(path, save_format="h5")
    ys = model.predict(xs, verbose=0)
    return path, xs, [np.asarray(y) for y in (ys if isinstance(ys, list) else [ys])]


def _error(outs: Any, ys: list[np.ndarray]) -> float:
    outs = outs if isinstance(outs, list) else [outs]
    assert len(outs) == len(ys) and all(o.shape == y.shape for o, y in zip(outs, ys))
    return max(float(np.max(np.abs(o - y) / np.maximum(1.0, np.abs(y)))) for o, y in zip(outs, ys))


@pytest.mark.parametrize("gen,build", CASES, ids=[f"{g}-{b.__name__}" for g, b in CASES])
def test_variant_matches_keras(gen: str, build: Callable[[Any, Any], tuple[Any, Any]], tmp_path: Path) -> None:
    path, xs, ys = _saved(gen, build, tmp_path)
    ckpt = lstm_inspect.load(path)
    for dtype in (np.float32, np.float64):
        assert _error(ckpt.forward(xs, dtype=dtype), ys) <= 1e-5
    if build is attention_plain:  # no use_scale, no concat: no weights, and none read
        (att,) = [m for m in ckpt.layers if m.class_name == "Attention"]
        assert ckpt.read_layer(att.name) == []


def test_tf_keras_causal_config_key(tmp_path: Path) -> None:
    """tf.keras before 2.10 wrote Attention(causal=True) in the config; it is the causal mask of use_causal_mask."""
    path, xs, ys = _saved("tf_keras", attention_causal_dropout_masking, tmp_path)
    old = tmp_path / "causal_key.h5"
    shutil.copy(path, old)
    with h5py.File(old, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        (att,) = [e for e in cfg["config"]["layers"] if e["class_name"] == "Attention"]
        att["config"]["causal"] = True
        for node in att["inbound_nodes"][0]:
            node[3].pop("use_causal_mask")
        f.attrs["model_config"] = json.dumps(cfg)
    assert _error(lstm_inspect.load(old).forward(xs), ys) <= 1e-5
    plain = np.asarray(lstm_inspect.load(path).forward(xs))
    with h5py.File(old, "r+") as f:  # and without it, not causal: something else
        cfg = json.loads(f.attrs["model_config"])
        next(e for e in cfg["config"]["layers"] if e["class_name"] == "Attention")["config"]["causal"] = False
        f.attrs["model_config"] = json.dumps(cfg)
    assert np.max(np.abs(lstm_inspect.load(old).forward(xs) - plain)) > 1e-2


# ---------------------------------------------------------------- rules of earlier Keras 3 releases


def _as_written_by(name: str, version: str) -> lstm_inspect.Checkpoint:
    ckpt = lstm_inspect.load(SAMPLES / name)
    ckpt.keras_version = version
    return ckpt


def test_keras3_mha_rules_by_release() -> None:
    """The sample's two MultiHeadAttention read one padded LSTM output; the second returns its scores.

    Keras 3.8+ (the writer, 3.15.1, and 3.10 alike) clears the tensor's masks in the first layer, so the second
    runs unmasked: no score is 0. Keras 3.7 cleared nothing, so the second is masked, and its Softmax (before
    3.10) leaves a fully masked query step uniform where 3.10+ zeroes it.
    """
    with np.load(SAMPLES / "k3_att_mha_padded_query.io.npz") as d:
        x, y_scores = d["x"], d["y1"]
    padded_row = int(np.argmax((x == 0).any(axis=1)))  # a batch row with padding at its end
    steps = int((x[padded_row] != 0).sum())
    new = _as_written_by("k3_att_mha_padded_query.keras", "3.15.1").forward(x)[1]
    assert np.max(np.abs(new - y_scores)) <= 1e-5 and np.all(new > 0)
    old = _as_written_by("k3_att_mha_padded_query.keras", "3.7.0").forward(x)[1]
    row = old[padded_row, 0]
    assert np.allclose(row[:steps, steps:], 0.0, atol=1e-12) and np.allclose(row[:steps].sum(-1), 1.0)
    assert np.allclose(row[steps:], 1.0 / x.shape[1], atol=1e-6)  # fully masked query steps: uniform
    assert np.all(_as_written_by("k3_att_mha_padded_query.keras", "3.10.0").forward(x)[1] > 0)


def test_keras3_attention_value_mask_broadcast_before_3_12() -> None:
    """Keras 3.0-3.11 broadcast the (batch, Tv) value mask against (batch, Tq, Tv) unexpanded."""
    with np.load(SAMPLES / "k3_att_bilstm_text.io.npz") as d:
        x, y = d["x"], d["y"]
    ckpt = _as_written_by("k3_att_bilstm_text.keras", "3.11.0")
    with pytest.raises(lstm_inspect.InspectError, match=r"fixed in Keras 3\.12") as err:
        ckpt.forward(x)  # batch 5, Tq 9: Keras 3.11 fails here too
    assert "\n" not in str(err.value)
    one = ckpt.forward(x[1:2])  # a batch of one broadcasts as the fixed release expands
    assert np.max(np.abs(one - y[1:2])) <= 1e-5


# ---------------------------------------------------------------- where MultiHeadAttention's weights live


def test_mha_in_a_tf_checkpoint_with_its_config(tmp_path: Path) -> None:
    """tf_keras save_weights (TF format): the MHA's variables under _query_dense/... in weights order; an
    Attention without weights takes no layer_with_weights number."""
    keras = import_keras("tf_keras")
    layers = keras.layers
    inp = keras.Input((6, 3))
    h = layers.LSTM(4, return_sequences=True)(inp)
    att = layers.Attention()([h, h])
    mha = layers.MultiHeadAttention(2, 3, value_dim=2, output_shape=(5,), name="mha")(att, h)
    model = keras.Model(inp, layers.Dense(2)(mha))
    _random_weights(model, np.random.default_rng(4))
    model.save_weights(str(tmp_path / "ckpt" / "cp.ckpt"))
    (tmp_path / "model.json").write_text(model.to_json())
    x = _x(3, 6, 3)
    ckpt = lstm_inspect.load(tmp_path / "ckpt", config=tmp_path / "model.json")
    assert _error(ckpt.forward(x), [model.predict(x, verbose=0)]) <= 1e-5
    keys = [a.key for a in ckpt.layer_arrays["mha"]]
    assert [k.split("/")[1:3] for k in keys] == [[d, v] for d in ("_query_dense", "_key_dense", "_value_dense",
                                                                  "_output_dense") for v in ("kernel", "bias")]


def test_mha_in_a_tf215_keras_zip(tmp_path: Path) -> None:
    """tf.keras 2.12-2.15 .keras zips name the sub-layer groups _query_dense, ...: read as Keras 3's."""
    src = SAMPLES / "k3_att_seq2seq_mha.keras"
    old = tmp_path / "renamed.keras"
    with zipfile.ZipFile(src) as zin:
        zin.extract("model.weights.h5", tmp_path)
        with h5py.File(tmp_path / "model.weights.h5", "r+") as f:
            for mha in ("multi_head_attention", "multi_head_attention_1"):
                for part in ("query", "key", "value", "output"):
                    f.move(f"layers/{mha}/{part}_dense", f"layers/{mha}/_{part}_dense")
        with zipfile.ZipFile(old, "w") as zout:
            for name in zin.namelist():
                data = (tmp_path / "model.weights.h5").read_bytes() if name == "model.weights.h5" else zin.read(name)
                zout.writestr(name, data)
    with np.load(SAMPLES / "k3_att_seq2seq_mha.io.npz") as d:
        xs, y = [d["x0"], d["x1"]], d["y"]
    assert _error(lstm_inspect.load(old).forward(xs), [y]) <= 1e-5


def test_mha_weights_read_in_keras_order() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_att_mha_explicit_mask.keras")
    shapes = [a.shape for a in ckpt.layer_arrays["mha"]]
    assert shapes == [(4, 2, 3), (2, 3), (5, 2, 3), (2, 3), (3, 2, 4), (2, 4), (2, 4, 2, 3), (2, 3)]
    legacy = lstm_inspect.load(SAMPLES / "k3_att_mha_explicit_mask.h5")
    assert [a.shape for a in legacy.layer_arrays["mha"]] == shapes
    for a, b in zip(ckpt.read_layer("mha"), legacy.read_layer("mha")):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- errors, in one line


def test_weights_that_do_not_fit_fail_in_one_line() -> None:
    from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, Tensor
    from lstm_inspect.model.architecture import LayerNode

    ctx = Context(np.float32, "3.15.1", 3)
    q = Tensor(_x(2, 4, 3))
    node = LayerNode(name="mha", path="mha", class_name="MultiHeadAttention", config={"num_heads": 2, "key_dim": 3},
                     entry={})
    good = [np.zeros(s, np.float32) for s in [(3, 2, 3), (2, 3)] * 3 + [(2, 3, 3), (3,)]]
    assert LAYERS["MultiHeadAttention"].run(LayerCall(node, [q, q], good, ctx))[0].value.shape == (2, 4, 3)
    cases = [
        (node, [q, q], good[:-1], "expected 8 weight arrays, found 7"),
        (node, [q, q], [np.zeros((4, 2, 3), np.float32), *good[1:]], r"weight 0 should have shape \(3, 2, 3\)"),
        (node, [q], good, "needs a query and a value"),
        (LayerNode(name="a", path="a", class_name="Attention", config={}, entry={}), [q], [],
         r"\[query, value\] or \[query, value, key\]"),
        (LayerNode(name="a", path="a", class_name="Attention", config={"use_scale": True}, entry={}), [q, q], [],
         "stores no weights"),
        (LayerNode(name="a", path="a", class_name="AdditiveAttention", config={}, entry={}), [q, q],
         [np.zeros(5, np.float32)], r"weight 0 should have shape \(3\)"),
    ]
    for n, inputs, weights, message in cases:
        with pytest.raises(lstm_inspect.InspectError, match=message) as err:
            LAYERS[n.class_name].run(LayerCall(n, inputs, weights, ctx))
        assert "\n" not in str(err.value)
