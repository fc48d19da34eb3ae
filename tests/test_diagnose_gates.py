"""`diagnose`'s evidence when nothing fits: per unit, per gate (a constant offset on one gate's pre-activation), the
teacher-forced step check of a GRU, and the noise-level hint.

Every THEIRS here comes from an LSTM or GRU written in this file from Keras's own weights (k3_single.ref.npz,
k3_gru.ref.npz and the Dense of k3_gru.keras), each checked first against what Keras returned (*.io.npz), never
from the engine under test; one mistake is planted in the port's bias, loop, one unit or its activations.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base import budget
from lstm_inspect.check.diagnose import diagnose, mistakes

from conftest import SAMPLES, keras_refs, run_cli

Fn = Callable[[np.ndarray], np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _table(fn: Fn, lo: float, hi: float, size: int = 1024) -> Fn:
    """fn read from a lookup table as hls4ml builds it (table_size 1024, hls4ml#412, PR #329): the input's index
    into `size` entries over [lo, hi), truncated, clipped at the ends."""
    values = fn(lo + (hi - lo) * np.arange(size) / size)
    return lambda z: values[np.clip(((z - lo) * size / (hi - lo)).astype(int), 0, size - 1)]


def lstm_port(x: np.ndarray, offset: tuple[str, float] | None = None, unit: int | None = None,
              sigma: Fn = _sigmoid, tanh: Fn = np.tanh, dtype: type = np.float64,
              cell_clip: float | None = None) -> np.ndarray:
    """k3_single's LSTM (Keras blocks i, f, c, o), the whole output sequence. `offset`: (gate, δ) added to that
    gate's pre-activation in every unit; `unit`: that unit's input-gate kernel column off by 0.5; `sigma`, `tanh`:
    the activations as the port computes them; `dtype`: its arithmetic; `cell_clip`: c clipped to ±cell_clip at
    every step (TF1's LSTMCell(cell_clip=...); TFLite's fused LSTM printed cell_clip 10 for a Keras LSTM,
    tensorflow#43649)."""
    w = keras_refs(SAMPLES / "k3_single.ref.npz")["lstm"]
    k, r, b = (w[n].astype(dtype) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]
    if offset is not None:
        g = "ifco".index(offset[0])
        b[g * n:(g + 1) * n] += dtype(offset[1])
    if unit is not None:
        k[:, unit] += dtype(0.5)
    h = np.zeros((x.shape[0], n), dtype)
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        z = x[:, t].astype(dtype) @ k + h @ r + b
        i, f, g_, o = (z[:, j * n:(j + 1) * n] for j in range(4))
        c = sigma(f) * c + sigma(i) * tanh(g_)
        if cell_clip is not None:
            c = np.clip(c, -cell_clip, cell_clip)
        h = sigma(o) * tanh(c)
        out.append(h)
    return np.stack(out, axis=1).astype(np.float32)


def gru_port(x: np.ndarray, offset: tuple[str, float] | None = None, rows: list[int] | None = None) -> np.ndarray:
    """k3_gru's GRU (reset_after: r multiplies h·U_h + b^h_h; blocks z, r, h), sample by sample. `offset`: (gate, δ)
    added to that gate's pre-activation; `rows`: the order the port runs the rows in, never resetting h between
    them (None: each row from zeros)."""
    w = keras_refs(SAMPLES / "k3_gru.ref.npz")["gru_1"]
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    n = r.shape[0]
    if offset is not None:
        g = "zrh".index(offset[0])
        b[0, g * n:(g + 1) * n] += offset[1]
    out = np.zeros((*x.shape[:2], n))
    h = np.zeros(n)
    for s in rows if rows is not None else range(x.shape[0]):
        if rows is None:
            h = np.zeros(n)
        for t in range(x.shape[1]):
            xz, hz = x[s, t] @ k + b[0], h @ r + b[1]
            z, rr = _sigmoid(xz[:n] + hz[:n]), _sigmoid(xz[n:2 * n] + hz[n:2 * n])
            h = z * h + (1 - z) * np.tanh(xz[2 * n:] + rr * hz[2 * n:])
            out[s, t] = h
    return out.astype(np.float32)


def rnn_port(x: np.ndarray, direction: str, offset: float = 0.0, rows: list[int] | None = None) -> np.ndarray:
    """One SimpleRNN direction of k3_bidir_simple_rnn's Bidirectional (tanh), in its own processing order; `offset`
    added to its pre-activation; `rows` as in gru_port."""
    w = keras_refs(SAMPLES / "k3_bidir_simple_rnn.ref.npz")[f"bidirectional_4/{direction}_simple_rnn_2"]
    k, r, b = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel", "bias"))
    out = np.zeros((*x.shape[:2], r.shape[0]))
    h = np.zeros(r.shape[0])
    for s in rows if rows is not None else range(x.shape[0]):
        if rows is None:
            h = np.zeros_like(h)
        for t in range(x.shape[1]):
            h = np.tanh(x[s, t] @ k + h @ r + b + offset)
            out[s, t] = h
    return out


def bidirectional_port(x: np.ndarray, forward: dict[str, Any] | None = None,
                       backward: dict[str, Any] | None = None) -> np.ndarray:
    """The Bidirectional's concat: forward, then backward run over x reversed and flipped back."""
    fwd = rnn_port(x, "forward", **(forward or {}))
    bwd = rnn_port(x[:, ::-1], "backward", **(backward or {}))[:, ::-1]
    return np.concatenate([fwd, bwd], axis=-1).astype(np.float32)


def _io(sample: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES / f"{sample}.io.npz") as data:
        return data["x"], data["y"]


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_the_ports_are_keras() -> None:
    x, y = _io("k3_single")
    np.testing.assert_allclose(lstm_port(x)[:, -1], y, atol=1e-5)
    x, y = _io("k3_gru")
    with zipfile.ZipFile(SAMPLES / "k3_gru.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        kernel, bias = f["layers/dense/vars/0"][()], f["layers/dense/vars/1"][()]  # Keras's own Dense
    np.testing.assert_allclose(gru_port(x) @ kernel + bias, y, atol=1e-5)
    x, y = _io("k3_bidir_simple_rnn")  # Masking first: rows 0 and 3 have no masked step
    np.testing.assert_allclose(bidirectional_port(x[[0, 3]]), y[[0, 3]], atol=1e-5)


@pytest.mark.parametrize("gate,delta,words", [("f", 0.6, "+0.60 on the forget gate"),
                                              ("o", -1.5, "-1.50 on the output gate")])
def test_an_offset_on_one_lstm_gate_is_named(gate: str, delta: float, words: str) -> None:
    """k3_single: a constant on one gate's pre-activation is outside the space; the per-gate fit names the gate and δ
    and reproduces THEIRS."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((4, 12, 3))
    result = diagnose(ckpt, [x], [lstm_port(x, offset=(gate, delta))], layer="lstm")
    assert not result.matches and result.found == []
    g = result.gates
    assert g is not None and g.best is not None and g.best.gate == gate and abs(g.best.delta - delta) < 1e-4
    assert g.reproduces and g.best.max_abs < 1e-5 < g.gap and g.runs <= 4 * 20
    line = g.lines()[0]
    assert words in line and "reproduces THEIRS" in line and "forget_bias=1.0 added" not in line
    assert g.steps == []  # an LSTM's c is hidden: no teacher-forced check
    assert result.to_dict()["gates"]["best"]["gate"] == gate
    assert f"{delta:+.2f} on the" in result._repr_html_()


def test_tf1_forget_bias_is_named() -> None:
    """TF1's forget_bias=1.0 on a Keras LSTM: named by the search when the space holds it as a candidate, else by the
    gate fit, as TF1's forget_bias (+1.00 on f)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((4, 12, 3))
    result = diagnose(ckpt, [x], [lstm_port(x, offset=("f", 1.0))], layer="lstm")
    if result.found:  # a candidate of the space
        assert result.found[0].exact and "forget_bias" in result.found[0].name
        return
    g = result.gates
    assert g is not None and g.best is not None and g.best.gate == "f" and abs(g.best.delta - 1) < 1e-4
    assert g.reproduces and "+1.00 on the forget gate's pre-activation reproduces THEIRS" in g.lines()[0]
    assert "TensorFlow 1's forget_bias=1.0 added to a Keras LSTM" in g.lines()[0]


def test_the_gate_fit_on_the_command_line(tmp_path: Path) -> None:
    ckpt_path = SAMPLES / "k3_single.keras"
    x = _x((4, 12, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", lstm_port(x, offset=("o", -1.5)))
    args = ("diagnose", str(ckpt_path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"),
            "--layer", "lstm")
    r = run_cli(*args)
    said = " ".join(r.stdout.split())
    assert r.returncode == 1, r.stderr
    assert "none of the porting mistakes lstm-inspect knows comes close" in said
    assert "per gate: a constant -1.50 on the output gate's pre-activation reproduces THEIRS" in said
    assert "all 5 units differ" in said
    doc = json.loads(run_cli(*args, "--json").stdout)
    assert doc["gates"]["best"]["gate"] == "o" and abs(doc["gates"]["best"]["offset"] + 1.5) < 1e-4
    assert doc["gates"]["reproduces"] and doc["evidence"]["units"] == {"of": 5, "differ": [0, 1, 2, 3, 4],
                                                                       "differ_first": [0, 1, 2, 3, 4]}


@pytest.mark.parametrize("gate,delta,words", [("z", 0.7, "+0.70 on the update gate"),
                                              ("h", -1.3, "-1.30 on the candidate gate")])
def test_an_offset_on_one_gru_gate_is_named(gate: str, delta: float, words: str) -> None:
    """k3_gru's GRU alone: the gate and δ are named; the teacher-forced check says the step itself differs."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_gru.keras")
    x = _x((3, 9, 3), seed=1)
    result = diagnose(ckpt, [x], [gru_port(x, offset=(gate, delta))], layer="gru_1")
    assert result.found == []
    g = result.gates
    assert g is not None and g.best is not None and g.best.gate == gate and abs(g.best.delta - delta) < 1e-4
    assert g.reproduces and words in g.lines()[0]
    assert [s.verdict for s in g.steps] == ["step"] and "the step itself differs" in g.lines()[1]


def test_the_gate_fits_share_the_step_budget() -> None:
    """A step budget that pays for the single mistakes but not for the gate fits: they are not run, and the note
    says so; one that pays for them too runs them before any pair."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((4, 12, 3))
    theirs = lstm_port(x, offset=("o", -1.5))
    # 12 steps a run: the model twice, then each single mistake's runs (a previous call's costs two)
    searched = (2 + sum(m.runs for m in mistakes(ckpt, [ckpt.direction("lstm")], False))) * 12
    with budget.limited(budget.Limits(max_steps=searched + 12)):
        result = diagnose(ckpt, [x], [theirs], layer="lstm")
    assert result.gates is not None and result.gates.fits == [] and result.gates.runs == 0
    assert "--max-steps" in result.gates.lines()[0]
    with budget.limited(budget.Limits(max_steps=searched + 80 * 12)):  # 4 gates x 20 runs, no pair
        result = diagnose(ckpt, [x], [theirs], layer="lstm")
    assert result.gates is not None and result.gates.reproduces and result.gates.best.gate == "o"  # type: ignore


def test_a_gru_loop_mistake_keeps_the_step_equations_right() -> None:
    """A port running the rows last first and never resetting h (row b starts from row b+1's final state): no
    gate offset explains it, and the correct step from THEIRS's own h_{t-1} reproduces every step but step 0."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_gru.keras")
    x = _x((4, 9, 3), seed=2)
    theirs = gru_port(x, rows=[3, 2, 1, 0])
    result = diagnose(ckpt, [x], [theirs], layer="gru_1")
    assert result.found == [] and result.evidence is not None and result.evidence.exact == (3,)
    g = result.gates
    assert g is not None and not g.explains and g.lines()[0].startswith("no single gate's constant offset explains")
    assert [s.verdict for s in g.steps] == ["start"]
    assert "the step equations are right" in g.lines()[1] and "the state each row starts from" in g.lines()[1]
    assert result.to_dict()["gates"]["step_check"][0]["verdict"] == "start"


def test_a_bidirectional_is_fitted_and_checked_in_its_wrong_direction() -> None:
    """k3_bidir_simple_rnn's Bidirectional alone: an offset in the backward direction only is named there; the
    forward direction running its rows last first keeps its step right (only step 0 differs), and the exact
    backward half is not checked."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_simple_rnn.keras")
    x = _x((4, 9, 3), seed=3)
    result = diagnose(ckpt, [x], [bidirectional_port(x, backward={"offset": -0.8})], layer="bidirectional_4")
    g = result.gates
    assert result.found == [] and g is not None and g.directions == ("bidirectional_4/backward_simple_rnn_2",)
    assert g.reproduces and abs(g.best.delta + 0.8) < 1e-4  # type: ignore[union-attr]
    assert "-0.80 on the pre-activation in bidirectional_4/backward_simple_rnn_2 reproduces THEIRS" in g.lines()[0]
    assert [(c.direction, c.verdict) for c in g.steps] == [("bidirectional_4/backward_simple_rnn_2", "step")]
    result = diagnose(ckpt, [x], [bidirectional_port(x, forward={"rows": [3, 2, 1, 0]})], layer="bidirectional_4")
    g = result.gates
    assert result.found == [] and g is not None and not g.explains
    assert [(c.direction, c.verdict) for c in g.steps] == [("bidirectional_4/forward_simple_rnn_2", "start")]


def test_one_units_weights_show_in_the_units_line(tmp_path: Path) -> None:
    """Unit 2's input-gate kernel column off: at step 0 only unit 2 differs (the others follow through the
    recurrent kernel), and the hint points at that unit's own weights, not at what every unit shares."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((4, 12, 3))
    result = diagnose(ckpt, [x], [lstm_port(x, unit=2)], layer="lstm")
    ev = result.evidence
    assert ev is not None and ev.units == 5 and ev.first_units == (2,) and ev.wrong_units == (0, 1, 2, 3, 4)
    assert "unit 2 of 5 differs first (step 0), then all 5 units" in ev.lines()
    assert "starts in unit 2 of 5 alone" in ev.hint() and "gate order" not in ev.hint().split("not what")[0]
    assert ev.noise == 0 and ev.to_dict()["units"]["differ_first"] == [2]
    assert "unit 2 of 5 differs first" in result.divergence
    # verify --against shows the same evidence (Keras itself as the reference)
    pytest.importorskip("keras", reason="verify runs Keras itself")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", lstm_port(x, unit=2))
    r = run_cli("verify", str(SAMPLES / "k3_single.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npy"), "--layer", "lstm")
    said = " ".join(r.stdout.split())
    assert r.returncode == 1, r.stderr
    assert "unit 2 of 5 differs first (step 0), then all 5 units" in said and "starts in unit 2 of 5 alone" in said


def test_a_cell_clip_shows_as_few_units_departing_late() -> None:
    """c clipped at ±1.0: only samples whose |c| passes 1 differ, from a late step, in units 3 and 4 first; the
    hint says clip or saturation, not the state a row starts from (which would show at step 0)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((4, 20, 3))
    result = diagnose(ckpt, [x], [lstm_port(x, cell_clip=1.0)], layer="lstm")
    ev = result.evidence
    assert result.found == [] and ev is not None and ev.exact == (0, 1, 2) and ev.from_step == {3: 5}
    assert ev.first_units == (3, 4) and "units 3-4 of 5 differ first (step 5), then all 5 units" in ev.lines()
    assert "sample 3 differs from step 5" in ev.lines()[0]
    hint = ev.hint()
    assert "is right" in hint and "a clip or saturation" in hint and "not the state a row starts from" in hint


def test_lookup_table_activations_get_the_noise_hint() -> None:
    """σ and tanh from 1024-entry tables (hls4ml's default, σ over [-8, 8), tanh over [-4, 4)): a small, flat
    error at every sample, step and unit: the hint says noise-level, and no gate offset explains it."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((6, 20, 3))
    theirs = lstm_port(x, sigma=_table(_sigmoid, -8, 8), tanh=_table(np.tanh, -4, 4))
    result = diagnose(ckpt, [x], [theirs], layer="lstm")
    ev = result.evidence
    assert ev is not None and 0 < ev.noise < 0.03 and ev.exact == ()
    assert "small, flat error" in ev.hint() and "approximate activations" in ev.hint()
    assert "approximate activations" in result.divergence and ev.to_dict()["noise_level"] == ev.noise
    if not result.found:  # (a reduced-precision candidate may fit an error this small; none does on main)
        assert result.close == [] and result.gates is not None and not result.gates.explains


def test_float16_arithmetic_is_noise_level_and_structural_mistakes_are_not() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_single.keras")
    x = _x((6, 20, 3))
    half = diagnose(ckpt, [x], [lstm_port(x, dtype=np.float16)], layer="lstm")
    assert half.evidence is not None and 0 < half.evidence.noise < 0.01 and "quantized" in half.evidence.hint()
    for theirs in (lstm_port(x, offset=("f", 1.0)), lstm_port(x, unit=2)):
        ev = diagnose(ckpt, [x], [theirs], layer="lstm").evidence
        assert ev is not None and ev.noise == 0 and "small, flat" not in ev.hint()
