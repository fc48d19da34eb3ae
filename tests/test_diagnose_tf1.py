"""`diagnose` names TF1's (tf.compat.v1) LSTM conventions and dropout applied at inference, first and exactly.

Every THEIRS here is computed by the recurrent layers written in this file (`lstm`, `gru`, `simple_rnn`), from
Keras's own weights (the samples' .ref.npz), each first checked against Keras's own outputs (.io.npz); one
mistake is planted, never by the engine under test:

- TF1's `forget_bias=1.0` added at run time, f = σ(z_f + 1) (tf.nn.rnn_cell.LSTMCell / BasicLSTMCell; also
  Keras's `unit_forget_bias` misread, which only sets b_f's initial value): tensorflow#5090, coremltools#309,
  keras#10179;
- the forget bias added after the sigmoid, f = σ(z_f) + 1 (apache/tvm PR #3410);
- the cell state clipped, c = clip(c, ±cell_clip): 10, what TFLite's converter gives a Keras LSTM's fused op
  (tensorflow#43649; `ConvertKerasLSTMLayer`, tensorflow/compiler/mlir/lite/utils/lstm_utils.cc), and 3,
  tf.raw_ops.LSTMBlockCell's and BlockLSTM's default (tensorflow/core/ops/rnn_ops.cc);
- the states handed to a decoder in TF1's LSTMStateTuple order (c, h) where Keras takes [h, c]
  (tensorflow#17133, #13943, frugally-deep#145);
- dropout applied at inference as old-style scaling, x·(1 − dropout), h·(1 − recurrent_dropout)
  (lmnt-com/haste#18, keras#8907, tensorflow#35724).

Not candidates: TF1's peepholes (a Keras LSTM has no peephole weights, so a port of one has none to add or drop)
and num_proj (it changes h's width: THEIRS would fail on its shape, not its values).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import diagnose

from conftest import REALWORLD, SAMPLES, keras_refs


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm(x: np.ndarray, w: dict[str, np.ndarray], *, h0: Any = None, c0: Any = None, backwards: bool = False,
         mask: np.ndarray | None = None, forget_bias: float = 0.0, forget_after: float = 0.0,
         clip: float | None = None, x_keep: float = 1.0,
         h_keep: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keras's LSTM, blocks i, f, c, o: (outputs at each input position, last h, last c); at a masked step the
    states are kept and the previous output repeated. `forget_bias`: added to z_f; `forget_after`: added to
    σ(z_f); `clip`: c clipped to ±clip; `x_keep`, `h_keep`: x and h_{t-1} scaled."""
    k, r = w["kernel"].astype(np.float64), w["recurrent_kernel"].astype(np.float64)
    n = r.shape[0]
    b = w["bias"].astype(np.float64) if "bias" in w else np.zeros(4 * n)
    h = np.zeros((len(x), n)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((len(x), n)) if c0 is None else np.asarray(c0, np.float64)
    out = np.zeros((*x.shape[:2], n))
    for t in range(x.shape[1])[::-1] if backwards else range(x.shape[1]):
        z = (x_keep * x[:, t]) @ k + (h_keep * h) @ r + b
        i, f, g, o = np.split(z, 4, axis=-1)
        c_t = (_sigmoid(f + forget_bias) + forget_after) * c + _sigmoid(i) * np.tanh(g)
        if clip is not None:
            c_t = np.clip(c_t, -clip, clip)
        h_t = _sigmoid(o) * np.tanh(c_t)
        keep = np.ones((len(x), 1), bool) if mask is None else mask[:, t, None]
        h, c = np.where(keep, h_t, h), np.where(keep, c_t, c)
        out[:, t] = h
    return out, h, c


def _max_abs_c(x: np.ndarray, w: dict[str, np.ndarray]) -> float:
    """The largest |c| Keras's LSTM reaches over the sequence (each prefix's last c)."""
    return max(float(np.max(np.abs(lstm(x[:, :t], w)[2]))) for t in range(1, x.shape[1] + 1))


def gru(x: np.ndarray, w: dict[str, np.ndarray], x_keep: float = 1.0, h_keep: float = 1.0) -> np.ndarray:
    """Keras 3's GRU (reset_after, blocks z, r, h; bias rows input, recurrent)."""
    k, r, (b_x, b_h) = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]
    h = np.zeros((len(x), n))
    out = np.zeros((*x.shape[:2], n))
    for t in range(x.shape[1]):
        zx, zh = (x_keep * x[:, t]) @ k + b_x, (h_keep * h) @ r + b_h
        z, rr = _sigmoid(zx[:, :n] + zh[:, :n]), _sigmoid(zx[:, n:2 * n] + zh[:, n:2 * n])
        h = z * h + (1 - z) * np.tanh(zx[:, 2 * n:] + rr * zh[:, 2 * n:])
        out[:, t] = h
    return out


def simple_rnn(x: np.ndarray, w: dict[str, np.ndarray], x_keep: float = 1.0, h_keep: float = 1.0) -> np.ndarray:
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    h = np.zeros((len(x), r.shape[0]))
    out = np.zeros((*x.shape[:2], r.shape[0]))
    for t in range(x.shape[1]):
        h = np.tanh((x_keep * x[:, t]) @ k + b + (h_keep * h) @ r)
        out[:, t] = h
    return out


def _dense(sample: str) -> tuple[np.ndarray, np.ndarray]:
    """The Dense layer's kernel and bias, read from the .keras archive with h5py."""
    with zipfile.ZipFile(SAMPLES / f"{sample}.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        return f["layers/dense/vars/0"][()], f["layers/dense/vars/1"][()]


def _io(sample: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / f"{sample}.io.npz") as data:
        return dict(data)


def _named_first(result: Any, words: str) -> None:
    """Named first, exactly, and the only exact one."""
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    assert result.found[0].exact and words in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]
    assert [h.name for h in result.ranked if h.exact] == [result.found[0].name]


# ---------------------------------------------------------------- forget gate: TF1's forget_bias, TVM's after σ

SINGLE = "k3_single"  # LSTM(5) on (batch, 7, 3), its last step out


def test_the_lstm_port_is_keras() -> None:
    data = _io(SINGLE)
    w = keras_refs(SAMPLES / f"{SINGLE}.ref.npz")["lstm"]
    np.testing.assert_allclose(lstm(data["x"], w)[1], data["y"], atol=1e-5)
    data = _io("k3_no_bias")  # LSTM(5, use_bias=False, return_sequences=True)
    np.testing.assert_allclose(lstm(data["x"], keras_refs(SAMPLES / "k3_no_bias.ref.npz")["lstm_9"])[0], data["y"],
                               atol=1e-5)


@pytest.mark.parametrize("kwargs,words", [({"forget_bias": 1.0}, "forget_bias=1.0 added at run time"),
                                          ({"forget_after": 1.0}, "forget bias added after the sigmoid")],
                         ids=["forget_bias at run time", "forget bias after the sigmoid"])
def test_forget_bias_of_tf1_on_a_keras_lstm(kwargs: dict[str, float], words: str) -> None:
    """Step 0 is exact (f multiplies c_{-1} = 0), every sample wrong from step 1: named first, on the layer alone
    and on the whole model's last step. With this input's small |c| (7 steps, |c| < 3) both cell clips compute
    what the model computes: they are left out as equal to the model."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SINGLE}.keras")
    x = _io(SINGLE)["x"]
    w = keras_refs(SAMPLES / f"{SINGLE}.ref.npz")["lstm"]
    theirs = lstm(x, w, **kwargs)[0].astype(np.float32)
    result = diagnose(ckpt, [x], [theirs], layer="lstm")
    _named_first(result, words)
    assert result.evidence is not None and result.evidence.from_step == {s: 1 for s in range(len(x))}
    assert _max_abs_c(x, w) < 3 and np.array_equal(lstm(x, w, clip=3.0)[0], lstm(x, w)[0])
    assert result.excluded == 2  # the clips at 10 and 3
    _named_first(diagnose(ckpt, [x], [theirs[:, -1]]), words)


def test_forget_bias_on_a_layer_without_bias() -> None:
    """k3_no_bias has no bias: a TF1 cell still adds forget_bias, on a zero bias."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_no_bias.keras")
    x = np.random.default_rng(24).normal(size=(3, 7, 3)).astype(np.float32)
    theirs = lstm(x, keras_refs(SAMPLES / "k3_no_bias.ref.npz")["lstm_9"], forget_bias=1.0)[0].astype(np.float32)
    _named_first(diagnose(ckpt, [x], [theirs]), "forget_bias=1.0 added at run time")


def test_forget_bias_in_both_directions_of_a_bidirectional() -> None:
    """k3_bidir_concat: Bidirectional(LSTM(5, return_sequences=True)) → Dense(2), the whole model, TF1's forget_bias
    in both directions (the port builds both cells alike)."""
    w = keras_refs(SAMPLES / "k3_bidir_concat.ref.npz")
    kernel, bias = _dense("k3_bidir_concat")

    def port(x: np.ndarray, **kwargs: float) -> np.ndarray:
        fw = lstm(x, w["bidirectional/forward_lstm_5"], **kwargs)[0]
        bw = lstm(x, w["bidirectional/backward_lstm_5"], backwards=True, **kwargs)[0]
        return (np.concatenate([fw, bw], axis=-1) @ kernel + bias).astype(np.float32)

    data = _io("k3_bidir_concat")
    np.testing.assert_allclose(port(data["x"]), data["y"], atol=1e-5)
    x = np.random.default_rng(25).normal(size=(3, 7, 3)).astype(np.float32)
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    _named_first(diagnose(ckpt, [x], [port(x, forget_bias=1.0)]), "forget_bias=1.0 added at run time")


def test_forget_bias_under_a_mask() -> None:
    """k3_masking: Masking(0.0) → LSTM(5, return_sequences=True), Keras's padded input; every sample wrong."""
    data = _io("k3_masking")
    x, w = data["x"], keras_refs(SAMPLES / "k3_masking.ref.npz")["lstm_11"]
    mask = np.any(x != 0, axis=-1)
    assert not mask.all()
    np.testing.assert_allclose(lstm(x, w, mask=mask)[0], data["y"], atol=1e-5)
    theirs = lstm(x, w, mask=mask, forget_bias=1.0)[0].astype(np.float32)
    _named_first(diagnose(lstm_inspect.load(SAMPLES / "k3_masking.keras"), [x], [theirs]),
                 "forget_bias=1.0 added at run time")


def test_forget_bias_on_a_real_keras_3_10_model() -> None:
    """Issue 24's port: TF1's forget_bias on a real Keras 3.10 model (Aditya1026-05's crypto price predictor:
    LSTM(128) → LSTM(64) → Dense(25) → Dense(1), 100 steps), once said to be "a recurrence problem". Named first,
    on its first LSTM alone and on the whole model with the constant in both LSTMs."""
    path = REALWORLD / "crypto_stacked_keras310.keras"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        w = [{r: f[f"layers/{n}/cell/vars/{k}"][()] for k, r in enumerate(("kernel", "recurrent_kernel", "bias"))}
             for n in ("lstm", "lstm_1")]
        dense = [(f[f"layers/{n}/vars/0"][()], f[f"layers/{n}/vars/1"][()]) for n in ("dense", "dense_1")]
    with np.load(f"{path}.io.npz") as data:
        x, y = data["x"], data["y"]

    def port(forget_bias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # (first LSTM's outputs, the model's)
        first = lstm(x, w[0], forget_bias=forget_bias)[0]
        out = lstm(first, w[1], forget_bias=forget_bias)[1]
        for kernel, bias in dense:  # both linear
            out = out @ kernel + bias
        return first.astype(np.float32), out.astype(np.float32)

    np.testing.assert_allclose(port()[1], y, atol=1e-5)
    ckpt = lstm_inspect.load(path)
    first, whole = port(forget_bias=1.0)
    _named_first(diagnose(ckpt, [x], [first], layer="lstm_2"), "forget_bias=1.0 added at run time")
    _named_first(diagnose(ckpt, [x], [whole]), "forget_bias=1.0 added at run time")


# ---------------------------------------------------------------- the cell state clipped


def _saturating_input(steps: int) -> np.ndarray:
    """A large input held for `steps` steps, then its opposite as long: the gates saturate, some |c| grows by about
    1 a step past 3 and 10, then falls back to where tanh(c) is not 1 and a clipped c shows in h."""
    v = np.random.default_rng(26).normal(size=(3, 1, 3)) * 4
    return np.concatenate([np.repeat(v, steps, axis=1), np.repeat(-v, steps, axis=1)], axis=1).astype(np.float32)


@pytest.mark.parametrize("clip", [10.0, 3.0])
def test_cell_state_clipped(clip: float) -> None:
    """32 steps: Keras's own |c| passes both clips; the one the port uses is named. The error starts late, and only
    where a clipped c falls back to where tanh(c) is not 1: at 10 samples 1-2 stay exact, so the clip is one of the
    mistakes that can leave some samples exact (those that act on every sample alike are ruled out)."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SINGLE}.keras")
    w = keras_refs(SAMPLES / f"{SINGLE}.ref.npz")["lstm"]
    x = _saturating_input(16)
    assert _max_abs_c(x, w) > 10  # Keras's own c, unclipped
    theirs = lstm(x, w, clip=clip)[0].astype(np.float32)
    result = diagnose(ckpt, [x], [theirs], layer="lstm")
    _named_first(result, f"the cell state clipped to ±{clip:g}")
    assert result.excluded == 0
    ev = result.evidence
    assert ev is not None and ev.exact == ((1, 2) if clip == 10 else ())
    assert min(ev.from_step.values()) >= (16 if clip == 10 else 3)


# ---------------------------------------------------------------- states handed over as (c, h)


def _seq2seq(x0: np.ndarray, x1: np.ndarray, swapped: bool = False) -> np.ndarray:
    """k3_seq2seq: encoder LSTM(6) → its final (h, c) start the decoder LSTM(6) → Dense(3, softmax)."""
    w = keras_refs(SAMPLES / "k3_seq2seq.ref.npz")
    _, h, c = lstm(x0, w["encoder"])
    h0, c0 = (c, h) if swapped else (h, c)  # TF1's LSTMStateTuple is (c, h)
    logits = lstm(x1, w["decoder"], h0=h0, c0=c0)[0] @ _dense("k3_seq2seq")[0] + _dense("k3_seq2seq")[1]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _seq2seq_bidirectional(x0: np.ndarray, x1: np.ndarray, swapped: bool = False) -> np.ndarray:
    """k3_seq2seq_bidirectional: each decoder direction starts from the encoder's direction of the same side."""
    w = keras_refs(SAMPLES / "k3_seq2seq_bidirectional.ref.npz")
    halves = []
    for side, back in (("forward", False), ("backward", True)):
        _, h, c = lstm(x0, w[f"encoder/{side}_lstm_14"], backwards=back)
        h0, c0 = (c, h) if swapped else (h, c)
        halves.append(lstm(x1, w[f"decoder/{side}_lstm_15"], h0=h0, c0=c0, backwards=back)[0])
    kernel, bias = _dense("k3_seq2seq_bidirectional")
    return (np.concatenate(halves, axis=-1) @ kernel + bias).astype(np.float32)


def _seq2seq_embedding(x0: np.ndarray, x1: np.ndarray, swapped: bool = False) -> np.ndarray:
    """k3_seq2seq_embedding: token ids through Embedding(mask_zero) on each side, the encoder's final (h, c) (held
    over its padding) start the decoder, Dense(12, softmax). Keras 3 passes the implicit mask only to a call with
    one tensor argument (keras/src/layers/layer.py): the decoder, called with its initial states, runs unmasked."""
    w = keras_refs(SAMPLES / "k3_seq2seq_embedding.ref.npz")
    with zipfile.ZipFile(SAMPLES / "k3_seq2seq_embedding.keras") as z, \
            h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        source, target = f["layers/embedding/vars/0"][()], f["layers/embedding_1/vars/0"][()]
    _, h, c = lstm(source[x0], w["encoder"], mask=x0 != 0)
    h0, c0 = (c, h) if swapped else (h, c)
    logits = lstm(target[x1], w["decoder"], h0=h0, c0=c0)[0] @ _dense("k3_seq2seq_embedding")[0] \
        + _dense("k3_seq2seq_embedding")[1]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("sample,port", [("k3_seq2seq", _seq2seq), ("k3_seq2seq_bidirectional",
                                                                    _seq2seq_bidirectional),
                                         ("k3_seq2seq_embedding", _seq2seq_embedding)])
def test_states_handed_over_as_c_h(sample: str, port: Any) -> None:
    """The decoder is wrong from step 0 (its start), every sample; named first on the whole model."""
    data = _io(sample)
    x0, x1 = data["x0"], data["x1"]
    np.testing.assert_allclose(port(x0, x1), data["y"], atol=1e-5)
    result = diagnose(lstm_inspect.load(SAMPLES / f"{sample}.keras"), [x0, x1], [port(x0, x1, swapped=True)])
    _named_first(result, "the states handed over as (c, h)")
    assert result.evidence is not None and result.evidence.exact == ()


# ---------------------------------------------------------------- dropout applied at inference

DROPOUT = "k3_dropout"  # LSTM(4, dropout .3, recurrent .2) → GRU(3, .25, .4) → SimpleRNN(2, .5, .1), all sequences
KEEP = {"lstm": (0.7, 0.8), "gru": (0.75, 0.6), "simple_rnn": (0.5, 0.9)}  # 1 − rate: x's, h's


def _dropout_model(x: np.ndarray, scaled: dict[str, tuple[float, float]] | None = None) -> list[np.ndarray]:
    """Each layer's outputs; `scaled`: a layer's (x_keep, h_keep) where the port scales as old-style dropout."""
    w, scaled = keras_refs(SAMPLES / f"{DROPOUT}.ref.npz"), scaled or {}
    a = lstm(x, w["lstm"], **dict(zip(("x_keep", "h_keep"), scaled.get("lstm", (1.0, 1.0)))))[0]
    b = gru(a, w["gru"], *scaled.get("gru", (1.0, 1.0)))
    return [o.astype(np.float32) for o in (a, b, simple_rnn(b, w["simple_rnn"], *scaled.get("simple_rnn", (1, 1))))]


def test_the_dropout_sample_reads_its_rates_and_the_port_is_keras() -> None:
    ckpt = lstm_inspect.load(SAMPLES / f"{DROPOUT}.keras")
    assert {d.name: (d.settings.dropout, d.settings.recurrent_dropout) for d in ckpt.directions} == {
        "lstm": (0.3, 0.2), "gru": (0.25, 0.4), "simple_rnn": (0.5, 0.1)}
    data = _io(DROPOUT)
    np.testing.assert_allclose(_dropout_model(data["x"])[-1], data["y"], atol=1e-5)


DROPOUT_CASES = [((True, False), "dropout applied at inference: x scaled by 1 − dropout"),
                 ((False, True), "recurrent dropout applied at inference: h_(t−1) scaled by 1 − recurrent_dropout"),
                 ((True, True), "dropout and recurrent dropout applied at inference: x scaled by 1 − dropout")]


@pytest.mark.parametrize("scales,words", DROPOUT_CASES, ids=["x", "h", "x and h"])
def test_dropout_applied_at_inference(scales: tuple[bool, bool], words: str) -> None:
    """Each layer alone (fed what the right port feeds it), then the whole model with the mistake in every layer,
    each scaled by its own rates (the port has one dropout routine)."""
    ckpt = lstm_inspect.load(SAMPLES / f"{DROPOUT}.keras")
    x = np.random.default_rng(27).normal(size=(3, 7, 3)).astype(np.float32)
    right = _dropout_model(x)
    keep = {n: (kx if scales[0] else 1.0, kh if scales[1] else 1.0) for n, (kx, kh) in KEEP.items()}
    rates = [", ".join(f"{keep[n][k]:g} in {n}" for n in KEEP) for k in (0, 1) if scales[k]]
    for k, layer in enumerate(KEEP):
        theirs = _dropout_model(x, {layer: keep[layer]})[k]
        result = diagnose(ckpt, [x if k == 0 else right[k - 1]], [theirs], layer=layer)
        _named_first(result, words)
        assert all(f"= {keep[layer][j]:g}" in result.found[0].name for j in (0, 1) if scales[j])
        if not scales[0]:  # h_{-1} = 0: recurrent dropout leaves step 0 exact
            assert result.evidence is not None and set(result.evidence.from_step.values()) == {1}
    whole = diagnose(ckpt, [x], [_dropout_model(x, keep)[-1]])
    _named_first(whole, words)
    assert all(f"({r})" in whole.found[0].name for r in rates), whole.found[0].name


def test_dropout_applied_at_inference_on_a_real_file() -> None:
    """galalen/arabic-sentiment-analysis's LSTM(100, dropout=0.2, recurrent_dropout=0.2, Keras 2.2.2's
    hard_sigmoid) → Dense(3, sigmoid), one step of 200 features. A port scaling x by 0.8 is named first. On one
    step h_{-1} = 0: the recurrent scaling alone computes what the model does (left out as equal to it), and with
    the input's it computes what the input's alone does (exact too, ranked after)."""
    path = REALWORLD / "arabic_sentiment_keras222.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with h5py.File(path) as f:
        w = {r: f[f"model_weights/lstm_3/lstm_3/{r}:0"][()] for r in ("kernel", "recurrent_kernel", "bias")}
        kernel, bias = f["model_weights/dense_3/dense_3/kernel:0"][()], f["model_weights/dense_3/dense_3/bias:0"][()]
    with np.load(f"{path}.io.npz") as data:
        x, y = data["x"], data["y"]

    def port(x_keep: float = 1.0) -> np.ndarray:  # one step from zeros: c = i·tanh(z_c), h = o·tanh(c)
        z = (x_keep * x[:, 0].astype(np.float64)) @ w["kernel"] + w["bias"]
        i, _, g, o = (np.clip(0.2 * b + 0.5, 0, 1) if k != 2 else np.tanh(b) for k, b in enumerate(np.split(z, 4, -1)))
        return _sigmoid((o * np.tanh(i * g)) @ kernel + bias).astype(np.float32)

    np.testing.assert_allclose(port(), y, atol=1e-5)
    result = diagnose(lstm_inspect.load(path), [x], [port(x_keep=0.8)])
    assert result.found[0].exact
    assert result.found[0].name == "dropout applied at inference: x scaled by 1 − dropout = 0.8"
    assert [h.name for h in result.ranked if h.exact][1:] == [
        "dropout and recurrent dropout applied at inference: x scaled by 1 − dropout = 0.8, h_(t−1) by 1 − "
        "recurrent_dropout = 0.8"]
    assert result.excluded >= 1 and not any(h.name.startswith("recurrent dropout") for h in result.ranked)
