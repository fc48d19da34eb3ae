"""`forward` and `trace` on the command line: inputs in every form, outputs that never clobber."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect

from conftest import REALWORLD, SAMPLES, run_cli


def _io(name: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / f"{name}.io.npz") as d:
        return {k: d[k] for k in d.files}


def _forward_ok(model: str, x: Path, out: Path) -> None:
    r = run_cli("forward", str(SAMPLES / model), "--input", str(x), "--out", str(out))
    assert r.returncode == 0, r.stderr


def test_forward_npy_matches_keras(tmp_path: Path) -> None:
    io = _io("k3_stacked")
    np.save(tmp_path / "x.npy", io["x"])
    _forward_ok("k3_stacked.keras", tmp_path / "x.npy", tmp_path / "y.npy")
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - io["y"])) <= 1e-5


def test_forward_several_inputs_and_outputs(tmp_path: Path) -> None:
    io = _io("k3_functional_state")
    np.savez(tmp_path / "x.npz", series=io["x"])
    _forward_ok("k3_functional_state.keras", tmp_path / "x.npz", tmp_path / "y.npz")
    with np.load(tmp_path / "y.npz") as y:
        assert y.files == ["output_0", "output_1", "output_2"]
        for k in range(3):
            assert np.max(np.abs(y[f"output_{k}"] - io[f"y{k}"])) <= 1e-5
    r = run_cli("forward", str(SAMPLES / "k3_functional_state.keras"), "-i", str(tmp_path / "x.npz"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "3 outputs" in r.stderr


def test_forward_two_input_model_by_input_name(tmp_path: Path) -> None:
    io = _io("k3_two_inputs")
    np.savez(tmp_path / "x.npz", b=io["x1"], a=io["x0"])  # names, not order, decide
    _forward_ok("k3_two_inputs.keras", tmp_path / "x.npz", tmp_path / "y.npy")
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - io["y"])) <= 1e-5


def test_forward_csv_sequence(tmp_path: Path) -> None:
    io = _io("tfk_single")
    np.savetxt(tmp_path / "x.csv", io["x"][0], delimiter=",", fmt="%.9g")
    _forward_ok("tfk_single.h5", tmp_path / "x.csv", tmp_path / "y.npy")
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - io["y"][:1])) <= 1e-5


def test_forward_one_layer_of_a_weights_only_file(tmp_path: Path) -> None:
    """--layer runs a direction alone; here the CuDNNLSTM from a weights-only file vs Keras's converted LSTM."""
    io = _io("tfk_cudnn")
    np.save(tmp_path / "x.npy", io["x"])
    r = run_cli("forward", str(SAMPLES / "tfk_cudnn.weights_only.h5"), "--layer", "cu_dnnlstm",
                "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "h.npy"))
    assert r.returncode == 0, r.stderr
    # Keras's output is Dense(LSTM(x)); undo nothing: compare the LSTM part through the full model instead
    full = lstm_inspect.load(SAMPLES / "tfk_cudnn.h5")
    dense = next(m.name for m in full.layers if m.class_name == "Dense")
    dense_w = full.read_layer(dense)
    h = np.load(tmp_path / "h.npy")
    # the weights-only file knows no return_sequences: its default returns the last step
    seq = full.directions[0].forward(io["x"])
    np.testing.assert_allclose(h, seq[:, -1], atol=1e-6)
    assert np.max(np.abs(seq @ dense_w[0] + dense_w[1] - io["y"])) <= 1e-5


@pytest.mark.parametrize("x,needle", [
    (np.zeros((4, 7)), "expects (batch, 7, 3)"),
    (np.zeros((4, 7, 2)), "expects 3"),
    (np.full((4, 7, 3), "a"), "dtype"),
    (np.full((4, 7, 3), np.nan), "NaN"),
])
def test_forward_rejects_wrong_inputs(tmp_path: Path, x: np.ndarray, needle: str) -> None:
    np.save(tmp_path / "x.npy", x)
    r = run_cli("forward", str(SAMPLES / "k3_single.keras"), "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "y.npy").exists()


def test_forward_rejects_pickles_and_non_ids(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = run_cli("forward", str(SAMPLES / "k3_single.keras"), "-i", str(tmp_path / "obj.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "pickle" in r.stderr
    np.save(tmp_path / "x.npy", np.full((2, 9), 0.5))
    r = run_cli("forward", str(SAMPLES / "k3_embedding_mask_zero.keras"), "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "token ids" in r.stderr


def test_forward_never_overwrites_without_force(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _io("k3_single")["x"])
    (tmp_path / "y.npy").write_bytes(b"precious")
    args = ["forward", str(SAMPLES / "k3_single.keras"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    r = run_cli(*args)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (tmp_path / "y.npy").read_bytes() == b"precious"
    assert run_cli(*args, "--force").returncode == 0
    assert np.load(tmp_path / "y.npy").shape == (4, 5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["k3_return_sequences.keras", "k3_single.keras", "tfk_go_backwards.h5",
                                  "k3_stacked.keras", "tfk_bidir_concat.h5"])
def test_trace_last_h_equals_forward(tmp_path: Path, name: str) -> None:
    stem = name.split(".")[0]
    x = _io(stem)["x"]
    np.save(tmp_path / "x.npy", x)
    r = run_cli("trace", str(SAMPLES / name), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "t.npz"))
    assert r.returncode == 0, r.stderr
    ckpt = lstm_inspect.load(SAMPLES / name)
    with np.load(tmp_path / "t.npz") as t:
        for d in ckpt.directions:
            assert {f"{d.name}/{q}" for q in ("z", "i", "f", "c_tilde", "o", "c", "h")} <= set(t.files)
        first = ckpt.directions[0]
        alone = first.forward(x)
        h = t[f"{first.name}/h"]
        if first.settings.return_sequences:
            np.testing.assert_allclose(h, alone, atol=1e-7)
        else:
            np.testing.assert_allclose(h[:, -1], alone, atol=1e-7)
        # the trace's own equations hold: c = f·c_prev + i·c̃ at every step
        c, f, i, ct = (t[f"{first.name}/{q}"] for q in ("c", "f", "i", "c_tilde"))
        c_prev = np.concatenate([np.zeros_like(c[:, :1]), c[:, :-1]], axis=1)
        np.testing.assert_allclose(c, f * c_prev + i * ct, atol=1e-6)


def test_trace_csv_folder(tmp_path: Path) -> None:
    x = _io("k3_bidir_concat")["x"]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "golden"
    r = run_cli("trace", str(SAMPLES / "k3_bidir_concat.keras"), "-i", str(tmp_path / "x.npy"), "-o", str(out),
                "--format", "csv")
    assert r.returncode == 0, r.stderr
    table = np.loadtxt(out / "bidirectional/backward_lstm_5/h.csv", delimiter=",", skiprows=1)
    d = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras").direction("backward_lstm_5")
    seq = d.forward(x)  # processing order, as the trace
    assert table.shape == (x.shape[0] * x.shape[1], 2 + d.units)
    np.testing.assert_allclose(table[:, 2:].reshape(seq.shape), seq, atol=1e-7)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["bidirectional/backward_lstm_5/h.csv"]  # says how to read what the table above checked
    assert entry["columns"] == d.units and "steps-1-k" in entry["step"] and "hold" in entry["meaning"]
    assert manifest["bidirectional/backward_lstm_5/mask.csv"]["meaning"].startswith("1 where the step was processed")
    r = run_cli("trace", str(SAMPLES / "k3_bidir_concat.keras"), "-i", str(tmp_path / "x.npy"), "-o", str(out),
                "--format", "csv")
    assert r.returncode == 2 and "--force" in r.stderr


def test_python_api_forward_of_a_real_seq2seq() -> None:
    path = REALWORLD / "translation_seq2seq_keras224.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with np.load(REALWORLD / "translation_seq2seq_keras224.h5.io.npz") as d:
        y = lstm_inspect.load(path).forward([d["x0"], d["x1"]])
        assert np.max(np.abs(y - d["y"])) <= 1e-5


KERAS_LAYER_OUTPUT = """
import sys
import numpy as np
import tf_keras as keras
m = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[3])
np.save(sys.argv[4], keras.Model(m.input, m.get_layer(sys.argv[2]).output)(x).numpy())
"""


def test_a_time_major_layer_alone_takes_and_returns_its_own_layout(tmp_path: Path) -> None:
    """tf.keras's time_major LSTM takes (steps, batch, N_i) and returns (steps, batch, N_c): `--layer` runs it so,
    against Keras's own layer inside the model (run here by tf_keras in a subprocess)."""
    import subprocess
    import sys

    model = SAMPLES / "tfk_time_major.h5"
    x = np.random.default_rng(3).normal(size=(5, 7, 3)).astype(np.float32)  # 5 steps of a batch of 7
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", KERAS_LAYER_OUTPUT, str(model), "lstm_14", str(tmp_path / "x.npy"),
                           str(tmp_path / "keras.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    keras_y = np.load(tmp_path / "keras.npy")
    assert keras_y.shape == (5, 7, 5)

    r = run_cli("forward", str(model), "--layer", "lstm_14", "-i", str(tmp_path / "x.npy"), "-o",
                str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - keras_y)) <= 1e-5

    np.save(tmp_path / "off.npy", keras_y + np.float32(0.01))
    for against, code in (("keras.npy", 0), ("off.npy", 1)):
        r = run_cli("verify", str(model), "--layer", "lstm_14", "-i", str(tmp_path / "x.npy"), "--against",
                    str(tmp_path / against))
        assert r.returncode == code, r.stdout + r.stderr
        r = run_cli("diagnose", str(model), "--layer", "lstm_14", "-i", str(tmp_path / "x.npy"), "--against",
                    str(tmp_path / against))
        assert r.returncode == code, r.stdout + r.stderr

    r = run_cli("trace", str(model), "--layer", "lstm_14", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "t.npz"))
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "t.npz") as t:
        h = t["lstm_14/h"]
    assert h.shape == (7, 5, 5)  # traces are batch-major, as for the whole model
    assert np.max(np.abs(np.swapaxes(h, 0, 1) - keras_y)) <= 1e-5

    r = run_cli("export", str(model), "--layer", "lstm_14", "--to", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "time_major" in r.stderr and not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- trace's x and mask, --layer BIDIRECTIONAL (§4)

def _holed(name: str) -> np.ndarray:
    x = _io(name)["x"].copy()
    x[0, 3] = 0  # a hole inside the first sequence: token 0 (mask_zero) or an all-zero step (Masking)
    return x


FEEDS = [  # (file, recurrent layer, the layer feeding it or None, its input)
    ("tfk_embedding_mask_zero_bilstm.h5", "bidirectional_2", "embedding",
     lambda: _holed("tfk_embedding_mask_zero_bilstm")),
    ("k3_embedding_mask_zero.keras", "lstm_10", "embedding", lambda: _holed("k3_embedding_mask_zero")),
    ("tfk_masking.h5", "lstm_7", "masking", lambda: _holed("tfk_masking")),
    ("tfk_bidir_concat.h5", "bidirectional", None, lambda: _io("tfk_bidir_concat")["x"]),
    ("k3_bidir_sum.keras", "bidirectional_1", None, lambda: _io("k3_bidir_sum")["x"]),
    ("k3_bidir_concat.keras", "bidirectional", None, lambda: _io("k3_bidir_concat")["x"]),
]


@pytest.fixture(scope="module")
def keras_feeds(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, np.ndarray]]:
    """Keras's own values for FEEDS (each generation in a subprocess, once per run): what feeds each recurrent
    layer and the mask it computes, and the layer's output."""
    pytest.importorskip("tf_keras", reason="the Keras values come from tf_keras and Keras 3")
    pytest.importorskip("keras", reason="the Keras values come from tf_keras and Keras 3")

    from helpers.keras import keras_layer_alone

    return keras_layer_alone(tmp_path_factory, "api-feeds", SAMPLES,
                             [(file, layer, feed, make()) for file, layer, feed, make in FEEDS])


@pytest.mark.parametrize("k", [0, 1, 2], ids=[FEEDS[k][0] for k in range(3)])
def test_trace_x_and_mask_are_what_keras_feeds_the_layer(tmp_path: Path, keras_feeds: dict, k: int) -> None:
    """trace's x is the feeding layer's output as Keras computes it (here an Embedding's vectors, a Masking's
    input), its mask Keras's computed mask (compute_mask), both in processing order; at masked steps the states are
    the held ones, so the last step's h is the layer's output as Keras returns it."""
    file, layer, _, make = FEEDS[k]
    keras = keras_feeds[k]
    x = make()
    np.save(tmp_path / "x.npy", x)
    r = run_cli("trace", str(SAMPLES / file), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "t.npz"))
    assert r.returncode == 0, r.stderr
    ckpt = lstm_inspect.load(SAMPLES / file)
    directions = [d for d in ckpt.directions if d.layer_path == layer]
    assert not keras["mask"].all()  # the sample is masked, with a hole
    with np.load(tmp_path / "t.npz") as t:
        units = 0
        for d in directions:
            flip = (lambda a: a[:, ::-1]) if d.settings.go_backwards else (lambda a: a)
            np.testing.assert_allclose(t[f"{d.name}/x"], flip(keras["x"]), atol=1e-6)
            np.testing.assert_array_equal(t[f"{d.name}/mask"], flip(keras["mask"]))
            h = t[f"{d.name}/h"]
            held = ~t[f"{d.name}/mask"][0]
            steps = np.flatnonzero(held & (np.arange(h.shape[1]) > 0))
            np.testing.assert_array_equal(h[0, steps], h[0, steps - 1])  # a masked step holds the state
            y = keras["y0"]
            if y.ndim == 2:  # the layer returns its last output: the held h of the last step
                np.testing.assert_allclose(h[:, -1], y[:, units: units + d.units], atol=1e-5)
            units += d.units
    api = ckpt.trace(x)
    d0 = directions[0]
    np.testing.assert_array_equal(api[d0.name].mask, api[d0.name]["mask"])
    assert api[d0.name].masked


def test_trace_csv_writes_x_and_mask(tmp_path: Path, keras_feeds: dict) -> None:
    x = _holed("k3_embedding_mask_zero")
    np.save(tmp_path / "x.npy", x)
    r = run_cli("trace", str(SAMPLES / "k3_embedding_mask_zero.keras"), "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "csv"), "--format", "csv")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "csv" / "lstm_10" / "mask.csv") as f:
        assert f.readline().strip() == "sample,step,mask"
    mask = np.loadtxt(tmp_path / "csv" / "lstm_10" / "mask.csv", delimiter=",", skiprows=1)
    assert mask.shape == (x.size, 3)
    np.testing.assert_array_equal(mask[:, 2].reshape(x.shape), x != 0)  # mask_zero: token 0 is masked
    xs = np.loadtxt(tmp_path / "csv" / "lstm_10" / "x.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(xs[:, 2:].astype(np.float32).reshape(*x.shape, -1), keras_feeds[1]["x"])


@pytest.mark.parametrize("k", [3, 4, 5], ids=[FEEDS[k][0] for k in (3, 4, 5)])
def test_forward_layer_takes_a_bidirectional_name(tmp_path: Path, keras_feeds: dict, k: int) -> None:
    """forward --layer BIDIRECTIONAL (Keras's layer name) runs both directions and merges as Keras does
    (concat, sum), equal to Keras's own Bidirectional layer on the same input; the API too."""
    file, layer, _, make = FEEDS[k]
    x = make()
    np.save(tmp_path / "x.npy", x)
    r = run_cli("forward", str(SAMPLES / file), "--layer", layer, "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    want = keras_feeds[k]["y0"]
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - want)) <= 1e-5
    ckpt = lstm_inspect.load(SAMPLES / file)
    y, states = ckpt.forward(x, layer=layer, return_state=True)
    assert np.max(np.abs(y - want)) <= 1e-5 and len(states) == 4  # h, c of each direction


def test_every_layer_option_takes_a_bidirectional_name(tmp_path: Path) -> None:
    model = str(SAMPLES / "k3_bidir_sum.keras")
    io = _io("k3_bidir_sum")
    np.save(tmp_path / "x.npy", io["x"])
    y = lstm_inspect.load(model).forward(io["x"], layer="bidirectional_1")
    np.save(tmp_path / "y.npy", y)
    runs = {
        "trace": ["-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "t.npz")],
        "diagnose": ["-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "y.npy")],
        "dump": ["-o", str(tmp_path / "dump"), "--layout", "pytorch"],
    }
    for command, args in runs.items():
        r = run_cli(command, model, "--layer", "bidirectional_1", *args)
        assert r.returncode == 0, f"{command}: {r.stderr}"
    with np.load(tmp_path / "t.npz") as t:
        assert {"bidirectional_1/forward_lstm_6/h", "bidirectional_1/backward_lstm_6/x"} <= set(t.files)
    r = run_cli("export", model, "--layer", "bidirectional_1", "--to", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 0 and "layer bidirectional_1 as onnx" in r.stdout, r.stderr  # tests/test_export_bidir_layer
