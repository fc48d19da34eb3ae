"""The `export --to onnx` files as ONNX users deploy them: onnxruntime's dynamic quantization, the shapes their
tools read, one copy of each weight, and Keras's outputs under every mask path, at another batch and length.

Expected values are Keras's: `.io.npz` (model.predict) and `.paths.npz` (Keras on right-padded, left-padded and
holed inputs) beside each file. Where Keras's own semantics give the output of a changed input (a masked step is
skipped: moving or adding padding under mask_zero leaves a final output unchanged; a causal decoder's first
steps do not read the later ones), the stored Keras output is the expectation. Weight sizes are read from the
checkpoint file with h5py, not through lstm-inspect.

Figures measured when this was written (onnxruntime 1.32, QInt8 weights, reduce_range): quantized output within
0.008 of the float model's on the samples, 0.066 on the real 300-step poreplex BiLSTM, 0.052 on the real
translation seq2seq's softmax; float initializers 1.00-1.12x the file's weight bytes (ONNX's B keeps a second,
zero recurrent-bias half), where the masked exports stored each recurrent weight three times before.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.export import plan_export

from conftest import REALWORLD, SAMPLES
from helpers.io import inputs_and_outputs, max_error

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
quantization = pytest.importorskip("onnxruntime.quantization", reason="this onnxruntime has no quantization tools")

from lstm_inspect.export.onnx.build import build_model, run  # noqa: E402

# (file, how far the dynamically quantized model may be from the float one: ~3x what was measured)
SAMPLE_CASES = {
    "tfk_embedding_mask_zero_bilstm.h5": 0.02,  # masked Bidirectional (mask_zero)
    "k3_embedding_mask_zero.keras": 0.02,
    "tfk_masking.h5": 0.03,  # Masking, holes in its stored input
    "tfk_mask_paths.h5": 0.02,  # LSTM, GRU, SimpleRNN, Bidirectional under one mask
    "tfk_rnn_lstmcell.h5": 0.02,  # RNN(LSTMCell)
    "tfk_gru.h5": 0.03,
    "tfk_simple_rnn.h5": 0.02,
    "tfk_seq2seq.h5": 0.02,
    "tfk_att_bilstm_text.h5": 0.02,  # attention over a masked BiLSTM
    "k3_cnn_td_conv2d.keras": 0.02,  # TimeDistributed(Conv2D) -> GRU
    "tfk_cnn_lstm.h5": 0.03,  # Conv1D -> LSTM
    "tfk_scan_activations.h5": 0.02,  # activations the operators lack: the Scan
}
REAL_CASES = {
    "sentiment_embed_maskzero_bilstm_tfkeras240.h5": 0.02,
    "poreplex_rnn_lstmcell_bidir_tfkeras224tf.hdf5": 0.2,  # 300 steps
    "translation_seq2seq_keras224.h5": 0.15,  # softmax over 50 classes, 12 steps
}
CASES = [(SAMPLES / n, b) for n, b in SAMPLE_CASES.items()] + [(REALWORLD / n, b) for n, b in REAL_CASES.items()]
IDS = [p.name for p, _ in CASES]


def _present(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} is not here (../shared/realworld is not beside this clone)")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """The .onnx of a file, built once per test run."""
    folder = tmp_path_factory.mktemp("onnx_deploy")
    done: dict[Path, Path] = {}

    def get(path: Path) -> Path:
        if path not in done:
            out = folder / f"{_present(path).name}.onnx"
            out.write_bytes(build_model(plan_export(lstm_inspect.load(path))).SerializeToString())
            done[path] = out
        return done[path]

    return get


def _ops(graph: object) -> set[str]:
    ops = set()
    for n in graph.node:
        ops.add(n.op_type)
        for a in n.attribute:
            if a.HasField("g"):
                ops |= _ops(a.g)
    return ops


@pytest.mark.parametrize("path,bound", CASES, ids=IDS)
def test_quantize_dynamic_runs_near_the_float_model(path: Path, bound: float, exported: Callable[[Path], Path],
                                                    tmp_path: Path) -> None:
    """onnxruntime.quantization.quantize_dynamic (int8 weights; reduce_range, so no CPU's int8 kernel saturates)
    quantizes every LSTM operator and weight MatMul; the quantized file loads and runs in onnxruntime, near the
    float model and Keras."""
    f = exported(path)
    q = tmp_path / "q.onnx"
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process
    quantization.quantize_dynamic(f, q, weight_type=quantization.QuantType.QInt8, reduce_range=True)
    before, after = _ops(onnx.load(str(f)).graph), _ops(onnx.load(str(q)).graph)
    assert _dims(onnx.load(str(q)).graph.output) == _dims(onnx.load(str(f)).graph.output)  # named dims kept
    assert "If" not in before
    assert ("LSTM" in before) == ("DynamicQuantizeLSTM" in after) and "LSTM" not in after
    assert {"MatMulInteger", "DynamicQuantizeMatMul"} & after or "MatMul" not in before
    xs, ys = inputs_and_outputs(path)
    floats, quantized = run(f, xs), run(q, xs)
    assert [y.shape for y in quantized] == [y.shape for y in ys]
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(quantized, floats))
    assert err <= bound, f"quantized output {err:.4f} from the float model's"
    assert max_error(quantized, ys) <= bound + 1e-5


def test_preprocessed_and_quantized_under_every_mask_path(exported: Callable[[Path], Path], tmp_path: Path) -> None:
    """The quantizer's recommended pre-processing (onnxruntime's symbolic shape inference and graph optimizer),
    then quantize_dynamic, on LSTM, GRU, SimpleRNN and Bidirectional layers under one mask: near Keras on
    right-padded, left-padded and holed inputs."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    f = exported(SAMPLES / "tfk_mask_paths.h5")
    pre, q = tmp_path / "pre.onnx", tmp_path / "q.onnx"
    logging.getLogger().setLevel(logging.ERROR)
    quant_pre_process(str(f), str(pre))
    quantization.quantize_dynamic(pre, q, weight_type=quantization.QuantType.QInt8, reduce_range=True)
    with np.load(SAMPLES / "tfk_mask_paths.paths.npz") as d:
        for kind in ("suffix", "prefix", "holes"):
            got = run(q, [d[f"{kind}_x"]])
            assert max_error(got, [d[f"{kind}_y{k}"] for k in range(6)]) <= 0.02, kind


def _weight_bytes(path: Path) -> int:
    """Bytes of the float arrays the checkpoint stores for its layers (h5py; optimizer state left out)."""
    import h5py

    def total(group: h5py.Group, skip: tuple[str, ...] = ()) -> int:
        n = 0
        for key, v in group.items():
            if key in skip:
                continue
            if isinstance(v, h5py.Dataset):
                n += v.size * v.dtype.itemsize if v.dtype.kind == "f" else 0
            else:
                n += total(v)
        return n

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            return total(f, ("optimizer",))
    with h5py.File(path, "r") as f:
        return total(f["model_weights"] if "model_weights" in f else f, ("optimizer_weights",))


@pytest.mark.parametrize("path", [p for p, _ in CASES], ids=IDS)
def test_each_weight_is_stored_once(path: Path, exported: Callable[[Path], Path]) -> None:
    """No two initializers hold the same values (in any layout: an array's sorted values), and the float
    initializers weigh what the file's weights weigh, plus ONNX's second (zero) bias half and a few constants."""
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(i) for i in onnx.load(str(exported(path))).graph.initializer]
    varied = [np.sort(a.ravel()).tobytes() for a in arrays if a.size > 16 and np.ptp(a) > 0]
    assert len(varied) == len(set(varied)), "a weight is stored more than once"
    stored = _weight_bytes(path)
    floats = sum(a.nbytes for a in arrays if a.dtype.kind == "f")
    assert stored <= floats <= 1.15 * stored + 512, (floats, stored)


def _dims(values: object) -> list[list[int | str]]:
    return [[d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]


def _other_batch(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The stored rows reversed, one fewer of them (a batch the export's own check never used)."""
    rows = np.arange(len(xs[0]))[::-1][: max(1, len(xs[0]) - 1)]
    return [x[rows] for x in xs], [y[rows] for y in ys]


@pytest.mark.parametrize("path", [p for p, _ in CASES], ids=IDS)
def test_every_dim_is_fixed_or_named_and_holds(path: Path, exported: Callable[[Path], Path]) -> None:
    """Every input and output axis has a size or a name, axis 0 is "batch" everywhere; at another batch the
    outputs have the declared sizes, one size per name across inputs and outputs, and equal Keras's rows. The
    file passes onnx.checker's full check and strict shape inference."""
    f = exported(path)
    model = onnx.load(str(f))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    ins, outs = _dims(model.graph.input), _dims(model.graph.output)
    assert all(d not in ("", 0) for dims in ins + outs for d in dims), (ins, outs)
    assert all(dims[0] == "batch" for dims in ins + outs)
    xs, ys = _other_batch(*inputs_and_outputs(path))
    got = run(f, xs)
    sizes: dict[str, int] = {}
    for declared, actual in zip(ins + outs, [x.shape for x in xs] + [y.shape for y in got]):
        assert len(declared) == len(actual)
        for d, n in zip(declared, actual):
            assert n == d if isinstance(d, int) else sizes.setdefault(d, n) == n, (declared, actual)
    assert max_error(got, ys) <= 1e-5


def test_a_direction_exported_alone_names_its_dims(tmp_path: Path) -> None:
    """--layer: y (batch, steps, units), each state (batch, units)."""
    path = SAMPLES / "k3_single.weights.h5"
    ckpt = lstm_inspect.load(path)
    d = ckpt.layers[0]
    model = build_model(plan_export(ckpt, d.name, None))
    assert _dims(model.graph.input) == [["batch", "steps", d.input_dim]]
    assert _dims(model.graph.output) == [["batch", "steps", d.units], ["batch", d.units], ["batch", d.units]]


@pytest.mark.parametrize("name", ["tfk_mask_paths.h5", "k3_mask_paths.keras"])
def test_every_mask_path_in_one_batch(name: str, exported: Callable[[Path], Path]) -> None:
    """Rows padded after, padded before, with holes, with no padding and all padding, mixed in one batch of another
    size:
    each row equals Keras's output for it (one graph, each row compacted on its own)."""
    f = exported(SAMPLES / name)
    with np.load(SAMPLES / f"{name.split('.')[0]}.paths.npz") as d:
        stored = {k: d[k] for k in d.files}
    picks = [("suffix", 0), ("prefix", 1), ("holes", 2), ("holes", 3), ("suffix", 4), ("prefix", 3), ("holes", 0),
             ("suffix", 2)]
    x = np.stack([stored[f"{kind}_x"][r] for kind, r in picks])
    ys = [np.stack([stored[f"{kind}_y{k}"][r] for kind, r in picks]) for k in range(6)]
    assert (x != 0).all(axis=1).any() and (x == 0).all(axis=1).any()  # a row with no padding, one all padding
    got = run(f, [x])
    assert max_error(got, ys) <= 1e-5


def _moved_padding(x: np.ndarray, where: str, length: int | None = None) -> np.ndarray:
    """Each row's nonzero ids in order, their padding (zeros) moved before them, into holes between them, or
    after them; `length` adds padding. Keras skips masked steps: a final output does not change."""
    n = length or x.shape[1]
    out = np.zeros((len(x), n), dtype=x.dtype)
    for r, row in enumerate(x):
        ids = row[row != 0]
        pad = n - len(ids)
        if where == "before":
            out[r, pad:] = ids
        elif where == "after":
            out[r, : len(ids)] = ids
        else:  # holes: one zero after each of the first `pad` ids, the rest of the padding after
            slots = [k + min(k, pad) for k in range(len(ids))]
            out[r, slots] = ids
    return out


@pytest.mark.parametrize("name", ["tfk_embedding_mask_zero_bilstm.h5", "k3_embedding_mask_zero.keras",
                                  "sentiment_embed_maskzero_bilstm_tfkeras240.h5"])
def test_masked_models_equal_keras_wherever_the_padding_is(name: str, exported: Callable[[Path], Path]) -> None:
    """mask_zero models (an LSTM, a Bidirectional) on Keras's stored rows (unpadded and right-padded) with the
    padding moved before, into holes and after, at another batch, and (a free time axis) at another length."""
    path = _present(SAMPLES / name if (SAMPLES / name).exists() else REALWORLD / name)
    f = exported(path)
    (x,), (y,) = inputs_and_outputs(path)
    assert (x == 0).any() and (x != 0).all(axis=1).any()  # rows with padding, and a row with none
    free = _dims(onnx.load(str(f)).graph.input)[0][1] == "steps_0"
    lengths = [None, x.shape[1] + 5] if free else [None]
    for length in lengths:
        for where in ("before", "holes", "after"):
            moved = _moved_padding(x, where, length)
            xs, ys = _other_batch([moved], [y])
            assert max_error(run(f, xs), ys) <= 1e-5, (where, length)
    assert free or name != "sentiment_embed_maskzero_bilstm_tfkeras240.h5"


def test_seq2seq_at_another_length(exported: Callable[[Path], Path]) -> None:
    """The real translation seq2seq (free encoder and decoder axes): the first 7 decoder steps alone give Keras's
    first 7 outputs (the decoder LSTM and its Dense are causal), at another batch."""
    path = _present(REALWORLD / "translation_seq2seq_keras224.h5")
    f = exported(path)
    (enc, dec), (y,) = inputs_and_outputs(path)
    rows = [2, 0]
    got = run(f, [enc[rows], dec[rows, :7]])
    assert got[0].shape == (2, 7, y.shape[2])
    assert max_error(got, [y[rows, :7]]) <= 1e-5
