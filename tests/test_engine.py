"""The NumPy engine against Keras's own outputs, stored beside every sample and real file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.engine.loop import run_sequence
from lstm_inspect.model.activations import hard_sigmoid_keras2, hard_sigmoid_keras3, sigmoid

import reference_rnn as ref
from conftest import REALWORLD, SAMPLES, realworld_checkpoints
from helpers.io import inputs_and_outputs, io_path, max_error, models_with_outputs

CASES = list(models_with_outputs())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_engine_matches_keras_outputs(path: Path, dtype: type) -> None:
    xs, ys = inputs_and_outputs(path)
    out = lstm_inspect.load(path).forward(xs if len(xs) > 1 else xs[0], dtype=dtype)
    outs = out if isinstance(out, list) else [out]
    assert len(outs) == len(ys)
    assert all(o.dtype == dtype for o in outs)
    assert max_error(outs, ys) <= 1e-5


def test_every_real_file_with_outputs_is_covered() -> None:
    if not REALWORLD.is_dir():
        pytest.skip("../shared/realworld is not beside this clone")
    with_io = {p.name for p in realworld_checkpoints(with_weights=True) if io_path(p).exists()}
    assert with_io <= {p.name for p in CASES}
    assert len(with_io) >= 11


def test_model_saved_before_it_was_built_cannot_run() -> None:
    path = REALWORLD / "next_word_embedding_keras313.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with pytest.raises(lstm_inspect.InspectError, match="stores no weights"):
        lstm_inspect.load(path).forward(np.ones((2, 12), dtype=np.int32))


def test_one_direction_alone_equals_the_keras_layer_output() -> None:
    """A single-LSTM model's output is that direction's output (Keras computed it)."""
    for name in ("k3_return_sequences.keras", "tfk_go_backwards.h5", "k3_no_bias.keras", "k3_single.keras"):
        xs, ys = inputs_and_outputs(SAMPLES / name)
        (d,) = lstm_inspect.load(SAMPLES / name).directions
        assert max_error([d.forward(xs[0])], ys) <= 1e-5


@pytest.mark.parametrize("kind", ["LSTM", "GRU-after", "GRU-before", "SimpleRNN"])
def test_engine_step_by_step_against_the_equations(kind: str) -> None:
    """Each cell through the engine's sequence loop against the tests' own textbook loop, float64."""
    from lstm_inspect.model.cells.base import CELLS, CellSettings, CellWeights

    rng = np.random.default_rng(0)
    units, n_i, batch, steps = 3, 2, 2, 5
    g = {"LSTM": 4, "SimpleRNN": 1}.get(kind, 3)
    kernel, recurrent = rng.normal(size=(n_i, g * units)), rng.normal(size=(units, g * units))
    bias = rng.normal(size=(2, 3 * units)) if kind == "GRU-after" else rng.normal(size=g * units)
    x = rng.normal(size=(batch, steps, n_i))
    mask = rng.random((batch, steps)) > 0.3
    cell = CELLS[kind.split("-")[0]]
    settings = CellSettings(units=units, recurrent_activation=None if kind == "SimpleRNN" else "sigmoid",
                            reset_after=kind == "GRU-after", return_sequences=True)
    step = cell.step(CellWeights(kernel=kernel, recurrent_kernel=recurrent, bias=bias), settings, np.float64, batch,
                     "keras3")
    res = run_sequence(step, x, units=units, mask=mask, dtype=np.float64)
    if kind == "LSTM":
        want, states = ref.lstm(x, kernel, recurrent, bias, mask=mask)
    elif kind == "SimpleRNN":
        want, states = ref.simple_rnn(x, kernel, recurrent, bias, mask=mask)
    else:
        want, states = ref.gru(x, kernel, recurrent, bias, reset_after=kind == "GRU-after", mask=mask)
    np.testing.assert_allclose(res.outputs, want, atol=1e-12)
    for got, expected in zip(res.states, states):
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_hard_sigmoid_definitions() -> None:
    x = np.array([-4.0, -1.0, 0.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(hard_sigmoid_keras2(x), [0.0, 0.3, 0.5, 0.7, 0.9, 1.0])
    np.testing.assert_allclose(hard_sigmoid_keras3(x), [0.0, 1 / 3, 0.5, 2 / 3, 5 / 6, 1.0])
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), atol=1e-15)


def test_layer_lookup_by_short_name() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    assert ckpt.direction("backward_lstm_5").name == "bidirectional/backward_lstm_5"


def test_a_softmax_recurrent_activation_applies_to_each_gate_alone() -> None:
    """Softmax is not elementwise: Keras applies the recurrent activation gate by gate (LSTMCell, GRUCell)."""
    from lstm_inspect.model.cells.base import CELLS, CellSettings, CellWeights

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    for kind, g in (("LSTM", 4), ("GRU", 3)):
        w = CellWeights(kernel=rng.normal(size=(3, g * 4)).astype(np.float32),
                        recurrent_kernel=rng.normal(size=(4, g * 4)).astype(np.float32),
                        bias=rng.normal(size=(2, g * 4) if kind == "GRU" else g * 4).astype(np.float32))
        settings = CellSettings(units=4, recurrent_activation="softmax", reset_after=True if kind == "GRU" else None)
        step = CELLS[kind].step(w, settings, np.float64, 2, "keras3")
        ours = run_sequence(step, x, units=4, dtype=np.float64).outputs
        fn = ref.lstm if kind == "LSTM" else (lambda *a, **k: ref.gru(*a, reset_after=True, **k))
        expected, _ = fn(x, w.kernel, w.recurrent_kernel, w.bias, recurrent_activation=softmax)
        np.testing.assert_allclose(ours, expected, atol=1e-9)
