"""`stats`, `dump` and `plot`: figures computed here independently, values compared bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.io.arrays import MARKER

from conftest import GATES, SAMPLES, expected_gate, gate_names, keras_refs, realworld_checkpoints, run_cli, stem

# ---------------------------------------------------------------- dump


def _read_csv32(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    rows = [np.array(line.split(","), dtype=np.float32) for line in lines[1:]]
    return lines[0].split(","), np.stack(rows) if rows else np.zeros((0,), np.float32)


@pytest.mark.parametrize("name", ["k3_bidir_concat.keras", "tfk_stacked_hard_sigmoid.h5", "tfk_cudnn.h5",
                                  "k3_no_bias.keras", "k3_stacked.weights.h5"])
def test_dump_gates_csv_equals_keras_weights_bit_for_bit(tmp_path: Path, name: str) -> None:
    out = tmp_path / "gates"
    r = run_cli("dump", str(SAMPLES / name), "--out", str(out))
    assert r.returncode == 0, r.stderr
    refs = keras_refs(SAMPLES / f"{stem(SAMPLES / name)}.ref.npz")
    manifest = json.loads((out / "manifest.json").read_text())
    for direction, ref in refs.items():
        n_i, n_c = ref["kernel"].shape[0], ref["recurrent_kernel"].shape[0]
        for g in gate_names(ref):
            W, b = expected_gate(ref, g)
            header, got = _read_csv32(out / direction / f"W_{g}.csv")
            assert header == [f"x{k}" for k in range(n_i)] + [f"h{k}" for k in range(n_c)]
            assert got.dtype == np.float32 and np.array_equal(got, W.astype(np.float32))
            header, got_b = _read_csv32(out / direction / f"b_{g}.csv")
            assert header == ["b"] and np.array_equal(got_b[:, 0], b.astype(np.float32))
            assert manifest["files"][f"{direction}/W_{g}.csv"]["shape"] == [n_c, n_i + n_c]


def test_dump_real_files_bit_for_bit(tmp_path: Path, realworld_refs: dict) -> None:
    for path in realworld_checkpoints(with_weights=True)[:4]:
        out = tmp_path / path.name
        assert run_cli("dump", str(path), "--out", str(out), "--format", "npz").returncode == 0
        for direction, ref in realworld_refs[path.name].items():
            with np.load(out / f"{direction}.npz") as z:
                for g in gate_names(ref):
                    W, b = expected_gate(ref, g)
                    assert np.array_equal(z[f"W_{g}"], W) and np.array_equal(z[f"b_{g}"], b)


def test_dump_keras_layout_and_json(tmp_path: Path) -> None:
    ref = keras_refs(SAMPLES / "tfk_cudnn.ref.npz")["cu_dnnlstm"]
    assert run_cli("dump", str(SAMPLES / "tfk_cudnn.h5"), "-o", str(tmp_path / "k"), "--layout", "keras",
                   "--format", "json").returncode == 0
    doc = json.loads((tmp_path / "k" / "cu_dnnlstm.json").read_text())
    for role in ("kernel", "recurrent_kernel", "bias"):
        assert np.array_equal(np.array(doc["arrays"][role], dtype=np.float32), ref[role])  # Keras's converted LSTM


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def torch_lstm_equations(x: np.ndarray, sd: dict[str, np.ndarray], suffix: str = "") -> np.ndarray:
    """torch.nn.LSTM as its documentation writes it (batch_first), one direction."""
    w_ih, w_hh = sd[f"weight_ih_l0{suffix}"], sd[f"weight_hh_l0{suffix}"]
    b = sd[f"bias_ih_l0{suffix}"] + sd[f"bias_hh_l0{suffix}"]
    H = w_hh.shape[1]
    h = np.zeros((x.shape[0], H))
    c = np.zeros((x.shape[0], H))
    steps = range(x.shape[1] - 1, -1, -1) if suffix else range(x.shape[1])
    out = np.zeros((x.shape[0], x.shape[1], H))
    for t in steps:
        gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out  # aligned with input time, as torch returns the reverse direction


def onnx_lstm_equations(x: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The ONNX LSTM operator's equations (gates i, o, f, c); Y as [num_directions, batch, time, H]."""
    outs = []
    for d in range(W.shape[0]):
        H = R.shape[2]
        Wb, Rb = B[d, :4 * H], B[d, 4 * H:]
        h = np.zeros((x.shape[0], H))
        c = np.zeros((x.shape[0], H))
        y = np.zeros((x.shape[0], x.shape[1], H))
        steps = range(x.shape[1]) if d == 0 else range(x.shape[1] - 1, -1, -1)
        for t in steps:
            z = x[:, t] @ W[d].T + h @ R[d].T + Wb + Rb
            i, o, f, cc = (z[:, k * H:(k + 1) * H] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
            h = _sigmoid(o) * np.tanh(c)
            y[:, t] = h
        outs.append(y)
    return np.stack(outs)


def _engine_layer_output(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward output and backward output (flipped back to input time) of the Bidirectional sample."""
    ckpt = lstm_inspect.load(SAMPLES / name)
    fw, bw = ckpt.directions
    return fw.forward(x), bw.forward(x)[:, ::-1]


def test_pytorch_and_onnx_layouts_reproduce_the_engine(tmp_path: Path) -> None:
    name = "k3_bidir_concat.keras"
    with np.load(SAMPLES / "k3_bidir_concat.io.npz") as io:
        x = io["x"].astype(np.float64)
    y_fw, y_bw = _engine_layer_output(name, x)
    for layout in ("pytorch", "onnx"):
        assert run_cli("dump", str(SAMPLES / name), "-o", str(tmp_path / layout), "--layout", layout,
                       "--format", "npz").returncode == 0
    with np.load(tmp_path / "pytorch" / "bidirectional.npz") as z:
        sd = {k: z[k].astype(np.float64) for k in z.files}
    assert np.max(np.abs(torch_lstm_equations(x, sd) - y_fw)) < 1e-5
    assert np.max(np.abs(torch_lstm_equations(x, sd, "_reverse") - y_bw)) < 1e-5
    with np.load(tmp_path / "onnx" / "bidirectional.npz") as z:
        W, R, B = (z[k].astype(np.float64) for k in ("W", "R", "B"))
    assert W.shape == (2, 20, 3) and R.shape == (2, 20, 5) and B.shape == (2, 40)
    Y = onnx_lstm_equations(x, W, R, B)
    assert np.max(np.abs(Y[0] - y_fw)) < 1e-5 and np.max(np.abs(Y[1] - y_bw)) < 1e-5


def test_pytorch_layout_loads_into_torch_when_installed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    name = "k3_bidir_concat.keras"
    with np.load(SAMPLES / "k3_bidir_concat.io.npz") as io:
        x = io["x"]
    assert run_cli("dump", str(SAMPLES / name), "-o", str(tmp_path / "pt"), "--layout", "pytorch",
                   "--format", "npz").returncode == 0
    with np.load(tmp_path / "pt" / "bidirectional.npz") as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files}
    lstm = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=True)
    lstm.load_state_dict(state)
    with torch.no_grad():
        y, _ = lstm(torch.from_numpy(x))
    y_fw, y_bw = _engine_layer_output(name, x)
    assert np.max(np.abs(y.numpy() - np.concatenate([y_fw, y_bw], axis=-1))) < 1e-5


def test_dump_never_overwrites_and_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect import dump as export

    out = tmp_path / "gates"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    r = run_cli("dump", str(SAMPLES / "k3_stacked.keras"), "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr and (out / "mine.txt").read_text() == "precious"

    calls = {"n": 0}
    real = np.savetxt

    def failing(*args, **kwargs):  # the disk fills up on the fifth file
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(export.np, "savetxt", failing)
    with pytest.raises(lstm_inspect.InspectError, match="did not write"):  # --force replaces only our own output
        export.dump(lstm_inspect.load(SAMPLES / "k3_stacked.keras"), out, force=True)
    (out / MARKER).write_text("")  # as if an earlier dump had written it
    with pytest.raises(lstm_inspect.InspectError, match="No space left"):
        export.dump(lstm_inspect.load(SAMPLES / "k3_stacked.keras"), out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gates"]  # no temporary folder left behind
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "mine.txt"]  # what the user had is intact


# ---------------------------------------------------------------- stats


def test_weight_stats_against_independent_numpy(tmp_path: Path) -> None:
    name = "k3_stacked.keras"
    r = run_cli("stats", str(SAMPLES / name), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    refs = keras_refs(SAMPLES / "k3_stacked.ref.npz")
    for layer in doc["layers"]:
        ref = refs[layer["name"]]
        u = ref["recurrent_kernel"].shape[0]
        for k, g in enumerate(GATES):
            cols = slice(k * u, (k + 1) * u)
            U = ref["recurrent_kernel"][:, cols].astype(np.float64)
            Wx = ref["kernel"][:, cols].astype(np.float64)
            b = ref["bias"][cols].astype(np.float64)
            got = layer["weights"][g]
            assert got["W_h"]["spectral_norm"] == pytest.approx(np.linalg.norm(U, 2), rel=1e-5)
            assert got["W_h"]["stable_rank"] == pytest.approx(np.linalg.norm(U, "fro") ** 2 / np.linalg.norm(U, 2) ** 2,
                                                              rel=1e-5)
            assert got["W_x"]["frobenius"] == pytest.approx(np.linalg.norm(Wx, "fro"))
            assert got["W_x"]["mean"] == pytest.approx(Wx.mean()) and got["W_x"]["std"] == pytest.approx(Wx.std())
            assert got["b"]["max_abs"] == pytest.approx(np.abs(b).max())
            assert got["W_h"]["near_zero"] == pytest.approx(np.mean(np.abs(U) < 1e-3))


def _reference_gate_values(ref: dict[str, np.ndarray], x: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """i, f, c̃, o of a sigmoid/tanh LSTM at unmasked steps, by a plain loop written here."""
    u = ref["recurrent_kernel"].shape[0]
    h = np.zeros((x.shape[0], u))
    c = np.zeros((x.shape[0], u))
    vals: dict[str, list[np.ndarray]] = {g: [] for g in "ifco"}
    for t in range(x.shape[1]):
        z = x[:, t] @ ref["kernel"] + h @ ref["recurrent_kernel"] + ref["bias"]
        i, f, ct, o = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
        c_new = f * c + i * ct
        h_new = o * np.tanh(c_new)
        m = np.ones(x.shape[0], bool) if mask is None else mask[:, t]
        for g, v in zip("ifco", (i, f, ct, o)):
            vals[g].append(v[m])
        h = np.where(m[:, None], h_new, h)
        c = np.where(m[:, None], c_new, c)
    return {g: np.concatenate(v) for g, v in vals.items()}


@pytest.mark.parametrize("name,io", [("k3_single.keras", "k3_single"), ("tfk_masking.h5", "tfk_masking")])
def test_activation_stats_against_an_independent_loop(tmp_path: Path, name: str, io: str) -> None:
    with np.load(SAMPLES / f"{io}.io.npz") as d:
        x = d["x"]
    np.save(tmp_path / "x.npy", x)
    r = run_cli("stats", str(SAMPLES / name), "--input", str(tmp_path / "x.npy"), "--json")
    assert r.returncode == 0, r.stderr
    (layer,) = json.loads(r.stdout)["layers"]
    ref = next(iter(keras_refs(SAMPLES / f"{io}.ref.npz").values()))
    mask = np.any(x != 0, axis=-1) if "masking" in name else None
    values = _reference_gate_values(ref, x.astype(np.float64), mask)
    assert layer["steps_used"] == (mask.sum() if mask is not None else x.shape[0] * x.shape[1])
    for g, v in values.items():
        a = layer["activations"][g]
        v01 = (v + 1) / 2 if g == "c" else v
        assert a["mean"] == pytest.approx(v.mean(), abs=1e-6)
        assert a["std"] == pytest.approx(v.std(), abs=1e-6)
        assert a["left_saturated"] == pytest.approx(np.mean(v01 < 0.1))
        assert a["right_saturated"] == pytest.approx(np.mean(v01 > 0.9))


def test_stats_notes_the_forget_bias_and_runs_on_weights_only_files() -> None:
    r = run_cli("stats", str(SAMPLES / "k3_single.weights.h5"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "each direction alone" in doc["activations_from"] and doc["layers"][0]["activations"]
    real = [p for p in realworld_checkpoints() if p.name.startswith("stackedlstm_stock_keras3")]
    if real:  # untrained: its forget bias is exactly unit_forget_bias's 1
        doc = json.loads(run_cli("stats", str(real[0]), "--json").stdout)
        assert any("near 1" in n for n in doc["layers"][0]["notes"])
    text = run_cli("stats", str(SAMPLES / "k3_single.keras")).stdout
    assert "σ_max" in text and "right-saturated" in text


# ---------------------------------------------------------------- plot


def test_plot_writes_readable_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    r = run_cli("plot", str(SAMPLES / "k3_bidir_concat.keras"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == [f"bidirectional/{d}_lstm_5/{f}.png" for d in ("backward", "forward")
                    for f in ("activations", "biases", "spectrum", "weights")]
    for p in out.rglob("*.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert run_cli("plot", str(SAMPLES / "k3_bidir_concat.keras"), "--out", str(out)).returncode == 2


def test_gru_stats_per_gate_against_keras_weights_and_an_independent_loop(tmp_path: Path) -> None:
    """`stats` on a GRU: each gate's W_x, W_h, b and the recurrent row b_h are Keras's slices, and z, r, h̃ over the
    input are those of a GRU step written here (reset_after=True, Keras's equations)."""
    refs = keras_refs(SAMPLES / "k3_gru.ref.npz")
    with np.load(SAMPLES / "k3_gru.io.npz") as d:
        x = d["x"].astype(np.float64)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    r = run_cli("stats", str(SAMPLES / "k3_gru.keras"), "--input", str(tmp_path / "x.npy"), "--json")
    assert r.returncode == 0, r.stderr
    (layer,) = json.loads(r.stdout)["layers"]
    ref = refs[layer["name"]]
    kernel, recurrent, bias = (ref[k].astype(np.float64) for k in ("kernel", "recurrent_kernel", "bias"))
    u = recurrent.shape[0]
    for k, g in enumerate("zrh"):
        cols = slice(k * u, (k + 1) * u)
        got = layer["weights"][g]
        assert got["W_x"]["frobenius"] == pytest.approx(np.linalg.norm(kernel[:, cols]))
        assert got["W_h"]["spectral_norm"] == pytest.approx(np.linalg.norm(recurrent[:, cols], 2), rel=1e-5)
        assert got["b"]["mean"] == pytest.approx(bias[0, cols].mean())
        assert got["b_h"]["max_abs"] == pytest.approx(np.abs(bias[1, cols]).max())
    h = np.zeros((x.shape[0], u))
    values: dict[str, list[np.ndarray]] = {"z": [], "r": [], "h": []}
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + bias[0], 3, axis=1)
        rz, rr, rh = np.split(h @ recurrent + bias[1], 3, axis=1)
        z, reset = _sigmoid(xz + rz), _sigmoid(xr + rr)
        candidate = np.tanh(xh + reset * rh)
        h = z * h + (1 - z) * candidate
        for g, v in zip("zrh", (z, reset, candidate)):
            values[g].append(v)
    for g, (low, high) in zip("zrh", ((0.1, 0.9), (0.1, 0.9), (-0.8, 0.8))):
        v = np.concatenate(values[g])
        got = layer["activations"][g]
        assert got["mean"] == pytest.approx(v.mean(), abs=1e-6) and got["std"] == pytest.approx(v.std(), abs=1e-6)
        assert got["left_saturated"] == pytest.approx(np.mean(v < low)) and got["right_saturated"] == pytest.approx(
            np.mean(v > high))


def test_plot_draws_the_gru_gates(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    r = run_cli("plot", str(SAMPLES / "k3_gru.keras"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in out.rglob("*.png"))
    assert pngs == ["activations.png", "biases.png", "spectrum.png", "weights.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in out.rglob("*.png"))
