"""`export --to pytorch` run by torch against Keras's own outputs, on every sample and real file that runs.

The expected values are Keras's: the `.io.npz` beside each file (model.predict) and, for the mask samples,
`.paths.npz` (Keras's outputs on right-padded, left-padded and holed inputs). Which path each recurrent layer took
(torch.nn's fused op, on the valid steps packed when masked, or Keras's step loop) is read by wrapping the
generated module's own helpers (tests/test_export_torch_deploy.py runs the exports under torch.jit and
torch.export). Writing the folder needs no torch (checked with torch blocked); running it does, so without torch
these tests skip.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.export import export, plan_export

from conftest import REALWORLD, SAMPLES
from helpers.io import inputs_and_outputs, max_error, models_with_outputs
from helpers.real_keras import REAL_LAYERS, real_keras_outputs
from helpers.runtimes import export_with_broken_runtime

torch = pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime): pip install torch")
pytest.importorskip("safetensors", reason="safetensors is not installed: pip install 'lstm-inspect[pytorch]'")

from lstm_inspect.export.torch.build import build, load, run  # noqa: E402

CASES = list(models_with_outputs())


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """These models are tiny: torch's thread pool only costs here, and on a busy 2-core runner its threads
    contend with the other tests' (a 10 ms run became seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _export(path: Path, tmp_path: Path, layer: str | None = None) -> Path:
    return _write(build(plan_export(lstm_inspect.load(path), layer)), tmp_path / f"{path.name}.pt")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_pytorch_export_computes_what_keras_computes(path: Path, tmp_path: Path) -> None:
    xs, ys = inputs_and_outputs(path)
    folder = _export(path, tmp_path)  # every layer kind the engine runs has a PyTorch form
    got = run(folder, xs)
    assert len(got) == len(ys)
    assert all(g.shape == y.shape for g, y in zip(got, ys))
    assert max_error(got, ys) <= 1e-5


def _trace_paths(module: object) -> list[str]:
    """Wrap the module's fused runs (torch.nn's ops: 'fused' with no mask, 'packed' on a mask's valid steps) and
    each kind's step-by-step loop: the list fills with those names and the name of each loop run."""
    calls: list[str] = []

    def wrapped(name: str, fn: Any) -> Any:
        def call(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return fn(*args, **kwargs)
        return call

    for loop in ("lstm_loop", "gru_loop", "simple_rnn_loop"):
        if hasattr(module, loop):
            setattr(module, loop, wrapped(loop, getattr(module, loop)))
    for cls in ("KerasLSTM", "KerasGRU", "KerasSimpleRNN"):
        if hasattr(module, cls):
            getattr(module, cls).fused_run = wrapped("fused", getattr(module, cls).fused_run)
            getattr(module, cls).fused_packed = wrapped("packed", getattr(module, cls).fused_packed)
    return calls


@pytest.mark.parametrize("name", ["k3_mask_paths.keras", "tfk_mask_paths.h5"])
def test_every_mask_path_matches_keras(name: str, tmp_path: Path) -> None:
    """Embedding(mask_zero) into an LSTM, a go_backwards LSTM, a Bidirectional GRU, a SimpleRNN (torch.nn's
    equations) and an LSTM with linear/hard_sigmoid (an explicit cell): right padding (one row all padding), left
    padding and a mask with holes each run, in eager PyTorch, torch.nn's op on the valid steps packed where
    torch.nn computes the layer and Keras's loop step by step for the explicit cell, the mask read as a tensor
    (no branch on its values, so torch.jit.trace and torch.export keep every path); each equals Keras on its
    input."""
    module, model = load(_export(SAMPLES / name, tmp_path))
    calls = _trace_paths(module)
    stored = np.load(SAMPLES / f"{name.split('.')[0]}.paths.npz")
    for kind in ("suffix", "prefix", "holes"):
        x = torch.as_tensor(stored[f"{kind}_x"]).long()
        calls.clear()
        with torch.no_grad():
            got = [o.numpy() for o in model(x)]
        assert max_error(got, [stored[f"{kind}_y{k}"] for k in range(6)]) <= 1e-5, kind
        assert sorted(calls) == ["lstm_loop"] + ["packed"] * 5, calls  # LSTM, backwards LSTM, 2 GRU, SimpleRNN
    assert (stored["suffix_x"][4] == 0).all()  # the row with no valid step is among them


def test_a_hole_in_an_embedding_mask(tmp_path: Path) -> None:
    """The io sample of an Embedding(mask_zero) model has right padding; a zero put in the middle of a row takes
    the same packed path, which equals the engine's Keras semantics there and leaves the other rows as Keras computed
    them."""
    path = SAMPLES / "k3_embedding_mask_zero.keras"
    xs, ys = inputs_and_outputs(path)
    module, model = load(_export(path, tmp_path))
    calls = _trace_paths(module)
    with torch.no_grad():
        assert max_error([model(torch.as_tensor(xs[0]).long()).numpy()], ys) <= 1e-5
    assert calls == ["packed"]
    holed = xs[0].copy()
    row = int(np.argmax((holed != 0).sum(axis=1)))
    holed[row, 1] = 0
    assert (holed[row, 2:] != 0).any()
    calls.clear()
    with torch.no_grad():
        got = model(torch.as_tensor(holed).long()).numpy()
    assert calls == ["packed"]
    others = [b for b in range(len(holed)) if b != row]
    assert max_error([got[others]], [ys[0][others]]) <= 1e-5
    assert max_error([got], [lstm_inspect.load(path).forward(holed)]) <= 1e-5


@pytest.mark.parametrize("name,formula", [("k3_hard_sigmoid.keras", "x / 6.0 + 0.5"),
                                          ("k3_gru_hard_sigmoid.keras", "x / 6.0 + 0.5"),
                                          ("tfk_stacked_hard_sigmoid.h5", "x * 0.2 + 0.5"),
                                          ("tfk_gru_hard_sigmoid.h5", "x * 0.2 + 0.5")])
def test_hard_sigmoid_of_the_writing_keras(name: str, formula: str, tmp_path: Path) -> None:
    folder = _export(SAMPLES / name, tmp_path)
    code = (folder / "model.py").read_text()
    assert f"torch.clamp({formula}, 0.0, 1.0)" in code
    assert 'recurrent_activation="hard_sigmoid"' in code and "fused=True" not in code
    xs, ys = inputs_and_outputs(SAMPLES / name)
    assert max_error(run(folder, xs), ys) <= 1e-5


def test_reset_before_gru_runs_as_an_explicit_cell(tmp_path: Path) -> None:
    folder = _export(SAMPLES / "tfk_gru_reset_before.h5", tmp_path)
    assert "KerasGRU(" in (folder / "model.py").read_text() and "reset_after=False" in (folder / "model.py").read_text()
    xs, ys = inputs_and_outputs(SAMPLES / "tfk_gru_reset_before.h5")
    assert max_error(run(folder, xs), ys) <= 1e-5


@pytest.mark.parametrize("name", ["tfk_cudnn.h5", "tfk_cudnn_gru.h5"])
def test_cudnn_biases(name: str, tmp_path: Path) -> None:
    """CuDNN's input and recurrent biases: CuDNNLSTM's summed into nn.LSTM's bias_ih (bias_hh zero), CuDNNGRU's two
    rows as nn.GRU's two biases."""
    folder = _export(SAMPLES / name, tmp_path)
    from safetensors.numpy import load_file

    weights = load_file(str(folder / "weights.safetensors"))
    bias_hh = next(v for k, v in weights.items() if k.endswith("bias_hh_l0"))
    assert (not bias_hh.any()) == (name == "tfk_cudnn.h5")
    xs, ys = inputs_and_outputs(SAMPLES / name)
    assert max_error(run(folder, xs), ys) <= 1e-5


@pytest.mark.parametrize("name,mode,expr", [
    # one module with bidirectional=True (torch.nn's layout), its backward half run with reverse=True
    ("k3_bidir_concat.keras", "concat", "= self.bidirectional(input_layer_3, reverse=True, go_backwards=True"),
    ("k3_bidir_sum.keras", "sum", "_forward[:, -1] + bidirectional_1_backward[:, -1]"),
    ("k3_masked_merge.keras", "mul", " * "), ("tfk_bidir_concat.h5", "ave", ") / 2"),
    ("k3_merge_none.keras", None, "_backward_output = ")])
def test_bidirectional_with_each_merge_mode(name: str, mode: str | None, expr: str, tmp_path: Path) -> None:
    ckpt = lstm_inspect.load(SAMPLES / name)
    assert mode in {d.merge_mode for d in ckpt.directions if d.wrapper}
    folder = _export(SAMPLES / name, tmp_path)
    code = (folder / "model.py").read_text()
    assert "bidirectional=True" in code and expr in code, code
    # the mask, where one reaches the layer, is the second argument of both halves' calls
    assert bool(re.search(r"= self\.\w+\(\w+, \w+, reverse=True", code)) == (name == "k3_masked_merge.keras")
    xs, ys = inputs_and_outputs(SAMPLES / name)
    assert max_error(run(folder, xs), ys) <= 1e-5


@pytest.mark.parametrize("path", [SAMPLES / "tfk_seq2seq.h5", SAMPLES / "k3_gru_seq2seq.keras",
                                  SAMPLES / "k3_seq2seq_embedding.keras",
                                  REALWORLD / "translation_seq2seq_keras224.h5"], ids=lambda p: p.name)
def test_encoder_decoder(path: Path, tmp_path: Path) -> None:
    """The encoder's final states become the decoder's initial states (state=[...]), as in Keras."""
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    folder = _export(path, tmp_path)
    code = (folder / "model.py").read_text()
    # the decoder's module called with state=[h(, c)]
    assert re.search(r"= self\.\w+\(\w+(, \w+)?, state=\[\w+(, \w+)?\]", code), code
    xs, ys = inputs_and_outputs(path)
    assert max_error(run(folder, xs), ys) <= 1e-5


@pytest.mark.parametrize("name", ["k3_single.weights.h5", "tfk_single.weights_only.h5"])
def test_layer_alone_from_a_weights_only_file(name: str, tmp_path: Path) -> None:
    """--layer on a file without architecture (Keras 3 and Keras 2 weights files): y, h, c; the model of the same
    weights is that LSTM alone, so Keras's output is the last step of y, and h."""
    ckpt = lstm_inspect.load(SAMPLES / name)
    assert ckpt.graph is None
    sample = name.split(".")[0]
    xs, ys = inputs_and_outputs(SAMPLES / f"{sample}.{'keras' if sample.startswith('k3') else 'h5'}")
    report = export(ckpt, "pytorch", tmp_path / "port", layer="lstm", xs=xs)
    assert report.ok and report.runtime and report.what == "layer lstm"
    y, h, c = run(tmp_path / "port", xs)
    assert y.shape == (*xs[0].shape[:2], ys[0].shape[-1]) and c.shape == h.shape
    assert max_error([y[:, -1], h], [ys[0], ys[0]]) <= 1e-5


def test_layer_alone_of_a_cudnn_weights_only_file(tmp_path: Path) -> None:
    """CuDNNLSTM's cuDNN layout and two biases converted in --layer on a weights-only file: Keras's model output is
    the Dense of the full model (same weights) on this y."""
    folder = _export(SAMPLES / "tfk_cudnn.weights_only.h5", tmp_path, layer="cu_dnnlstm")
    xs, ys = inputs_and_outputs(SAMPLES / "tfk_cudnn.h5")
    y, h, _ = run(folder, xs)
    kernel, bias = lstm_inspect.load(SAMPLES / "tfk_cudnn.h5").read_layer("dense_4")
    assert max_error([y @ kernel + bias], ys) <= 1e-5
    assert np.array_equal(h, y[:, -1])


@pytest.mark.parametrize("name", ["k3_two_inputs.keras", "k3_seq2seq_embedding.keras", "k3_merge_none.keras"])
def test_readme_lines_load_and_run_it(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first block runs as written (its own example inputs); its last line, the call, then run on
    Keras's inputs bound to the same names, gives Keras's outputs (arguments in forward()'s order)."""
    folder = _export(SAMPLES / name, tmp_path)
    readme = (folder / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]  # the second: the deployment routes
    xs, ys = inputs_and_outputs(SAMPLES / name)
    call = code.strip().splitlines()[-1]
    args = re.search(r"model\((.*?)\)", call).group(1).split(", ")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (int64|float32)", readme, re.M)
    assert [a for a, _ in rows] == args
    namespace: dict = {}
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    try:
        with torch.no_grad():
            exec(code, namespace)  # as written: defines its example inputs
            for (a, dtype), x in zip(rows, xs):
                assert namespace[a].dtype == (torch.int64 if dtype == "int64" else torch.float32)
                namespace[a] = torch.as_tensor(x).to(namespace[a].dtype)
            exec(call, namespace)
    finally:
        sys.modules.pop("model", None)
    got = [namespace["y"]] if len(ys) == 1 else list(namespace["outputs"])
    assert max_error([g.numpy() for g in got], ys) <= 1e-5


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
from pathlib import Path
import lstm_inspect
from lstm_inspect.export import plan_export
from lstm_inspect.export.torch.build import build
out = Path(sys.argv[1])
for name, layer in [("k3_mask_paths.keras", None), ("tfk_tf_ops_v23.h5", None), ("k3_layer_zoo.keras", None),
                    ("tfk_cudnn.weights_only.h5", "cu_dnnlstm")]:
    folder = out / name
    folder.mkdir()
    for file, data in build(plan_export(lstm_inspect.load(Path(sys.argv[2]) / name), layer)).items():
        (folder / file).write_bytes(data)
assert "torch" not in [m.split(".")[0] for m, v in sys.modules.items() if v is not None]
print("ok")
"""


def test_writing_needs_no_torch(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path), str(SAMPLES)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    for name in ("k3_mask_paths.keras", "tfk_tf_ops_v23.h5", "k3_layer_zoo.keras"):
        xs, ys = inputs_and_outputs(SAMPLES / name)
        assert max_error(run(tmp_path / name, xs), ys) <= 1e-5
    assert len(run(tmp_path / "tfk_cudnn.weights_only.h5", [np.zeros((1, 2, 3), np.float32)])) == 3


@pytest.mark.parametrize("require", [False, True], ids=["plain", "require-verified"])
def test_a_torch_that_fails_to_import_leaves_the_export_not_verified(tmp_path: Path, require: bool) -> None:
    """torch installed but failing at import: the export is written and said not verified with the cause (exit 0,
    a warning), or exit 1 with --require-verified; not exit 3."""
    out = tmp_path / "port"
    result = export_with_broken_runtime(
        tmp_path, "torch", 'ImportError("libtorch_cpu.so: cannot open shared object file")',
        [str(SAMPLES / "tfk_seq2seq.h5"), "--to", "pytorch", "--out", str(out), *(["--require-verified"] if require
                                                                                 else [])])
    assert result.returncode == (1 if require else 0), result.stderr[-2000:]
    assert ("not verified: torch failed to import (ImportError: libtorch_cpu.so: cannot open shared object file)"
            in result.stdout), result.stdout
    assert "NOT verified" in result.stderr and "Traceback" not in result.stderr
    assert {"README.md", "model.py", "weights.safetensors"} <= {p.name for p in out.iterdir()}


HOSTILE = ['x"""\nimport os\nos.system("touch PWNED")\n"""#', "forward", "training", "class", "0lstm", "__init__",
           "self", "lstm\x1b[2J\u202e", "a/b/../c", "torch"]


def _renamed(src: Path, dst: Path, name: str) -> Path:
    """A copy of a Sequential .keras with its LSTM named `name` and its input `name`_input."""
    with zipfile.ZipFile(src) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    cfg = json.loads(members["config.json"])
    for entry in cfg["config"]["layers"]:
        if entry["class_name"] in ("LSTM", "InputLayer"):
            entry["config"]["name"] = name if entry["class_name"] == "LSTM" else f"{name}_input"
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return dst


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(n)[:12] for n in HOSTILE])
def test_names_from_the_file_never_become_code(name: str, tmp_path: Path) -> None:
    """Layer and input names become identifiers, the file's name a quoted docstring text; the port still computes
    what Keras computed."""
    src = SAMPLES / "k3_single.keras"
    hostile = _renamed(src, tmp_path / 'evil"""\n\'name.keras', name)
    ckpt = lstm_inspect.load(hostile)
    folder = _write(build(plan_export(ckpt)), tmp_path / "port")
    code = (folder / "model.py").read_text()
    compile(code, "model.py", "exec")
    readme = (folder / "README.md").read_text()
    assert "os.system" not in code + readme and "\x1b" not in code + readme and "\u202e" not in code + readme
    if not name.isidentifier():  # not even as a word (it may be part of the identifier made from it)
        assert not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", code + readme)
    attrs = re.findall(r"self\.(\w+) = KerasLSTM", code)
    assert len(attrs) == 1 and attrs[0].isidentifier() and attrs[0] not in dir(torch.nn.Module)
    xs, ys = inputs_and_outputs(src)
    assert max_error(run(folder, xs), ys) <= 1e-5
    assert not list(tmp_path.glob("**/PWNED"))


def test_a_kind_without_an_emitter_is_refused_before_anything_is_written(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect.export.torch import ops as torch_ops
    from lstm_inspect.export.torch import registry

    monkeypatch.delitem(registry.LAYERS, "Dense")
    with pytest.raises(InspectError) as err:
        export(lstm_inspect.load(SAMPLES / "k3_gru_dense.keras"), "pytorch", tmp_path / "port")
    expected = "layer dense_4 (Dense) has no PyTorch form in lstm-inspect yet"
    assert str(err.value) == f"{SAMPLES / 'k3_gru_dense.keras'}: {expected}"
    assert "\n" not in str(err.value) and not (tmp_path / "port").exists()
    monkeypatch.delitem(torch_ops.TF_EMITTERS, "math.multiply")
    with pytest.raises(InspectError, match=r"graph op tf\.math\.multiply: the op math\.multiply \(TFOpLambda\) has "
                                           "no PyTorch form in lstm-inspect yet"):
        export(lstm_inspect.load(SAMPLES / "tfk_tf_ops.h5"), "pytorch", tmp_path / "port")
    assert not (tmp_path / "port").exists()


def test_cli_exports_and_verifies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lstm_inspect.cli import app

    out = tmp_path / "port"
    result = CliRunner().invoke(app, ["export", str(SAMPLES / "tfk_embedding_mask_zero_bilstm.h5"), "--to", "pytorch",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] and report["written"] == ["README.md", "model.py", "weights.safetensors"]
    assert report["max_abs_error"] <= 1e-5


def test_every_layer_kind_has_a_pytorch_form() -> None:
    from lstm_inspect.engine.layers.registry import LAYERS
    from lstm_inspect.export.torch.registry import LAYERS as TORCH_LAYERS

    assert set(LAYERS) <= set(TORCH_LAYERS), sorted(set(LAYERS) - set(TORCH_LAYERS))


# ---------------------------------------------------------------- the real files outside CASES


def test_real_savedmodel_exports(tmp_path: Path) -> None:
    """The real SavedModel folder (TF 2.15, LSTM(64) → Dense), whole, against Keras's stored outputs."""
    folder = REALWORLD / "tf-formats" / "lstm_savedmodel_tf215"
    if not folder.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with np.load(REALWORLD / "tf-formats" / "lstm_savedmodel_tf215.io.npz") as d:
        x, y = d["x"], d["y"]
    (got,) = run(_export(folder, tmp_path), [x])
    assert got.shape == y.shape and max_error([got], [y]) <= 1e-5


@pytest.fixture(scope="module")
def real_keras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Keras's outputs of each weights-only real direction (tests/helpers/real_keras.py): one Keras run serves
    both targets."""
    return real_keras_outputs(tmp_path_factory)


@pytest.mark.parametrize("key,name,layer", REAL_LAYERS, ids=[f"{k}-{layer}" for k, _, layer in REAL_LAYERS])
def test_real_weights_only_files_export_layer_by_layer(key: str, name: str, layer: str, real_keras: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """textgenrnn (CuDNNLSTM weights) and the two-shard TF checkpoint (Bidirectional, no config: settings by
    default), each direction exported alone: y (in processing order), h and c equal Keras's LSTM on them."""
    x = real_keras[f"{key}:{layer}:x"]
    want = [real_keras[f"{key}:{layer}:{r}"] for r in ("y", "h", "c")]
    got = run(_export(REALWORLD / name, tmp_path, layer=layer), [x])
    assert [g.shape for g in got] == [w.shape for w in want]
    assert max_error(got, want) <= 1e-5
