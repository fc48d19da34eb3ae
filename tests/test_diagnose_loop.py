"""`diagnose` on ports whose step is right and whose loop is wrong (issue 24; research #1, #4, #6, #8, #15).

Every THEIRS here is computed by the NumPy LSTM and GRU written in this file from Keras's own weights (the
`.ref.npz` beside each sample; Dense heads read from the files with h5py), checked first against Keras's own
outputs (`.io.npz`), never by the engine under test. Each port then carries one mistake of the loop around its
step: which state it emits, which axis it runs over as time, where a go_backwards layer's outputs go, how its
first step starts, what state a call starts from, in which order the model's outputs come back.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import diagnose, mistakes

from conftest import REALWORLD, SAMPLES, keras_refs


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm(x: np.ndarray, w: dict[str, np.ndarray], *, go_backwards: bool = False, emit_c: bool = False,
         state: tuple[np.ndarray, np.ndarray] | None = None, mask: np.ndarray | None = None
         ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A Keras LSTM over (batch, steps, features), blocks i, f, c, o: z = x·W + h·U + b; c = σ(f)·c + σ(i)·tanh(g);
    h = σ(o)·tanh(c); at a masked step the states are kept and the output repeated. Returns (the emitted sequence
    in processing order, (h, c)). `emit_c`: the port emits c_t."""
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]
    h, c = state if state is not None else (np.zeros((x.shape[0], n)), np.zeros((x.shape[0], n)))
    out, y = [], np.zeros((x.shape[0], n))
    for t in (range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])):
        z = x[:, t] @ k + h @ r + b
        i, f, g, o = (z[:, j * n:(j + 1) * n] for j in range(4))
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h_new = _sigmoid(o) * np.tanh(c_new)
        keep = np.ones((x.shape[0], 1), bool) if mask is None else mask[:, t:t + 1]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        y = np.where(keep, c if emit_c else h, y)
        out.append(y)
    return np.stack(out, axis=1), (h, c)


def gru(x: np.ndarray, w: dict[str, np.ndarray], *, h: np.ndarray | None = None, bare_first_step: bool = False,
        mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A Keras GRU, reset_after=True, blocks z, r, h, bias rows [input; recurrent]: z, r = σ(x·W + b_x + h·U + b_h);
    h̃ = tanh(x·W_h + b_x,h + r·(h·U_h + b_h,h)); h = z·h + (1 − z)·h̃; at a masked step h is kept (and repeated).
    `bare_first_step`: step 0 run without the recurrent part, its bias b_h included (the port's "no hidden state
    yet" branch: ml-explore/mlx#3249)."""
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]
    h = np.zeros((x.shape[0], n)) if h is None else h
    out = []
    for t in range(x.shape[1]):
        xp = x[:, t] @ k + b[0]
        hp = np.zeros_like(xp) if bare_first_step and t == 0 else h @ r + b[1]
        z, rr = _sigmoid(xp[:, :n] + hp[:, :n]), _sigmoid(xp[:, n:2 * n] + hp[:, n:2 * n])
        cand = np.tanh(xp[:, 2 * n:] + rr * hp[:, 2 * n:])
        h = np.where(True if mask is None else mask[:, t:t + 1], z * h + (1 - z) * cand, h)
        out.append(h)
    return np.stack(out, axis=1), h


def _dense(sample: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """A Dense layer's kernel and bias read with h5py (Keras 3 .keras archive or a tf_keras .h5)."""
    if sample.startswith("k3_"):  # inside the archive, groups are named by class (dense, dense_1, ...), not by layer
        with zipfile.ZipFile(SAMPLES / f"{sample}.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
            return f[f"layers/{layer}/vars/0"][()], f[f"layers/{layer}/vars/1"][()]
    with h5py.File(SAMPLES / f"{sample}.h5") as f:
        g = f[f"model_weights/{layer}/{layer}"]
        return g["kernel:0"][()], g["bias:0"][()]


def _load(sample: str) -> Any:
    return lstm_inspect.load(SAMPLES / (f"{sample}.keras" if sample.startswith("k3_") else f"{sample}.h5"))


def _io(sample: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / f"{sample}.io.npz") as data:
        return {k: data[k] for k in data.files}


def _w(sample: str) -> dict[str, dict[str, np.ndarray]]:
    return keras_refs(SAMPLES / f"{sample}.ref.npz")


def _x(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def _f32(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, np.float32) for a in arrays]


def _named_first_and_alone(result: Any, words: str) -> None:
    """The mistake is named first, reproduces THEIRS within the tolerance, and no other candidate does."""
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    assert result.found[0].exact and result.found[0].name.startswith(words), [h.to_dict() for h in result.ranked[:3]]
    assert [h.name for h in result.ranked if h.exact] == [result.found[0].name], [h.to_dict() for h in
                                                                                 result.ranked[:3]]


# ---------------------------------------------------------------- the ports are Keras


def test_the_ports_are_keras() -> None:
    """Each port, without a mistake, gives what Keras returned for the samples' stored inputs."""
    d = _io("k3_single")
    np.testing.assert_allclose(lstm(d["x"], _w("k3_single")["lstm"])[0][:, -1], d["y"], atol=1e-5)
    d = _io("k3_return_sequences")
    np.testing.assert_allclose(lstm(d["x"], _w("k3_return_sequences")["lstm_1"])[0], d["y"], atol=1e-5)
    for sample, name in (("k3_go_backwards", "lstm_7"), ("tfk_go_backwards", "lstm_5")):
        d = _io(sample)
        np.testing.assert_allclose(lstm(d["x"], _w(sample)[name], go_backwards=True)[0], d["y"], atol=1e-5)
    d = _io("tfk_cudnn")
    kernel, bias = _dense("tfk_cudnn", "dense_4")
    np.testing.assert_allclose(lstm(d["x"], _w("tfk_cudnn")["cu_dnnlstm"])[0] @ kernel + bias, d["y"], atol=1e-5)
    for sample in ("k3_functional_state", "tfk_functional_state"):
        d = _io(sample)
        y, (h, c) = lstm(d["x"], _w(sample)["encoder"])
        kernel, bias = _dense(sample, "dense" if sample.startswith("k3_") else "head")
        for mine, keras in zip((y[:, -1] @ kernel + bias, h, c), (d["y0"], d["y1"], d["y2"])):
            np.testing.assert_allclose(mine, keras, atol=1e-5)
    for sample, name, head in (("k3_gru", "gru_1", "dense"), ("tfk_gru", "gru", "dense_8")):
        d = _io(sample)
        kernel, bias = _dense(sample, head)
        np.testing.assert_allclose(gru(d["x"], _w(sample)[name])[0] @ kernel + bias, d["y"], atol=1e-5)
    d = _io("k3_stacked")
    np.testing.assert_allclose(_stacked(d["x"]), d["y"], atol=1e-5)
    d = _io("k3_bidir_concat")
    np.testing.assert_allclose(_bidirectional(d["x"]), d["y"], atol=1e-5)


# ---------------------------------------------------------------- 1. the cell state emitted instead of h


def test_c_emitted_instead_of_h_in_a_layer_and_a_model() -> None:
    """An LSTM port that returns c_t as its output (research #8): k3_single's layer alone (the whole sequence),
    then the whole model (its last step), then k3_functional_state, whose head reads c_T while h and c are right."""
    x = _x((3, 7, 3), seed=1)
    w = _w("k3_single")["lstm"]
    seq = lstm(x, w, emit_c=True)[0]
    ckpt = _load("k3_single")
    _named_first_and_alone(diagnose(ckpt, _f32(x), _f32(seq), layer="lstm"), "the cell state c_t emitted")
    _named_first_and_alone(diagnose(ckpt, _f32(x), _f32(seq[:, -1])), "the cell state c_t emitted")

    y, (h, c) = lstm(x, _w("k3_functional_state")["encoder"], emit_c=True)
    kernel, bias = _dense("k3_functional_state", "dense")
    result = diagnose(_load("k3_functional_state"), _f32(x), _f32(y[:, -1] @ kernel + bias, h, c))
    _named_first_and_alone(result, "the cell state c_t emitted")


def test_c_is_not_offered_for_a_gru() -> None:
    ckpt = _load("k3_gru")
    assert not any("c_t emitted" in m.name for m in mistakes(ckpt, list(ckpt.directions), False))


# ---------------------------------------------------------------- 2. the model's outputs in another order


@pytest.mark.parametrize("sample", ["k3_functional_state", "tfk_functional_state"])
def test_h_and_c_returned_swapped(sample: str) -> None:
    """return_state's [output, h, c] returned as [output, c, h] (keras PR #11726 documented the order): found
    without a rerun, named by what the outputs are."""
    x = _x((3, 7, 3), seed=2)
    y, (h, c) = lstm(x, _w(sample)["encoder"])
    kernel, bias = _dense(sample, "dense" if sample.startswith("k3_") else "head")
    result = diagnose(_load(sample), _f32(x), _f32(y[:, -1] @ kernel + bias, c, h))
    _named_first_and_alone(result, "outputs 1 and 2 swapped (encoder's h and c)")
    assert "head's output, encoder's h, encoder's c" in result.found[0].fix


MERGE_NONE = {"k3_merge_none": "bilstm/{}_lstm_21", "tfk_merge_none": "bilstm/{}_lstm_17"}


def _halves_and_states(sample: str, x: np.ndarray) -> list[np.ndarray]:
    """Bidirectional(LSTM(3, return_sequences=True, return_state=True), merge_mode=None) as Keras returns it:
    [forward sequence, backward sequence (in input order), forward h, forward c, backward h, backward c]."""
    w = _w(sample)
    fwd, (hf, cf) = lstm(x, w[MERGE_NONE[sample].format("forward")])
    bwd, (hb, cb) = lstm(x, w[MERGE_NONE[sample].format("backward")], go_backwards=True)
    return [fwd, bwd[:, ::-1], hf, cf, hb, cb]


@pytest.mark.parametrize("sample", sorted(MERGE_NONE))
def test_bidirectional_states_in_pytorchs_layout(sample: str) -> None:
    """A port returning a Bidirectional's states as PyTorch's h_n, c_n ([fwd_h, bwd_h], [fwd_c, bwd_c]) where Keras
    returns fwd_h, fwd_c, bwd_h, bwd_c (research #8): outputs 3 and 4 swapped, named so. The other orders of the
    two same-shaped groups (1 of the sequences, 23 of the states) are compared without a rerun."""
    d = _io(sample)
    for mine, keras in zip(_halves_and_states(sample, d["x"]), [d[f"y{k}"] for k in range(6)]):
        np.testing.assert_allclose(mine, keras, atol=1e-5)  # the port is Keras
    x = _x((3, 6, 3), seed=9)
    seq_f, seq_b, hf, cf, hb, cb = _halves_and_states(sample, x)
    result = diagnose(_load(sample), _f32(x), _f32(seq_f, seq_b, hf, hb, cf, cb))
    _named_first_and_alone(result, "outputs 3 and 4 swapped (bilstm's forward c and backward h): PyTorch's h_n")


# ---------------------------------------------------------------- 3. batch and time axes confused


def _bidirectional(x: np.ndarray, time_axis: int = 1) -> np.ndarray:
    """k3_bidir_concat (Bidirectional(LSTM(5, return_sequences=True)) → Dense(2)) as a PyTorch-style port: the
    backward direction's outputs put back in input order, both concatenated. `time_axis=0`: nn.LSTM without
    batch_first=True fed (batch, steps, features): axis 0 is run as time, the result read back batch-major."""
    w = _w("k3_bidir_concat")
    xt = np.swapaxes(x, 0, 1) if time_axis == 0 else x
    fwd = lstm(xt, w["bidirectional/forward_lstm_5"])[0]
    bwd = lstm(xt, w["bidirectional/backward_lstm_5"], go_backwards=True)[0][:, ::-1]
    y = np.concatenate([fwd, bwd], axis=-1)
    y = np.swapaxes(y, 0, 1) if time_axis == 0 else y
    kernel, bias = _dense("k3_bidir_concat", "dense")
    return y @ kernel + bias


def test_batch_and_time_confused_in_an_lstm_a_gru_and_a_bidirectional() -> None:
    """pytorch#1538, sonos/tract PR #1014: a port runs (batch, steps, ·) as (steps, batch, ·) and swaps back."""
    x = _x((3, 7, 3), seed=3)
    seq = np.swapaxes(lstm(np.swapaxes(x, 0, 1), _w("k3_return_sequences")["lstm_1"])[0], 0, 1)
    _named_first_and_alone(diagnose(_load("k3_return_sequences"), _f32(x), _f32(seq), layer="lstm_1"),
                           "batch and time axes confused")

    kernel, bias = _dense("k3_gru", "dense")
    seq = np.swapaxes(gru(np.swapaxes(x, 0, 1), _w("k3_gru")["gru_1"])[0], 0, 1)
    _named_first_and_alone(diagnose(_load("k3_gru"), _f32(x), _f32(seq @ kernel + bias)),
                           "batch and time axes confused")

    _named_first_and_alone(diagnose(_load("k3_bidir_concat"), _f32(x), _f32(_bidirectional(x, time_axis=0))),
                           "batch and time axes confused")


def test_batch_and_time_left_out_where_the_shapes_differ() -> None:
    """A port of k3_single's last step over the wrong axis returns (steps, units), not (batch, units): no such
    THEIRS can be given, so the candidate is not offered (the whole model; the layer alone); nor for the last step
    of a layer that returns sequences (k3_return_sequences, batch ≠ steps); nor where the layer returns states
    (k3_functional_state)."""
    x = _x((3, 7, 3), seed=4)
    last = lstm(x, _w("k3_single")["lstm"], emit_c=True)[0][:, -1]
    ckpt = _load("k3_single")
    for result in (diagnose(ckpt, _f32(x), _f32(last)), diagnose(ckpt, _f32(x), _f32(last), layer="lstm")):
        assert result.found and not any("axes" in h.name for h in result.ranked)
    last = lstm(x, _w("k3_return_sequences")["lstm_1"], emit_c=True)[0][:, -1]
    result = diagnose(_load("k3_return_sequences"), _f32(x), _f32(last), layer="lstm_1")
    assert result.found and not any("axes" in h.name for h in result.ranked)
    ckpt = _load("k3_functional_state")
    assert not any("axes" in m.name for m in mistakes(ckpt, list(ckpt.directions), False))


# ---------------------------------------------------------------- 4. a go_backwards layer's output flipped back


@pytest.mark.parametrize("sample,name", [("k3_go_backwards", "lstm_7"), ("tfk_go_backwards", "lstm_5")])
def test_go_backwards_output_flipped_to_input_order(sample: str, name: str) -> None:
    """ONNX direction='reverse' emits in input order; Keras's standalone go_backwards layer in processing order
    (onnx#2881, onnxruntime#4187): a port that flips it back."""
    x = _x((3, 7, 3), seed=5)
    theirs = lstm(x, _w(sample)[name], go_backwards=True)[0][:, ::-1]
    result = diagnose(_load(sample), _f32(x), _f32(theirs))
    _named_first_and_alone(result, "the go_backwards layer's output flipped back to input order")


# ---------------------------------------------------------------- 5. step 0 special-cased


@pytest.mark.parametrize("sample,name,head", [("k3_gru", "gru_1", "dense"), ("tfk_gru", "gru", "dense_8")])
def test_first_step_without_the_recurrent_bias_in_a_gru(sample: str, name: str, head: str) -> None:
    """ml-explore/mlx#3249 and PR #3252: the first step run without h·U + b_h ("hidden=None"); a reset_after GRU's
    recurrent bias row acts at step 0 in Keras. The error sits at step 0 and fades."""
    x = _x((3, 7, 3), seed=6)
    kernel, bias = _dense(sample, head)
    theirs = gru(x, _w(sample)[name], bare_first_step=True)[0] @ kernel + bias
    result = diagnose(_load(sample), _f32(x), _f32(theirs))
    _named_first_and_alone(result, "step 0 special-cased")
    assert result.evidence is not None and result.evidence.exact == ()


def _embedding_gru_lstm(ids: np.ndarray, bare_first_step: bool = False) -> np.ndarray:
    """k3_embedding_gru_lstm: Embedding(20, 6, mask_zero=True) → GRU(5, return_sequences=True) → LSTM(4) → Dense(3),
    both recurrent layers under the mask of the zero ids."""
    sample = "k3_embedding_gru_lstm"
    with zipfile.ZipFile(SAMPLES / f"{sample}.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        table = f["layers/embedding/vars/0"][()]
    w, mask = _w(sample), ids != 0
    seq, _ = gru(table[ids], w["gru_7"], mask=mask, bare_first_step=bare_first_step)
    kernel, bias = _dense(sample, "dense")
    return lstm(seq, w["lstm_19"], mask=mask)[0][:, -1] @ kernel + bias


def test_first_step_special_cased_under_pre_padding_keeps_those_rows_exact() -> None:
    """Pre-padded rows (Keras's pad_sequences default) whose step 0 is masked discard it in Keras and in the port
    alike, so they are exact: the evidence rules out the mistakes acting on every sample, not this one."""
    d = _io("k3_embedding_gru_lstm")
    np.testing.assert_allclose(_embedding_gru_lstm(d["x"]), d["y"], atol=1e-5)  # the port is Keras
    ids = np.random.default_rng(10).integers(1, 20, size=(4, 9))
    ids[1, :2] = ids[3, :4] = 0
    result = diagnose(_load("k3_embedding_gru_lstm"), [ids], _f32(_embedding_gru_lstm(ids, bare_first_step=True)))
    _named_first_and_alone(result, "step 0 special-cased")
    assert result.evidence is not None and result.evidence.exact == (1, 3) and result.pruned > 0


def test_first_step_without_the_recurrent_bias_in_a_cudnn_lstm() -> None:
    """A CuDNN-style LSTM keeps two biases; a port that adds only the input half at step 0 (its recurrent branch
    skipped there) and both after."""
    ckpt = _load("tfk_cudnn")
    with h5py.File(SAMPLES / "tfk_cudnn.h5") as f:
        raw = f[next(a.key for a in ckpt.directions[0].arrays if a.shape == (40,))][()]
    w = dict(_w("tfk_cudnn")["cu_dnnlstm"])
    np.testing.assert_allclose(w["bias"], raw[:20] + raw[20:], atol=1e-6)  # Keras's converted bias: both halves
    x = _x((2, 6, 3), seed=7)
    first, state = lstm(x[:, :1], {**w, "bias": raw[:20]})
    rest, _ = lstm(x[:, 1:], w, state=state)
    kernel, bias = _dense("tfk_cudnn", "dense_4")
    result = diagnose(ckpt, _f32(x), _f32(np.concatenate([first, rest], axis=1) @ kernel + bias))
    _named_first_and_alone(result, "step 0 special-cased")


def test_first_step_is_not_offered_for_one_bias() -> None:
    """A plain LSTM (one bias) at a zero state: the recurrent part is zero at step 0, the port computes the model."""
    for sample in ("k3_single", "k3_stacked", "k3_bidir_concat"):
        ckpt = _load(sample)
        assert not any("step 0 special-cased" in m.name for m in mistakes(ckpt, list(ckpt.directions), False)), sample


# ---------------------------------------------------------------- 6. state kept from a previous call


class StatefulPort:
    """An interpreter that keeps each recurrent layer's states between calls unless they are reset (TFLite's
    variable tensors: tensorflow#26786, #47813, #38312; tflite-micro PR #1389 added the reset)."""

    def __init__(self, layers: list[Any], head: tuple[np.ndarray, np.ndarray]) -> None:
        self.layers, self.head = layers, head
        self.states: dict[int, Any] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x
        for k, layer in enumerate(self.layers):
            y, self.states[k] = layer(y, self.states.get(k))
        return y @ self.head[0] + self.head[1]


def _stacked(x: np.ndarray, calls: int = 1) -> np.ndarray:
    """k3_stacked, LSTM(8) → LSTM(6) → LSTM(4) → Dense(2), as a stateful port called `calls` times on x."""
    w = _w("k3_stacked")

    def layer(name: str, last: bool) -> Any:
        def run(y: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
            seq, state = lstm(y, w[name], state=state)
            return (seq[:, -1] if last else seq), state
        return run

    port = StatefulPort([layer("lstm_2", False), layer("lstm_3", False), layer("lstm_4", True)],
                        _dense("k3_stacked", "dense"))
    for _ in range(calls):
        y = port(x)
    return y


def test_state_kept_from_a_previous_call() -> None:
    """The port called twice on the same input, never reset: the second call's outputs. Each layer of k3_stacked
    starts from its own final states of the first call (fed its own first-call input), and k3_gru's GRU likewise;
    every sample differs from step 0."""
    x = _x((3, 7, 3), seed=8)
    result = diagnose(_load("k3_stacked"), _f32(x), _f32(_stacked(x, calls=2)))
    _named_first_and_alone(result, "state kept from a previous call")

    kernel, bias = _dense("k3_gru", "dense")
    port = StatefulPort([lambda y, h: gru(y, _w("k3_gru")["gru_1"], h=h)], (kernel, bias))
    port(x)
    result = diagnose(_load("k3_gru"), _f32(x), _f32(port(x)))
    _named_first_and_alone(result, "state kept from a previous call")
    assert result.evidence is not None and result.evidence.exact == ()
    assert set(result.evidence.from_step.values()) == {0}

    seq = lstm(x, _w("k3_single")["lstm"], state=lstm(x, _w("k3_single")["lstm"])[1])[0]  # one layer alone
    _named_first_and_alone(diagnose(_load("k3_single"), _f32(x), _f32(seq), layer="lstm"),
                           "state kept from a previous call")

    halves = []  # a Bidirectional alone: each direction from its own final states of the first call
    for half, back in (("forward", False), ("backward", True)):
        w = _w("k3_bidir_concat")[f"bidirectional/{half}_lstm_5"]
        y = lstm(x, w, go_backwards=back, state=lstm(x, w, go_backwards=back)[1])[0]
        halves.append(y[:, ::-1] if back else y)
    result = diagnose(_load("k3_bidir_concat"), _f32(x), _f32(np.concatenate(halves, axis=-1)), layer="bidirectional")
    _named_first_and_alone(result, "state kept from a previous call")


# ---------------------------------------------------------------- 7. stacked layers wired wrong


STOCK = REALWORLD / "stock_stacked3_keras210.h5"  # LSTM(50) → LSTM(50) → LSTM(50) → Dense(1), a real file


def _stock(x: np.ndarray, wired_wrong: bool = False) -> np.ndarray:
    """The real stacked model, its arrays read with h5py; `wired_wrong`: layer k starts from layer k−1's final
    states (research #14: a stack's h_n read one layer off)."""
    if not STOCK.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with h5py.File(STOCK) as f:
        g = f["model_weights"]
        cells = [{role: g[f"{name}/{name}/{cell}/{role}:0"][()] for role in ("kernel", "recurrent_kernel", "bias")}
                 for name, cell in (("lstm", "lstm_cell"), ("lstm_1", "lstm_cell_1"), ("lstm_2", "lstm_cell_2"))]
        kernel, bias = g["dense/dense/kernel:0"][()], g["dense/dense/bias:0"][()]
    y, state = x, None
    for w in cells:
        y, final = lstm(y, w, state=state if wired_wrong else None)
        state = final
    return y[:, -1] @ kernel + bias


def test_stacked_layers_started_from_the_layer_before() -> None:
    """Each LSTM of the real stack started from the final (h, c) of the one before: named first and alone; not
    offered where no two stacked layers have the same state shapes (k3_stacked's 8, 6, 4 units)."""
    with np.load(f"{STOCK}.io.npz") as d:
        x, y = d["x"], d["y"]
    np.testing.assert_allclose(_stock(x), y, atol=1e-5)  # the port is Keras
    xs = _x((2, 6, x.shape[2]), seed=11)
    result = diagnose(lstm_inspect.load(STOCK), _f32(xs), _f32(_stock(xs, wired_wrong=True)))
    _named_first_and_alone(result, "stacked layers wired wrong")
    ckpt = _load("k3_stacked")
    assert not any("stacked" in m.name for m in mistakes(ckpt, list(ckpt.directions), False))
