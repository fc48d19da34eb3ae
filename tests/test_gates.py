"""The gate model equals the slices of what Keras's get_weights() reports, on every checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstm_inspect

from conftest import SAMPLES, expected_gate, gate_names, keras_refs, realworld_checkpoints, sample_checkpoints, stem


def _assert_gates_equal_keras(path: Path, refs: dict[str, dict[str, np.ndarray]]) -> None:
    ckpt = lstm_inspect.load(path)
    assert sorted(d.name for d in ckpt.directions) == sorted(refs), "LSTM directions differ from Keras's"
    for d in ckpt.directions:
        ref = refs[d.name]
        gates = d.gates()
        assert d.input_dim == ref["kernel"].shape[0] and d.units == ref["recurrent_kernel"].shape[0]
        assert tuple(gates) == gate_names(ref)
        for k, g in enumerate(gate_names(ref)):
            W, b = expected_gate(ref, g)
            assert gates[g].W.shape == (d.units, d.input_dim + d.units)
            np.testing.assert_array_equal(gates[g].W, W, err_msg=f"{path.name} {d.name} W_{g}")
            np.testing.assert_array_equal(gates[g].b, b, err_msg=f"{path.name} {d.name} b_{g}")
            if "bias" in ref and ref["bias"].ndim == 2:  # a GRU's recurrent bias row
                np.testing.assert_array_equal(gates[g].b_h, ref["bias"][1][k * d.units:(k + 1) * d.units])


@pytest.mark.parametrize("path", sample_checkpoints(), ids=lambda p: p.name)
def test_sample_gates_equal_keras_slices(path: Path) -> None:
    _assert_gates_equal_keras(path, keras_refs(SAMPLES / f"{stem(path)}.ref.npz"))


@pytest.mark.parametrize("path", realworld_checkpoints(with_weights=True), ids=lambda p: p.name)
def test_realworld_gates_equal_keras_slices(path: Path, realworld_refs: dict) -> None:
    _assert_gates_equal_keras(path, realworld_refs[path.name])


def test_keras1_file_is_read_in_i_c_f_o_order() -> None:
    """The Keras 1 file's forget bias is the third stored array set (b_f after b_c)."""
    path = next((p for p in realworld_checkpoints() if "keras108" in p.name), None)
    if path is None:
        pytest.skip("../shared/realworld is not beside this clone")
    import h5py

    d = lstm_inspect.load(path).direction("lstm_1")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(d.gates()["f"].b, f["model_weights/lstm_1/lstm_1_b_f"][()])
        np.testing.assert_array_equal(d.gates()["c"].W_h, f["model_weights/lstm_1/lstm_1_U_c"][()].T)


def test_cudnn_bias_halves_add_up() -> None:
    """CuDNNLSTM stores input then recurrent biases; the gate bias is their sum (as Keras converts)."""
    import h5py

    path = SAMPLES / "tfk_cudnn.h5"
    d = lstm_inspect.load(path).directions[0]
    with h5py.File(path, "r") as f:
        raw = f["model_weights/cu_dnnlstm/cu_dnnlstm/bias:0"][()]
    u = d.units
    np.testing.assert_array_equal(d.gates()["o"].b, raw[3 * u : 4 * u] + raw[7 * u : 8 * u])
