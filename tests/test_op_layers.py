"""TensorFlow op layers (TFOpLambda, SlicingOpLambda, TensorFlowOpLayer) and Keras 3 op nodes.

The samples `tfk_tf_ops.h5` (TFOpLambda, written by tf_keras) and `tfk_tf_ops_v23.h5` (the same model
as tf.keras 2.3 wrote it, as TensorFlowOpLayers) run within 1e-5 of Keras in test_engine and pass
verify in test_verify; here each whitelisted raw op is checked against TensorFlow's own kernel, each
whitelisted TFOpLambda function against the TensorFlow function of that name, and what is outside the
lists is refused in one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.engine.ops import TF_FUNCTIONS, TF_RAW_OPS

from conftest import SAMPLES, run_cli

# op -> (inputs, attrs): each run by TensorFlow's own kernel (tf.raw_ops) in a subprocess and by lstm-inspect
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 8)).astype(np.float32)
C = (X + 1j * RNG.normal(size=X.shape)).astype(np.complex64)
T = {"type": "DT_FLOAT"}
CASES: dict[str, tuple[list, dict]] = {
    "Cast": ([C], {"SrcT": {"type": "DT_COMPLEX64"}, "DstT": T, "Truncate": {"b": False}}),
    "Cast-to-complex": ([X], {"SrcT": T, "DstT": {"type": "DT_COMPLEX64"}, "Truncate": {"b": False}}),
    "Cast-to-int": ([X * 3], {"SrcT": T, "DstT": {"type": "DT_INT32"}, "Truncate": {"b": False}}),
    "FFT": ([C], {"Tcomplex": {"type": "DT_COMPLEX64"}}),
    "IFFT": ([C], {"Tcomplex": {"type": "DT_COMPLEX64"}}),
    "RFFT": ([X, np.array([8], np.int32)], {"Treal": T, "Tcomplex": {"type": "DT_COMPLEX64"}}),
    "RFFT-short": ([X, np.array([6], np.int32)], {"Treal": T, "Tcomplex": {"type": "DT_COMPLEX64"}}),
    "IRFFT": ([C[..., :5], np.array([8], np.int32)], {"Treal": T, "Tcomplex": {"type": "DT_COMPLEX64"}}),
    "Real": ([C], {"T": {"type": "DT_COMPLEX64"}, "Tout": T}),
    "Imag": ([C], {"T": {"type": "DT_COMPLEX64"}, "Tout": T}),
    "ComplexAbs": ([C], {"T": {"type": "DT_COMPLEX64"}, "Tout": T}),
    "Abs": ([X], {"T": T}),
    **{op: ([X, X[::-1] + 0.5], {"T": T}) for op in ("AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")},
    "Mul-constant": ([X, np.float32(2.5)], {"T": T}),
    **{op: ([np.abs(X) + 0.1 if op in ("Log", "Sqrt") else X], {"T": T})
       for op in ("Neg", "Exp", "Log", "Sqrt", "Square", "Tanh", "Sigmoid", "Relu")},
    "Reshape": ([X, np.array([-1, 4, 6], np.int32)], {"T": T, "Tshape": {"type": "DT_INT32"}}),
    "ExpandDims": ([X, np.int32(-1)], {"T": T, "Tdim": {"type": "DT_INT32"}}),
    "Squeeze": ([X[:, :1]], {"T": T, "squeeze_dims": {"list": {"i": ["1"]}}}),
    "Transpose": ([X, np.array([0, 2, 1], np.int32)], {"T": T, "Tperm": {"type": "DT_INT32"}}),
    "ConcatV2": ([X, X * 2, np.int32(1)], {"T": T, "N": {"i": "2"}, "Tidx": {"type": "DT_INT32"}}),
    "Slice": ([X, np.array([0, 1, 2], np.int32), np.array([-1, 2, 3], np.int32)],
              {"T": T, "Index": {"type": "DT_INT32"}}),
    "StridedSlice": ([X, np.array([0, 1, 0], np.int32), np.array([0, 3, -1], np.int32), np.array([1, 1, 2], np.int32)],
                     {"T": T, "Index": {"type": "DT_INT32"}, "begin_mask": {"i": "1"}, "end_mask": {"i": "1"},
                      "ellipsis_mask": {"i": "0"}, "new_axis_mask": {"i": "0"}, "shrink_axis_mask": {"i": "0"}}),
    "StridedSlice-shrink-newaxis": (
        [X, np.array([0, 0, 2], np.int32), np.array([0, 0, 3], np.int32), np.array([1, 1, 1], np.int32)],
        {"T": T, "Index": {"type": "DT_INT32"}, "begin_mask": {"i": "0"}, "end_mask": {"i": "0"},
         "ellipsis_mask": {"i": "1"}, "new_axis_mask": {"i": "2"}, "shrink_axis_mask": {"i": "4"}}),
    **{op: ([X, np.array([1], np.int32)], {"T": T, "Tidx": {"type": "DT_INT32"}, "keep_dims": {"b": keep}})
       for op, keep in (("Mean", False), ("Sum", True), ("Max", False))},
    "MatMul": ([X[0], X[1].T.copy()], {"T": T, "transpose_a": {"b": False}, "transpose_b": {"b": False}}),
    "MatMul-transposed": ([X[0], X[1]], {"T": T, "transpose_a": {"b": False}, "transpose_b": {"b": True}}),
    "BatchMatMulV2": ([X, np.swapaxes(X, 1, 2).copy()], {"T": T, "adj_x": {"b": False}, "adj_y": {"b": False}}),
}

TF_SCRIPT = r"""
import os, sys
import numpy as np
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
r = tf.raw_ops
calls = {
    "Cast": lambda a: r.Cast(x=a[0], DstT=tf.float32),
    "Cast-to-complex": lambda a: r.Cast(x=a[0], DstT=tf.complex64),
    "Cast-to-int": lambda a: r.Cast(x=a[0], DstT=tf.int32),
    "FFT": lambda a: r.FFT(input=a[0]), "IFFT": lambda a: r.IFFT(input=a[0]),
    "RFFT": lambda a: r.RFFT(input=a[0], fft_length=a[1]), "RFFT-short": lambda a: r.RFFT(input=a[0], fft_length=a[1]),
    "IRFFT": lambda a: r.IRFFT(input=a[0], fft_length=a[1]),
    "Real": lambda a: r.Real(input=a[0], Tout=tf.float32), "Imag": lambda a: r.Imag(input=a[0], Tout=tf.float32),
    "ComplexAbs": lambda a: r.ComplexAbs(x=a[0], Tout=tf.float32), "Abs": lambda a: r.Abs(x=a[0]),
    **{op: (lambda op: lambda a: getattr(r, op)(x=a[0], y=a[1]))(op)
       for op in ("AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")},
    "Mul-constant": lambda a: r.Mul(x=a[0], y=a[1]),
    **{op: (lambda op: lambda a: getattr(r, op)(x=a[0]))(op)
       for op in ("Neg", "Exp", "Log", "Sqrt", "Square", "Tanh", "Sigmoid")},
    "Relu": lambda a: r.Relu(features=a[0]),
    "Reshape": lambda a: r.Reshape(tensor=a[0], shape=a[1]),
    "ExpandDims": lambda a: r.ExpandDims(input=a[0], axis=a[1]),
    "Squeeze": lambda a: r.Squeeze(input=a[0], axis=[1]), "Transpose": lambda a: r.Transpose(x=a[0], perm=a[1]),
    "ConcatV2": lambda a: r.ConcatV2(values=[a[0], a[1]], axis=a[2]),
    "Slice": lambda a: r.Slice(input=a[0], begin=a[1], size=a[2]),
    "StridedSlice": lambda a: r.StridedSlice(input=a[0], begin=a[1], end=a[2], strides=a[3], begin_mask=1, end_mask=1),
    "StridedSlice-shrink-newaxis": lambda a: r.StridedSlice(input=a[0], begin=a[1], end=a[2], strides=a[3],
                                                            ellipsis_mask=1, new_axis_mask=2, shrink_axis_mask=4),
    "Mean": lambda a: r.Mean(input=a[0], axis=a[1], keep_dims=False),
    "Sum": lambda a: r.Sum(input=a[0], axis=a[1], keep_dims=True),
    "Max": lambda a: r.Max(input=a[0], axis=a[1], keep_dims=False),
    "MatMul": lambda a: r.MatMul(a=a[0], b=a[1]),
    "MatMul-transposed": lambda a: r.MatMul(a=a[0], b=a[1], transpose_b=True),
    "BatchMatMulV2": lambda a: r.BatchMatMulV2(x=a[0], y=a[1]),
}
cases = np.load(sys.argv[1], allow_pickle=False)
out = {}
for name, call in calls.items():
    keys = sorted((k for k in cases.files if k.split(":")[0] == name), key=lambda k: int(k.split(":")[1]))
    args = [cases[k] for k in keys]
    out[name] = call(args).numpy()
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def tensorflow_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    pytest.importorskip("tensorflow", reason="the test extra installs TensorFlow to compare with its kernels")
    folder = tmp_path_factory.mktemp("raw_ops")
    arrays = {f"{name}:{k}": np.asarray(a) for name, (inputs, _) in CASES.items() for k, a in enumerate(inputs)}
    np.savez(folder / "in.npz", **arrays)
    (folder / "run.py").write_text(TF_SCRIPT)
    subprocess.run([sys.executable, str(folder / "run.py"), str(folder / "in.npz"), str(folder / "out.npz")],
                   check=True, capture_output=True, timeout=300)
    with np.load(folder / "out.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("name", sorted(CASES))
def test_raw_op_equals_tensorflow_kernel(name: str, tensorflow_results: dict[str, np.ndarray]) -> None:
    inputs, attrs = CASES[name]
    fn, _ = TF_RAW_OPS[name.split("-")[0]]
    ours = np.asarray(fn(list(inputs), attrs))
    theirs = tensorflow_results[name]
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_whitelisted_raw_op_is_checked() -> None:
    checked = {name.split("-")[0] for name in CASES}
    assert set(TF_RAW_OPS) - checked <= {"Add", "BatchMatMul"}  # aliases of AddV2 and BatchMatMulV2



# ---------------------------------------------------------------- TFOpLambda functions against TensorFlow's
# name -> (function, args, kwargs), as a TFOpLambda/SlicingOpLambda calls it: the first argument positional, the
# recorded call keywords by TensorFlow's parameter names (slice_spec as tf_keras's config records it). Each is run
# by lstm-inspect's function and by the TensorFlow function of that name (tf.<function>) in a subprocess.
Y = (X[::-1] + 0.5).copy()
S = [{"start": None, "stop": None, "step": None}, {"start": 1, "stop": None, "step": None},
     {"start": None, "stop": 2, "step": None}]
FUNCTION_CASES: dict[str, tuple[str, list, dict]] = {
    "cast-to-int": ("cast", [X * 3], {"dtype": "int32"}),
    "cast-complex-to-float": ("cast", [C], {"dtype": "float32"}),
    "cast-to-complex": ("cast", [X], {"dtype": "complex64"}),
    "signal.fft": ("signal.fft", [C], {}), "signal.ifft": ("signal.ifft", [C], {}),
    "signal.rfft": ("signal.rfft", [X], {}),
    "signal.rfft-length": ("signal.rfft", [X], {"fft_length": [8]}),
    "signal.rfft-short": ("signal.rfft", [X], {"fft_length": [6]}),
    "signal.irfft": ("signal.irfft", [C[..., :5]], {}),
    "signal.irfft-length": ("signal.irfft", [C[..., :5]], {"fft_length": [8]}),
    "signal.irfft-odd": ("signal.irfft", [C[..., :5]], {"fft_length": [9]}),
    "math.real": ("math.real", [C], {}), "math.imag": ("math.imag", [C], {}),
    "math.abs": ("math.abs", [X], {}), "math.abs-complex": ("math.abs", [C], {}),
    **{name: (name, [X], {"y": Y}) for name in ("__operators__.add", "math.add", "math.subtract", "math.multiply",
                                                "math.truediv", "math.divide", "math.maximum", "math.minimum")},
    "math.multiply-constant": ("math.multiply", [X], {"y": 0.25}),
    "math.divide-constant": ("math.divide", [X], {"y": 4.0}),
    "math.add-constant": ("math.add", [X], {"y": 1.0}),
    **{name: (name, [np.abs(X) + 0.1 if name in ("math.log", "math.sqrt") else X], {})
       for name in ("math.negative", "math.exp", "math.log", "math.sqrt", "math.square", "math.tanh", "math.sigmoid",
                    "nn.relu")},
    "nn.softmax": ("nn.softmax", [X], {}), "nn.softmax-axis": ("nn.softmax", [X], {"axis": 1}),
    "reshape": ("reshape", [X], {"shape": [-1, 4, 6]}),
    "expand_dims": ("expand_dims", [X], {"axis": -1}),
    "squeeze": ("squeeze", [X[:, :1]], {"axis": 1}), "squeeze-all": ("squeeze", [X[:1, :1]], {}),
    "compat.v1.squeeze": ("compat.v1.squeeze", [X[:, :1]], {"axis": -2}),
    "compat.v1.squeeze-dims": ("compat.v1.squeeze", [X[:, :1]], {"squeeze_dims": [1]}),
    "transpose": ("transpose", [X], {"perm": [0, 2, 1]}), "transpose-reversed": ("transpose", [X], {}),
    "transpose-conjugate": ("transpose", [C], {"perm": [2, 0, 1], "conjugate": True}),
    "compat.v1.transpose": ("compat.v1.transpose", [X], {"perm": [1, 0, 2], "conjugate": False}),
    "concat": ("concat", [[X, X * 2]], {"axis": -1}), "concat-axis": ("concat", [[X, X * 2]], {"axis": 1}),
    "slice": ("slice", [X], {"begin": [0, 1, 2], "size": [-1, 2, 3]}),
    "__operators__.getitem": ("__operators__.getitem", [X], {"slice_spec": S}),
    "__operators__.getitem-int-newaxis-ellipsis": (
        "__operators__.getitem", [X], {"slice_spec": [1, None, {"class_name": "__ellipsis__"},
                                                      {"start": -1, "stop": 0, "step": -2}]}),
    "math.reduce_mean": ("math.reduce_mean", [X], {"axis": 1}),
    "math.reduce_sum": ("math.reduce_sum", [X], {"axis": [0, 2], "keepdims": True}),
    "math.reduce_max": ("math.reduce_max", [X], {}),
    "linalg.matmul": ("linalg.matmul", [X[0]], {"b": X[1].T.copy()}),
    "linalg.matmul-batch-transposed": ("linalg.matmul", [X], {"b": X, "transpose_b": True}),
}

TF_FUNCTION_SCRIPT = r"""
import functools, os, pickle, sys
import numpy as np
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf

def decoded(spec):  # what tf_keras's SlicingOpLambda makes of a recorded slice_spec before calling TensorFlow
    if isinstance(spec, dict):
        return Ellipsis if spec.get("class_name") == "__ellipsis__" else slice(spec["start"], spec["stop"],
                                                                                 spec["step"])
    return spec

def tensors(a):  # the layer's inputs (and tensor keywords) arrive as tensors, as in a Keras model
    if isinstance(a, list):
        return [tensors(v) for v in a]
    return tf.constant(a) if isinstance(a, np.ndarray) else a

with open(sys.argv[1], "rb") as f:
    cases = pickle.load(f)
out = {}
for name, (function, args, kwargs) in cases.items():
    fn = functools.reduce(getattr, function.split("."), tf)
    if function == "__operators__.getitem":
        kwargs = {"slice_spec": tuple(decoded(s) for s in kwargs["slice_spec"])}
    args = [tensors(a) for a in args]
    kwargs = {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    out[name] = np.asarray(fn(*args, **kwargs))
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def tensorflow_function_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    import pickle

    pytest.importorskip("tensorflow", reason="the test extra installs TensorFlow to compare with its functions")
    folder = tmp_path_factory.mktemp("tf_functions")
    with open(folder / "in.pkl", "wb") as f:
        pickle.dump(FUNCTION_CASES, f)
    (folder / "run.py").write_text(TF_FUNCTION_SCRIPT)
    r = subprocess.run([sys.executable, str(folder / "run.py"), str(folder / "in.pkl"), str(folder / "out.npz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(folder / "out.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("name", sorted(FUNCTION_CASES))
def test_tf_function_equals_tensorflow(name: str, tensorflow_function_results: dict[str, np.ndarray]) -> None:
    function, args, kwargs = FUNCTION_CASES[name]
    ours = np.asarray(TF_FUNCTIONS[function](*args, **kwargs))
    theirs = tensorflow_function_results[name]
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_whitelisted_tf_function_is_checked() -> None:
    assert {function for function, _, _ in FUNCTION_CASES.values()} == set(TF_FUNCTIONS)

# ---------------------------------------------------------------- outside the whitelist


def _with_function(tmp_path: Path, old: str, new: str, sample: str = "tfk_tf_ops.h5") -> Path:
    dst = tmp_path / sample
    shutil.copy(SAMPLES / sample, dst)
    with h5py.File(dst, "r+") as f:
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        assert old in text
        f.attrs["model_config"] = text.replace(old, new, 1)
    return dst


@pytest.mark.parametrize("sample,old,new,name", [
    ("tfk_tf_ops.h5", '"function": "math.exp"', '"function": "io.write_file"', "io.write_file"),
    ("tfk_tf_ops_v23.h5", '"op": "Exp"', '"op": "ReadFile"', "ReadFile"),
])
def test_an_op_outside_the_whitelist_is_named(tmp_path: Path, sample: str, old: str, new: str, name: str) -> None:
    path = _with_function(tmp_path, old, new, sample)
    with np.load(SAMPLES / f"{sample.split('.')[0]}.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
    r = run_cli("forward", str(path), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and name in r.stderr and "not one the NumPy engine runs" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.npy").exists()
    r = run_cli("verify", str(path))
    assert r.returncode == 2 and name in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from lstm_inspect.check.keras_ref import clean_config  # and Keras is never handed the op

    with pytest.raises(lstm_inspect.InspectError, match="safe mode"):
        clean_config(lstm_inspect.load(path))
    assert run_cli("show", str(path)).returncode == 0  # show reads shapes only: the LSTM is still there


def test_verify_hands_tensorflow_only_the_whitelisted_attributes(tmp_path: Path) -> None:
    """An extra attribute (a device, a class hint) is dropped before TensorFlow sees the NodeDef."""
    path = _with_function(tmp_path, '"op": "Exp", "input"', '"op": "Exp", "device": "/job:evil", "input"',
                          "tfk_tf_ops_v23.h5")
    from lstm_inspect.check.keras_ref import clean_config

    cfg = clean_config(lstm_inspect.load(path))
    exp = next(e for e in cfg["config"]["layers"] if e["class_name"] == "TensorFlowOpLayer"
               and e["config"]["node_def"]["op"] == "Exp")
    assert "device" not in exp["config"]["node_def"]
    assert set(exp["config"]["node_def"]["attr"]) <= {"T"}


@pytest.mark.parametrize("change", ["axis None", "no axis", "axis 7", "dtype float128", "extra call keyword"])
def test_keras3_op_with_bad_arguments_is_bad_input(tmp_path: Path, change: str) -> None:
    """Keras 3's mask-computing op nodes with arguments that do not fit: exit 2, one line, never a bug."""
    import zipfile

    src = SAMPLES / "k3_masked_merge.keras"
    dst = tmp_path / src.name
    with zipfile.ZipFile(src) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if not str(layer.get("module", "")).startswith("keras.src.ops"):
            continue
        if change == "extra call keyword":
            layer["inbound_nodes"][0]["kwargs"]["bogus"] = 1
        elif change == "dtype float128" and layer["class_name"] == "ZerosLike":
            layer["config"]["dtype"] = "float128"
        elif change == "no axis" and layer["class_name"] == "ExpandDims":
            del layer["config"]["axis"]  # the case: ExpandDims without an axis
        elif change.startswith("axis") and layer["class_name"] in ("ExpandDims", "Any"):
            layer["config"]["axis"] = None if change == "axis None" else 7
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with np.load(SAMPLES / "k3_masked_merge.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
    r = run_cli("forward", str(dst), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "internal error" not in r.stderr
