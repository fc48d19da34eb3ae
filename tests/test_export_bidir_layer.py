"""`export --layer BIDIRECTIONAL` (a Bidirectional's Keras name) to ONNX and PyTorch: the layer alone, both directions
merged as Keras merges them (concat, ave, sum, None), its states after the output when it returns them, run by
onnxruntime and torch and compared with Keras's own Bidirectional layer on the same input (each generation in a
subprocess), and with a weights-only real file's directions as tf_keras computes them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.export import export, plan_export
from lstm_inspect.export.onnx.build import run as run_onnx
from lstm_inspect.export.torch.build import run as run_torch
from lstm_inspect.model.architecture import LayerNode, ModelGraph

from conftest import REALWORLD, SAMPLES, run_cli
from helpers.keras import keras_layer_alone
from helpers.real_keras import real_keras_outputs


def _x(name: str, features: int) -> np.ndarray:
    """The sample's own input when the layer takes it, else a seeded one of the layer's feature size."""
    with np.load(SAMPLES / f"{name}.io.npz") as d:
        x = d["x"]
    if x.ndim == 3 and x.shape[-1] == features:
        return x.astype(np.float32)
    return np.random.default_rng(7).normal(size=(3, 6, features)).astype(np.float32)


CASES = [  # (file, Bidirectional, N_i, what it shows)
    ("tfk_bidir_concat.h5", "bidirectional", 3),  # concat, sequences
    ("tfk_bidir_concat.h5", "bidirectional_1", 10),  # ave, last output
    ("k3_bidir_sum.keras", "bidirectional_1", 3),  # sum, last output
    ("k3_merge_none.keras", "bilstm", 3),  # merge_mode None, return_state: 2 outputs and 4 states
    ("tfk_merge_none.h5", "bilstm", 3),
]
IDS = [f"{f}-{layer}" for f, layer, _ in CASES]


@pytest.fixture(scope="module")
def keras_layers(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[np.ndarray]]:
    """Keras's outputs of each CASES layer alone on its input, in the order the layer returns them."""
    pytest.importorskip("tf_keras", reason="the Keras values come from tf_keras and Keras 3")
    pytest.importorskip("keras", reason="the Keras values come from tf_keras and Keras 3")
    found = keras_layer_alone(tmp_path_factory, "export-bidir-layer", SAMPLES,
                              [(file, layer, None, _x(file.rsplit(".", 1)[0], n_i)) for file, layer, n_i in CASES])
    return {k: [ys[f"y{j}"] for j in range(len(ys))] for k, ys in found.items()}


def _run(target: str, out: Path, x: np.ndarray) -> list[np.ndarray]:
    """The written export run by its own runtime."""
    return (run_onnx if target == "onnx" else run_torch)(out, [x])


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
@pytest.mark.parametrize("k", range(len(CASES)), ids=IDS)
def test_export_of_a_bidirectional_equals_keras_layer(k: int, target: str, keras_layers: dict, tmp_path: Path) -> None:
    """The exported layer, run by onnxruntime or torch on an input of other batch and length than the export's
    check, gives every output Keras's Bidirectional gives (merged output(s), then forward's and backward's states)."""
    if target == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    else:
        pytest.importorskip("torch", reason="torch is not installed: pip install 'lstm-inspect[pytorch]'")
    file, layer, n_i = CASES[k]
    x = _x(file.rsplit(".", 1)[0], n_i)
    out = tmp_path / ("m.onnx" if target == "onnx" else "port")
    report = export(lstm_inspect.load(SAMPLES / file), target, out, layer=layer)
    assert report.ok and report.what == f"layer {layer}"
    want = keras_layers[k]
    got = _run(target, out, x)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert max(float(np.max(np.abs(g - w))) for g, w in zip(got, want)) <= 1e-5


def test_export_layer_on_the_command_line(tmp_path: Path, keras_layers: dict) -> None:
    """The CLI names the layer it exported; the ONNX file equals Keras and the CLI's own `forward --layer`."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    file, layer, n_i = CASES[2]
    x = _x(file.rsplit(".", 1)[0], n_i)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("export", str(SAMPLES / file), "--layer", layer, "--to", "onnx", "-o", str(tmp_path / "m.onnx"),
                "-i", str(tmp_path / "x.npy"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["exported"] == f"layer {layer}" and report["verified"]
    r = run_cli("forward", str(SAMPLES / file), "--layer", layer, "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    (got,) = _run("onnx", tmp_path / "m.onnx", x)
    np.testing.assert_allclose(got, keras_layers[2][0], atol=1e-5)
    np.testing.assert_allclose(got, np.load(tmp_path / "y.npy"), atol=1e-6)


REAL_TFCKPT = "tf-formats/bilstm_tfckpt_two_shards"


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_weights_only_bidirectional_exports_whole(target: str, tmp_path_factory: pytest.TempPathFactory,
                                                   tmp_path: Path) -> None:
    """A TF checkpoint with no architecture (settings by default: concat, last output): the Bidirectional exported
    as one layer gives [forward's h, backward's h], what tf_keras's Bidirectional(LSTM) concatenates."""
    if target == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    else:
        pytest.importorskip("torch", reason="torch is not installed: pip install 'lstm-inspect[pytorch]'")
    pytest.importorskip("tf_keras", reason="the Keras values come from tf_keras")
    real: dict[str, Any] = real_keras_outputs(tmp_path_factory)  # skips without ../shared/realworld
    x = real["tfckpt:bidirectional/forward_lstm:x"]
    want = np.concatenate([real["tfckpt:bidirectional/forward_lstm:h"],
                           real["tfckpt:bidirectional/backward_lstm:h"]], axis=-1)
    out = tmp_path / ("m.onnx" if target == "onnx" else "port")
    report = export(lstm_inspect.load(REALWORLD / REAL_TFCKPT), target, out, layer="bidirectional")
    assert report.ok
    (got,) = _run(target, out, x)
    assert got.shape == want.shape and float(np.max(np.abs(got - want))) <= 1e-5


def test_a_time_major_bidirectional_is_refused() -> None:
    """A time_major layer takes (steps, batch, N_i), which an export of the layer alone does not: one line naming
    the file, as for a direction."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_sum.keras")
    for d in ckpt.directions_of("bidirectional_1"):
        d.settings = dataclasses.replace(d.settings, time_major=True)
    with pytest.raises(InspectError, match=r"k3_bidir_sum\.keras: layer bidirectional_1 is time_major"):
        plan_export(ckpt, "bidirectional_1")


def test_a_bidirectional_inside_a_nested_model(keras_layers: dict, tmp_path: Path) -> None:
    """The same Bidirectional moved inside a nested Sequential (its path outer/bidirectional, as a reader gives a
    nested model's layers) exports the same: equal to Keras's own layer on the same input."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    file, layer, n_i = CASES[0]
    ckpt = lstm_inspect.load(SAMPLES / file)
    assert ckpt.graph is not None
    inner = ckpt.graph
    for node in inner.layers:
        node.path, node.parts = f"outer/{node.name}", ("outer", node.name)
    for d in ckpt.directions:
        d.layer_path = f"outer/{d.layer_path}"
    outer = LayerNode(name="outer", path="outer", parts=("outer",), class_name="Sequential", config={}, children=inner)
    ckpt.graph = ModelGraph("Sequential", "model", [outer], [], [])
    report = export(ckpt, "onnx", tmp_path / "m.onnx", layer=f"outer/{layer}")
    assert report.ok and report.what == f"layer outer/{layer}"
    (got,) = run_onnx(tmp_path / "m.onnx", [_x(file.rsplit(".", 1)[0], n_i)])
    np.testing.assert_allclose(got, keras_layers[0][0], atol=1e-5)
