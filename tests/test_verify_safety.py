"""`verify` never lets a file run code through Keras (issue 21, §1).

A Lambda hidden where lstm-inspect's earlier checks did not look (`{"__passive_serialization__": true,
"config": {"__class_name__": "Lambda", "function": [<marshalled code>, null, null], ...}}`) ran its bytecode
inside tf_keras's `model_from_json`: tf_keras's JSON object hook builds `__passive_serialization__` objects
before any safe mode exists. Each route a file can take into the rebuild gets the payload: it must be refused
with exit 2 in one line naming the key, and the marker file its code would write must not appear.

`test_the_payload_runs_in_keras_s_own_loader` hands the same payload to tf_keras's own loader (in a
subprocess) and sees the marker appear: these tests can fail.
"""

from __future__ import annotations

import base64
import json
import marshal
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import pytest

import lstm_inspect

from conftest import SAMPLES, run_cli


def lambda_payload(marker: Path) -> dict[str, Any]:
    """The issue's object: tf_keras's serialized Lambda (its code as tf_keras's func_dump writes it: base64 of the
    marshalled code object, defaults, closure), which writes `marker` when called."""
    code = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]").__code__
    return {"__passive_serialization__": True, "class_name": "Activation",
            "config": {"__class_name__": "Lambda", "name": "payload", "trainable": True, "dtype": "float32",
                       "function": [base64.b64encode(marshal.dumps(code)).decode("ascii"), None, None],
                       "function_type": "lambda", "module": "__main__", "output_shape": None,
                       "output_shape_type": "raw", "output_shape_module": None, "arguments": {}}}


def activation_layer(marker: Path) -> dict[str, Any]:
    """The issue's layer: an Activation whose activation is the payload (without its outer class_name, as the
    issue's file has it)."""
    payload = lambda_payload(marker)
    del payload["class_name"]
    return {"class_name": "Activation", "config": {"name": "act", "trainable": True, "dtype": "float32",
                                                   "activation": payload}}


def h5_copy(tmp_path: Path, sample: str, edit: Callable[[dict], None]) -> Path:
    dst = tmp_path / sample
    shutil.copy(SAMPLES / sample, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg)
        f.attrs["model_config"] = json.dumps(cfg)
    return dst


def keras_copy(tmp_path: Path, sample: str, edit: Callable[[dict], None]) -> Path:
    dst = tmp_path / sample
    with zipfile.ZipFile(SAMPLES / sample) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            out.writestr(info.filename, data)
    return dst


def layers(cfg: dict) -> list[dict]:
    return cfg["config"]["layers"]


def first(cfg: dict, cls: str) -> dict:
    return next(e for e in layers(cfg) if e["class_name"] == cls)


# (sample, how the payload goes in, the key the refusal names); `m` is the marker file
ROUTES: dict[str, tuple[str, Callable[[dict, Path], None], str]] = {
    "legacy .h5, the issue's Activation": (
        "tfk_single.h5", lambda c, m: layers(c).append(activation_layer(m)), "__passive_serialization__"),
    "in kernel_initializer": (
        "tfk_single.h5", lambda c, m: first(c, "LSTM")["config"].update(kernel_initializer=lambda_payload(m)),
        "__passive_serialization__"),
    "in a dtype policy": (
        "tfk_single.h5", lambda c, m: first(c, "LSTM")["config"].update(
            dtype={"class_name": "Policy", "config": {"name": "float32", **lambda_payload(m)["config"]}}),
        "__class_name__"),
    "nested in Bidirectional": (
        "tfk_bidir_concat.h5",
        lambda c, m: first(c, "Bidirectional")["config"]["layer"]["config"].update(activation=lambda_payload(m)),
        "__passive_serialization__"),
    "nested in TimeDistributed": (
        "tfk_cnn_td_conv2d.h5",
        lambda c, m: first(c, "TimeDistributed")["config"]["layer"]["config"].update(activation=lambda_payload(m)),
        "__passive_serialization__"),
    "nested in RNN(cell)": (
        "tfk_rnn_cells.h5",
        lambda c, m: first(c, "RNN")["config"]["cell"]["config"].update(
            recurrent_activation={"config": lambda_payload(m)["config"]}),
        "__class_name__"),
    "a Keras 3 .keras, in activation": (
        "k3_single.keras", lambda c, m: first(c, "LSTM")["config"].update(activation=lambda_payload(m)),
        "__passive_serialization__"),
    "a Keras 3 .keras, in build_config": (
        "k3_single.keras", lambda c, m: first(c, "LSTM").update(
            build_config={"input_shape": {"config": lambda_payload(m)["config"]}}),
        "__class_name__"),
    "a Keras 3 .keras, Keras 3's own Lambda under __class_name__": (
        "k3_single.keras", lambda c, m: layers(c).append(
            {"module": "keras.layers", "class_name": "Activation", "registered_name": None,
             "config": {"name": "act", "activation": {"config": {
                 "__class_name__": "Lambda", "name": "payload",
                 "function": {"class_name": "__lambda__", "config": {"code": lambda_payload(m)["config"]["function"][0],
                                                                     "defaults": None, "closure": None}}}}}}),
        "__class_name__"),
    "function_type alone": (
        "tfk_single.h5", lambda c, m: first(c, "LSTM")["config"].update(function_type="lambda"), "function_type"),
}


def assert_refused(result: subprocess.CompletedProcess[str], key: str, marker: Path) -> None:
    assert not marker.exists(), "the file's code ran"
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and repr(key) in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert "match" not in result.stdout


@pytest.mark.parametrize("route", list(ROUTES))
def test_verify_refuses_keras_s_serialization_keys(tmp_path: Path, route: str) -> None:
    sample, edit, key = ROUTES[route]
    marker = tmp_path / "MARKER"
    copy = keras_copy if sample.endswith(".keras") else h5_copy
    path = copy(tmp_path, sample, lambda cfg: edit(cfg, marker))
    assert_refused(run_cli("verify", str(path)), key, marker)


def test_verify_with_a_separate_config_refuses_them_too(tmp_path: Path) -> None:
    """`verify weights.h5 --config crafted.json`: the config file takes the same route."""
    marker = tmp_path / "MARKER"
    cfg = json.loads((SAMPLES / "tfk_single.json").read_text())
    layers(cfg).append(activation_layer(marker))
    crafted = tmp_path / "crafted.json"
    crafted.write_text(json.dumps(cfg))
    result = run_cli("verify", str(SAMPLES / "tfk_single.weights_only.h5"), "--config", str(crafted))
    assert_refused(result, "__passive_serialization__", marker)


def test_the_payload_runs_in_keras_s_own_loader(tmp_path: Path) -> None:
    """The payload is live: tf_keras's model_from_json on the config the earlier rebuild handed it (the
    `__class_name__` turned into the class_name) writes the marker, in a subprocess of ours on our own payload. So
    the refusals above are what keeps it from running."""
    marker = tmp_path / "MARKER"
    handed = activation_layer(marker)
    activation = handed["config"]["activation"]
    activation["class_name"] = activation["config"].pop("__class_name__")
    with h5py.File(h5_copy(tmp_path, "tfk_single.h5", lambda c: layers(c).append(handed)), "r") as f:
        config = f.attrs["model_config"]
    script = ("import os, sys, numpy as np\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nimport tf_keras\n"
              "model = tf_keras.models.model_from_json(sys.stdin.read())\n"
              "model.predict(np.zeros((1, 7, 3), 'float32'), verbose=0)\n")
    subprocess.run([sys.executable, "-c", script], input=config, text=True, capture_output=True, timeout=300)
    assert marker.exists() and marker.read_text() == "ran"


@pytest.mark.parametrize("key", ["layer", "backward_layer"])
def test_a_wrapped_layer_named_by_a_string_is_refused(tmp_path: Path, key: str) -> None:
    """tf_keras's legacy deserializer instantiates a class a wrapper names by a string (with no arguments); the
    rebuild never hands Keras such a name (an attacker's review found the gap latent behind the engine's refusal)."""
    from lstm_inspect.base.errors import InspectError
    from lstm_inspect.check.keras_ref import clean_config

    dst = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tfk_bidir_concat.h5", dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        wrapper = next(e for e in cfg["config"]["layers"] if e["class_name"] == "Bidirectional")
        wrapper["config"][key] = "Lambda"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(InspectError, match="names the layer its Bidirectional wraps as 'Lambda'"):
        clean_config(lstm_inspect.load(dst))
