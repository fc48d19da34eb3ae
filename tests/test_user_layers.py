"""The user's own layers (issue 25): a custom Keras class and a Lambda run whole with the user's NumPy module
(`--layers`, `lstm_inspect.load_layers`, `lstm_inspect.register_layer`), and nothing from the file ever runs.

The models were written by Keras 3 and tf_keras (sample_models/user_layer_samples.py, with the Keras classes of
sample_models/my_layers.py); their outputs are Keras's own (*.io.npz). A tf_keras SavedModel with the attention layer
registered under a package is written here by TensorFlow itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect import InspectError

from conftest import SAMPLES, run_cli

MY_LAYERS = SAMPLES / "my_layers.py"
SAMPLE_NAMES = ("k3_user_attention.keras", "tfk_user_attention.h5", "k3_user_lambda.keras", "tfk_user_lambda.h5")


@pytest.fixture(autouse=True)
def no_user_layers() -> Iterator[None]:
    """Each test starts and ends with no registered layer (the registry is the process's)."""
    lstm_inspect.forget_layers()
    yield
    lstm_inspect.forget_layers()


def _io(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES / f"{name.split('.')[0]}.io.npz") as d:
        return d["x"], d["y"]


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    return lines[0]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_whole_model_runs_within_1e5_of_keras_with_the_users_module(name: str) -> None:
    assert lstm_inspect.load_layers(MY_LAYERS) == ["AttentionLayer", "last_minus_mean"]
    x, y = _io(name)
    ours = lstm_inspect.load(SAMPLES / name).forward(x)
    assert ours.shape == y.shape and np.max(np.abs(ours - y)) <= 1e-5


def test_the_command_line_runs_it_with_layers_and_refuses_it_in_one_line_without(tmp_path: Path) -> None:
    for name, cls, key in (("k3_user_attention.keras", "attention (AttentionLayer)", "'AttentionLayer'"),
                           ("tfk_user_lambda.h5", "last_minus_mean (Lambda)", "'last_minus_mean'")):
        x, y = _io(name)
        np.save(tmp_path / "x.npy", x)
        out = tmp_path / f"{name}.npy"
        line = _one_line(run_cli("forward", str(SAMPLES / name), "-i", str(tmp_path / "x.npy"), "-o", str(out)))
        assert cls in line and "--layers" in line and key in line, line
        assert not out.exists()
        r = run_cli("forward", str(SAMPLES / name), "--layers", str(MY_LAYERS), "-i", str(tmp_path / "x.npy"), "-o",
                    str(out))
        assert r.returncode == 0, r.stderr
        assert np.max(np.abs(np.load(out) - y)) <= 1e-5


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_show_lists_the_recurrent_layers_and_names_the_custom_class(name: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / name)  # no module needed to read it
    assert [d.name for d in ckpt.directions] == ["encoder"]
    custom = ("attention", "AttentionLayer") if "attention" in name else ("last_minus_mean", "Lambda")
    assert [(m.name, m.class_name) for m in ckpt.layers] == [("series", "InputLayer"), ("encoder", "LSTM"), custom,
                                                             ("head", "Dense")]
    if "attention" in name:  # its weights, by the names the file stores (Keras 3 numbers them), in Keras's order
        names = list(ckpt.layer("attention").weights)
        assert names == (["0", "1", "2"] if name.startswith("k3") else ["W", "U", "v"])
        assert [w.shape for w in ckpt.layer("attention").weights.values()] == [(5, 4), (5, 4), (4, 1)]


def test_register_layer_from_python() -> None:
    """A function written here (not the sample module's) registered through the API reproduces Keras."""

    def additive(config: dict, weights: dict, inputs: list, masks: list) -> np.ndarray:
        assert config["units"] == 4 and masks == [None]
        h = inputs[0]
        w, u, v = (weights[k] for k in ("W", "U", "v"))
        e = np.tanh(np.einsum("btd,du->btu", h, w) + (h[:, -1] @ u)[:, None]) @ v
        a = np.exp(e) / np.exp(e).sum(axis=1, keepdims=True)
        return np.einsum("bt,btd->bd", a[..., 0], h)

    lstm_inspect.register_layer("AttentionLayer", additive)
    x, y = _io("tfk_user_attention.h5")
    ckpt = lstm_inspect.load(SAMPLES / "tfk_user_attention.h5")
    assert np.max(np.abs(ckpt.forward(x) - y)) <= 1e-5
    trace = ckpt.trace(x)  # the whole model runs, so the trace is of its own input
    assert trace.input == "the given input" and trace["encoder"]["h"].shape == (4, 7, 5)

    with pytest.raises(InspectError, match="not a function"):
        lstm_inspect.register_layer("AttentionLayer", "np.tanh")  # type: ignore[arg-type]
    lstm_inspect.register_layer("AttentionLayer", lambda c, w, i, m: "not an array")
    with pytest.raises(InspectError, match=r"layer attention \(AttentionLayer\): your function .* returned str"):
        lstm_inspect.load(SAMPLES / "tfk_user_attention.h5").forward(x)
    lstm_inspect.register_layer("AttentionLayer", lambda c, w, i, m: 1 / 0)
    with pytest.raises(InspectError, match="raised ZeroDivisionError"):
        lstm_inspect.load(SAMPLES / "tfk_user_attention.h5").forward(x)


def _renamed_copy(tmp_path: Path, class_name: str, registered: str | None = None) -> Path:
    """tfk_user_attention.h5 with its custom layer's class renamed in the stored config (its weights as they are)."""
    path = tmp_path / "hostile.h5"
    shutil.copy(SAMPLES / "tfk_user_attention.h5", path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        entry = next(e for e in cfg["config"]["layers"] if e["name"] == "attention")
        entry["class_name"] = class_name
        if registered is not None:
            entry["registered_name"] = registered
        f.attrs["model_config"] = json.dumps(cfg)
    return path


@pytest.mark.parametrize(("class_name", "registered"), [
    ("__import__", None), ("os.system", None), ("system", None), ("eval", "builtins>eval"),
    ("attention_layer", None),  # the module's function's own name: only LAYERS' keys select
    ("Lambda", None),  # a Lambda is selected by its layer's name (attention), which nothing registered
])
def test_a_hostile_config_selects_nothing_but_a_registered_function(tmp_path: Path, class_name: str,
                                                                    registered: str | None) -> None:
    module = tmp_path / "mine.py"
    module.write_text(MY_LAYERS.read_text() + "\nimport os\nfrom os import system\n")  # names a lookup must not reach
    lstm_inspect.load_layers(module)
    path = _renamed_copy(tmp_path, class_name, registered)
    x, _ = _io("tfk_user_attention.h5")
    with pytest.raises(InspectError) as caught:
        lstm_inspect.load(path).forward(x)
    message = str(caught.value)
    assert f"layer attention ({class_name})" in message and "--layers" in message and "\n" not in message


def test_a_registered_package_name_selects_the_class_it_names(tmp_path: Path) -> None:
    """SavedModels and Keras 3 write a registered class as `package>Name`: the user registers Name."""
    lstm_inspect.load_layers(MY_LAYERS)
    x, y = _io("tfk_user_attention.h5")
    path = _renamed_copy(tmp_path, "mine>AttentionLayer")
    assert np.max(np.abs(lstm_inspect.load(path).forward(x) - y)) <= 1e-5


def test_a_module_without_layers_or_that_raises_is_refused_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    for text, expected in (("x = 1\n", "defines no LAYERS dict"), ("raise RuntimeError('no')\n",
                                                                    "raised RuntimeError when imported: no"),
                           ("LAYERS = {'A': 3}\n", "not a function")):
        broken.write_text(text)
        with pytest.raises(InspectError) as caught:
            lstm_inspect.load_layers(broken)
        assert str(broken) in str(caught.value) and expected in str(caught.value) and "\n" not in str(caught.value)
    line = _one_line(run_cli("show", str(SAMPLES / "k3_user_attention.keras"), "--layers", str(tmp_path / "no.py")))
    assert "no such file" in line


def test_export_refuses_a_custom_layer_in_one_line(tmp_path: Path) -> None:
    line = _one_line(run_cli("export", str(SAMPLES / "tfk_user_lambda.h5"), "--to", "onnx", "-o",
                             str(tmp_path / "m.onnx")))
    assert "last_minus_mean (Lambda)" in line and "--layer" in line and not (tmp_path / "m.onnx").exists()


def test_verify_against_keras_runs_the_users_keras_class(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="verify runs Keras (the keras extra)")
    lstm_inspect.load_layers(MY_LAYERS)
    for name in ("k3_user_attention.keras", "k3_user_lambda.keras", "tfk_user_attention.h5"):
        x, y = _io(name)
        ckpt = lstm_inspect.load(SAMPLES / name)
        assert lstm_inspect.verify(ckpt, x).ok  # the engine with the NumPy form, against Keras with the class
        # and Keras, given the user's class and the stored weights, computes what it computed when it wrote the file
        assert lstm_inspect.verify(ckpt, x, theirs=y).ok
    lstm_inspect.forget_layers()
    numpy_only = tmp_path / "numpy_only.py"  # the NumPy forms without keras_classes
    numpy_only.write_text(MY_LAYERS.read_text().split("def keras_classes")[0])
    line = _one_line(run_cli("verify", str(SAMPLES / "k3_user_attention.keras"), "--layers", str(numpy_only)))
    assert "attention (AttentionLayer) in Keras too" in line and "keras_classes(keras)" in line, line


WRITE_SAVEDMODEL = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[2])
import numpy as np
import tf_keras as keras
import my_layers
out = sys.argv[1]
keras.utils.set_random_seed(25)
cls = keras.utils.register_keras_serializable(package="mine")(my_layers.keras_classes(keras)["AttentionLayer"])
inp = keras.Input((7, 3), name="series")
h = keras.layers.LSTM(5, return_sequences=True, name="encoder")(inp)
m = keras.Model(inp, keras.layers.Dense(2, name="head")(cls(units=4, name="attention")(h)))
m.save(os.path.join(out, "attention_savedmodel"), save_format="tf")
x = np.random.default_rng(3).normal(size=(2, 7, 3)).astype("float32")
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "y.npy"), m.predict(x, verbose=0))
"""


def test_a_savedmodel_with_the_custom_layer(tmp_path: Path) -> None:
    pytest.importorskip("tf_keras", reason="TensorFlow writes the SavedModel")
    done = subprocess.run([sys.executable, "-c", WRITE_SAVEDMODEL, str(tmp_path), str(SAMPLES)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "attention_savedmodel"
    doc = lstm_inspect.load(folder).to_dict()
    assert ("attention", "mine>AttentionLayer") in [(m["name"], m["class_name"]) for m in doc["model_layers"]]
    assert [d["name"] for d in doc["layers"]] == ["encoder"]
    assert "mine>AttentionLayer" in _one_line(run_cli("forward", str(folder), "-i", str(tmp_path / "x.npy"), "-o",
                                                      str(tmp_path / "y_ours.npy")))
    r = run_cli("forward", str(folder), "--layers", str(MY_LAYERS), "-i", str(tmp_path / "x.npy"), "-o",
                str(tmp_path / "y_ours.npy"))
    assert r.returncode == 0, r.stderr
    assert np.max(np.abs(np.load(tmp_path / "y_ours.npy") - np.load(tmp_path / "y.npy"))) <= 1e-5
    assert list(lstm_inspect.load(folder).layer("attention").weights) == ["W", "U", "v"]  # as stored, in order


def test_show_says_which_layers_need_the_users_module_and_which_function_runs() -> None:
    path = str(SAMPLES / "k3_user_attention.keras")
    r = run_cli("show", path)
    assert r.returncode == 0, r.stderr
    assert "attention (AttentionLayer): not a layer the engine runs" in r.stdout and "--layers" in r.stdout
    r = run_cli("show", path, "--layers", str(MY_LAYERS), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["own_layers"] == [{"name": "attention", "class_name": "AttentionLayer",
                                                   "runs_with": f"attention_layer ({MY_LAYERS})"}]


def test_a_keras3_user_class_that_shadows_a_keras_name_is_not_run_as_keras(tmp_path: Path) -> None:
    """Keras 3 records the module of each class: a user's class named Attention (module my_layers) is not Keras's
    Attention, so without the user's form it is refused, not run as Keras's layer of that name."""
    path = tmp_path / "shadow.keras"
    with zipfile.ZipFile(SAMPLES / "k3_user_attention.keras") as z, zipfile.ZipFile(path, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                entry = next(e for e in cfg["config"]["layers"] if e["name"] == "attention")
                assert entry["module"] == "my_layers"
                entry["class_name"] = entry["registered_name"] = "Attention"
                data = json.dumps(cfg).encode()
            out.writestr(item, data)
    x, _ = _io("k3_user_attention.keras")
    with pytest.raises(InspectError, match=r"layer attention \(Attention\) is not one the NumPy engine runs; .*"
                       r"--layers .*'Attention'"):
        lstm_inspect.load(path).forward(x)


def test_stats_run_the_whole_model_with_the_users_module() -> None:
    """Without the module, stats' activations come from each direction alone (on a random input of its own);
    with it, from the whole model, so the LSTM sees what the model feeds it."""
    x, _ = _io("tfk_user_attention.h5")
    ckpt = lstm_inspect.load(SAMPLES / "tfk_user_attention.h5")
    assert lstm_inspect.stats(ckpt).to_dict()["activations_from"].endswith("to each direction alone")
    with pytest.raises(InspectError, match=r"attention \(AttentionLayer\)"):
        lstm_inspect.stats(ckpt, x)  # the user's own input needs the whole model
    lstm_inspect.load_layers(MY_LAYERS)
    ckpt = lstm_inspect.load(SAMPLES / "tfk_user_attention.h5")
    assert lstm_inspect.stats(ckpt, x).to_dict()["activations_from"] == "the given input"
