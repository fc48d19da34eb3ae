"""`export --to onnx` run by onnxruntime against Keras's own outputs, on every sample and real file that runs.

The expected values are Keras's: the `.io.npz` beside each file (model.predict), and for the mask
samples `.paths.npz` (Keras's outputs on right-padded, left-padded and holed inputs). The graph's own
mask tests are read back to show which path (sequence_lens or Scan) each input took.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.export import export, plan_export

from conftest import REALWORLD, SAMPLES, run_cli
from helpers.io import inputs_and_outputs, max_error, models_with_outputs
from helpers.real_keras import REAL_LAYERS, real_keras_outputs
from helpers.runtimes import export_with_broken_runtime

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")

from lstm_inspect.export.onnx.build import build_model, run  # noqa: E402

CASES = list(models_with_outputs())


def _export(path: Path, tmp_path: Path, opset: int | None = None, layer: str | None = None) -> Path:
    model = build_model(plan_export(lstm_inspect.load(path), layer, opset))
    out = tmp_path / f"{path.name}.onnx"
    out.write_bytes(model.SerializeToString())
    return out


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_onnx_export_computes_what_keras_computes(path: Path, tmp_path: Path) -> None:
    xs, ys = inputs_and_outputs(path)
    out = _export(path, tmp_path)  # build_model runs onnx.checker.check_model(full_check=True)
    onnx.checker.check_model(str(out), full_check=True)
    got = run(out, xs)
    assert len(got) == len(ys)
    assert max_error(got, ys) <= 1e-5


def _all_ops(graph: object) -> list[str]:
    """Every operator of a graph and of its subgraphs (Scan bodies)."""
    return [n.op_type for n in _nodes(graph)]


@pytest.mark.parametrize("name", ["k3_mask_paths.keras", "tfk_mask_paths.h5"])
def test_every_mask_path_matches_keras(name: str, tmp_path: Path) -> None:
    """One graph with no branch serves every mask: right padding, left padding and holes (each row's valid steps
    moved to the front and run by the operators with sequence_lens) each equal Keras on its input."""
    path = SAMPLES / name
    model = build_model(plan_export(lstm_inspect.load(path)))
    ops = set(_all_ops(model.graph))
    assert {"LSTM", "GRU", "RNN", "TopK", "Gather"} <= ops and "If" not in ops
    out = tmp_path / "paths.onnx"
    out.write_bytes(model.SerializeToString())
    stored = np.load(SAMPLES / f"{name.split('.')[0]}.paths.npz")
    for kind in ("suffix", "prefix", "holes"):
        x = stored[f"{kind}_x"]
        ys = [stored[f"{kind}_y{k}"] for k in range(6)]
        got = run(out, [x])
        assert max_error(got[:6], ys) <= 1e-5, kind


def test_scan_without_mask_for_activations_onnx_operators_lack(tmp_path: Path) -> None:
    model = build_model(plan_export(lstm_inspect.load(SAMPLES / "k3_scan_activations.keras")))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Scan") == 3 and not {"LSTM", "GRU", "RNN"} & set(ops)
    # and a tanh/sigmoid model uses the operators, no Scan
    plain = build_model(plan_export(lstm_inspect.load(SAMPLES / "k3_stacked.keras")))
    assert "Scan" not in {n.op_type for n in plain.graph.node}


def _nodes(graph: object) -> list[object]:
    out = []
    for n in graph.node:
        out.append(n)
        for a in n.attribute:
            if a.HasField("g"):
                out += _nodes(a.g)
    return out


def _attrs(model: object, op: str) -> list[dict]:
    """The attributes of every `op` node, in the graph and its subgraphs."""
    from onnx import helper

    return [{a.name: helper.get_attribute_value(a) for a in n.attribute if not a.HasField("g")}
            for n in _nodes(model.graph) if n.op_type == op]


def test_hard_sigmoid_of_the_writing_keras() -> None:
    """Keras 3's hard_sigmoid is x/6 + 0.5, Keras 2's 0.2x + 0.5: the operator's HardSigmoid alpha follows the file
    (both files also match their Keras's outputs in the test above)."""
    k3 = _attrs(build_model(plan_export(lstm_inspect.load(SAMPLES / "k3_hard_sigmoid.keras"))), "LSTM")
    k2 = _attrs(build_model(plan_export(lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5"))), "LSTM")
    assert k3[0]["activations"][0] == b"HardSigmoid" and k3[0]["activation_alpha"][0] == pytest.approx(1 / 6)
    assert all(a["activations"][0] == b"HardSigmoid" and a["activation_alpha"][0] == pytest.approx(0.2) for a in k2)
    gru = _attrs(build_model(plan_export(lstm_inspect.load(SAMPLES / "tfk_gru_hard_sigmoid.h5"))), "GRU")
    assert gru[0]["activation_alpha"][0] == pytest.approx(0.2)
    # a linear activation beside hard_sigmoid gates: HardSigmoid's alpha and beta first, then Affine's (1, 0) twice
    affine = next(a for a in _attrs(build_model(plan_export(lstm_inspect.load(SAMPLES / "tfk_mask_paths.h5"))), "LSTM")
                  if b"Affine" in a.get("activations", []))
    assert affine["activations"] == [b"HardSigmoid", b"Affine", b"Affine"]
    assert affine["activation_alpha"] == pytest.approx([0.2, 1.0, 1.0])
    assert affine["activation_beta"] == pytest.approx([0.5, 0.0, 0.0])


def test_cudnn_biases_stay_in_the_two_halves_of_B() -> None:
    import h5py
    from onnx import numpy_helper

    model = build_model(plan_export(lstm_inspect.load(SAMPLES / "tfk_cudnn.h5")))
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    B = inits[lstm.input[3]][0]
    with h5py.File(SAMPLES / "tfk_cudnn.h5") as f:
        raw = next(np.asarray(f["model_weights"][k][k2][ds]) for k in f["model_weights"]
                   for k2 in f["model_weights"][k] for ds in f["model_weights"][k][k2] if ds.startswith("bias"))
    n = raw.shape[0] // 2
    # the stored halves, each in ONNX's gate order i, o, f, c (Keras's i, f, c, o reordered)
    u = n // 4
    order = lambda b: np.concatenate([b[0:u], b[3 * u:4 * u], b[u:2 * u], b[2 * u:3 * u]])  # noqa: E731
    np.testing.assert_array_equal(B, np.concatenate([order(raw[:n]), order(raw[n:])]))


@pytest.mark.parametrize("opset", [14, 17, 18, 20])
def test_opsets(opset: int, tmp_path: Path) -> None:
    """Reductions take axes as an input from opset 18 and DFT its axis from 20: both forms run."""
    if opset > onnx.defs.onnx_opset_version():
        pytest.skip(f"the installed onnx writes opsets up to {onnx.defs.onnx_opset_version()}")
    names = ["k3_masked_merge.keras", "tfk_layer_zoo.h5", "tfk_mask_paths.h5"]
    names += ["tfk_tf_ops.h5"] if opset >= 17 else []  # DFT is in ONNX from opset 17
    for name in names:
        xs, ys = inputs_and_outputs(SAMPLES / name)
        out = _export(SAMPLES / name, tmp_path, opset=opset)
        assert onnx.load(str(out)).opset_import[0].version == opset
        assert max_error(run(out, xs), ys) <= 1e-5, name


def test_one_direction_from_a_weights_only_file(tmp_path: Path) -> None:
    """--layer on a weights-only file: the single LSTM's final h equals Keras's output of the full model."""
    xs, ys = inputs_and_outputs(SAMPLES / "k3_single.keras")
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.weights.h5")
    name = ckpt.directions[0].name
    out = _export(SAMPLES / "k3_single.weights.h5", tmp_path, layer=name)
    y, h, _c = run(out, xs)
    assert max_error([h], ys) <= 1e-5
    np.testing.assert_allclose(y[:, -1], h, atol=1e-7)


def test_cli_export_verifies_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    r = run_cli("export", str(SAMPLES / "tfk_seq2seq.h5"), "--to", "onnx", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["verified"] is True and report["runtime"].startswith("onnxruntime ")
    assert report["max_abs_error"] < 1e-5 and out.exists()
    text = run_cli("export", str(SAMPLES / "tfk_seq2seq.h5"), "--to", "onnx", "--out", str(out), "--force")
    assert text.returncode == 0 and "verified with onnxruntime" in text.stdout and "over 4×" in text.stdout
    again = run_cli("export", str(SAMPLES / "tfk_seq2seq.h5"), "--to", "onnx", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


def test_cli_refuses_what_it_cannot_export_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "w.onnx"
    r = run_cli("export", str(SAMPLES / "k3_single.weights.h5"), "--to", "onnx", "--out", str(out))
    assert r.returncode == 2 and "--layer" in r.stderr and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_layer_without_onnx_form_is_named_and_nothing_is_written(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect.export.onnx import registry as onnx_layers

    monkeypatch.delitem(onnx_layers.LAYERS, "Dense")
    out = tmp_path / "m.onnx"
    with pytest.raises(InspectError, match=r"layer .*\(Dense\) has no ONNX form"):
        export(lstm_inspect.load(SAMPLES / "k3_gru_dense.keras"), "onnx", out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_mismatch_keeps_the_file_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect import export as port

    real = port.TARGETS["onnx"]
    wrong = lambda path, xs: [y + 1e-3 for y in real.run(path, xs)]  # noqa: E731
    monkeypatch.setitem(port.TARGETS, "onnx", port.Target(real.name, real.runtime, real.extra, real.folder,
                                                          real.build, wrong, real.needs))
    out = tmp_path / "m.onnx"
    report = export(lstm_inspect.load(SAMPLES / "k3_single.keras"), "onnx", out)
    assert not report.ok and out.exists() and report.summary().startswith("MISMATCH")


def test_not_verified_without_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect import export as port

    monkeypatch.setattr(port.Target, "runtime_version", lambda self: None)
    report = export(lstm_inspect.load(SAMPLES / "k3_single.keras"), "onnx", tmp_path / "m.onnx")
    assert report.summary() == "not verified: onnxruntime is not installed (pip install 'lstm-inspect[onnx]')"
    assert (tmp_path / "m.onnx").exists()


def test_every_layer_kind_has_an_onnx_form() -> None:
    from lstm_inspect.export.onnx.registry import LAYERS as ONNX_LAYERS

    assert set(LAYERS) <= set(ONNX_LAYERS), sorted(set(LAYERS) - set(ONNX_LAYERS))


def test_names_from_the_file_never_reach_the_graph_raw(tmp_path: Path) -> None:
    """Tensor names carry only [A-Za-z0-9_.]; the file's name reaches the metadata printable, not as markup."""
    import re

    model = build_model(plan_export(lstm_inspect.load(SAMPLES / "k3_functional_state.keras")))
    names = [o for n in model.graph.node for o in n.output] + [i.name for i in model.graph.input]
    assert all(re.fullmatch(r"[A-Za-z0-9_.]+", n) for n in names)


def test_real_files_are_all_exported() -> None:
    if not REALWORLD.is_dir():
        pytest.skip("../shared/realworld is not beside this clone")
    real = [p for p in CASES if REALWORLD in p.parents]
    assert len(real) >= 11
    # and the three outside CASES (test_real_*): the SavedModel whole, every direction of the weights-only two
    for name in sorted({name for _, name, _ in REAL_LAYERS}):
        directions = [d.name for d in lstm_inspect.load(REALWORLD / name).directions]
        assert directions == [layer for _, n, layer in REAL_LAYERS if n == name]


def test_exported_file_runs_as_the_readme_says(tmp_path: Path) -> None:
    """What the README's porting section tells a user to type, with onnxruntime alone."""
    out = tmp_path / "model.onnx"
    export(lstm_inspect.load(SAMPLES / "k3_embedding_mask_zero.keras"), "onnx", out)
    xs, ys = inputs_and_outputs(SAMPLES / "k3_embedding_mask_zero.keras")
    session = ort.InferenceSession(os.fspath(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.type == "tensor(int64)" and inp.shape[0] == "batch"
    (y,) = session.run(None, {inp.name: xs[0].astype(np.int64)})
    assert max_error([y], ys) <= 1e-5


# ---------------------------------------------------------------- the real files outside CASES

# The real SavedModel folder has Keras's outputs beside it (tf-formats/lstm_savedmodel_tf215.io.npz); the two
# weights-only real files have none, so tf_keras computes them, once per test run (tests/helpers/real_keras.py), and
# each recurrent direction is exported alone (--layer) and compared with that direction run by Keras alone.
REAL_SAVEDMODEL = REALWORLD / "tf-formats" / "lstm_savedmodel_tf215"


@pytest.fixture(scope="module")
def real_keras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return real_keras_outputs(tmp_path_factory)


def test_real_savedmodel_exports(tmp_path: Path) -> None:
    """The real SavedModel folder (TF 2.15, LSTM(64) → Dense), whole, against Keras's stored outputs."""
    if not REAL_SAVEDMODEL.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with np.load(REALWORLD / "tf-formats" / "lstm_savedmodel_tf215.io.npz") as d:
        x, y = d["x"], d["y"]
    out = _export(REAL_SAVEDMODEL, tmp_path)
    (got,) = run(out, [x])
    assert got.shape == y.shape and max_error([got], [y]) <= 1e-5


@pytest.mark.parametrize("key,name,layer", REAL_LAYERS, ids=[f"{k}-{layer}" for k, _, layer in REAL_LAYERS])
def test_real_weights_only_files_export_layer_by_layer(key: str, name: str, layer: str, real_keras: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """textgenrnn (CuDNNLSTM weights) and the two-shard TF checkpoint (Bidirectional, no config: settings by
    default), each direction exported alone: y (in processing order), h and c equal Keras's LSTM on them."""
    x = real_keras[f"{key}:{layer}:x"]
    want = [real_keras[f"{key}:{layer}:{r}"] for r in ("y", "h", "c")]
    out = _export(REALWORLD / name, tmp_path, layer=layer)
    got = run(out, [x])
    assert [g.shape for g in got] == [w.shape for w in want]
    assert max_error(got, want) <= 1e-5


@pytest.mark.parametrize("require", [False, True])
def test_an_unverified_export_warns_and_require_verified_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               require: bool) -> None:
    """Without its runtime the export is written but unverified: a warning on stderr, exit 0; exit 1 for scripts
    that ask for --require-verified (the file is kept either way)."""
    from typer.testing import CliRunner

    from lstm_inspect import export as port
    from lstm_inspect.cli import app

    monkeypatch.setattr(port.Target, "runtime_version", lambda self: None)
    out = tmp_path / "m.onnx"
    args = ["export", str(SAMPLES / "k3_single.keras"), "--to", "onnx", "--out", str(out)]
    result = CliRunner().invoke(app, args + (["--require-verified"] if require else []))
    assert result.exit_code == (1 if require else 0), result.output
    assert out.exists()
    assert f"warning: {out} was written but NOT verified: onnxruntime is not installed" in result.stderr
    assert "not verified" in result.stdout
    assert ("--require-verified makes this exit 1" in result.stderr) is not require


@pytest.mark.parametrize("require", [False, True], ids=["plain", "require-verified"])
def test_an_onnxruntime_that_fails_to_import_leaves_the_export_not_verified(tmp_path: Path, require: bool) -> None:
    """onnxruntime installed but failing at import (here an OSError, as from a missing shared library): the file is
    written and said not verified with the cause (exit 0, a warning), or exit 1 with --require-verified; not exit 3."""
    out = tmp_path / "m.onnx"
    result = export_with_broken_runtime(
        tmp_path, "onnxruntime", 'OSError("libonnxruntime.so.1: cannot open shared object file")',
        [str(SAMPLES / "k3_single.keras"), "--to", "onnx", "--out", str(out), *(["--require-verified"] if require
                                                                               else [])])
    assert result.returncode == (1 if require else 0), result.stderr[-2000:]
    assert ("not verified: onnxruntime failed to import (OSError: libonnxruntime.so.1: cannot open shared object "
            "file)" in result.stdout), result.stdout
    assert "NOT verified" in result.stderr and "Traceback" not in result.stderr
    assert out.exists()
