"""`diagnose` on a Bidirectional's and a mask's porting mistakes (research24 §7, §9, §10, §11).

Every THEIRS here is computed by a NumPy port written in this file (Keras's RNN loop, LSTM and GRU steps, the
Bidirectional merge), from Keras's own arrays (the `.ref.npz` beside each sample, or the real file read with
h5py), checked first against Keras's own outputs (`.io.npz`); then one mistake is planted and `diagnose` must
name it first and exactly:
- one direction only (NVIDIA/TensorRT#1649, onnx/onnx-tensorflow#409, onnxruntime#4187), and, where THEIRS is a
  Bidirectional's concatenated output with one half exact, only the other direction's mistakes are tried;
- the backward direction run without the mask (issue 24's third port);
- ONNX's Y [T, 2, B, H] or h_n [2, B, H] reshaped as it lies (pytorch PR #11368, discuss.pytorch.org t/119521);
- the merged sequence's last step taken as the final output (discuss.pytorch.org t/10333);
- the mask applied to the outputs only, or to the states only (research24 §9a, §9b).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import diagnose, mistakes

from conftest import REALWORLD, SAMPLES, keras_refs

SENTIMENT = REALWORLD / "sentiment_embed_maskzero_bilstm_tfkeras240.h5"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step(w: dict[str, np.ndarray], gates: str = "ifco") -> Any:
    """Keras's LSTM step: z = x·W + h·U + b in blocks i, f, c, o; `gates` the order a port reads them in."""
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]

    def step(x: np.ndarray, states: list[np.ndarray]) -> list[np.ndarray]:
        h, c = states
        z = x @ k + h @ r + b
        g = {name: z[:, j * n:(j + 1) * n] for j, name in enumerate(gates)}
        c = _sigmoid(g["f"]) * c + _sigmoid(g["i"]) * np.tanh(g["c"])
        return [_sigmoid(g["o"]) * np.tanh(c), c]
    return step, 2, n


def gru_step(w: dict[str, np.ndarray], gates: str = "zrh", inverted: bool = False) -> Any:
    """Keras's GRU step (reset_after=True, bias rows [input; recurrent]): z, r = σ(x·W + b_x + h·U + b_h),
    h̃ = tanh(x·W_h + b_xh + r ⊙ (h·U_h + b_hh)), h = z ⊙ h + (1 − z) ⊙ h̃; `inverted`: z the other way round."""
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]

    def step(x: np.ndarray, states: list[np.ndarray]) -> list[np.ndarray]:
        (h,) = states
        zx, zh = x @ k + b[0], h @ r + b[1]
        blk = {name: j for j, name in enumerate(gates)}
        part = {g: (zx[:, blk[g] * n:(blk[g] + 1) * n], zh[:, blk[g] * n:(blk[g] + 1) * n]) for g in "zrh"}
        z = _sigmoid(part["z"][0] + part["z"][1])
        rr = _sigmoid(part["r"][0] + part["r"][1])
        cand = np.tanh(part["h"][0] + rr * part["h"][1])
        return [(1 - z) * h + z * cand if inverted else z * h + (1 - z) * cand]
    return step, 1, n


def simple_rnn_step(w: dict[str, np.ndarray]) -> Any:
    """Keras's SimpleRNN step: h = tanh(x·W + h·U + b)."""
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    return (lambda x, states: [np.tanh(x @ k + states[0] @ r + b)]), 1, r.shape[0]


def rnn(cell: Any, x: np.ndarray, mask: np.ndarray | None = None, backwards: bool = False, rule: str = "keras",
        zero_output: bool = False) -> np.ndarray:
    """Keras's RNN loop, the outputs in processing order. At a masked step Keras keeps the states and outputs 0
    (`zero_output`) or the previous output. `rule`: "keras"; "none" (the mask ignored); "outputs" (the states run
    through masked steps, only the outputs are masked); "states" (the states are held, the fresh h is output)."""
    step, n_states, n = cell
    x = np.asarray(x, np.float64)[:, ::-1] if backwards else np.asarray(x, np.float64)
    valid = np.ones(x.shape[:2], bool) if mask is None or rule == "none" else (mask[:, ::-1] if backwards else mask)
    states = [np.zeros((x.shape[0], n)) for _ in range(n_states)]
    prev, out = np.zeros((x.shape[0], n)), np.zeros((*x.shape[:2], n))
    for t in range(x.shape[1]):
        new = step(x[:, t], states)
        m = valid[:, t, None]
        states = new if rule == "outputs" else [np.where(m, a, s) for a, s in zip(new, states)]
        out[:, t] = prev = new[0] if rule == "states" else np.where(m, new[0], 0.0 if zero_output else prev)
    return out


def bidirectional(x: np.ndarray, fwd: Any, bwd: Any, merge: str, sequences: bool, mask: np.ndarray | None = None,
                  rules: tuple[str, str] = ("keras", "keras"), interleave: bool = False, first: bool = False
                  ) -> np.ndarray:
    """Keras's Bidirectional: the backward direction runs over time reversed and is flipped back; with
    return_sequences both output 0 at masked steps. `interleave`: ONNX's Y (T, 2, B, H) / h_n (2, B, H) reshaped
    to (T, B, 2H) / (B, 2H) as it lies; `first`: the merged sequence's last step taken as the final output."""
    y_f = rnn(fwd, x, mask, False, rules[0], zero_output=sequences)
    y_b = rnn(bwd, x, mask, True, rules[1], zero_output=sequences)
    a, b = (y_f, y_b[:, ::-1]) if sequences else (y_f[:, -1], y_b[:, 0] if first else y_b[:, -1])
    if interleave:
        both = np.stack([a, b])
        if sequences:
            return both.transpose(2, 0, 1, 3).reshape(x.shape[1], x.shape[0], -1).transpose(1, 0, 2)
        return both.reshape(x.shape[0], -1)
    return np.concatenate([a, b], axis=-1) if merge == "concat" else a + b


def _refs(sample: str) -> dict[str, dict[str, np.ndarray]]:
    return keras_refs(SAMPLES / f"{sample}.ref.npz")


def _io(sample: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / f"{sample}.io.npz") as data:
        return {k: data[k] for k in data.files}


def _keras3_vars(sample: str, layer: str) -> list[np.ndarray]:
    """A layer's arrays in a .keras archive, read with h5py (not lstm-inspect)."""
    import h5py

    with zipfile.ZipFile(SAMPLES / f"{sample}.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        group = f[f"layers/{layer}/vars"]
        return [group[str(k)][()] for k in range(len(group))]


def _h5_arrays(path: Path, group: str, names: tuple[str, ...]) -> list[np.ndarray]:
    import h5py

    with h5py.File(path) as f:
        return [f[f"model_weights/{group}/{n}:0"][()] for n in names]


def _x(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- the models, as ports compute them

CONCAT = "k3_bidir_concat"  # Bidirectional(LSTM(5, return_sequences)) concat → Dense(2)


def concat_model(x: np.ndarray, **kw: Any) -> np.ndarray:
    w = _refs(CONCAT)
    fwd = kw.pop("fwd", {})
    bwd = kw.pop("bwd", {})
    y = bidirectional(x, lstm_step(w["bidirectional/forward_lstm_5"], **fwd),
                      lstm_step(w["bidirectional/backward_lstm_5"], **bwd), "concat", True, **kw)
    kernel, bias = _keras3_vars(CONCAT, "dense")
    return (y @ kernel + bias).astype(np.float32)


GRUS = "k3_bidir_gru"  # Bidirectional(GRU(4, return_sequences), sum) → Bidirectional(GRU(3), concat)


def gru_model(x: np.ndarray, second: dict[str, Any] | None = None, **kw: Any) -> np.ndarray:
    w = _refs(GRUS)
    y = bidirectional(x, gru_step(w["bidirectional_2/forward_gru_5"]), gru_step(w["bidirectional_2/backward_gru_5"]),
                      "sum", True)
    second = dict(second or {})
    fwd, bwd = gru_step(w["bidirectional_3/forward_gru_6"], **second.pop("fwd", {})), gru_step(
        w["bidirectional_3/backward_gru_6"], **second.pop("bwd", {}))
    return bidirectional(y, fwd, bwd, "concat", False, **second, **kw).astype(np.float32)


SUM = "k3_bidir_sum"  # Bidirectional(LSTM(4), sum), the last step


def sum_model(x: np.ndarray, **kw: Any) -> np.ndarray:
    w = _refs(SUM)
    return bidirectional(x, lstm_step(w["bidirectional_1/forward_lstm_6"]), lstm_step(
        w["bidirectional_1/backward_lstm_6"]), "sum", False, **kw).astype(np.float32)


MASKED_BI = "tfk_embedding_mask_zero_bilstm"  # Embedding(mask_zero) → Bidirectional(LSTM(4)) concat → Dense(3)


def masked_bi_model(ids: np.ndarray, path: Path | None = None, **kw: Any) -> np.ndarray:
    """tfk_embedding_mask_zero_bilstm (or the real sentiment model at `path`, the same graph with a softmax)."""
    if path is None:
        path, (emb, dense, layer) = SAMPLES / f"{MASKED_BI}.h5", ("embedding/embedding", "dense_1/dense_1",
                                                                    "bidirectional_2/bidirectional_2")
        cells = ("forward_lstm_6/lstm_cell", "backward_lstm_6/lstm_cell")
    else:
        emb, dense, layer = "embedding_62/embedding_62", "dense_62/dense_62", "bidirectional_16/bidirectional_16"
        cells = ("forward_lstm_81/lstm_cell_139", "backward_lstm_81/lstm_cell_140")
    (table,) = _h5_arrays(path, emb, ("embeddings",))
    kernel, bias = _h5_arrays(path, dense, ("kernel", "bias"))
    fwd, bwd = (dict(zip(("kernel", "recurrent_kernel", "bias"), _h5_arrays(
        path, f"{layer}/{c}", ("kernel", "recurrent_kernel", "bias")))) for c in cells)
    y = bidirectional(table[ids], lstm_step(fwd), lstm_step(bwd), "concat", False, mask=ids != 0, **kw) @ kernel + bias
    if path.name == SENTIMENT.name:
        y = np.exp(y - y.max(-1, keepdims=True))
        y = y / y.sum(-1, keepdims=True)
    return y.astype(np.float32)


def masking_model(x: np.ndarray, rule: str = "keras") -> np.ndarray:
    """k3_masking: Masking(0.0) → LSTM(5, return_sequences); a plain LSTM repeats its output at masked steps."""
    return rnn(lstm_step(_refs("k3_masking")["lstm_11"]), x, np.any(x != 0, axis=-1), rule=rule).astype(np.float32)


def embedding_model(ids: np.ndarray, rule: str = "keras") -> np.ndarray:
    """k3_embedding_mask_zero: Embedding(mask_zero) → LSTM(5) (its last output) → Dense(3)."""
    (table,) = _keras3_vars("k3_embedding_mask_zero", "embedding")
    kernel, bias = _keras3_vars("k3_embedding_mask_zero", "dense")
    y = rnn(lstm_step(_refs("k3_embedding_mask_zero")["lstm_10"]), table[ids], ids != 0, rule=rule)[:, -1]
    return (y @ kernel + bias).astype(np.float32)


def _pre_padded(ids: np.ndarray) -> np.ndarray:
    """The same rows padded in front (pad_sequences's default, padding='pre')."""
    return np.stack([np.concatenate([row[row == 0], row[row != 0]]) for row in ids])


def test_the_ports_are_keras() -> None:
    """Each port, with no mistake, gives what Keras returned for the sample's stored input."""
    for sample, model in ((CONCAT, concat_model), (GRUS, gru_model), (SUM, sum_model), (MASKED_BI, masked_bi_model),
                          ("k3_masking", masking_model), ("k3_embedding_mask_zero", embedding_model)):
        data = _io(sample)
        np.testing.assert_allclose(model(data["x"]), data["y"], atol=1e-5, err_msg=sample)
        assert np.any(data["x"] == 0) or "mask" not in sample


def _named_first(result: Any, *words: str, same: tuple[str, ...] = ()) -> None:
    """The first found is exact and has these words; `same`: the words of every other exact candidate (one that
    computes the same as the plant on this input), none by default."""
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    first = result.found[0]
    assert first.exact and all(w in first.name for w in words), [h.to_dict() for h in result.ranked[:3]]
    others = [h.name for h in result.ranked[1:] if h.exact]
    assert len(others) == len(same) and all(any(w in n for n in others) for w in same), others


# ---------------------------------------------------------------- one direction only, and pruning on its half


def test_a_gate_order_in_the_backward_direction_only_prunes_the_forward_half() -> None:
    """k3_bidir_concat's Bidirectional alone, its backward direction read in ONNX's gate order (i, o, f, c): the
    forward half is exact, so only the mistakes of the backward direction alone run (and precision); named first."""
    ckpt = lstm_inspect.load(SAMPLES / f"{CONCAT}.keras")
    x = _x((3, 7, 3), seed=11)
    w = _refs(CONCAT)
    theirs = bidirectional(x, lstm_step(w["bidirectional/forward_lstm_5"]),
                           lstm_step(w["bidirectional/backward_lstm_5"], gates="iofc"), "concat", True)
    result = diagnose(ckpt, [x], [theirs.astype(np.float32)], layer="bidirectional")
    _named_first(result, "ONNX's gate order", "in the backward direction only")
    assert result.evidence is not None and result.evidence.halves_exact == {"forward": True, "backward": False}
    space = mistakes(ckpt, ckpt.directions_of("bidirectional"), False)
    assert result.tried + result.pruned == len(space)
    tried = [h.name for h in result.ranked]
    assert not any("forward direction only" in n or "reversed in time" in n for n in tried)
    assert all("backward" in n or n in ("float16 arithmetic", "bfloat16 weights") for n in tried), tried
    # Ruled out: every mistake that touches the forward direction. On this LSTM, at least 30 cell mistakes (23
    # orders, 2 recurrent activations, bias, recurrent transposed, 3 equations) in both directions and 30 in the
    # forward alone, the forward reversed in time, rows carried, output late, interleaved: 64 or more.
    ruled_out = [m.name for m in space if "backward" not in m.name and m.axis != "precision"]
    assert result.pruned == len(ruled_out) >= 64
    # run but equal to the model on this input: only cell clips that never bind (|c| stays small in 7 steps)
    equal = [m.name for m in space if m.name not in tried and m.name not in ruled_out]
    assert len(equal) == result.excluded and all("clipped" in n for n in equal), equal
    assert sum("in the forward direction only" in n for n in ruled_out) == sum(
        "in the backward direction only" in m.name for m in space) >= 30


def test_gru_mistakes_in_one_direction_of_a_model_with_two_bidirectionals() -> None:
    """k3_bidir_gru, the whole model: the update gate the other way round in the forward direction of its second
    Bidirectional alone; PyTorch's gate order r, z, n in the backward direction of its second alone."""
    ckpt = lstm_inspect.load(SAMPLES / f"{GRUS}.keras")
    x = _x((3, 7, 3), seed=12)
    theirs = gru_model(x, {"fwd": {"inverted": True}})
    _named_first(diagnose(ckpt, [x], [theirs]), "update gate used the other way round",
                 "in the forward direction only (bidirectional_3)")
    theirs = gru_model(x, {"bwd": {"gates": "rzh"}})
    _named_first(diagnose(ckpt, [x], [theirs]), "PyTorch's", "in the backward direction only (bidirectional_3)")


# On rows padded at the end, a layer returning its last step cannot tell the backward direction run unmasked from
# the mask applied to its outputs alone (in the backward direction, or in both: the forward's held output is its
# last valid one, as Keras's). Those two are exact too; the narrower mistake is named first.
OUTPUTS_ALONE = ("the mask applied to the outputs only: the states run through the masked steps in the backward "
                 "direction only", "the mask applied to the outputs only: the states run through the masked steps")


def test_a_mistake_in_one_direction_of_a_summed_bidirectional() -> None:
    """merge_mode='sum' (k3_bidir_sum, LSTM, the last step): the halves cannot be told apart in THEIRS, so the
    mistakes of each direction alone are tried with the others: the backward direction's bias left out."""
    w = _refs(SUM)
    x = _x((3, 7, 3), seed=17)
    no_bias = {**w["bidirectional_1/backward_lstm_6"], "bias": np.zeros(16, np.float32)}
    theirs = bidirectional(x, lstm_step(w["bidirectional_1/forward_lstm_6"]), lstm_step(no_bias), "sum", False)
    result = diagnose(lstm_inspect.load(SAMPLES / f"{SUM}.keras"), [x], [theirs.astype(np.float32)])
    _named_first(result, "the bias left out in the backward direction only")
    assert result.pruned == 0 and result.evidence is not None and result.evidence.halves_exact is None


def test_the_backward_direction_run_without_the_mask_is_named() -> None:
    """Issue 24's third port: the backward pass reverses the padded row and runs it without the mask
    (tfk_embedding_mask_zero_bilstm, the whole model on its stored ids, padded at the end)."""
    ckpt = lstm_inspect.load(SAMPLES / f"{MASKED_BI}.h5")
    ids = _io(MASKED_BI)["x"]
    theirs = masked_bi_model(ids, rules=("keras", "none"))
    result = diagnose(ckpt, [ids], [theirs])
    _named_first(result, "the mask ignored", "in the backward direction only", "padded row reversed",
                 same=OUTPUTS_ALONE)
    assert result.evidence is not None and set(result.evidence.exact) == {0, 4}  # the rows with no padding


def test_the_backward_direction_run_without_the_mask_on_the_real_sentiment_model() -> None:
    if not SENTIMENT.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    ckpt = lstm_inspect.load(SENTIMENT)
    with np.load(f"{SENTIMENT}.io.npz") as data:
        ids, y = data["x"], data["y"]
    np.testing.assert_allclose(masked_bi_model(ids, SENTIMENT), y, atol=1e-5)  # the port is Keras
    result = diagnose(ckpt, [ids], [masked_bi_model(ids, SENTIMENT, rules=("keras", "none"))])
    _named_first(result, "the mask ignored", "in the backward direction only",
                 same=OUTPUTS_ALONE)


def test_the_mask_on_the_states_alone_in_the_forward_direction_only() -> None:
    """The forward direction holds its states at padded steps but returns the cell's fresh h at the last (padded)
    step; the backward direction is right."""
    ckpt = lstm_inspect.load(SAMPLES / f"{MASKED_BI}.h5")
    ids = _io(MASKED_BI)["x"]
    result = diagnose(ckpt, [ids], [masked_bi_model(ids, rules=("states", "keras"))])
    # in both directions it is the same here: the backward direction's last processed step is never padding
    _named_first(result, "the mask applied to the states only", "in the forward direction only",
                 same=("the mask applied to the states only: the cell's fresh output emitted at masked steps",))


def test_the_mask_on_the_outputs_alone_in_the_backward_direction_only() -> None:
    """k3_bidir_simple_rnn (Masking → Bidirectional(SimpleRNN(3, return_sequences)), concat): the backward
    direction's states run through the masked steps, its outputs are zeroed there; the forward one is right."""
    data = _io("k3_bidir_simple_rnn")
    x, mask = data["x"], np.any(data["x"] != 0, axis=-1)
    w = _refs("k3_bidir_simple_rnn")
    cells = [simple_rnn_step(w[f"bidirectional_4/{h}_simple_rnn_2"]) for h in ("forward", "backward")]
    np.testing.assert_allclose(bidirectional(x, *cells, "concat", True, mask=mask), data["y"], atol=1e-5)
    theirs = bidirectional(x, *cells, "concat", True, mask=mask, rules=("keras", "outputs")).astype(np.float32)
    result = diagnose(lstm_inspect.load(SAMPLES / "k3_bidir_simple_rnn.keras"), [x], [theirs])
    _named_first(result, "the mask applied to the outputs only", "in the backward direction only")


# ---------------------------------------------------------------- directions interleaved across batch rows


def test_directions_interleaved_across_batch_rows() -> None:
    """ONNX's Y (T, 2, B, H) reshaped to (T, B, 2H) (k3_bidir_concat's layer alone, and the whole model), and
    torch's h_n (2, B, H) viewed as (B, 2H) (k3_bidir_gru's last Bidirectional): named first."""
    x = _x((3, 7, 3), seed=13)
    ckpt = lstm_inspect.load(SAMPLES / f"{CONCAT}.keras")
    w = _refs(CONCAT)
    theirs = bidirectional(x, lstm_step(w["bidirectional/forward_lstm_5"]),
                           lstm_step(w["bidirectional/backward_lstm_5"]), "concat", True, interleave=True)
    _named_first(diagnose(ckpt, [x], [theirs.astype(np.float32)], layer="bidirectional"),
                 "directions interleaved across batch rows")
    _named_first(diagnose(ckpt, [x], [concat_model(x, interleave=True)]), "directions interleaved")
    ckpt = lstm_inspect.load(SAMPLES / f"{GRUS}.keras")
    _named_first(diagnose(ckpt, [x], [gru_model(x, interleave=True)]), "directions interleaved")


def test_one_sample_is_not_interleaved() -> None:
    """With B = 1 the reshape is the concatenation: the candidate computes what the model does and is left out
    (as is the state carried across rows, with one row)."""
    ckpt = lstm_inspect.load(SAMPLES / f"{CONCAT}.keras")
    x = _x((1, 7, 3), seed=14)
    assert np.array_equal(concat_model(x, interleave=True), concat_model(x))
    result = diagnose(ckpt, [x], [concat_model(x, bwd={"gates": "iofc"})])
    _named_first(result, "ONNX's gate order", "in the backward direction only")
    tried = {h.name for h in result.ranked}
    equal = [m.name for m in mistakes(ckpt, list(ckpt.directions), False) if m.name not in tried]
    assert result.pruned == 0 and len(equal) == result.excluded  # (cell clips that never bind are equal too)
    assert {n.split(":")[0] for n in equal if "clipped" not in n} == {
        "directions interleaved across batch rows", "state carried across batch rows"}, equal


# ---------------------------------------------------------------- the merged sequence's last step


def test_the_merged_sequence_s_last_step_as_the_final_output() -> None:
    """return_sequences=False ported as y[:, T−1] of the merged sequence: the backward half is the backward
    layer's first step. k3_bidir_sum (LSTM, sum) and k3_bidir_gru's second Bidirectional (GRU, concat), whole
    models; and the concat layer alone, whose forward half is exact (the search pruned to the backward's)."""
    x = _x((3, 7, 3), seed=15)
    _named_first(diagnose(lstm_inspect.load(SAMPLES / f"{SUM}.keras"), [x], [sum_model(x, first=True)]),
                 "the merged sequence's last step taken as the final output")
    ckpt = lstm_inspect.load(SAMPLES / f"{GRUS}.keras")
    _named_first(diagnose(ckpt, [x], [gru_model(x, first=True)]), "the merged sequence's last step",
                 "(bidirectional_3)")
    w = _refs(GRUS)
    h = _x((3, 7, 4), seed=16)
    fwd, bwd = (gru_step(w[f"bidirectional_3/{half}_gru_6"]) for half in ("forward", "backward"))
    theirs = bidirectional(h, fwd, bwd, "concat", False, first=True).astype(np.float32)
    result = diagnose(ckpt, [h], [theirs], layer="bidirectional_3")
    _named_first(result, "the merged sequence's last step")
    assert result.pruned > 0 and result.tried + result.pruned == len(mistakes(ckpt, ckpt.directions_of(
        "bidirectional_3"), False))


# ---------------------------------------------------------------- the mask on the outputs or the states alone


def test_the_mask_on_the_outputs_alone() -> None:
    """The states run through masked steps (research24 §9a): k3_masking's holes and end padding, then the same
    rows padded in front, where every valid step of a padded row is wrong. (On a layer returning its last step
    alone this computes what ignoring the mask does, or what Keras does: it is told apart on sequences only.)"""
    ckpt = lstm_inspect.load(SAMPLES / "k3_masking.keras")
    x = _io("k3_masking")["x"]
    _named_first(diagnose(ckpt, [x], [masking_model(x, "outputs")]), "the mask applied to the outputs only")
    front = np.stack([np.concatenate([row[~np.any(row != 0, -1)], row[np.any(row != 0, -1)]]) for row in x])
    theirs, right = masking_model(front, "outputs"), masking_model(front)
    valid = np.any(front != 0, axis=-1)
    assert np.all(np.abs(theirs - right).max(-1)[1:3][valid[1:3]] > 1e-3)  # every valid step of rows 1, 2
    result = diagnose(ckpt, [front], [theirs])
    _named_first(result, "the mask applied to the outputs only")
    assert result.evidence is not None and result.evidence.exact == (0, 3)  # the rows with no masked step


def test_the_mask_on_the_states_alone() -> None:
    """The states held at masked steps but the fresh h output there (research24 §9b): only the padded positions
    differ (k3_masking), or the last output of a row padded at the end (k3_embedding_mask_zero)."""
    x = _io("k3_masking")["x"]
    theirs = masking_model(x, "states")
    mask = np.any(x != 0, axis=-1)
    assert np.array_equal(theirs[mask], masking_model(x)[mask])  # the valid steps are Keras's
    _named_first(diagnose(lstm_inspect.load(SAMPLES / "k3_masking.keras"), [x], [theirs]),
                 "the mask applied to the states only")
    ids = _io("k3_embedding_mask_zero")["x"]
    _named_first(diagnose(lstm_inspect.load(SAMPLES / "k3_embedding_mask_zero.keras"), [ids],
                          [embedding_model(ids, "states")]), "the mask applied to the states only")


def test_masking_read_as_any_feature() -> None:
    """Keras's Masking masks a step only where ALL its features equal mask_value (research24 §9f, reasoned): a
    port testing "any feature" also skips the steps with a single feature 0 (k3_masking, two such steps planted)."""
    x = _io("k3_masking")["x"].copy()
    x[0, 3, 1] = 0.0
    x[2, 1, 0] = 0.0
    keras_mask, any_mask = np.any(x != 0, axis=-1), np.all(x != 0, axis=-1)
    assert keras_mask[0, 3] and not any_mask[0, 3]
    theirs = rnn(lstm_step(_refs("k3_masking")["lstm_11"]), x, any_mask).astype(np.float32)
    _named_first(diagnose(lstm_inspect.load(SAMPLES / "k3_masking.keras"), [x], [theirs]),
                 "Masking read as 'any feature equals mask_value'")


def test_a_half_no_mistake_can_move_out_of_tolerance_prunes_nothing() -> None:
    """With atol=2 the forward half (|h| < 1 in an LSTM) is within tolerance whatever a port does there, so it
    proves nothing: no mistake is ruled out by it (the backward half is off by 5, which no mistake explains)."""
    ckpt = lstm_inspect.load(SAMPLES / f"{CONCAT}.keras")
    x = _x((2, 5, 3), seed=18)
    w = _refs(CONCAT)
    right = bidirectional(x, lstm_step(w["bidirectional/forward_lstm_5"]),
                          lstm_step(w["bidirectional/backward_lstm_5"]), "concat", True)
    theirs = right.copy()
    theirs[..., 5:] += 5.0
    result = diagnose(ckpt, [x], [theirs.astype(np.float32)], layer="bidirectional", atol=2.0)
    assert result.evidence is not None and result.evidence.halves_exact == {"forward": True, "backward": False}
    assert result.pruned == 0 and result.found == [] and result.close == []
