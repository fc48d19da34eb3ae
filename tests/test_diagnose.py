"""`diagnose` names the porting mistake planted in THEIRS first.

Every THEIRS here is computed by the tests' own textbook layers (`reference_rnn`), from Keras's own
weights (the `.ref.npz` beside each sample), with one mistake (or two) planted: never by the engine
under test.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.diagnose import diagnose

import reference_rnn as ref
from conftest import REALWORLD, SAMPLES, keras_refs, run_cli

# A port that uses Keras's block order[k] as gate k (i, f, c, o) believes the stored order is `believed(order)`.
ORDER_NAMES = {("i", "o", "f", "c"): "ONNX's gate order", ("i", "f", "o", "c"): "c and o swapped",
               ("i", "c", "f", "o"): "Keras 1's stored"}
ONNX = (0, 2, 3, 1)  # Keras blocks i, c, o, f used as gates i, f, c, o: the port believes i, o, f, c


def believed(order: tuple[int, ...]) -> tuple[str, ...]:
    stored = [""] * 4
    for gate, block in enumerate(order):
        stored[block] = "ifco"[gate]
    return tuple(stored)


def _w(sample: str, direction: str) -> dict[str, np.ndarray]:
    return keras_refs(SAMPLES / f"{sample}.ref.npz")[direction]


def lstm_port(w: dict[str, np.ndarray], x: np.ndarray, *, order: tuple[int, ...] | None = None, rec: str = "sigmoid",
              act: str = "tanh", cell_act: str | None = None, bias: bool = True, transpose_recurrent: bool = False,
              reverse: bool = False, go_backwards: bool = False, dtype: type = np.float64, bf16: bool = False,
              mask: np.ndarray | None = None, zero_output: bool = False, return_sequences: bool = True,
              h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> np.ndarray:
    """One LSTM direction as a port computes it, from Keras's own arrays; each argument a possible mistake."""
    k, r, b = w["kernel"], w["recurrent_kernel"], w.get("bias")
    if order is not None:
        k, r = ref.permuted(k, 4, list(order)), ref.permuted(r, 4, list(order))
        b = None if b is None else ref.permuted(b, 4, list(order))
    if transpose_recurrent:
        r = np.concatenate([blk.T for blk in ref.blocks(r, 4)], axis=1)
    if bf16:
        k, r, b = (None if a is None else _bfloat16(a) for a in (k, r, b))
    if reverse:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    y, _ = ref.lstm(x, k, r, b if bias else None, activation=ref.act(act), recurrent_activation=ref.act(rec),
                    cell_activation=ref.act(cell_act) if cell_act else None, mask=mask, go_backwards=go_backwards,
                    zero_output_for_mask=zero_output, dtype=dtype, return_sequences=return_sequences, h0=h0, c0=c0)
    return y.astype(np.float32)


def _bfloat16(a: np.ndarray) -> np.ndarray:
    bits = np.asarray(a, np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# The single mistakes, as keyword arguments of lstm_port, and the words diagnose must use for each.
def _singles(rec: str, act: str = "tanh") -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for order in itertools.permutations(range(4)):
        if order != (0, 1, 2, 3):
            label = ORDER_NAMES.get(believed(order), "gate order " + ", ".join(believed(order)))
            out.append((f"order {order}", {"order": order, "rec": rec}, label))
    others = {"sigmoid": "the logistic sigmoid", "hard_sigmoid:keras2": "Keras 2's",
              "hard_sigmoid:keras3": "Keras 3's"}
    for name, words in others.items():
        if name.split(":")[0] != rec.split(":")[0]:
            out.append((f"recurrent {name}", {"rec": name}, words))
    if rec.startswith("hard_sigmoid"):  # the other generation's hard_sigmoid
        other = "hard_sigmoid:keras3" if rec.endswith("keras2") else "hard_sigmoid:keras2"
        out.append((f"recurrent {other}", {"rec": other}, others[other]))
    out += [
        ("bias dropped", {"rec": rec, "bias": False}, "the bias left out"),
        ("recurrent transposed", {"rec": rec, "transpose_recurrent": True}, "recurrent block transposed"),
        ("tanh off c", {"rec": rec, "cell_act": "linear"}, "left off c"),
        ("sigmoid candidate", {"rec": rec, "act": "sigmoid", "cell_act": act}, "sigmoid on the cell candidate"),
        ("linear candidate", {"rec": rec, "act": "linear", "cell_act": act}, "no activation on the cell candidate"),
        ("time reversed", {"rec": rec, "reverse": True}, "reversed in time"),
        ("float16", {"rec": rec, "dtype": np.float16}, "float16 arithmetic"),
        ("bfloat16", {"rec": rec, "bf16": True}, "bfloat16 weights"),
    ]
    return out


def _named_first(result: Any, words: str | list[str]) -> None:
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    for w in [words] if isinstance(words, str) else words:
        assert w in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]


# ---------------------------------------------------------------- a Keras 3 sigmoid model (the whole model)

K3 = _singles("sigmoid")


@pytest.mark.parametrize("label,kwargs,words", K3, ids=[c[0] for c in K3])
def test_keras3_sigmoid_model(label: str, kwargs: dict[str, Any], words: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_return_sequences.keras")
    x = _x((3, 8, 3))
    theirs = lstm_port(_w("k3_return_sequences", "lstm_1"), x, **kwargs)
    _named_first(diagnose(ckpt, [x], [theirs]), words)


# ---------------------------------------------------------------- a Keras 2 hard_sigmoid model (one layer)

K2 = _singles("hard_sigmoid:keras2")


@pytest.mark.parametrize("label,kwargs,words", K2, ids=[c[0] for c in K2])
def test_keras2_hard_sigmoid_layer(label: str, kwargs: dict[str, Any], words: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    x = _x((3, 8, 3), seed=1)
    theirs = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_1"), x, **kwargs)
    _named_first(diagnose(ckpt, [x], [theirs], layer="lstm_1"), words)


def test_the_last_step_alone_is_accepted_for_a_layer() -> None:
    """What `forward --layer` writes for return_sequences=False: (batch, N_c), compared as the last step."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    x = _x((3, 8, 6), seed=2)
    theirs = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_2"), x, rec="sigmoid", return_sequences=False)
    assert theirs.ndim == 2
    _named_first(diagnose(ckpt, [x], [theirs], layer="lstm_2"), "the logistic sigmoid")
    right = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_2"), x, rec="hard_sigmoid:keras2", return_sequences=False)
    assert diagnose(ckpt, [x], [right], layer="lstm_2").matches


# ---------------------------------------------------------------- a Bidirectional model (the whole model)


def _bidirectional(x: np.ndarray, fw: dict[str, Any], bw: dict[str, Any], flip: bool = True) -> np.ndarray:
    """k3_bidir_concat: Bidirectional(LSTM(5, return_sequences=True)) → Dense(2)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    dense = ckpt.read_layer(next(m.name for m in ckpt.model_layers if m.class_name == "Dense"))
    w = keras_refs(SAMPLES / "k3_bidir_concat.ref.npz")
    y_f = lstm_port(w["bidirectional/forward_lstm_5"], x, **fw)
    y_b = lstm_port(w["bidirectional/backward_lstm_5"], x, **{"go_backwards": True, **bw})
    y = np.concatenate([y_f, y_b[:, ::-1] if flip else y_b], axis=-1)
    return (y @ dense[0] + dense[1]).astype(np.float32)


BIDIRECTIONAL = [
    ("backward not flipped", {}, {}, False, "backward output not flipped"),
    ("go_backwards ignored", {}, {"go_backwards": False}, True, "go_backwards ignored"),
    ("forward reversed", {"reverse": True}, {}, True, "reversed in time (bidirectional/forward"),
    ("keras2 hard_sigmoid", {"rec": "hard_sigmoid:keras2"}, {"rec": "hard_sigmoid:keras2"}, True, "Keras 2's"),
    ("ONNX order", {"order": ONNX}, {"order": ONNX}, True, "ONNX's gate order"),
    ("bias dropped", {"bias": False}, {"bias": False}, True, "the bias left out"),
    ("tanh off c", {"cell_act": "linear"}, {"cell_act": "linear"}, True, "left off c"),
]


@pytest.mark.parametrize("label,fw,bw,flip,words", BIDIRECTIONAL, ids=[c[0] for c in BIDIRECTIONAL])
def test_bidirectional_model(label: str, fw: dict, bw: dict, flip: bool, words: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    x = _x((3, 7, 3), seed=3)
    _named_first(diagnose(ckpt, [x], [_bidirectional(x, fw, bw, flip)]), words)


# ---------------------------------------------------------------- a masked model (the whole model)


def _masked_input() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES / "k3_masking.io.npz") as io:
        x = io["x"]
    return x, np.any(x != 0, axis=-1)


MASKED = [
    ("mask ignored", {"mask": None}, "masked steps not skipped"),
    ("zeros at masked steps", {"zero_output": True}, "zeros output at masked steps"),
    ("ONNX order", {"order": ONNX}, "ONNX's gate order"),
    ("keras2 hard_sigmoid", {"rec": "hard_sigmoid:keras2"}, "Keras 2's"),
    ("recurrent transposed", {"transpose_recurrent": True}, "recurrent block transposed"),
]


@pytest.mark.parametrize("label,kwargs,words", MASKED, ids=[c[0] for c in MASKED])
def test_masked_model(label: str, kwargs: dict[str, Any], words: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_masking.keras")
    x, mask = _masked_input()
    theirs = lstm_port(_w("k3_masking", "lstm_11"), x, **{"mask": mask, **kwargs})
    _named_first(diagnose(ckpt, [x], [theirs]), words)


def test_mask_mistakes_are_not_offered_without_a_mask() -> None:
    """Candidates identical to the model itself are never the 'closest' explanation."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_return_sequences.keras")
    x = _x((3, 8, 3))
    theirs = lstm_port(_w("k3_return_sequences", "lstm_1"), x) + 0.05  # no known mistake
    result = diagnose(ckpt, [x], [theirs])
    assert not result.found
    assert all("mask" not in h.name for h in result.ranked)


# ---------------------------------------------------------------- states handed over, CuDNN biases


def test_decoder_started_from_zeros() -> None:
    """tfk_seq2seq: the decoder LSTM starts from the encoder's h and c; a port that starts from zeros."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_seq2seq.h5")
    w = keras_refs(SAMPLES / "tfk_seq2seq.ref.npz")
    dense = ckpt.read_layer("next")
    with np.load(SAMPLES / "tfk_seq2seq.io.npz") as io:
        x0, x1 = io["x0"], io["x1"]
    y = lstm_port(w["decoder"], x1)  # from zeros: the mistake
    logits = y @ dense[0] + dense[1]
    theirs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    _named_first(diagnose(ckpt, [x0, x1], [theirs]), "started from zeros")


@pytest.mark.parametrize("times,words", [(0, "recurrent bias dropped"), (2, "recurrent bias added twice")])
def test_cudnn_bias_halves(times: int, words: str) -> None:
    import h5py

    ckpt = lstm_inspect.load(SAMPLES / "tfk_cudnn.h5")
    w = dict(_w("tfk_cudnn", "cu_dnnlstm"))  # Keras's converted LSTM weights
    with h5py.File(SAMPLES / "tfk_cudnn.h5") as f:
        key = next(k for k in ckpt.layers[0].arrays if k.shape == (40,)).key
        raw = f[key][()]
    w["bias"] = raw[:20] + times * raw[20:]
    dense = ckpt.read_layer(next(m.name for m in ckpt.model_layers if m.class_name == "Dense"))
    x = _x((2, 6, 3), seed=4)
    theirs = (lstm_port(w, x) @ dense[0] + dense[1]).astype(np.float32)
    _named_first(diagnose(ckpt, [x], [theirs]), words)


# ---------------------------------------------------------------- pairs of mistakes

PAIRS = [
    ("ONNX order + Keras 2 hard_sigmoid", {"order": ONNX, "rec": "hard_sigmoid:keras2"},
     ["ONNX's gate order", "Keras 2's"]),
    ("bias dropped + time reversed", {"bias": False, "reverse": True}, ["the bias left out", "reversed in time"]),
    ("recurrent transposed + Keras 3 hard_sigmoid", {"transpose_recurrent": True, "rec": "hard_sigmoid:keras3"},
     ["recurrent block transposed", "Keras 3's"]),
    ("c and o swapped + tanh off c", {"order": (0, 1, 3, 2), "cell_act": "linear"},
     ["c and o swapped", "left off c"]),
]


@pytest.mark.parametrize("label,kwargs,words", PAIRS, ids=[c[0] for c in PAIRS])
def test_pairs_of_mistakes(label: str, kwargs: dict[str, Any], words: list[str]) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_return_sequences.keras")
    x = _x((3, 8, 3), seed=5)
    theirs = lstm_port(_w("k3_return_sequences", "lstm_1"), x, **kwargs)
    result = diagnose(ckpt, [x], [theirs])
    _named_first(result, words)
    assert result.found[0].exact


# ---------------------------------------------------------------- square layers of a real file


def test_square_layer_mistakes_on_a_real_file() -> None:
    """N_i = N_c: a transposed kernel and swapped kernels, on lstm_1 (50 → 50) of a real model."""
    path = REALWORLD / "stock_stacked3_keras210.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    ckpt = lstm_inspect.load(path)
    d = ckpt.layer("lstm_1")
    w = d.weights()  # the real file's weights, read by lstm-inspect (checked against Keras in test_gates)
    k, r, b = w.kernel, w.recurrent_kernel, w.bias
    x = _x((2, 6, 50), seed=6)
    transposed = np.concatenate([blk.T for blk in ref.blocks(k, 4)], axis=1)
    for (kk, rr), words in (((transposed, r), "input block transposed"), ((r, k), "swapped")):
        theirs = ref.lstm(x, kk, rr, b)[0].astype(np.float32)
        _named_first(diagnose(ckpt, [x], [theirs], layer="lstm_1"), words)


# ---------------------------------------------------------------- the command


def test_cli_exit_codes_and_divergence(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        x, y = io["x"], io["y"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "right.npy", y)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "right.npy"))
    assert r.returncode == 0 and "match" in r.stdout
    odd = y.copy()
    odd[:, 4:] += np.linspace(0, 0.05, odd.shape[1] - 4)[None, :, None]  # a drift no known mistake makes
    np.save(tmp_path / "odd.npy", odd)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "odd.npy"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["diagnosed"] == [] and "step 5" in doc["divergence"]
    assert "recurrence" in doc["divergence"]
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "shape" in r.stderr


def test_cli_names_a_planted_mistake(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    x = _x((3, 8, 3), seed=7)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", lstm_port(_w("k3_return_sequences", "lstm_1"), x, rec="hard_sigmoid:keras2"))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"))
    assert r.returncode == 1, r.stderr
    assert "1. recurrent activation: hard_sigmoid as clip(0.2·x + 0.5, 0, 1), Keras 2's" in r.stdout
    assert "exactly" in r.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_tolerances_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
        np.save(tmp_path / "y.npy", io["y"] + 100)
    for option in ("--atol", "--rtol"):
        r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "y.npy"),
                    option, value)
        assert r.returncode == 2 and option in r.stderr and "match" not in r.stdout



