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
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.engine.network import Network, RunRecord

import reference_rnn as ref
from conftest import NOT_RUNNABLE, ROOT, SAMPLES, realworld_checkpoints, run_cli, sample_checkpoints


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
    """A layer fed no mask and no states from another layer: its dump alone reproduces it (not the cells of a
    StackedRNNCells, dumped one per file, each reading the previous cell's outputs: tests/test_stacked_transpose.py)."""
    names = [d.name for d in ckpt.directions if d.layer_path == layer_path]
    return (layer_path in rec.layer_inputs and layer_path not in rec.initial_states
            and all(rec.masks.get(n) is None for n in names)
            and all(d.stack_index is None for d in ckpt.directions if d.layer_path == layer_path))


def _dump(tmp: Path, path: Path, layout: str, fmt: str) -> tuple[Path, dict[str, Any]]:
    """What `lstm-inspect dump PATH --layout L --format F` writes (the library call the command makes)."""
    from lstm_inspect.dump import dump

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
    if any(d.cell.kind == "GRU" and not d.settings.reset_after for d in ckpt.directions):
        # torch.nn.GRU computes only the reset_after=True form: the layout is refused, saying why
        with pytest.raises(lstm_inspect.InspectError, match="reset_after=False"):
            _dump(tmp_path, path, "pytorch", "npz")
        return
    out, manifest = _dump(tmp_path, path, "pytorch", "npz")
    for rel, entry in manifest["files"].items():
        layer_path = ckpt.direction(entry["directions"][0]["layer"]).layer_path
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


def _onnx_run(entry: dict[str, Any], attributes: dict[str, Any], weights: dict[str, np.ndarray],
              x: np.ndarray) -> Any:
    """The manifest's operator with these attributes as a one-op ONNX model, run by onnxruntime on x (already
    laid out as the manifest says); the output put back as Keras returns it, following the manifest."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    op = entry["target"].split()[1]
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outputs, **attributes)
    graph = helper.make_graph(
        [node], "one_op", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3)) for o in outputs],
        [numpy_helper.from_array(weights[k].astype(np.float32), k) for k in ("W", "R", "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a refused activation raises; it need not also print
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    y, y_h = session.run(["Y", "Y_h"], {"X": x})[:2]
    if entry["reverse_output_in_time"]:
        y = y[::-1]
    seq = y.transpose(2, 0, 1, 3)  # (batch, steps, num_directions, hidden)
    if attributes["direction"] == "bidirectional":
        if entry["return_sequences"]:
            result = _merge(seq[:, :, 0], seq[:, :, 1], entry["merge_mode"])
        else:
            result = _merge(seq[:, -1, 0], seq[:, 0, 1], entry["merge_mode"])
    else:
        result = seq[:, :, 0] if entry["return_sequences"] else y_h[0]
    if not entry["transpose_input"] and entry["return_sequences"]:
        result = np.swapaxes(result, 0, 1)  # the layer is time-major: Keras returns its sequence that way
    return result


# The activations ONNX's recurrent operators define (the LSTM, GRU and RNN operators of the ONNX specification).
ONNX_ACTIVATIONS = {"Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                    "Elu", "Softsign", "Softplus"}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_onnx_dump_in_onnxruntime(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the test extra installs onnx")
    ort = pytest.importorskip("onnxruntime", reason="the test extra installs onnxruntime")

    ckpt, rec = _run(path)
    out, manifest = _dump(tmp_path, path, "onnx", "npz")
    for rel, entry in manifest["files"].items():
        layer_path = ckpt.direction(entry["directions"][0]["layer"]).layer_path
        if not _plain(ckpt, rec, layer_path):
            continue
        with np.load(out / rel) as z:
            weights = {k[: -len(".npy")] if k.endswith(".npy") else k: z[k] for k in z.files}
        x = np.asarray(rec.layer_inputs[layer_path], np.float32)
        if entry["transpose_input"]:
            x = x.transpose(1, 0, 2)  # time-major, as it says
        what = f"{path.name} {layer_path}"
        attributes = entry["attributes"]
        if not entry["exact_in_target"]:
            # The manifest says ONNX cannot compute this layer. Its activations are not ONNX's, and onnxruntime
            # refuses them; with the activations the operator does have (its defaults) the result must differ.
            missing = [a for a in attributes["activations"] if a not in ONNX_ACTIVATIONS]
            assert missing, (what, attributes["activations"], entry["why_not_exact"])
            with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail, match="activation"):
                _onnx_run(entry, attributes, weights, x)
            attributes = {k: v for k, v in attributes.items()
                          if k not in ("activations", "activation_alpha", "activation_beta")}
        _check(entry, _onnx_run(entry, attributes, weights, x), _keras_output(entry, rec, layer_path), what)


# Keras's own definitions of hard_sigmoid (tf.keras.activations.hard_sigmoid's documentation), as ONNX's
# HardSigmoid(alpha, beta) = max(0, min(1, alpha·x + beta)):
# - Keras 3 (keras/src/activations/activations.py, 3.x): "0 if x <= -3, 1 if x >= 3, (x/6) + 0.5 if -3 < x < 3";
# - Keras 2 and tf_keras (keras/activations.py, 2.x): "0 if x < -2.5, 1 if x > 2.5, 0.2 * x + 0.5 otherwise".
HARD_SIGMOID = {"keras3": (1 / 6, 0.5), "keras2": (0.2, 0.5)}


K3_HS, K2_HS = HARD_SIGMOID["keras3"], HARD_SIGMOID["keras2"]
TANH = ["HardSigmoid", "Tanh", "Tanh"]  # ONNX's [f, g, h] = [recurrent_activation, activation, activation]
AFFINE = ["HardSigmoid", "Affine", "Affine"]  # activation="linear" is ONNX's Affine(alpha=1, beta=0)


@pytest.mark.parametrize("sample,layer,activations,alpha,beta", [
    ("k3_hard_sigmoid.keras", "lstm_8", TANH, [K3_HS[0]], [K3_HS[1]]),
    ("tfk_stacked_hard_sigmoid.h5", "lstm_1", TANH, [K2_HS[0]], [K2_HS[1]]),
    ("tfk_stacked_hard_sigmoid.h5", "lstm_2", TANH, [K2_HS[0]], [K2_HS[1]]),
    ("k3_mask_paths.keras", "affine", AFFINE, [K3_HS[0], 1.0, 1.0], [K3_HS[1], 0.0, 0.0]),
    ("tfk_mask_paths.h5", "affine", AFFINE, [K2_HS[0], 1.0, 1.0], [K2_HS[1], 0.0, 0.0]),
])
def test_onnx_manifest_hard_sigmoid_alpha_beta(sample: str, layer: str, activations: list[str], alpha: list[float],
                                               beta: list[float], tmp_path: Path) -> None:
    """The ONNX dump's attributes for a hard_sigmoid LSTM: ONNX's [f, g, h] order, HardSigmoid with the alpha and
    beta of the Keras that wrote the file. ONNX consumes activation_alpha/beta in the order of the activations
    that take them: HardSigmoid and Affine two each, Tanh none."""
    _, manifest = _dump(tmp_path, SAMPLES / sample, "onnx", "npz")
    entry = manifest["files"][f"{layer}.npz"]
    attributes = entry["attributes"]
    assert attributes["activations"] == activations
    assert attributes["activation_alpha"] == pytest.approx(alpha, rel=1e-12)
    assert attributes["activation_beta"] == pytest.approx(beta, rel=1e-12)
    assert entry["exact_in_target"] is True


HARD_SIGMOID_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import tensorflow as tf
import keras, tf_keras
x = np.linspace(-4, 4, 81).astype(np.float32)
np.savez(sys.argv[1], x=x, keras3=np.asarray(keras.activations.hard_sigmoid(tf.constant(x))),
         keras2=tf_keras.activations.hard_sigmoid(tf.constant(x)).numpy())
"""


def test_hard_sigmoid_constants_are_keras_own(tmp_path: Path) -> None:
    """The constants above are what the installed Keras 3 and tf_keras compute (a check of the test itself), run
    in a subprocess as the other Keras-side checks are."""
    import subprocess
    import sys

    pytest.importorskip("tf_keras", reason="the test extra installs tf_keras and Keras 3")
    r = subprocess.run([sys.executable, "-c", HARD_SIGMOID_SCRIPT, str(tmp_path / "hs.npz")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(tmp_path / "hs.npz") as d:
        for generation in ("keras3", "keras2"):
            alpha, beta = HARD_SIGMOID[generation]
            np.testing.assert_allclose(d[generation], np.clip(alpha * d["x"] + beta, 0, 1), atol=1e-6,
                                       err_msg=generation)


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
        d = ckpt.direction(name)
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


# ---------------------------------------------------------------- the README's numpy.loadtxt example

README = (SAMPLES.parent / "README.md").read_text(encoding="utf-8")
LOADTXT = re.compile(r"numpy\.loadtxt\(f, ([^)]*skiprows=1[^)]*)\)")


def _loadtxt_after(anchor: str, within: int = 400) -> dict[str, Any]:
    """The keyword arguments of the README's `numpy.loadtxt(f, ...)` example written next to `anchor`, parsed
    from its text (literals only), to call numpy.loadtxt exactly as the README shows."""
    import ast

    at = README.index(anchor)
    match = LOADTXT.search(README, at, at + within)
    assert match, f"README: no numpy.loadtxt(f, ..., skiprows=1) example next to {anchor!r}"
    call = ast.parse(f"numpy.loadtxt(f, {match.group(1)})", mode="eval").body
    assert isinstance(call, ast.Call) and len(call.args) == 1
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def test_readme_loadtxt_example_reads_a_real_gates_dump(tmp_path: Path) -> None:
    """The README's one-line example beside the CSV description, run as written on a dump of a sample: every
    W_g and b_g equals Keras's own weights (`.ref.npz`) bit for bit in float32."""
    from conftest import expected_gate, keras_refs

    arguments = _loadtxt_after("CSV files start with a header row")
    r = run_cli("dump", str(SAMPLES / "tfk_stacked_hard_sigmoid.h5"), "--out", str(tmp_path / "gates"))
    assert r.returncode == 0, r.stderr
    refs = keras_refs(SAMPLES / "tfk_stacked_hard_sigmoid.ref.npz")
    for layer in ("lstm_1", "lstm_2"):
        for g in "ifco":
            want_w, want_b = expected_gate(refs[layer], g)
            for name, want in ((f"W_{g}.csv", want_w), (f"b_{g}.csv", want_b)):
                f = str(tmp_path / "gates" / layer / name)
                got = np.loadtxt(f, **arguments)  # the README's call, as written
                assert np.array_equal(np.asarray(got, np.float32).reshape(want.shape), want), (layer, name)


def test_readme_dump_example_command_runs_as_shown(tmp_path: Path) -> None:
    """The dump section's example, its `numpy.loadtxt` line as the README writes it: what it reads is the forget
    gate's W_f = [kernel_f; recurrent_kernel_f]^T of Keras's own get_weights() (gate order i, f, c, o)."""
    section = README[README.index("## `lstm-inspect dump"):]
    match = re.search(r"lstm-inspect dump (\S+) --out (\S+)\n.*?python -c \"(.*?)\"\n", section, flags=re.S)
    assert match and "skiprows=1" in match.group(3) and "W_f.csv" in match.group(3)
    path = ROOT / match.group(1)
    r = run_cli("dump", str(path), "--out", str(tmp_path / match.group(2)))
    assert r.returncode == 0, r.stderr
    assert match.group(3).endswith(".shape)")  # what the README prints; the values it reads are checked here
    code = match.group(3).replace("print(", "np.save('read.npy', ").removesuffix(".shape)") + ")"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    read = np.load(tmp_path / "read.npy")
    layer = match.group(3).split("/")[1]
    with np.load(path.with_name(f"{path.stem}.ref.npz")) as refs:
        kernel, recurrent = refs[f"{layer}:kernel"], refs[f"{layer}:recurrent_kernel"]
    units = recurrent.shape[0]
    expected = np.concatenate([kernel, recurrent])[:, units:2 * units].T
    np.testing.assert_array_equal(read.astype(np.float32), expected)  # nine digits: float32 bit for bit


def test_readme_loadtxt_example_reads_a_trace_csv(tmp_path: Path) -> None:
    """The trace section's example on `trace --format csv` of a sample: columns sample, step, u0...; h at every
    step is Keras's own output for the sample's input."""
    arguments = _loadtxt_after("--format csv` writes a folder")
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        x, y = io["x"], io["y"]
    np.save(tmp_path / "x.npy", x)
    r = run_cli("trace", str(SAMPLES / "k3_return_sequences.keras"), "-i", str(tmp_path / "x.npy"), "--out",
                str(tmp_path / "trace"), "--format", "csv")
    assert r.returncode == 0, r.stderr
    f = str(tmp_path / "trace" / "lstm_1" / "h.csv")
    table = np.loadtxt(f, **arguments)
    batch, steps, units = y.shape
    assert table.shape == (batch * steps, 2 + units)
    samples, step, h = table[:, 0].astype(int), table[:, 1].astype(int), table[:, 2:]
    assert sorted(zip(samples, step)) == [(b, t) for b in range(batch) for t in range(steps)]
    np.testing.assert_allclose(h, y[samples, step], atol=1e-5)
