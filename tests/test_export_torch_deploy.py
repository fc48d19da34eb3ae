"""The PyTorch export under PyTorch's own deployment tools: torch.jit.script, torch.jit.trace and torch.export with a
dynamic batch and time axis (torch.export.Dim), each run on inputs of another batch and length than the example it
was traced or exported with, with masks taking every path (none, padding after, padding before, holes).

The expected values are torch's eager run of the same model.py (each form must equal it) and Keras's outputs stored
beside the samples (`.io.npz`, and `tfk_mask_paths.paths.npz`: Keras on right-padded, left-padded and holed inputs),
which every form must equal too. The exports are shared across the tests of this module (module-scoped fixtures):
torch.export is the slow part (about 1 s a model once torch's tracer is warm).
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.engine.network import default_inputs
from lstm_inspect.export import plan_export

from conftest import REALWORLD, SAMPLES
from helpers.io import inputs_and_outputs, max_error, models_with_outputs

torch = pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime): pip install torch")
pytest.importorskip("safetensors", reason="safetensors is not installed: pip install 'lstm-inspect[pytorch]'")

from lstm_inspect.export.torch.build import build, load  # noqa: E402

MODELS = [
    SAMPLES / "tfk_embedding_mask_zero_bilstm.h5",  # Embedding(mask_zero) -> Bidirectional(LSTM), one module
    SAMPLES / "k3_embedding_mask_zero.keras",
    SAMPLES / "tfk_masking.h5",  # a Masking layer on float inputs
    SAMPLES / "tfk_mask_paths.h5",  # masks into LSTM, go_backwards LSTM, Bidirectional GRU, SimpleRNN, explicit LSTM
    SAMPLES / "tfk_rnn_lstmcell.h5",  # RNN(LSTMCell)
    SAMPLES / "k3_rnn_cells.keras",
    SAMPLES / "k3_go_backwards.keras",
    SAMPLES / "tfk_gru_reset_before.h5",  # the explicit GRU (reset_after=False)
    SAMPLES / "tfk_stacked_hard_sigmoid.h5",  # explicit LSTMs (hard_sigmoid): the step loop alone
    SAMPLES / "tfk_seq2seq.h5",  # two inputs, the encoder's states into the decoder
    SAMPLES / "k3_att_seq2seq_mha.keras",  # MultiHeadAttention of a decoder over a masked encoder
    SAMPLES / "k3_cnn_lstm.keras",  # Conv1D -> MaxPooling1D -> LSTM
    REALWORLD / "sentiment_embed_maskzero_bilstm_tfkeras240.h5",
    REALWORLD / "poreplex_rnn_lstmcell_bidir_tfkeras224tf.hdf5",
]
EXAMPLE = (2, 8)  # batch, steps of the input the forms are traced / exported with
OTHER = (3, 11)  # those of the inputs they then run on
PATHS = ("none", "after", "before", "holes")


@dataclass
class Deployed:
    """One export and its forms: eager, torch.jit.script, torch.jit.trace, torch.export (Dim batch and time)."""

    path: Path
    module: Any
    model: Any
    forms: dict[str, Any]
    inputs: Any  # (batch, steps, seed) -> the model's inputs as numpy arrays
    dtypes: tuple[str, ...]


def _padded(x: np.ndarray, kind: str, ids: bool) -> np.ndarray:
    """x with the padding `kind`: token id 0, or all-zero steps (Masking's mask_value 0.0)."""
    x = x.copy()
    if ids:
        x[x == 0] = 1  # no padding but what is put here
    steps = x.shape[1]
    if kind == "after":
        x[:, steps - 2:] = 0
        x[0] = 0  # a row with no valid step
    elif kind == "before":
        x[:, :2] = 0
    elif kind == "holes":
        x[1, 1] = x[1, 3] = 0
        x[2 % len(x), 2] = 0
    return x


def _tensors(xs: list[np.ndarray], dtypes: tuple[str, ...]) -> tuple[Any, ...]:
    kinds = {"int64": torch.int64, "float32": torch.float32}
    return tuple(torch.as_tensor(np.asarray(x)).to(kinds[d]) for x, d in zip(xs, dtypes))


def _outputs(out: Any) -> list[np.ndarray]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o.detach().numpy() for o in outs]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=MODELS, ids=lambda p: p.name)
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    path = request.param
    if not path.exists():
        pytest.skip(f"{path.name} is not here (../shared/realworld is not beside this clone)")
    ckpt = lstm_inspect.load(path)
    plan = plan_export(ckpt)
    folder = tmp_path_factory.mktemp(path.name.replace(".", "_"))
    for name, data in build(plan).items():
        (folder / name).write_bytes(data)
    module, model = load(folder)
    specs = plan.net.input_specs()
    ids = [kind == "ids" for _, _, kind in specs]

    def inputs(batch: int, steps: int, kind: str, seed: int = 0) -> list[np.ndarray]:
        """The model's inputs, the k-th with steps + k steps (each input's time axis is its own)."""
        xs = [default_inputs(plan.net, seed=seed, batch=batch, steps=steps + k)[k] for k in range(len(specs))]
        return [_padded(_with_steps(x, steps + k), kind, i) for k, (x, i) in enumerate(zip(xs, ids))]

    example = _tensors(inputs(*EXAMPLE, "after"), module.INPUT_DTYPES)
    params = list(inspect.signature(model.forward).parameters)
    dynamic = torch.export.Dim.DYNAMIC  # as the exported README writes it
    shapes = {p: {0: dynamic, 1: dynamic} for p in params}
    with torch.no_grad():
        forms = {"script": torch.jit.script(model),
                 "trace": torch.jit.trace(model, example, check_trace=False),
                 "export": torch.export.export(model, example, dynamic_shapes=shapes).module()}
    return Deployed(path, module, model, forms, inputs, module.INPUT_DTYPES)


def _with_steps(x: np.ndarray, steps: int) -> np.ndarray:
    """default_inputs keeps a declared time axis; the forms are run on another length, as PyTorch allows."""
    if x.shape[1] == steps:
        return x
    reps = -(-steps // x.shape[1])
    return np.concatenate([x] * reps, axis=1)[:, :steps]


@pytest.mark.parametrize("kind", PATHS)
def test_every_form_equals_eager_on_another_batch_and_length(deployed: Deployed, kind: str) -> None:
    """script, trace and export (traced/exported on a (2, 8) input padded after; a second input one step longer)
    run a (3, 11) input with no padding, padding after (one row all padding), padding before, and holes: each
    equals eager PyTorch."""
    xs = _tensors(deployed.inputs(*OTHER, kind, seed=1), deployed.dtypes)
    with torch.no_grad():
        eager = _outputs(deployed.model(*xs))
        for name, form in deployed.forms.items():
            got = _outputs(form(*xs))
            assert [g.shape for g in got] == [e.shape for e in eager], name
            assert max_error(got, eager) <= 1e-5, (name, kind)


def test_every_form_equals_keras(deployed: Deployed) -> None:
    """Eager and every form on Keras's own inputs (.io.npz) give Keras's outputs; where Keras also ran the model on
    right-padded, left-padded and holed inputs (`.paths.npz`), every form gives those outputs too."""
    cases = [inputs_and_outputs(deployed.path)]
    paths = deployed.path.with_name(f"{deployed.path.name.split('.')[0]}.paths.npz")
    if paths.exists():
        with np.load(paths) as stored:
            n = len([k for k in stored.files if k.startswith("suffix_y")])
            cases += [([stored[f"{kind}_x"]], [stored[f"{kind}_y{k}"] for k in range(n)])
                      for kind in ("suffix", "prefix", "holes")]
    for xs, ys in cases:
        args = _tensors(xs, deployed.dtypes)
        with torch.no_grad():
            assert max_error(_outputs(deployed.model(*args)), ys) <= 1e-5
            for name, form in deployed.forms.items():
                assert max_error(_outputs(form(*args)), ys) <= 1e-5, name


README_MODELS = [(SAMPLES / "tfk_embedding_mask_zero_bilstm.h5", None),  # token ids, masked, one output
                 (SAMPLES / "tfk_seq2seq.h5", None),  # two float inputs of different declared lengths
                 (SAMPLES / "tfk_cudnn.weights_only.h5", "cu_dnnlstm")]  # --layer of a weights-only file: 3 outputs


@pytest.mark.parametrize(("path", "layer"), README_MODELS, ids=lambda p: getattr(p, "name", str(p)))
def test_the_readme_code_blocks_run_as_written(path: Path, layer: str | None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported README's two code blocks (load, example inputs and run; script, trace, export, ONNX, compile),
    run as they are, in order, in an empty namespace from the export's folder: the example inputs they define have
    the Inputs table's names, shapes and dtypes, and each form, and ONNX Runtime on the ONNX written, equals eager
    PyTorch on an input of another batch and length (with holes in its mask)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
    plan = plan_export(lstm_inspect.load(path), layer)
    for name, data in build(plan).items():
        (tmp_path / name).write_bytes(data)
    readme = (tmp_path / "README.md").read_text()
    assert "|\n\n## Deploy\n" in readme  # the Outputs table ends before the heading
    load_lines, deploy_lines = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert "dynamic_shapes=" in deploy_lines and "1: dynamic}" in deploy_lines
    rows = re.findall(r"^\| `(\w+)` \| \(([^)]*)\) \| ([^|]*) \|$", readme, re.M)
    assert rows
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    try:
        with torch.no_grad():
            exec(load_lines, namespace)
            exec(deploy_lines, namespace)
    finally:
        sys.modules.pop("model", None)
    params = [p for p, _, _ in rows]
    assert list(inspect.signature(namespace["model"].forward).parameters) == params
    rng = np.random.default_rng(3)
    other = {}
    for k, (p, shape, dtype) in enumerate(rows):
        x = namespace[p]  # defined by the README's first block, as the table says
        dims = [d.strip() for d in shape.split(",")]
        assert x.shape[0] == 2 and len(x.shape) == len(dims)
        assert all(n >= 2 if d == "steps" else n == int(d) for d, n in zip(dims[1:], x.shape[1:])), (p, x.shape)
        ids = dtype.startswith("int64")
        assert x.dtype == (torch.int64 if ids else torch.float32)
        size = (3, x.shape[1] + 3 + k, *x.shape[2:])
        if ids:
            vocab = plan.net.vocabulary(plan.net.input_specs()[k][0])
            assert vocab and int(x.min()) >= 0 and int(x.max()) < vocab
            other[p] = torch.as_tensor(_padded(rng.integers(1, vocab, size=size), "holes", True))
        else:
            other[p] = torch.as_tensor(rng.normal(size=size).astype(np.float32))
    args = tuple(other[p] for p in params)
    with torch.no_grad():
        eager = _outputs(namespace["model"](*args))
        assert max_error(_outputs(namespace["model"](*(namespace[p] for p in params))),
                         _outputs(namespace["y" if "y" in namespace else "outputs"])) == 0
        forms = {"script": namespace["scripted"], "trace": namespace["traced"],
                 "export": namespace["exported"].module(), "compile": namespace["compiled"]}
        for name in ("script", "trace", "export"):  # torch.compile's first run compiles: checked elsewhere
            assert max_error(_outputs(forms[name](*args)), eager) <= 1e-5, name
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {p: other[p].numpy() for p in params})
    assert max_error(got, eager) <= 1e-5


@pytest.mark.parametrize("path", list(models_with_outputs()), ids=lambda p: p.name)
def test_every_export_scripts(path: Path, tmp_path: Path) -> None:
    """Every sample and real file's model.py compiles with torch.jit.script as written, and the ScriptModule gives
    Keras's outputs."""
    for name, data in build(plan_export(lstm_inspect.load(path))).items():
        (tmp_path / name).write_bytes(data)
    module, model = load(tmp_path)
    xs, ys = inputs_and_outputs(path)
    with torch.no_grad():
        assert max_error(_outputs(torch.jit.script(model)(*_tensors(xs, module.INPUT_DTYPES))), ys) <= 1e-5
