"""ConvLSTM1D/2D/3D (issue 25): read from both Keras generations, run by the engine, traced and verified.

Every expected value is Keras's own: the samples' outputs (sample_models/*convlstm*.io.npz, written by
sample_models/generate.py with Keras 3 and tf_keras), their get_weights() (*.ref.npz), and a trained Keras 3.13
model from a public repository (/work/shared/realworld/convlstm, its .io.npz made by Keras 3.15).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect

from conftest import REALWORLD, SAMPLES, run_cli

SAMPLE_NAMES = ["k3_convlstm1d.keras", "k3_convlstm2d.keras", "k3_convlstm2d_seq.keras", "k3_convlstm2d_dilated.keras",
                "k3_convlstm2d_state.keras", "k3_convlstm3d.keras", "k3_convlstm2d_bidir.keras",
                "k3_convlstm2d_cf.keras", "k3_convlstm2d_mask.keras", "tfk_convlstm1d.h5", "tfk_convlstm2d_seq.h5",
                "tfk_convlstm2d_dilated.h5", "tfk_convlstm2d_state.h5", "tfk_convlstm3d.h5", "tfk_convlstm2d_bidir.h5",
                "tfk_convlstm2d_mask.h5"]
CLIMATE = REALWORLD / "convlstm" / "convlstm2d_climate_keras3132.keras"


def _io(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    io = np.load(SAMPLES / (path.name.rsplit(".", 1)[0] + ".io.npz"))
    return io["x"], [io[k] for k in sorted(io.files) if k.startswith("y")]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_forward_matches_keras(name: str) -> None:
    path = SAMPLES / name
    x, ys = _io(path)
    out = lstm_inspect.load(path).forward(x)
    outs = out if isinstance(out, list) else [out]
    assert len(outs) == len(ys)
    for ours, keras in zip(outs, ys):
        assert ours.shape == keras.shape
        np.testing.assert_allclose(ours, keras, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["k3_convlstm2d_seq.keras", "tfk_convlstm3d.h5", "k3_convlstm1d.keras"])
def test_show_splits_each_gate_into_keras_kernels(name: str) -> None:
    path = SAMPLES / name
    ckpt = lstm_inspect.load(path)
    refs = np.load(SAMPLES / (path.name.rsplit(".", 1)[0] + ".ref.npz"))
    for d in ckpt.directions:
        assert d.shapes_ok and d.cell.kind == "ConvLSTM"
        kernel, recurrent = refs[f"{d.name}:kernel"], refs[f"{d.name}:recurrent_kernel"]
        f = recurrent.shape[-2]
        assert (d.units, d.input_dim) == (f, kernel.shape[-2])
        assert d.settings.conv.kernel_size == kernel.shape[:-2]
        gates = d.gates()
        assert list(gates) == ["i", "f", "c", "o"]
        for k, gate in enumerate(gates.values()):
            assert gate.W_x.shape == (*kernel.shape[:-1], f) and gate.W_h.shape == (*recurrent.shape[:-1], f)
            np.testing.assert_array_equal(gate.W_x, kernel[..., k * f:(k + 1) * f])
            np.testing.assert_array_equal(gate.W_h, recurrent[..., k * f:(k + 1) * f])
    r = run_cli("show", str(path))
    assert r.returncode == 0, r.stderr
    d0 = ckpt.directions[0]
    k = "×".join(map(str, d0.settings.conv.kernel_size))
    assert f"W_x {k}×{d0.input_dim}×{d0.units} W_h {k}×{d0.units}×{d0.units}" in r.stdout


def test_show_names_a_shape_that_does_not_fit_filters(tmp_path: Path) -> None:
    import h5py  # the test edits a copy of a tf_keras sample: the recurrent kernel of the wrong filters

    bad = tmp_path / "bad.h5"
    bad.write_bytes((SAMPLES / "tfk_convlstm3d.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        names = []
        f.visit(lambda n: names.append(n) if n.endswith("recurrent_kernel:0") else None)
        del f[names[0]]
        f[names[0]] = np.zeros((2, 2, 2, 3, 12), np.float32)
    ckpt = lstm_inspect.load(bad)
    assert any("filters=2" in p and "recurrent_kernel" in p for p in ckpt.directions[0].problems)


def test_trace_gates_are_feature_maps_that_rebuild_keras_output() -> None:
    path = SAMPLES / "k3_convlstm2d_state.keras"
    x, (y, h, c) = _io(path)
    tr = lstm_inspect.load(path).trace(x)
    t = tr["conv_lstm"]
    assert t["i"].shape == (2, 3, 5, 5, 2) and t["z"].shape == (2, 3, 5, 5, 8)
    # Keras's own equations on the traced gates give Keras's outputs: h = o⊙tanh(c), c = f⊙c_prev + i⊙c̃
    np.testing.assert_allclose(t["h"], y, atol=1e-5)
    np.testing.assert_allclose(t["h"][:, -1], h, atol=1e-5)
    np.testing.assert_allclose(t["c"][:, -1], c, atol=1e-5)
    c_prev = np.concatenate([np.zeros_like(t["c"][:, :1]), t["c"][:, :-1]], axis=1)
    np.testing.assert_allclose(t["f"] * c_prev + t["i"] * t["c_tilde"], t["c"], atol=1e-6)
    np.testing.assert_allclose(t["o"] * np.tanh(t["c"]), t["h"], atol=1e-6)
    assert t["i"].min() >= 0 and t["i"].max() <= 1


def test_real_climate_model_matches_keras_in_seconds() -> None:
    if not CLIMATE.exists():
        pytest.skip("the shared real-world files are not on this machine")
    io = np.load(str(CLIMATE) + ".io.npz")
    ckpt = lstm_inspect.load(CLIMATE)
    start = time.perf_counter()
    y = ckpt.forward(io["x"])
    took = time.perf_counter() - start
    np.testing.assert_allclose(y, io["y"], atol=1e-5, rtol=0)
    assert took < 20, took


@pytest.mark.parametrize("command", ["stats", "dump", "plot", "diagnose", "export"])
def test_other_commands_refuse_in_one_line(command: str, tmp_path: Path) -> None:
    path = SAMPLES / "k3_convlstm2d_seq.keras"
    x, (y,) = _io(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    extra = {"stats": [], "dump": ["--out", str(tmp_path / "d")], "plot": ["--out", str(tmp_path / "p")],
             "diagnose": ["--input", str(tmp_path / "x.npy"), "--against", str(tmp_path / "y.npy")],
             "export": ["--to", "onnx", "--out", str(tmp_path / "o")]}[command]
    r = run_cli(command, str(path), *extra)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "conv_lstm2d_1 (ConvLSTM2D)" in lines[0] and command in lines[0], r.stderr


def test_verify_against_keras() -> None:
    pytest.importorskip("keras", reason="verify rebuilds the model in Keras")
    # the whole model (a per-pixel mask, tf_keras), and one channels_first layer alone on a seeded input (Keras 3)
    for args in (["tfk_convlstm2d_mask.h5"], ["k3_convlstm2d_cf.keras", "--layer", "conv_lstm2d_6"]):
        r = run_cli("verify", str(SAMPLES / args[0]), *args[1:])
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "match: every output within tolerance" in r.stdout


@pytest.mark.parametrize("name, config", [("k3_convlstm2d_seq.h5", None),
                                          ("k3_convlstm2d_seq.weights.h5", "k3_convlstm2d_seq.json"),
                                          ("tfk_convlstm2d_seq.weights_only.h5", "tfk_convlstm2d_seq.json")])
def test_every_format_runs_as_keras(name: str, config: str | None) -> None:
    x, (y,) = _io(SAMPLES / "k3_convlstm2d_seq.keras" if name.startswith("k3_") else SAMPLES / "tfk_convlstm2d_seq.h5")
    ckpt = lstm_inspect.load(SAMPLES / name, config=None if config is None else SAMPLES / config)
    np.testing.assert_allclose(ckpt.forward(x), y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["k3_convlstm2d_seq.weights.h5", "tfk_convlstm2d_seq.weights_only.h5"])
def test_weights_only_reads_kernel_size_and_filters_from_the_shapes(name: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / name)
    d = ckpt.directions[1]  # ConvLSTM2D(2, (2, 3), strides=(2, 1)) on 3 channels
    assert d.shapes_ok and d.settings.assumed
    assert (d.settings.conv.kernel_size, d.input_dim, d.units) == ((2, 3), 3, 2)


def test_one_layer_alone_returns_keras_states() -> None:
    path = SAMPLES / "k3_convlstm2d_state.keras"
    x, (y, h, c) = _io(path)
    out, states = lstm_inspect.load(path).forward(x, layer="conv_lstm", return_state=True)
    np.testing.assert_allclose(out, y, atol=1e-5)
    np.testing.assert_allclose(states[0], h, atol=1e-5)
    np.testing.assert_allclose(states[1], c, atol=1e-5)


def test_trace_under_a_per_pixel_mask_holds_each_pixels_state() -> None:
    """Masking's (batch, steps, h, w) mask: Keras keeps each masked pixel's states (its output repeats)."""
    path = SAMPLES / "k3_convlstm2d_mask.keras"
    x, (y,) = _io(path)
    tr = lstm_inspect.load(path).trace(x)
    t = tr[next(iter(tr)).name]
    np.testing.assert_allclose(t["h"], y, atol=1e-5)
    assert np.array_equal(t["h"][1, 1, :2, :3], t["h"][1, 0, :2, :3])  # the zeroed pixels of row 1, step 1
    assert not np.allclose(t["h"][1, 1, 2:], t["h"][1, 0, 2:])  # the others moved on
    assert np.array_equal(t["c"][0, 3], t["c"][0, 1])  # row 0's frames 2 and 3 are all zeros: masked


def test_a_run_too_big_for_the_budget_is_refused_before_it_starts() -> None:
    from lstm_inspect.base.budget import BudgetError, Limits, limited

    path = SAMPLES / "k3_convlstm2d_seq.keras"
    ckpt = lstm_inspect.load(path)
    big = np.zeros((64, 3, 100, 120, 2), np.float32)  # 18 MB in; its output sequence, 3 filters on each pixel: 28 MB
    with limited(Limits(max_bytes=30 << 20)), pytest.raises(BudgetError, match="conv_lstm2d_1"):
        ckpt.forward(big, layer="conv_lstm2d_1")
