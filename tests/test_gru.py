"""GRU and SimpleRNN: what is particular to them (the generic tests run every sample of every kind).

Every sample and real file of these kinds is also in test_gates (gates equal Keras's get_weights), test_engine
(within 1e-5 of Keras), test_verify (Keras itself), test_interop (torch.nn.GRU/RNN, ONNX GRU/RNN, CSV) and
test_show. Here: the GRU porting mistakes, planted by the tests' own textbook GRU (reference_rnn.gru) from Keras's
own weights, each named first by diagnose; Keras 1's nine per-gate arrays; and what show and trace say.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import diagnose

import reference_rnn as ref
from conftest import SAMPLES, keras_refs, run_cli


def _w(sample: str, direction: str) -> dict[str, np.ndarray]:
    return keras_refs(SAMPLES / f"{sample}.ref.npz")[direction]


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def gru_port(w: dict[str, np.ndarray], x: np.ndarray, *, reset_after: bool, order: tuple[int, ...] | None = None,
             rec: str = "sigmoid", act: str = "tanh", update_inverted: bool = False, bias: str = "both",
             reverse: bool = False, dtype: type = np.float64) -> np.ndarray:
    """One GRU direction as a port computes it; `bias`: both rows, "input" or "recurrent" row only, "summed"."""
    k, r, b = w["kernel"], w["recurrent_kernel"], w.get("bias")
    if order is not None:
        k, r = ref.permuted(k, 3, list(order)), ref.permuted(r, 3, list(order))
        b = None if b is None else ref.permuted(b, 3, list(order))
    if b is not None and b.ndim == 2:
        if bias == "input":
            b = np.stack([b[0], np.zeros_like(b[1])])
        elif bias == "recurrent":
            b = np.stack([np.zeros_like(b[0]), b[1]])
        elif bias == "summed":
            b = np.stack([b[0] + b[1], np.zeros_like(b[1])])
    if reverse:
        x = x[:, ::-1]
    y, _ = ref.gru(x, k, r, b, reset_after=reset_after, activation=ref.act(act),
                   recurrent_activation=ref.act(rec), update_inverted=update_inverted, dtype=dtype)
    return y.astype(np.float32)


def _orders() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for order in itertools.permutations(range(3)):
        if order != (0, 1, 2):
            stored = [""] * 3
            for gate, block in enumerate(order):
                stored[block] = "zrh"[gate]
            label = ("PyTorch's (and cuDNN's) order" if tuple(stored) == ("r", "z", "h")
                     else "gate order " + ", ".join(stored))
            out.append((f"order {order}", {"order": order}, label))
    return out


AFTER = [*_orders(),
         ("update inverted", {"update_inverted": True}, "update gate used the other way round"),
         ("reset before", {"reset_after": False}, "reset gate applied before"),
         ("recurrent bias dropped", {"bias": "input"}, "recurrent bias row (bias[1]) left out"),
         ("input bias dropped", {"bias": "recurrent"}, "input bias row (bias[0]) left out"),
         ("bias rows summed", {"bias": "summed"}, "two bias rows summed"),
         ("keras2 hard_sigmoid", {"rec": "hard_sigmoid:keras2"}, "Keras 2's"),
         ("keras3 hard_sigmoid", {"rec": "hard_sigmoid:keras3"}, "Keras 3's"),
         ("sigmoid candidate", {"act": "sigmoid"}, "sigmoid on the candidate"),
         ("time reversed", {"reverse": True}, "reversed in time")]


@pytest.mark.parametrize("label,kwargs,words", AFTER, ids=[c[0] for c in AFTER])
def test_gru_mistakes_on_a_keras3_gru(label: str, kwargs: dict[str, Any], words: str) -> None:
    """k3_gru: GRU(5, reset_after=True) → Dense; each mistake in the GRU alone (--layer)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_gru.keras")
    d = ckpt.directions[0]
    x = _x((3, 8, 3))
    theirs = gru_port(_w("k3_gru", d.name), x, **{"reset_after": True, **kwargs})
    result = diagnose(ckpt, [x], [theirs], layer=d.name)
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    assert words in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]


BEFORE = [*_orders()[:2],
          ("update inverted", {"update_inverted": True}, "update gate used the other way round"),
          ("reset after", {"reset_after": True}, "reset gate applied after"),
          ("bias dropped", {"bias": "none"}, "the bias left out"),
          ("sigmoid for hard_sigmoid", {"rec": "sigmoid"}, "the logistic sigmoid"),
          ("keras3 hard_sigmoid", {"rec": "hard_sigmoid:keras3"}, "Keras 3's")]


@pytest.mark.parametrize("label,kwargs,words", BEFORE, ids=[c[0] for c in BEFORE])
def test_gru_mistakes_on_a_keras2_hard_sigmoid_gru(label: str, kwargs: dict[str, Any], words: str) -> None:
    """tfk_gru_hard_sigmoid's second layer: GRU(3, hard_sigmoid, reset_after=False), written by tf_keras."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_gru_hard_sigmoid.h5")
    d = ckpt.directions[1]
    assert d.settings.reset_after is False and d.hard_sigmoid == "keras2"
    x = _x((3, 8, 4), seed=1)
    w = dict(_w("tfk_gru_hard_sigmoid", d.name))
    if kwargs.get("bias") == "none":
        w.pop("bias")
        kwargs = {k: v for k, v in kwargs.items() if k != "bias"}
    theirs = gru_port(w, x, **{"reset_after": False, "rec": "hard_sigmoid:keras2", **kwargs})
    result = diagnose(ckpt, [x], [theirs], layer=d.name)
    assert result.found and words in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]


def test_simple_rnn_activation_mistake() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_simple_rnn.keras")
    d = ckpt.directions[1]  # SimpleRNN(3, activation="relu")
    w = _w("k3_simple_rnn", d.name)
    x = _x((3, 7, 5), seed=2)
    y, _ = ref.simple_rnn(x, w["kernel"], w["recurrent_kernel"], w["bias"], activation=np.tanh)
    result = diagnose(ckpt, [x], [y.astype(np.float32)], layer=d.name)
    assert result.found and "activation tanh where the model uses relu" in result.found[0].name


# ---------------------------------------------------------------- Keras 1's nine GRU arrays


def test_keras1_gru_arrays(tmp_path: Path) -> None:
    """A Keras 1 full model (output_dim, inner_activation, W_z, U_z, b_z, W_r, ... as Keras 1.2.2's GRU.build makes
    them), made from tfk_gru_reset_before's Keras-written weights: it must compute Keras's own outputs."""
    src = SAMPLES / "tfk_gru_reset_before.h5"
    w = _w("tfk_gru_reset_before", lstm_inspect.load(src).directions[0].name)
    u = w["recurrent_kernel"].shape[0]
    path = tmp_path / "keras1_gru.h5"
    config = {"class_name": "Sequential", "config": [
        {"class_name": "GRU", "config": {"name": "gru_1", "output_dim": u, "activation": "tanh",
                                          "inner_activation": "sigmoid", "return_sequences": True,
                                          "batch_input_shape": [None, 7, 3], "consume_less": "cpu"}}]}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "1.2.2"
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [b"gru_1"]
        group = root.create_group("gru_1")
        names = []
        for k, gate in enumerate("zrh"):
            cols = slice(k * u, (k + 1) * u)
            for role, array in (("W", w["kernel"][:, cols]), ("U", w["recurrent_kernel"][:, cols]),
                                ("b", w["bias"][cols])):
                name = f"gru_1_{role}_{gate}"
                group[name] = array
                names.append(name.encode())
        group.attrs["weight_names"] = names
    ckpt = lstm_inspect.load(path)
    (d,) = ckpt.directions
    assert (d.storage, d.cell.kind, d.settings.reset_after) == ("keras1", "GRU", False)
    with np.load(SAMPLES / "tfk_gru_reset_before.io.npz") as io:
        assert np.max(np.abs(ckpt.forward(io["x"]) - io["y"])) <= 1e-5


# ---------------------------------------------------------------- what show and trace say


def test_show_names_the_gru_gates_and_forms() -> None:
    text = run_cli("show", str(SAMPLES / "tfk_gru_hard_sigmoid.h5")).stdout
    assert "gates z r h" in text or "GRU zrh" in text
    assert "reset-before" in text and "hard_sigmoid (0.2x+0.5)" in text
    assert "recurrent bias" in text
    doc = json.loads(run_cli("show", str(SAMPLES / "k3_gru.keras"), "--json").stdout)
    (d,) = doc["layers"]
    assert (d["cell"], d["reset_after"], list(d["gates"])) == ("GRU", True, ["z", "r", "h"])
    doc = json.loads(run_cli("show", str(SAMPLES / "k3_simple_rnn.keras"), "--json").stdout)
    assert [(d["cell"], d["activation"], list(d["gates"])) for d in doc["layers"]] == [
        ("SimpleRNN", "tanh", ["h"]), ("SimpleRNN", "relu", ["h"])]


def test_keras2_gru_without_reset_after_key_is_reset_before() -> None:
    """Keras 2.0-2.2 configs have no reset_after: those versions computed the reset-before form."""
    path = SAMPLES.parent.parent / "shared" / "realworld" / "gru" / "gru_keras204_no_reset_after.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    (d,) = lstm_inspect.load(path).directions
    assert d.settings.reset_after is False and "reset-before" in run_cli("show", str(path)).stdout


def test_trace_records_the_gru_quantities(tmp_path: Path) -> None:
    with np.load(SAMPLES / "k3_gru.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
    r = run_cli("trace", str(SAMPLES / "k3_gru.keras"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "t.npz"))
    assert r.returncode == 0, r.stderr
    ckpt = lstm_inspect.load(SAMPLES / "k3_gru.keras")
    name = ckpt.directions[0].name
    with np.load(tmp_path / "t.npz") as t:
        assert sorted(k.split("/")[-1] for k in t.files) == ["h", "h_tilde", "mask", "r", "x", "z"]
        w = _w("k3_gru", name)
        x = np.load(tmp_path / "x.npy")
        want = gru_port(w, x, reset_after=True)
        np.testing.assert_allclose(t[f"{name}/h"], want, atol=1e-5)
        assert t[f"{name}/z"].min() >= 0 and t[f"{name}/z"].max() <= 1


def test_gru_dump_layouts_say_what_they_are(tmp_path: Path) -> None:
    from lstm_inspect.dump import dump

    dump(lstm_inspect.load(SAMPLES / "k3_gru.keras"), tmp_path / "pt", "npz", "pytorch")
    (entry,) = json.loads((tmp_path / "pt" / "manifest.json").read_text())["files"].values()
    assert entry["target"] == "torch.nn.GRU" and entry["exact_in_target"] is True
    assert "r, z, n" in json.dumps(entry) and "Keras's recurrent bias" in json.dumps(entry)
    dump(lstm_inspect.load(SAMPLES / "tfk_gru_reset_before.h5"), tmp_path / "onnx", "npz", "onnx")
    (entry,) = json.loads((tmp_path / "onnx" / "manifest.json").read_text())["files"].values()
    assert entry["attributes"]["linear_before_reset"] == 0 and entry["target"] == "ONNX GRU operator"
    r = run_cli("dump", str(SAMPLES / "tfk_gru_reset_before.h5"), "-o", str(tmp_path / "no"), "--layout", "pytorch")
    assert r.returncode == 2 and "reset_after=False" in r.stderr and not (tmp_path / "no").exists()


def test_a_gru_in_an_ordinary_h5_weights_file(tmp_path: Path) -> None:
    """Weights only: a GRU is found by its shapes, reset_after by its bias shape."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_gru.weights_only.h5")
    d = next(d for d in ckpt.directions if d.cell.kind == "GRU")
    assert d.settings.reset_after is True and d.settings.assumed
    shutil.copy(SAMPLES / "tfk_gru.weights_only.h5", tmp_path / "w.h5")
    with np.load(SAMPLES / "tfk_gru.io.npz") as io:
        full = lstm_inspect.load(SAMPLES / "tfk_gru.weights_only.h5", config=SAMPLES / "tfk_gru.json")
        assert np.max(np.abs(full.forward(io["x"]) - io["y"])) <= 1e-5


WRITE_BIASLESS_GRUS = r"""
import os, sys
import numpy as np
out = sys.argv[1]
x = np.random.default_rng(5).normal(size=(3, 6, 4)).astype("float32")
np.save(os.path.join(out, "x.npy"), x)
if sys.argv[2] == "keras3":
    import keras
    m = keras.Sequential([keras.Input((None, 4)), keras.layers.GRU(5, use_bias=False, return_sequences=True)])
    m.save_weights(os.path.join(out, "gru.weights.h5"))
else:
    import tf_keras as keras
    m = keras.Sequential([keras.layers.GRU(5, use_bias=False, return_sequences=True, input_shape=(None, 4))])
    m.save_weights(os.path.join(out, "gru.h5"))
    m.save_weights(os.path.join(out, "ckpt", "cp.ckpt"))  # the TF-format weights checkpoint
np.save(os.path.join(out, "y.npy"), m.predict(x, verbose=0))
"""


@pytest.mark.parametrize("gen", ["keras3", "tf_keras"])
def test_a_biasless_gru_in_a_weights_only_file_takes_the_writing_keras_default(gen: str, tmp_path: Path) -> None:
    """Without a bias, the shapes cannot tell reset_after: tf.keras, tf_keras and Keras 3 default to True (only
    multi-backend Keras before 2.4 to False), and the direction must compute what that Keras computed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WRITE_BIASLESS_GRUS, str(tmp_path), gen], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    files = [tmp_path / "gru.weights.h5"] if gen == "keras3" else [tmp_path / "gru.h5", tmp_path / "ckpt"]
    for path in files:
        ckpt = lstm_inspect.load(path)
        (d,) = ckpt.directions
        assert d.settings.assumed and d.settings.reset_after is True and not d.settings.use_bias
        assert np.max(np.abs(d.forward(x) - y[:, -1])) <= 1e-5, path.name  # assumed: the last step alone
