"""RNN over StackedRNNCells and the transposed convolutions (issue 25), against Keras's own outputs.

The samples (sample_models/stacked_samples.py, both Keras generations): RNN(StackedRNNCells([LSTMCell, GRUCell]))
returning sequences; RNN([LSTMCell, LSTMCell], return_state=True, go_backwards=True) after a Masking layer, whose
input is padded (so the mask, the reversed order and the states' order all count); Conv1DTranspose → LSTM and
TimeDistributed(Conv2DTranspose) → GRU. Each runs in the engine within 1e-5 of Keras, passes `verify` (Keras
rebuilt), and both exports, run by onnxruntime and torch, give Keras's outputs. Each setting of the transposed
convolutions (padding, strides, dilation, output_padding, data_format) is a case of tests/cases/layers.py, run
against both Kerases by tests/test_layers.py and tests/test_export_layers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.architecture import LayerNode, recurrent_specs, unsupported_recurrent

from conftest import SAMPLES, run_cli
from helpers.io import inputs_and_outputs, max_error

STACKED = ["k3_stacked_cells.keras", "tfk_stacked_cells.h5", "k3_stacked_cells_state.keras",
           "tfk_stacked_cells_state.h5", "k3_stacked_cells_backwards.keras", "tfk_stacked_cells_backwards.h5"]
# each stacked sample's layer and its cells: (kind, N_i, N_c)
CELLS = {"stacked_cells": ("stacked", [("RNN(LSTMCell)", 3, 4), ("RNN(GRUCell)", 4, 3)]),
         "stacked_cells_state": ("stack", [("RNN(LSTMCell)", 3, 4), ("RNN(LSTMCell)", 4, 3)]),
         "stacked_cells_backwards": ("stack", [("RNN(LSTMCell)", 3, 4), ("RNN(GRUCell)", 4, 3)])}
TRANSPOSED = ["k3_conv1d_transpose.keras", "tfk_conv1d_transpose.h5", "k3_conv2d_transpose.keras",
              "tfk_conv2d_transpose.h5"]
ALL = STACKED + TRANSPOSED


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ALL)
def test_forward_matches_keras(name: str, dtype: type) -> None:
    xs, ys = inputs_and_outputs(SAMPLES / name)
    out = lstm_inspect.load(SAMPLES / name).forward(xs[0], dtype=dtype)
    outs = out if isinstance(out, list) else [out]
    assert [o.shape for o in outs] == [y.shape for y in ys]
    assert max_error(outs, ys) <= 1e-5


@pytest.mark.parametrize("name", STACKED[2:4])
def test_stacked_states_come_back_in_the_cells_order(name: str) -> None:
    """Keras returns every cell's final states, cell 0's first (h0, c0, h1, c1): each one is Keras's; the padded rows
    make the mask matter (a row of padding read as data moves every state)."""
    xs, ys = inputs_and_outputs(SAMPLES / name)
    ckpt = lstm_inspect.load(SAMPLES / name)
    _, *states = ckpt.forward(xs[0])
    assert [s.shape[-1] for s in states] == [4, 4, 3, 3]
    for got, want in zip(states, ys[1:]):
        assert np.max(np.abs(got - want)) <= 1e-5
    padded = xs[0].copy()
    padded[0, -1] = 1.0  # a padded step of row 0 made data: Keras's mask no longer skips it
    _, *moved = ckpt.forward(padded)
    assert np.max(np.abs(moved[2][0] - ys[3][0])) > 1e-3


@pytest.mark.parametrize("name", STACKED)
def test_show_lists_each_cell(name: str) -> None:
    r = run_cli("show", str(SAMPLES / name), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    layer, cells = CELLS[name.split(".")[0].split("_", 1)[1]]
    got = [(d["name"], d["stacked_cell"], d["kind"], d["input_dim"], d["units"]) for d in info["layers"]]
    assert got == [(f"{layer}/cell_{k}", k, *cell) for k, cell in enumerate(cells)]


def test_show_table_names_the_stack_and_its_cells() -> None:
    r = run_cli("show", str(SAMPLES / "tfk_stacked_cells_state.h5"))
    assert r.returncode == 0, r.stderr
    for text in ("RNN(StackedRNNCells)", "stack/cell_0", "stack/cell_1", "seq state backwards", "state backwards"):
        assert text in r.stdout, text


def test_a_tensorflow_checkpoint_of_a_stack() -> None:
    """save_weights' TensorFlow format keeps cell k's variables under cell/cells/k/: read with the model's JSON, the
    stack going backwards and returning sequences gives Keras's outputs."""
    folder = SAMPLES / "tfk_stacked_cells_backwards_ckpt"
    ckpt = lstm_inspect.load(folder, config=SAMPLES / "tfk_stacked_cells_backwards.json")
    assert [a.key.split("/.ATTRIBUTES")[0] for d in ckpt.directions for a in d.arrays][:2] == [
        "layer_with_weights-0/cell/cells/0/kernel", "layer_with_weights-0/cell/cells/0/recurrent_kernel"]
    xs, ys = inputs_and_outputs(SAMPLES / "tfk_stacked_cells_backwards.h5")
    assert max_error([ckpt.forward(xs[0])], ys) <= 1e-5


def test_a_list_of_cells_is_a_stack() -> None:
    """RNN([cell, cell]) as some configs store it (a bare list, which Keras wraps in StackedRNNCells): one direction
    per cell, every cell but the last returning sequences, all with the layer's go_backwards."""
    lstm = {"class_name": "LSTMCell", "config": {"units": 4, "name": "a"}}
    gru = {"class_name": "GRUCell", "config": {"units": 2, "name": "b", "reset_after": True}}
    node = LayerNode(name="rnn", path="rnn", parts=("rnn",), class_name="RNN",
                     config={"name": "rnn", "cell": [lstm, gru], "go_backwards": True})
    specs = recurrent_specs(node, "2.4.0")
    assert [(s.name, s.kind, s.stack_index, s.settings.return_sequences, s.settings.go_backwards) for s in specs] == [
        ("rnn/cell_0", "RNN(LSTMCell)", 0, True, True), ("rnn/cell_1", "RNN(GRUCell)", 1, False, True)]
    assert [s.stack_arrays for s in specs] == [(0, 3), (3, 3)]
    # what is not modelled is named: a stack wrapped in Bidirectional, a stack holding a cell of another kind
    stack = {"class_name": "StackedRNNCells", "config": {"cells": [lstm, gru]}}
    assert unsupported_recurrent("Bidirectional", {"layer": {"class_name": "RNN", "config": {"cell": stack}}}) == \
        "Bidirectional(RNN(StackedRNNCells))"
    peephole = {"class_name": "StackedRNNCells", "config": {"cells": [lstm, {"class_name": "PeepholeLSTMCell"}]}}
    assert unsupported_recurrent("RNN", {"cell": peephole}) == "RNN(StackedRNNCells([LSTMCell, PeepholeLSTMCell]))"
    assert unsupported_recurrent("RNN", {"cell": stack}) is None


@pytest.mark.parametrize("name", ["k3_stacked_cells_state.keras"])
def test_verify_passes(name: str) -> None:
    """The command a user types (tests/test_verify.py verifies every sample of both generations, these included)."""
    pytest.importorskip("keras" if name.startswith("k3") else "tf_keras",
                        reason="verify rebuilds the model in the Keras that wrote it")
    r = run_cli("verify", str(SAMPLES / name))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "match: every output within tolerance" in r.stdout


def test_verify_a_stack_alone(tmp_path: Path) -> None:
    """`verify --layer stack`: Keras runs each cell alone, the second on the first one's outputs put back in input
    time order (the stack goes backwards), against the engine's stack."""
    pytest.importorskip("tf_keras", reason="verify rebuilds the model in the Keras that wrote it")
    r = run_cli("verify", str(SAMPLES / "tfk_stacked_cells_backwards.h5"), "--layer", "stack")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Keras ran each cell of stack alone" in r.stdout and "match" in r.stdout


@pytest.mark.parametrize("name", ALL)
def test_onnx_export_matches_keras(name: str, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    from lstm_inspect.export import plan_export
    from lstm_inspect.export.onnx.build import build_model, run

    xs, ys = inputs_and_outputs(SAMPLES / name)
    out = tmp_path / "model.onnx"
    out.write_bytes(build_model(plan_export(lstm_inspect.load(SAMPLES / name))).SerializeToString())
    onnx.checker.check_model(str(out), full_check=True)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if "transpose" in name:
        assert "ConvTranspose" in ops
    got = run(out, xs)
    assert len(got) == len(ys) and max_error(got, ys) <= 1e-5


@pytest.mark.parametrize("name", ALL)
def test_pytorch_export_matches_keras(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime)")
    pytest.importorskip("safetensors", reason="safetensors is not installed: pip install 'lstm-inspect[pytorch]'")
    from lstm_inspect.export import plan_export
    from lstm_inspect.export.torch.build import build, run

    xs, ys = inputs_and_outputs(SAMPLES / name)
    folder = tmp_path / "pt"
    folder.mkdir()
    for file, data in build(plan_export(lstm_inspect.load(SAMPLES / name))).items():
        (folder / file).write_bytes(data)
    code = (folder / "model.py").read_text()
    if "stacked" in name:
        layer, _ = CELLS[name.split(".")[0].split("_", 1)[1]]
        assert f"self.{layer}_cell_0 = " in code and f"self.{layer}_cell_1 = " in code
    else:
        assert "nn.ConvTranspose" in code
    got = run(folder, xs)
    assert len(got) == len(ys) and max_error(got, ys) <= 1e-5


@pytest.mark.parametrize("name", STACKED[2:3])
def test_a_stack_alone_exports_with_every_state(name: str, tmp_path: Path) -> None:
    """`export --layer stack`: the stacked layer alone, its output and its four states, run by the target's runtime
    and compared with the engine (the export command's own check)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    r = run_cli("export", str(SAMPLES / name), "--to", "onnx", "--layer", "stack", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "verified with onnxruntime" in r.stdout + r.stderr


def test_transposed_settings_keras_refuses_are_refused_in_one_line(tmp_path: Path) -> None:
    """output_padding not below the strides: Keras refuses the layer; so does every command that runs it."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_conv1d_transpose.keras")
    node = next(n for n in ckpt.graph.walk() if n.class_name == "Conv1DTranspose")
    node.config["output_padding"] = 2  # strides 2
    with pytest.raises(InspectError, match=r"output_padding \(2,\) is not below strides \(2,\)"):
        ckpt.forward(inputs_and_outputs(SAMPLES / "k3_conv1d_transpose.keras")[0][0])
    # "same", an even kernel, output_padding 0: TensorFlow aborts (AbortedError from Keras 3.15's Conv1DTranspose on
    # a (1, 4, 3) input, checked by hand); the engine refuses it before computing anything
    node.config.update(output_padding=0, kernel_size=2)
    with pytest.raises(InspectError, match="TensorFlow refuses it too"):
        ckpt.forward(inputs_and_outputs(SAMPLES / "k3_conv1d_transpose.keras")[0][0])
