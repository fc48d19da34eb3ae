"""`verify` on models that amplify float32 rounding (issue 21 §6): a Keras 3 LSTM whose recurrent kernel has
σ_max 60, and a relu LSTM. Keras and the engine, both right, part by whole units after a few steps; the engine in
float32 and float64 part as far. verify must say the model is sensitive to float32 rounding (both figures, the
step), judge within it, and still catch a wrong port, which shows at the first steps.

The models are written by Keras 3 itself; the ports compared with `--against` are the tests' own textbook LSTM
(tests/reference_rnn.py) on the weights Keras's `get_weights()` gives, never the engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference_rnn as ref
from conftest import run_cli

WRITE_MODELS = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import keras
out = sys.argv[1]
keras.utils.set_random_seed(7)
for name, activation, gain in (("gain", "tanh", 60.0), ("relu", "relu", 8.0)):
    m = keras.Sequential([keras.Input((30, 3)), keras.layers.LSTM(16, activation=activation, return_sequences=True),
                          keras.layers.Dense(2)])
    k, rk, b = m.layers[0].get_weights()
    m.layers[0].set_weights([k, rk * (gain / np.linalg.svd(rk, compute_uv=False)[0]), b])
    m.save(os.path.join(out, f"{name}.keras"))
    np.savez(os.path.join(out, f"{name}.weights.npz"), *m.get_weights())
    x = np.random.default_rng(5).normal(size=(4, 30, 3)).astype("float32")
    np.save(os.path.join(out, f"{name}.x.npy"), x)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("float32_sensitive")
    done = subprocess.run([sys.executable, "-c", WRITE_MODELS, str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _weights(models: Path, name: str) -> list[np.ndarray]:
    with np.load(models / f"{name}.weights.npz") as d:
        return [d[f"arr_{k}"] for k in range(len(d.files))]


def _port(models: Path, name: str, mistake: str | None = None) -> np.ndarray:
    """The whole model (LSTM → Dense) by the textbook LSTM in float32, as a user's port computes it."""
    k, rk, b, wd, bd = _weights(models, name)
    if mistake == "gates f and c swapped":
        k, rk, b = (ref.permuted(a, 4, [0, 2, 1, 3]) for a in (k, rk, b))
    activation = {"gain": np.tanh, "relu": ref.ACT["relu"]}[name]
    seq, _ = ref.lstm(np.load(models / f"{name}.x.npy"), k, rk, b, activation=activation, dtype=np.float32)
    return (seq @ wd + bd).astype(np.float32)


@pytest.mark.parametrize("name", ["gain", "relu"])
def test_verify_judges_a_float32_sensitive_model_within_its_sensitivity(models: Path, name: str) -> None:
    rk = _weights(models, name)[1]
    assert np.linalg.svd(rk, compute_uv=False)[0] == pytest.approx(60.0 if name == "gain" else 8.0, rel=1e-4)
    r = run_cli("verify", str(models / f"{name}.keras"), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    sens = report["float32_sensitivity"]
    assert report["ok"] and sens is not None and sens["float32_vs_float64_max_abs"] > 1e-2
    # it was needed: Keras and the engine part well past the plain tolerance
    assert max(o["max_abs_error"] for o in report["outputs"]) > 1e-2
    (note,) = [n for n in report["notes"] if "sensitive to float32 rounding" in n]
    assert f"{sens['float32_vs_float64_max_abs']:.2e}" in note and "step" in note
    text = run_cli("verify", str(models / f"{name}.keras")).stdout
    assert "sensitive to float32 rounding" in " ".join(text.split()) and "look at the recurrence" not in text


@pytest.mark.parametrize("mistake", [None, "gates f and c swapped"])
def test_verify_against_a_port_of_a_float32_sensitive_model(models: Path, tmp_path: Path, mistake: str | None
                                                            ) -> None:
    """A right float32 port passes within the model's sensitivity; a wrong one still fails, at the first steps."""
    np.save(tmp_path / "theirs.npy", _port(models, "gain", mistake))
    r = run_cli("verify", str(models / "gain.keras"), "--input", str(models / "gain.x.npy"), "--against",
                str(tmp_path / "theirs.npy"), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == (1 if mistake else 0), r.stdout + r.stderr
    assert report["compared"] == "theirs" and report["ok"] is (mistake is None)
    if mistake is None:
        assert report["float32_sensitivity"] is not None and report["outputs"][0]["max_abs_error"] > 1e-2
    else:
        assert report["outputs"][0]["first_past_tolerance"]["step"] <= 2


def test_verify_one_layer_of_a_float32_sensitive_model(models: Path, tmp_path: Path) -> None:
    """--layer: Keras's LSTM output against the engine's, and against the textbook port's whole sequence."""
    k, rk, b, _, _ = _weights(models, "gain")
    x = np.load(models / "gain.x.npy")
    np.save(tmp_path / "theirs.npy", ref.lstm(x, k, rk, b, dtype=np.float32)[0].astype(np.float32))
    for against in ([], ["--against", str(tmp_path / "theirs.npy")]):
        r = run_cli("verify", str(models / "gain.keras"), "--layer", "lstm", "--input", str(models / "gain.x.npy"),
                    *against, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["float32_sensitivity"] is not None
