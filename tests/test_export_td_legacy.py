"""A Keras 2.3.1 TimeDistributed(Conv2D) → GRU model (a TimeDistributed(BatchNormalization) between), in the three
forms Keras 2.3.1 writes it, shown, run and exported to ONNX and PyTorch, each against Keras's own outputs (issue 23
§2).

The samples (sample_models/k231_cnn_td_conv2d*.h5, written by sample_models/legacy_k231.py as Keras 2.3.1's
`save_model` writes them, their outputs from tf_keras loading each file) differ only where the model's input shape
is declared: on the first TimeDistributed wrapper (`input_shape=` given to it), on the InputLayer (functional), or
only in the Sequential's `build_input_shape` (a model whose first layer declares nothing, built by fit/predict, the
wrapped Conv2D carrying a frame's shape that Keras ignores). The last form is the one that gives issue 23's symptoms:
the engine took the input as rank 3 whatever `--input` was given, and the exports refused with the issue's two
messages ("Conv2D needs an input of rank 4"; PyTorch: the TimeDistributed(BatchNormalization)'s "rank of its
input is unknown").
The expected values are the `.io.npz` beside each sample (Keras's predict on the file); the exports are run by
onnxruntime and by torch loading the written model.py and weights as its README says.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import Network, default_inputs
from lstm_inspect.export import export

from conftest import SAMPLES, run_cli, show_json
from helpers.io import inputs_and_outputs, max_error

NAMES = ["k231_cnn_td_conv2d", "k231_cnn_td_conv2d_deferred", "k231_cnn_td_conv2d_functional"]


def _sample(name: str) -> Path:
    return SAMPLES / f"{name}.h5"


def test_the_samples_hold_keras_231s_layout() -> None:
    """What the exports must cope with, read straight from the files: keras_version 2.3.1, no InputLayer in a
    Sequential, the batch shape on the wrapper (not on the Conv2D it wraps) or only in build_input_shape."""
    configs = {}
    for name in NAMES:
        with h5py.File(_sample(name), "r") as f:
            assert f.attrs["keras_version"] in ("2.3.1", b"2.3.1")
            configs[name] = json.loads(f.attrs["model_config"])
    plain, deferred = configs["k231_cnn_td_conv2d"]["config"], configs["k231_cnn_td_conv2d_deferred"]["config"]
    for body in (plain, deferred):
        assert [e["class_name"] for e in body["layers"]][:2] == ["TimeDistributed", "TimeDistributed"]
    first = plain["layers"][0]["config"]
    assert first["batch_input_shape"] == [None, 5, 8, 8, 1] and "batch_input_shape" not in first["layer"]["config"]
    assert "build_input_shape" not in plain
    first = deferred["layers"][0]["config"]
    assert "batch_input_shape" not in first and first["layer"]["config"]["batch_input_shape"] == [None, 8, 8, 1]
    assert deferred["build_input_shape"] == [None, 5, 8, 8, 1]
    functional = configs["k231_cnn_td_conv2d_functional"]["config"]["layers"]
    assert functional[0]["class_name"] == "InputLayer" and "batch_input_shape" not in functional[1]["config"]


@pytest.mark.parametrize("name", NAMES)
def test_show_reads_it_and_every_shape_checks(name: str) -> None:
    """The GRU's sizes are those of the weights Keras reports (tf_keras's get_weights, in the .ref.npz)."""
    info = show_json(_sample(name))
    assert info["keras_version"] == "2.3.1" and info["shapes_ok"] is True
    with np.load(SAMPLES / f"{name}.ref.npz") as ref:
        kernel, recurrent = ref["gru_1:kernel"], ref["gru_1:recurrent_kernel"]
    (gru,) = info["layers"]
    assert (gru["name"], gru["kind"], gru["reset_after"], gru["recurrent_activation"]) == ("gru_1", "GRU", False,
                                                                                            "sigmoid")
    assert (gru["input_dim"], gru["units"]) == (kernel.shape[0], recurrent.shape[0]) == (27, 6)


@pytest.mark.parametrize("name", NAMES)
def test_forward_equals_keras(name: str) -> None:
    (x,), (y,) = inputs_and_outputs(_sample(name))
    got = lstm_inspect.load(_sample(name)).forward(x)
    assert got.shape == y.shape == (3, 3)
    assert max_error([got], [y]) <= 1e-5


def test_cli_forward_equals_keras(tmp_path: Path) -> None:
    name = "k231_cnn_td_conv2d_deferred"
    (x,), (y,) = inputs_and_outputs(_sample(name))
    np.save(tmp_path / "x.npy", x)
    r = run_cli("forward", str(_sample(name)), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy")
    assert got.shape == y.shape == (3, 3)
    assert max_error([got], [y]) <= 1e-5


def test_the_declared_shape_is_the_one_keras_builds_from() -> None:
    """The deferred form's input comes from build_input_shape (what Sequential.from_config builds the model
    from): a made-up input has the model's rank, and an input of another rank is refused in one line."""
    ckpt = lstm_inspect.load(_sample("k231_cnn_td_conv2d_deferred"))
    (x,), _ = inputs_and_outputs(_sample("k231_cnn_td_conv2d_deferred"))
    net = Network(ckpt)
    assert [s[1] for s in net.input_specs()] == [(None, *x.shape[1:])]
    assert default_inputs(net)[0].shape[1:] == x.shape[1:]
    with pytest.raises(InspectError):
        net.check_inputs([x[:, :, :, :, 0]])


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_equals_keras(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    (x,), (y,) = inputs_and_outputs(_sample(name))
    out = tmp_path / f"{name}.onnx"
    report = export(lstm_inspect.load(_sample(name)), "onnx", out)  # what `export --to onnx` calls
    assert report.ok and report.written == [out.name]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (only,) = session.get_inputs()
    assert len(only.shape) == 5 and only.shape[1:] == [5, 8, 8, 1]
    got = session.run(None, {only.name: x})
    assert got[0].shape == y.shape
    assert max_error(got, [y]) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_pytorch_export_equals_keras(name: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime)")
    st = pytest.importorskip("safetensors.torch", reason="safetensors is not installed: pip install "
                             "'lstm-inspect[pytorch]'")
    (x,), (y,) = inputs_and_outputs(_sample(name))
    out = tmp_path / f"{name}_pt"
    report = export(lstm_inspect.load(_sample(name)), "pytorch", out)  # what `export --to pytorch` calls
    assert report.ok and "model.py" in report.written
    spec = importlib.util.spec_from_file_location(f"k231_model_{name}", out / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        model = module.Model().eval()
        model.load_state_dict(st.load_file(str(out / "weights.safetensors")))
        with torch.no_grad():
            got = model(torch.from_numpy(x))
    finally:
        sys.modules.pop(spec.name, None)
    got = got.numpy()
    assert got.shape == y.shape
    assert max_error([got], [y]) <= 1e-5
