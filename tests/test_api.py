"""The Python API a notebook user reaches for (issue 23 §5): short reprs and HTML tables, the model's layers with
their weights, forward with states, and stats / verify / diagnose as functions with typed results. Values are
compared with Keras's (the samples' .io.npz and .ref.npz, or Keras run in a subprocess)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.model.checkpoint import ModelLayer

from conftest import REALWORLD, ROOT, SAMPLES

REPR_SAMPLES = ["tfk_embedding_mask_zero_bilstm.h5", "k3_functional_state.keras", "tfk_bidir_concat.h5",
                "k3_gru.keras", "tfk_cudnn.weights_only.h5"]


def _io(name: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / f"{name}.io.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("name", REPR_SAMPLES)
def test_every_public_object_has_a_one_line_repr(name: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / name)
    objects: list[object] = [ckpt, *ckpt.layers, *ckpt.directions]
    if ckpt.graph is not None:
        t = ckpt.trace()
        objects += [t, *t]
    s = lstm_inspect.stats(ckpt)
    objects += [s, *s.directions]
    for obj in objects:
        text = repr(obj)
        assert "\n" not in text and len(text) <= 300, text
        assert text.startswith(f"<{type(obj).__name__} ")
        html = obj._repr_html_()  # type: ignore[attr-defined]
        assert html.startswith("<table>") and html.endswith("</table>")


def test_a_real_models_repr_is_short() -> None:
    """The file whose repr was ~15,000 characters (issue 23) now gives one line."""
    path = REALWORLD / "translation_seq2seq_keras224.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    ckpt = lstm_inspect.load(path)
    assert len(repr(ckpt)) < 200 and len(repr(ckpt.layers)) < 2000 and len(ckpt._repr_html_()) < 20000


def test_html_escapes_names_from_the_file() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    ckpt.directions[0].name = "<img src=x onerror=alert(1)>"
    evil = ModelLayer(name="<script>alert(1)</script>", class_name="Dense\x1b[31m")
    for html in (ckpt._repr_html_(), ckpt.directions[0]._repr_html_(), evil._repr_html_()):
        assert "<script>" not in html and "<img" not in html and "\x1b" not in html
    assert "&lt;script&gt;" in evil._repr_html_() and "\\x1b" in repr(evil)


def test_model_layers_hold_their_weights_by_name() -> None:
    """layers are the model's (with what feeds them): the Dense's kernel and bias turn Keras's h into Keras's
    output, and the LSTM's arrays are Keras's own (.ref.npz)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_functional_state.keras")
    assert [(m.name, m.class_name, m.inbound) for m in ckpt.layers] == [
        ("series", "InputLayer", ()), ("encoder", "LSTM", ("series",)), ("head", "Dense", ("encoder",))]
    assert ckpt.layers[0].output_shape == (None, 7, 3)
    io = _io("k3_functional_state")
    head = ckpt.layers[2].weights
    assert sorted(head) == ["bias", "kernel"]
    np.testing.assert_allclose(io["y1"] @ head["kernel"] + head["bias"], io["y0"], atol=1e-5)
    with np.load(SAMPLES / "k3_functional_state.ref.npz") as ref:
        for k, a in ckpt.layers[1].weights.items():
            np.testing.assert_array_equal(a, ref[f"encoder:{k}"])


def test_forward_returns_keras_final_states() -> None:
    """The encoder returns its states (return_state=True); the model outputs them: forward(..., return_state=True)
    gives the same h and c, by layer name and from the direction itself."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_functional_state.keras")
    io = _io("k3_functional_state")
    for y, (h, c) in (ckpt.forward(io["x"], layer="encoder", return_state=True),
                      ckpt.direction("encoder").forward(io["x"], return_state=True)):
        np.testing.assert_allclose(h, io["y1"], atol=1e-5)
        np.testing.assert_allclose(c, io["y2"], atol=1e-5)
        np.testing.assert_allclose(y, io["y1"], atol=1e-5)  # return_sequences=False: the last output is h
    # starting from Keras's final states continues the sequence: two halves run as one
    x = io["x"]
    _, states = ckpt.forward(x[:, :4], layer="encoder", return_state=True)
    _, (h, c) = ckpt.forward(x[:, 4:], layer="encoder", initial_state=states, return_state=True)
    np.testing.assert_allclose(h, io["y1"], atol=1e-5)
    with pytest.raises(lstm_inspect.InspectError, match="need a layer"):
        ckpt.forward(x, return_state=True)


def test_stats_function_reads_keras_weights() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_functional_state.keras")
    report = lstm_inspect.stats(ckpt, _io("k3_functional_state")["x"])
    with np.load(SAMPLES / "k3_functional_state.ref.npz") as ref:
        bias = ref["encoder:bias"]
    units = bias.size // 4
    st = report["encoder"]
    assert st.weights["f"]["b"].mean == pytest.approx(float(bias[units: 2 * units].astype(np.float64).mean()))
    assert st.steps_used == 4 * 7 and report.activations_from == "the given input"
    assert set(report.to_dict()) == {"file", "activations_from", "layers"}


def test_diagnose_function_on_a_bidirectional_layer() -> None:
    """THEIRS = Keras's Bidirectional output (the sample's only layer): a match; the same with the backward
    half's output taken from the forward half is a mismatch."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_sum.keras")
    io = _io("k3_bidir_sum")
    d = lstm_inspect.diagnose(ckpt, io["x"], io["y"], layer="bidirectional_1")
    assert d.matches and repr(d) == "<Diagnosis: THEIRS matches Keras>"
    d = lstm_inspect.diagnose(ckpt, io["x"], io["y"] * 1.5, layer="bidirectional_1")
    assert not d.matches and d.baseline[0].max_abs > 1e-3


def test_plot_takes_a_bidirectional_name(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plot draws with matplotlib")
    from lstm_inspect.plot import plot

    written, _ = plot(lstm_inspect.load(SAMPLES / "k3_bidir_sum.keras"), tmp_path / "p", layer="bidirectional_1")
    assert {w.split("/")[1] for w in written} == {"forward_lstm_6", "backward_lstm_6"}


VERIFY = """
import sys
import numpy as np
import lstm_inspect
from lstm_inspect.cli import app
root = sys.argv[1]
model = lstm_inspect.load(root + "/sample_models/k3_bidir_sum.keras")
io = np.load(root + "/sample_models/k3_bidir_sum.io.npz")
print("seeded", lstm_inspect.verify(model).ok)
print("theirs", lstm_inspect.verify(model, io["x"], io["y"]).ok)
print("wrong", lstm_inspect.verify(model, io["x"], io["y"] + 0.01).ok)
print("layer", lstm_inspect.verify(model, io["x"], layer="bidirectional_1").ok)
print("layer-wrong", lstm_inspect.verify(model, io["x"], io["y"] + 0.01, layer="bidirectional_1").ok)
print("direction", lstm_inspect.verify(model, io["x"][:, ::-1], layer="backward_lstm_6").ok)
try:
    app(["verify", root + "/sample_models/k3_bidir_sum.keras", "--layer", "bidirectional_1"])
except SystemExit as exc:
    print("cli", exc.code)
"""


def test_verify_function_and_a_bidirectional_layer_against_keras() -> None:
    """verify(ckpt) builds its own seeded input; THEIRS and layer= (a Bidirectional by its Keras name, and one
    direction) are judged by Keras itself; the CLI's verify --layer takes the name too."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("verify runs Keras 3 for this sample (the keras extra)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", VERIFY, str(ROOT)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ", 1)[0] in {
        "seeded", "theirs", "wrong", "layer", "layer-wrong", "direction", "cli"})
    assert lines == {"seeded": "True", "theirs": "True", "wrong": "False", "layer": "True", "layer-wrong": "False",
                     "direction": "True", "cli": "0"}, done.stdout[-3000:]
