"""Every dump layout, read by its real client following only what manifest.json says, against the engine.

- pytorch: `torch.nn.LSTM` (GRU, RNN) built from the manifest's `constructor`, `load_state_dict(strict=True)`,
  the input reversed when `reverse_input_in_time`, the halves merged by `merge_mode`;
- onnx: a one-op ONNX model of the manifest's `attributes`, run by onnxruntime on time-major input, the output
  reversed when `reverse_output_in_time`;
- gates (CSV): every W_g and b_g read back by `numpy.loadtxt(..., skiprows=1)` and by `csv`, run through the
  tests' own textbook cells (reference_rnn) with the manifest's activations (hard_sigmoid by its formula).

Each is compared with the engine's own output for that layer on the sample's stored input; where the manifest
says `exact_in_target: false`, the target must indeed differ (the manifest told the truth). Layers that run with
a mask or from another layer's states are left out here (their dumps hold the same arrays; masks are the export
command's subject).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.network import Network, RunRecord

import reference_rnn as ref
from conftest import NOT_RUNNABLE, SAMPLES, realworld_checkpoints, run_cli, sample_checkpoints


def _io(path: Path) -> Path:
    stem = path.name.split(".")[0] if path.parent == SAMPLES else path.name
    return path.parent / f"{stem}.io.npz"


def _cases() -> list[Path]:
    out = []
    for p in sample_checkpoints() + realworld_checkpoints(with_weights=True):
        if not _io(p).exists() or "weights" in p.name or p.name.startswith(NOT_RUNNABLE):
            continue
        if lstm_inspect.load(p).graph is not None:
            out.append(p)
    return out


CASES = _cases()


def _run(path: Path) -> tuple[lstm_inspect.Checkpoint, RunRecord]:
    ckpt = lstm_inspect.load(path)
    with np.load(_io(path)) as d:
        xs = [d[k] for k in sorted(d.files) if k.startswith("x")]
    rec = RunRecord()
    Network(ckpt, trace=True).run(xs, rec)
    return ckpt, rec


def _plain(ckpt: lstm_inspect.Checkpoint, rec: RunRecord, layer_path: str) -> bool:
    """A layer fed no mask and no states from another layer: its dump alone reproduces it."""
    names = [d.name for d in ckpt.layers if d.layer_path == layer_path]
    return (layer_path in rec.layer_inputs and layer_path not in rec.initial_states
            and all(rec.masks.get(n) is None for n in names))


def _dump(tmp: Path, path: Path, layout: str, fmt: str) -> tuple[Path, dict[str, Any]]:
    """What `lstm-inspect dump PATH --layout L --format F` writes (the library call the command makes)."""
    from lstm_inspect.export import dump

    out = tmp / f"{layout}-{fmt}"
    dump(lstm_inspect.load(path), out, fmt, layout)
    return out, json.loads((out / "manifest.json").read_text())


def _merge(fw: np.ndarray, bw: np.ndarray, mode: str | None) -> Any:
    return {"concat": lambda: np.concatenate([fw, bw], -1), "sum": lambda: fw + bw, "mul": lambda: fw * bw,
            "ave": lambda: (fw + bw) / 2, None: lambda: [fw, bw]}[mode]()


def _keras_output(entry: dict[str, Any], rec: RunRecord, layer_path: str) -> Any:
    """What Keras's layer returned: a Bidirectional with merge_mode=None returns its two halves."""
    outs = rec.layer_outputs[layer_path]
    bidirectional = entry.get("merge_mode") is not None or len(entry.get("directions", [])) == 2
    return outs[:2] if bidirectional and entry.get("merge_mode") is None else outs[0]


def _check(manifest_entry: dict[str, Any], ours: np.ndarray, want: Any, what: str) -> None:
    got = np.asarray(ours, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.max(np.abs(got - want) / np.maximum(1, np.abs(want))))
    if manifest_entry["exact_in_target"]:
        assert err <= 1e-5, (what, err)
    else:  # the manifest said the target cannot compute this layer: it must not
        assert err > 1e-4, (what, err, manifest_entry["why_not_exact"])


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_pytorch_dump_in_torch(path: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is installed by `make test` only where its CPU wheel is on "
                                                "this machine's disk")
    ckpt, rec = _run(path)
    if any(d.cell.kind == "GRU" and not d.settings.reset_after for d in ckpt.layers):
        # torch.nn.GRU computes only the reset_after=True form: the layout is refused, saying why
        with pytest.raises(lstm_inspect.InspectError, match="reset_after=False"):
            _dump(tmp_path, path, "pytorch", "npz")
        return
    out, manifest = _dump(tmp_path, path, "pytorch", "npz")
    for rel, entry in manifest["files"].items():
        layer_path = ckpt.layer(entry["directions"][0]["layer"]).layer_path
        if not _plain(ckpt, rec, layer_path):
            continue
        module = getattr(torch.nn, entry["target"].split(".")[-1])(**entry["constructor"])
        with np.load(out / rel) as z:
            module.load_state_dict({k[: -len(".npy")] if k.endswith(".npy") else k: torch.from_numpy(z[k])
                                    for k in z.files}, strict=True)
        x = torch.from_numpy(np.asarray(rec.layer_inputs[layer_path], np.float32))
        if entry["reverse_input_in_time"]:
            x = x.flip(entry["time_axis"])
        with torch.no_grad():
            y = module(x)[0].numpy()
        if entry["time_axis"] == 0:  # compare in batch-major, then put Keras's time-major order back below
            y = y.transpose(1, 0, 2)
        h = entry["constructor"]["hidden_size"]
        if entry["merge_mode"] is not None or entry["constructor"]["bidirectional"]:
            fw, bw = (y[..., :h], y[..., h:]) if entry["return_sequences"] else (y[:, -1, :h], y[:, 0, h:])
            y = _merge(fw, bw, entry["merge_mode"])
        elif not entry["return_sequences"]:
            y = y[:, -1]
        if entry["time_axis"] == 0 and entry["return_sequences"]:
            y = np.swapaxes(y, 0, 1)
        _check(entry, y, _keras_output(entry, rec, layer_path), f"{path.name} {layer_path}")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_onnx_dump_in_onnxruntime(path: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="the test extra installs onnx")
    ort = pytest.importorskip("onnxruntime", reason="the test extra installs onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    ckpt, rec = _run(path)
    out, manifest = _dump(tmp_path, path, "onnx", "npz")
    for rel, entry in manifest["files"].items():
        layer_path = ckpt.layer(entry["directions"][0]["layer"]).layer_path
        if not _plain(ckpt, rec, layer_path) or not entry["exact_in_target"]:
            continue
        op = entry["target"].split()[1]
        with np.load(out / rel) as z:
            weights = {k[: -len(".npy")] if k.endswith(".npy") else k: z[k] for k in z.files}
        x = np.asarray(rec.layer_inputs[layer_path], np.float32)
        if entry["transpose_input"]:
            x = x.transpose(1, 0, 2)  # time-major, as it says
        outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
        node = helper.make_node(op, ["X", "W", "R", "B"], outputs, **entry["attributes"])
        graph = helper.make_graph(
            [node], "one_op", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3)) for o in outputs],
            [numpy_helper.from_array(weights[k].astype(np.float32), k) for k in ("W", "R", "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        y, y_h = session.run(["Y", "Y_h"], {"X": x})[:2]
        if entry["reverse_output_in_time"]:
            y = y[::-1]
        seq = y.transpose(2, 0, 1, 3)  # (batch, steps, num_directions, hidden)
        if entry["attributes"]["direction"] == "bidirectional":
            if entry["return_sequences"]:
                result = _merge(seq[:, :, 0], seq[:, :, 1], entry["merge_mode"])
            else:
                result = _merge(seq[:, -1, 0], seq[:, 0, 1], entry["merge_mode"])
        else:
            result = seq[:, :, 0] if entry["return_sequences"] else y_h[0]
        if not entry["transpose_input"] and entry["return_sequences"]:
            result = np.swapaxes(result, 0, 1)  # the layer is time-major: Keras returns its sequence that way
        _check(entry, result, _keras_output(entry, rec, layer_path), f"{path.name} {layer_path}")


ACTIVATIONS = {"sigmoid": ref.sigmoid, "tanh": np.tanh, "linear": lambda x: x, "relu": lambda x: np.maximum(x, 0),
               "hard_sigmoid = clip(0.2·x + 0.5, 0, 1)": ref.hard_sigmoid_keras2,
               "hard_sigmoid = clip(x/6 + 0.5, 0, 1)": ref.hard_sigmoid_keras3,
               "softplus": lambda x: np.logaddexp(0, x),
               "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x,
                                                                                                         0))),
               "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
               "swish": lambda x: x * ref.sigmoid(x), "silu": lambda x: x * ref.sigmoid(x)}


def _read_csv(path: Path) -> np.ndarray:
    """Both ways a user reads a CSV: numpy.loadtxt with the header skipped, and the csv module; they agree."""
    a = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float32)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    b = np.array(rows[1:], dtype=np.float32)
    assert np.array_equal(a, b.reshape(a.shape))
    return a


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_gates_csv_through_textbook_cells(path: Path, tmp_path: Path) -> None:
    ckpt, rec = _run(path)
    out, manifest = _dump(tmp_path, path, "gates", "csv")
    assert "skiprows=1" in manifest["how_to_read"]
    by_direction: dict[str, dict[str, Any]] = {}
    for rel, entry in manifest["files"].items():
        by_direction.setdefault(entry["name"], {"settings": entry, "arrays": {}})["arrays"][entry["array"]] = \
            _read_csv(out / rel)
    for name, item in by_direction.items():
        d = ckpt.layer(name)
        if not _plain(ckpt, rec, d.layer_path) or d.name not in rec.traces:
            continue
        s, a = item["settings"], item["arrays"]
        gates, n_i = s["gates"], s["input_dim"]
        kernel = np.concatenate([a[f"W_{g}"][:, :n_i].T for g in gates], axis=1)
        recurrent = np.concatenate([a[f"W_{g}"][:, n_i:].T for g in gates], axis=1)
        bias = np.concatenate([a[f"b_{g}"][:, 0] for g in gates])
        if all(f"b_h{g}" in a for g in gates):
            bias = np.stack([bias, np.concatenate([a[f"b_h{g}"][:, 0] for g in gates])])
        x = np.asarray(rec.layer_inputs[d.layer_path], np.float64)
        if d.settings.time_major:
            x = np.swapaxes(x, 0, 1)
        act = ACTIVATIONS[s["activation"]]
        if s["cell"] == "LSTM":
            y, _ = ref.lstm(x, kernel, recurrent, bias, activation=act,
                            recurrent_activation=ACTIVATIONS[s["recurrent_activation"]], go_backwards=s["go_backwards"])
        elif s["cell"] == "GRU":
            y, _ = ref.gru(x, kernel, recurrent, bias, reset_after=s["reset_after"], activation=act,
                           recurrent_activation=ACTIVATIONS[s["recurrent_activation"]], go_backwards=s["go_backwards"])
        else:
            y, _ = ref.simple_rnn(x, kernel, recurrent, bias, activation=act, go_backwards=s["go_backwards"])
        np.testing.assert_allclose(y, rec.traces[d.name]["h"], atol=2e-5, err_msg=f"{path.name} {name}")


def test_pytorch_manifest_says_hard_sigmoid_is_not_exact(tmp_path: Path) -> None:
    r = run_cli("dump", str(SAMPLES / "tfk_stacked_hard_sigmoid.h5"), "--out", str(tmp_path / "pt"),
                "--layout", "pytorch", "--format", "npz")
    assert r.returncode == 0 and "warning" in r.stderr and "sigmoid" in r.stderr
    manifest = json.loads((tmp_path / "pt" / "manifest.json").read_text())
    for entry in manifest["files"].values():
        assert entry["exact_in_target"] is False and "hard_sigmoid" in entry["why_not_exact"]
        assert entry["directions"][0]["recurrent_activation"] == "hard_sigmoid = clip(0.2·x + 0.5, 0, 1)"


def test_each_layout_describes_only_itself(tmp_path: Path) -> None:
    """A go_backwards LSTM: the ONNX manifest says direction=reverse and to reverse Y, never to reverse the input;
    the PyTorch one says to reverse the input; the bias texts name their own roles."""
    path = SAMPLES / "k3_go_backwards.keras"
    _, onnx_manifest = _dump(tmp_path, path, "onnx", "npz")
    (entry,) = onnx_manifest["files"].values()
    assert entry["attributes"]["direction"] == "reverse" and entry["reverse_output_in_time"] is True
    assert "feed the input in its own order" in entry["time_order"] and "reversed in time (x" not in json.dumps(entry)
    assert "layout=0" in entry["input"] and entry["attributes"]["layout"] == 0
    _, pt_manifest = _dump(tmp_path, path, "pytorch", "npz")
    (entry,) = pt_manifest["files"].values()
    assert entry["reverse_input_in_time"] is True and "x.flip(1)" in entry["time_order"]
    texts = json.dumps(pt_manifest)
    assert "Keras's input bias" in texts and "zeros (Keras has one bias" in texts


def test_weights_only_manifest_says_assumed(tmp_path: Path) -> None:
    _, manifest = _dump(tmp_path, SAMPLES / "tfk_single.weights_only.h5", "gates", "npz")
    (entry,) = manifest["files"].values()
    assert entry["activations_assumed"] is True and "not facts" in entry["assumed"]
    assert manifest["settings_from"] == "defaults"
    assert entry["equations"] and entry["return_sequences"] is False
