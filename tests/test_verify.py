"""`verify`: Keras and the engine agree on every file; deliberate porting mistakes are caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.verify import verify, verify_direction
from lstm_inspect.engine.network import Network, default_inputs

import reference_rnn as ref
from conftest import NOT_RUNNABLE, REALWORLD, SAMPLES, realworld_checkpoints, run_cli, sample_checkpoints

FULL_MODELS = [p for p in sample_checkpoints() + realworld_checkpoints(with_weights=True)
               if lstm_inspect.load(p).graph is not None and not p.name.startswith(NOT_RUNNABLE)]


@pytest.mark.parametrize("path", FULL_MODELS, ids=lambda p: p.name)
def test_verify_passes_on_every_model(path: Path) -> None:
    ckpt = lstm_inspect.load(path)
    report = verify(ckpt, default_inputs(Network(ckpt), seed=1))
    assert report.ok, [c.to_dict() for c in report.comparisons if not c.ok]
    lstm_layers = {d.layer_path for d in ckpt.directions if "/" not in d.layer_path}
    assert {c.name for c in report.comparisons} >= {f"layer {p}" for p in lstm_layers} | {"output_0"}
    expected = "keras " if (ckpt.keras_version or "").startswith("3") else "tf_keras "
    assert report.reference.startswith(expected)


@pytest.mark.parametrize("name,layer", [("k3_stacked.weights.h5", "lstm_3"), ("k3_conv1d_lstm.keras", None),
                                        ("tfk_cudnn.weights_only.h5", "cu_dnnlstm"),
                                        ("tfk_single.weights_only.h5", "lstm")])
def test_verify_one_direction_of_a_weights_only_file(name: str, layer: str | None) -> None:
    ckpt = lstm_inspect.load(SAMPLES / name)
    layer = layer or ckpt.directions[0].name
    d = ckpt.direction(layer)
    x = np.random.default_rng(2).normal(size=(3, 6, d.input_dim)).astype(np.float32)
    assert verify_direction(ckpt, layer, x).ok


# ---------------------------------------------------------------- deliberate mistakes, through the CLI

HS2 = ref.hard_sigmoid_keras2
MISTAKES = {
    # ports of one LSTM, written with the tests' own textbook LSTM (not the engine)
    "correct": lambda w, x: ref.lstm(x, *w, recurrent_activation=HS2),
    "gates f and c swapped": lambda w, x: ref.lstm(x, *(ref.permuted(a, 4, [0, 2, 1, 3]) for a in w),
                                                   recurrent_activation=HS2),
    "Keras 3 hard_sigmoid on a Keras 2 file":
        lambda w, x: ref.lstm(x, *w, recurrent_activation=ref.hard_sigmoid_keras3),
    "bias left out": lambda w, x: ref.lstm(x, w[0], w[1], None, recurrent_activation=HS2),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_verify_against_a_reimplementation(tmp_path: Path, mistake: str) -> None:
    """The first LSTM of a Keras 2 hard_sigmoid file, ported four ways; only the right port passes."""
    path = SAMPLES / "tfk_stacked_hard_sigmoid.h5"
    d = lstm_inspect.load(path).direction("lstm_1")
    x = np.random.default_rng(3).normal(size=(2, 8, d.input_dim)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", MISTAKES[mistake](d.weights().arrays(), x)[0].astype(np.float32))
    r = run_cli("verify", str(path), "--layer", "lstm_1", "--input", str(tmp_path / "x.npy"),
                "--against", str(tmp_path / "theirs.npy"), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == (0 if mistake == "correct" else 1), r.stderr
    assert report["ok"] is (mistake == "correct") and report["compared"] == "theirs"
    if mistake != "correct":
        bad = report["outputs"][0]
        assert bad["first_past_tolerance"] is not None and bad["max_abs_error"] > 1e-3


def test_verify_cli_on_a_whole_model_and_its_table(tmp_path: Path) -> None:
    r = run_cli("verify", str(SAMPLES / "k3_two_inputs.keras"))
    assert r.returncode == 0, r.stderr
    for text in ("keras 3.15.1", "layer lstm_a", "layer bidir_b", "output_0", "match"):
        assert text in r.stdout
    assert "Traceback" not in r.stderr and "I0000" not in r.stderr


def test_verify_wrong_outputs_of_a_whole_model(tmp_path: Path) -> None:
    """THEIRS = the right outputs with the last time step's values perturbed: exit 1, step located."""
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as d:
        x, y = d["x"], d["y"].copy()
    y[:, -1, 2] += 0.01
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", y)
    r = run_cli("verify", str(path), "--input", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"),
                "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1
    assert report["outputs"][0]["first_past_tolerance"] == {"sample": 0, "step": y.shape[1] - 1, "unit": 2}


def test_verify_refuses_a_lambda_layer(tmp_path: Path) -> None:
    """A config with a Lambda (code) is refused before Keras sees it: exit 2 with the reason."""
    import shutil

    import h5py

    dst = tmp_path / "lambda.h5"
    shutil.copy(SAMPLES / "tfk_single.h5", dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"].append({"class_name": "Lambda", "config": {"name": "evil", "function": "..."}})
        f.attrs["model_config"] = json.dumps(cfg)
    r = run_cli("verify", str(dst))
    assert r.returncode == 2 and "Lambda" in r.stderr and "Traceback" not in r.stderr


def test_verify_against_with_the_wrong_shape_is_bad_input(tmp_path: Path) -> None:
    np.save(tmp_path / "theirs.npy", np.zeros((4, 3)))
    r = run_cli("verify", str(SAMPLES / "k3_single.keras"), "--against", str(tmp_path / "theirs.npy"))
    assert r.returncode == 2 and "shape" in r.stderr


@pytest.mark.parametrize("name", ["k3_cnn_channels_first.keras", "tfk_cnn_td_channels_first.h5"])
def test_verify_runs_channels_first_layers_without_onednn(name: str) -> None:
    """TensorFlow's CPU kernels without oneDNN (the default on CPUs without AVX-512 VNNI) refuse channels_first
    convolutions; TF_ENABLE_ONEDNN_OPTS=0 forces that path on any CPU. verify still runs Keras on the model (through
    XLA, said in a note) and matches."""
    exe = Path(sys.executable).with_name("lstm-inspect")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", COLUMNS="200")
    r = subprocess.run([str(exe), "verify", str(SAMPLES / name), "--json"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and any("without oneDNN" in n and "XLA" in n for n in report["notes"]), report


# ---------------------------------------------------------------- Keras 1 and old Keras 2 configs

KERAS1_FILE = REALWORLD / "charlstm_stateful_keras108_gates.h5py"


def keras1_with_batchnorm(dst: Path) -> Path:
    """The real Keras 1.0.8 file with a BatchNormalization between its LSTMs, as Keras 1 wrote one (config keys
    epsilon, mode, axis, momentum; weights gamma, beta, running_mean, running_std, the last a variance), epsilon
    1e-5 and variances of the same order, so that Keras 2's default epsilon (1e-3) would give other outputs."""
    shutil.copy(KERAS1_FILE, dst)
    rng = np.random.default_rng(21)
    arrays = {"gamma": rng.uniform(0.5, 1.5, 150), "beta": rng.normal(0, 0.1, 150),
              "running_mean": rng.normal(0, 0.05, 150), "running_std": rng.uniform(1e-5, 1e-4, 150)}
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"].insert(1, {"class_name": "BatchNormalization", "config": {
            "name": "batchnormalization_1", "trainable": True, "epsilon": 1e-05, "mode": 0, "axis": -1,
            "momentum": 0.9, "gamma_regularizer": None, "beta_regularizer": None}})
        f.attrs["model_config"] = json.dumps(cfg)
        root = f["model_weights"] if "model_weights" in f else f
        group = root.create_group("batchnormalization_1")
        names = [f"batchnormalization_1_{k}" for k in arrays]
        for name, a in zip(names, arrays.values()):
            group.create_dataset(name, data=a.astype(np.float32))
        group.attrs["weight_names"] = np.array([n.encode() for n in names])
        layer_names = list(root.attrs["layer_names"])
        root.attrs["layer_names"] = np.array([*layer_names[:1], b"batchnormalization_1", *layer_names[1:]])
    return dst


@pytest.mark.skipif(not KERAS1_FILE.exists(), reason="../shared/realworld is not beside this clone")
def test_verify_keeps_a_keras1_batchnorm_s_settings(tmp_path: Path) -> None:
    """Keras 1's BatchNormalization settings reach Keras (epsilon 1e-5, not Keras 2's default 1e-3), and the rebuilt
    model computes what tf_keras's own legacy loader (load_weights, which converts Keras 1 weights) gives on a model
    built by hand as the file describes."""
    from lstm_inspect.check.keras_ref import build_model

    path = keras1_with_batchnorm(tmp_path / "k1_bn.h5")
    ckpt = lstm_inspect.load(path)
    x = np.random.default_rng(4).normal(size=(3, 1, 29)).astype(np.float32)  # the file declares 1 step (stateful)
    report = verify(ckpt, [x])
    assert report.ok, [c.to_dict() for c in report.comparisons if not c.ok]
    keras, model = build_model(ckpt, [(None, 1, 29)])
    bn = model.get_layer("batchnormalization_1")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9) and list(np.atleast_1d(bn.axis)) in ([-1], [2])
    layers = keras.layers
    by_hand = keras.Sequential([
        keras.Input((None, 29)),
        layers.LSTM(150, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm_1"),
        layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="batchnormalization_1"),
        layers.LSTM(128, recurrent_activation="hard_sigmoid", name="lstm_2"),
        layers.Dense(29, name="dense_1"), layers.Activation("softmax", name="activation_1")])
    by_hand.load_weights(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), by_hand.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def old_keras2_copy(model, dst: Path, version: str, edit, built_later: bool = False) -> Path:  # type: ignore[no-untyped-def]
    """A tf_keras model saved as .h5, its config rewritten as the multi-backend Keras `version` wrote it: its
    Sequential without an InputLayer, the first layer declaring batch_input_shape (or, `built_later`, for a model
    made without an input shape and built by fit: none, and the Sequential's build_input_shape), then
    `edit(layers)`."""
    model.save(dst)
    with h5py.File(dst, "r+") as f:
        for group in (f, f["model_weights"]):  # Keras 2 writes both
            group.attrs["keras_version"] = version
            group.attrs["backend"] = "tensorflow"
        cfg = json.loads(f.attrs["model_config"])
        shape = cfg["config"]["layers"][0]["config"]["batch_input_shape"]
        layers = [e for e in cfg["config"]["layers"] if e["class_name"] != "InputLayer"]
        for e in layers:
            e.pop("module", None), e.pop("registered_name", None), e["config"].pop("dtype", None)
        if built_later:
            cfg["config"]["build_input_shape"] = shape
        else:
            layers[0]["config"]["batch_input_shape"] = shape
        edit(layers)
        cfg["config"]["layers"] = layers
        f.attrs["model_config"] = json.dumps(cfg)
    assert lstm_inspect.load(dst).keras_version == version  # read as the old Keras's file
    return dst


def keras_outputs_match(path: Path, x: np.ndarray, expected: np.ndarray) -> None:
    """verify passes, and its Keras reference gives what the Keras that made the file gave."""
    from lstm_inspect.check.keras_ref import build_model

    ckpt = lstm_inspect.load(path)
    report = verify(ckpt, [x])
    assert report.ok, [c.to_dict() for c in report.comparisons if not c.ok]
    _, model = build_model(ckpt, [(None, *x.shape[1:])])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_verify_rebuilds_a_keras20_embedding_gru(tmp_path: Path) -> None:
    """Keras 2.0-2.1's Embedding wrote dtype int32 (its input placeholder's); tf_keras reads a layer's dtype as its
    weights', so the rebuild failed ('Cannot convert -0.05 to EagerTensor of dtype int32', the initializer's
    bound). The multi-backend dtype is the input's: verify now rebuilds the model and matches."""
    import tf_keras as keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((None,)), keras.layers.Embedding(40, 8, name="embedding_1"),
                              keras.layers.GRU(6, reset_after=False, recurrent_activation="hard_sigmoid",
                                               return_sequences=True, name="gru_1"),
                              keras.layers.Dense(3, name="dense_1")])
    x = np.random.default_rng(6).integers(0, 40, size=(3, 9)).astype(np.int64)
    expected = model.predict(x, verbose=0)

    def keras20(layers: list[dict]) -> None:
        layers[0]["config"]["dtype"] = "int32"
        del layers[1]["config"]["reset_after"]  # Keras 2.0 had none: it computed reset_after=False

    keras_outputs_match(old_keras2_copy(model, tmp_path / "embedding_gru.h5", "2.0.8", keras20), x, expected)


def test_verify_rebuilds_a_time_distributed_conv_before_a_gru(tmp_path: Path) -> None:
    """TimeDistributed(Conv2D) -> TimeDistributed(Flatten) -> GRU as Keras 2.3.1 wrote it for a model built by fit:
    no layer declares the input, the Sequential's build_input_shape does. The rebuild left the model unbuilt ('Keras
    refused the stored weights (... expecting 0 weights. Provided weights: [array(...'); every layer is now built on
    a real input before its weights are set, and verify matches Keras's own outputs."""
    import tf_keras as keras

    keras.utils.set_random_seed(7)
    layers = keras.layers
    model = keras.Sequential([keras.Input((5, 8, 8, 2)),
                              layers.TimeDistributed(layers.Conv2D(4, 3, activation="relu"), name="time_distributed_1"),
                              layers.TimeDistributed(layers.Flatten(), name="time_distributed_2"),
                              layers.GRU(6, reset_after=False, name="gru_1"), layers.Dense(2, name="dense_1")])
    x = np.random.default_rng(8).normal(size=(3, 5, 8, 8, 2)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = old_keras2_copy(model, tmp_path / "td_conv_gru.h5", "2.3.1", lambda layers: None, built_later=True)
    keras_outputs_match(path, x, expected)


def test_keras_s_refusal_of_the_weights_prints_no_array(tmp_path: Path) -> None:
    """A Dense whose config says no bias but whose file holds one: Keras refuses the weights with a message that
    prints them ('Provided weights: [array([[...'); the rebuild says it in one line, cut before the array. verify
    runs the engine first (the resource budget), which refuses the file in its own words, naming it."""
    from lstm_inspect.base.errors import InspectError
    from lstm_inspect.check.keras_ref import build_model

    dst = tmp_path / "dense_bias.h5"
    shutil.copy(SAMPLES / "tfk_rnn_cells.h5", dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        next(e for e in cfg["config"]["layers"] if e["class_name"] == "Dense")["config"]["use_bias"] = False
        f.attrs["model_config"] = json.dumps(cfg)
    r = run_cli("verify", str(dst))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"lstm-inspect: {dst}: ") and "expected 1 weight arrays, found 2" in r.stderr
    assert "array(" not in r.stderr and "[[" not in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(InspectError) as refused:
        build_model(lstm_inspect.load(dst))
    said = str(refused.value)
    assert "\n" not in said and "Keras refused the stored weights" in said and "expecting 1 weights" in said, said
    assert "array" not in said and "[[" not in said, said
