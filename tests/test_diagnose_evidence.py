"""`diagnose` on ports whose mistake is outside its space: it says none comes close and gives the evidence.

Every THEIRS here is computed by an LSTM written in this file from Keras's own weights (k3_single.ref.npz,
checked against Keras's outputs in k3_single.io.npz), never by the engine under test; one mistake is planted
in the port's loop or gates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import Diagnosis, Hypothesis, diagnose
from lstm_inspect.check.verify import compare

from conftest import SAMPLES, keras_refs, run_cli

SAMPLE = "k3_single"  # LSTM(5) on (batch, 7, 3), last step out; Keras 3


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def port(x: np.ndarray, forget_bias: float = 0.0, carry_rows: bool = False, late: bool = False,
         w: dict[str, np.ndarray] | None = None, go_backwards: bool = False, onnx_order: bool = False,
         unit_scaled: int | None = None) -> np.ndarray:
    """A sample-by-sample NumPy LSTM (Keras's i, f, c, o blocks), the whole output sequence. `forget_bias`: TF1's
    constant added to the forget gate; `carry_rows`: h, c never reset between the rows of the batch; `late`: the
    output written before the update (h_{t-1} at step t); `w`: another direction's Keras arrays (k3_single's by
    default), `go_backwards` it runs over time reversed (its outputs in processing order); `unit_scaled`: that
    unit's recurrent weights (its row of recurrent_kernel, what h_j feeds every gate) scaled by 1.5."""
    w = w if w is not None else keras_refs(SAMPLES / f"{SAMPLE}.ref.npz")["lstm"]
    x = x[:, ::-1] if go_backwards else x
    k, r = (w[n].astype(np.float64) for n in ("kernel", "recurrent_kernel"))
    if unit_scaled is not None:
        r[unit_scaled] *= 1.5
    n = r.shape[0]
    b = w["bias"].astype(np.float64) if "bias" in w else np.zeros(4 * n)
    out = np.zeros((*x.shape[:2], n))
    h, c = np.zeros(n), np.zeros(n)
    for s in range(x.shape[0]):
        if not carry_rows:
            h, c = np.zeros(n), np.zeros(n)
        for t in range(x.shape[1]):
            z = x[s, t] @ k + h @ r + b
            i, f, g, o = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            if onnx_order:  # the blocks read as ONNX's i, o, f, c
                i, o, f, g = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            c = _sigmoid(f + forget_bias) * c + _sigmoid(i) * np.tanh(g)
            if late:
                out[s, t] = h
            h = _sigmoid(o) * np.tanh(c)
            if not late:
                out[s, t] = h
    return out.astype(np.float32)


def _x() -> np.ndarray:
    with np.load(SAMPLES / f"{SAMPLE}.io.npz") as io:
        return io["x"]


def test_the_port_is_keras() -> None:
    with np.load(SAMPLES / f"{SAMPLE}.io.npz") as io:
        np.testing.assert_allclose(port(io["x"])[:, -1], io["y"], atol=1e-5)


def test_a_mistake_outside_the_space_gets_none_comes_close_and_the_evidence() -> None:
    """One unit's recurrent weights scaled by 1.5 (a mistake no candidate makes): step 0 is exact (h_{-1} = 0),
    every sample wrong from step 1; no candidate cuts the error 10x, so none is listed."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SAMPLE}.keras")
    x = _x()
    result = diagnose(ckpt, [x], [port(x, unit_scaled=2)], layer="lstm")
    assert not result.matches and result.found == [] and result.close == []
    ev = result.evidence
    assert ev is not None and ev.exact == () and ev.from_step == {s: 1 for s in range(x.shape[0])}
    assert "every sample differs from step 1" in result.divergence and "recurrence" in result.divergence
    doc = result.to_dict()
    assert doc["ranked"] == [] and doc["close"] == [] and doc["evidence"]["exact_samples"] == []


def test_state_carried_across_rows_shows_sample_0_exact(tmp_path: Path) -> None:
    """Row s starts from row s-1's final states: sample 0 exact, the others wrong from step 0; the hint says the
    shared weights are right (not 'kernel, bias, gate order' as suspects), and the candidate is named first."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SAMPLE}.keras")
    x = _x()
    theirs = port(x, carry_rows=True)
    result = diagnose(ckpt, [x], [theirs], layer="lstm")
    ev = result.evidence
    assert ev is not None and ev.exact == (0,) and ev.from_step == {1: 0, 2: 0, 3: 0}  # 7 steps: too few to fade 10x
    assert ev.lines()[0].startswith("sample 0 exact; samples 1-3 differ from step 0")
    assert "is right" in ev.hint() and "state a row starts from" in ev.hint()
    assert result.found[0].exact and result.found[0].name.startswith("state carried across batch rows")
    assert result.pruned > 0  # the mistakes acting on every sample alike were not run
    # the whole model (its last step only): the per-sample evidence alone, on the command line
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", theirs[:, -1])
    r = run_cli("diagnose", str(SAMPLES / f"{SAMPLE}.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npy"))
    assert r.returncode == 1, r.stderr
    assert "1. state carried across batch rows" in r.stdout and "sample 0 exact; samples 1-3 differ" in r.stdout
    assert "closest" not in r.stdout
    r = run_cli("diagnose", str(SAMPLES / f"{SAMPLE}.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npy"), "--json")
    doc = json.loads(r.stdout)
    assert doc["evidence"]["exact_samples"] == [0] and [h["mistake"] for h in doc["ranked"]] == [
        d["mistake"] for d in doc["diagnosed"]]


def test_a_sample_no_mistake_can_move_does_not_prune_the_search() -> None:
    """An all-zero row into an LSTM without bias stays at h = 0 under any gate order, so it is exact in THEIRS
    too: it must not rule out the gate-order mistakes the other rows show (k3_no_bias, Keras's own arrays)."""
    ckpt = lstm_inspect.load(SAMPLES / "k3_no_bias.keras")
    w = keras_refs(SAMPLES / "k3_no_bias.ref.npz")["lstm_9"]
    with np.load(SAMPLES / "k3_no_bias.io.npz") as io:
        x, y = io["x"].copy(), io["y"]
    np.testing.assert_allclose(port(x, w=w), y, atol=1e-5)  # the port is Keras
    x[0] = 0
    theirs = port(x, w=w, onnx_order=True)
    result = diagnose(ckpt, [x], [theirs], layer="lstm_9")
    assert result.evidence is not None and result.evidence.exact == (0,) and result.pruned == 0
    assert result.found and result.found[0].exact and "order" in result.found[0].name


def test_output_one_step_late_is_named_first() -> None:
    """The port emits h_{t-1}: every sample differs from step 0; named first and exactly."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SAMPLE}.keras")
    x = _x()
    theirs = port(x, late=True)
    assert np.all(theirs[:, 0] == 0)
    result = diagnose(ckpt, [x], [theirs], layer="lstm")
    assert result.found[0].exact and result.found[0].name.startswith("output one step late")
    assert result.evidence is not None and result.evidence.exact == ()
    result = diagnose(ckpt, [x], [theirs[:, -1]])  # the whole model: its last step, h_{T-2}
    assert result.found[0].exact and result.found[0].name.startswith("output one step late")


def test_a_mistake_in_one_direction_shows_in_its_half_alone() -> None:
    """k3_bidir_concat's Bidirectional alone, its backward direction with one unit's recurrent weights scaled by
    1.5 (a mistake no port is known to make, outside the space even with each mistake copied into one direction):
    the forward half of the concatenated output is exact, the backward half differs; nothing comes close, and the
    mistakes that would move the exact half are not run."""
    w = keras_refs(SAMPLES / "k3_bidir_concat.ref.npz")
    x = np.random.default_rng(3).normal(size=(3, 7, 3)).astype(np.float32)
    fwd = port(x, w=w["bidirectional/forward_lstm_5"])
    with np.load(SAMPLES / "k3_bidir_concat.io.npz") as io:  # the port is Keras's on Keras's own input first
        xk = io["x"]
    right = np.concatenate([port(xk, w=w["bidirectional/forward_lstm_5"]),
                            port(xk, w=w["bidirectional/backward_lstm_5"], go_backwards=True)[:, ::-1]], axis=-1)
    ckpt = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    assert diagnose(ckpt, [xk], [right], layer="bidirectional").matches
    odd = dict(w["bidirectional/backward_lstm_5"])
    odd["recurrent_kernel"] = odd["recurrent_kernel"].copy()
    odd["recurrent_kernel"][:, 2::5] *= 1.5  # unit 2's columns in each of the four gate blocks
    bad = port(x, w=odd, go_backwards=True)
    result = diagnose(ckpt, [x], [np.concatenate([fwd, bad[:, ::-1]], axis=-1)], layer="bidirectional")
    assert not result.matches and result.found == [] and result.close == []
    assert result.pruned > 0 and not any("forward direction only" in h.name for h in result.ranked)
    ev = result.evidence
    assert ev is not None and ev.halves_exact == {"forward": True, "backward": False}
    assert "the forward half exact; the backward half differs" in result.divergence
    assert ev.hint().startswith("only the backward half differs")


def test_verify_against_hints_what_the_evidence_shows(tmp_path: Path) -> None:
    """verify --against on the port that carries states across rows: its hint names the exact sample and clears
    the shared weights, instead of pointing at 'kernel, bias, gate order' because the error is there from step 0."""
    pytest.importorskip("keras", reason="verify runs Keras itself")
    x = _x()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", port(x, carry_rows=True)[:, -1])
    r = run_cli("verify", str(SAMPLES / f"{SAMPLE}.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npy"))
    said = " ".join(r.stdout.split())
    assert r.returncode == 1, r.stderr
    assert "sample 0 exact; samples 1-3 differ" in said and "gate order, activations) is right" in said


def test_a_pair_that_only_comes_close_is_not_listed() -> None:
    """Of what comes within 10x of THEIRS without reproducing it, only single mistakes are listed as close: two
    mistakes each removing part of the error is what unrelated ones do by chance (the binary_lstm real file with +0.5
    on its output gate listed 'c_t emitted + bfloat16 weights'); a pair is named only when it reproduces THEIRS."""
    baseline = [compare("output_0", np.zeros(4), np.ones(4), 1e-5, 1e-4)]  # max |Δ| 1
    single = Hypothesis("a", "fix a", 0.05, False)
    pair = Hypothesis("b + c", "fix b; and fix c", 0.01, False, pair=True)
    far = Hypothesis("d", "fix d", 0.5, False)
    exact_pair = Hypothesis("e + f", "fix e; and fix f", 0.0, True, exact=True, pair=True)
    d = Diagnosis("f.h5", False, baseline, ranked=[exact_pair, pair, single, far])
    assert d.close == [single] and d.found == [exact_pair]
    assert [h["mistake"] for h in d.to_dict()["close"]] == ["a"]


def test_only_samples_at_rounding_level_prove_the_shared_weights_right() -> None:
    """A sample within the tolerance but not at rounding level (within a hundredth of it) may carry a small shared
    mistake (the real gru_stacked_keras36 with a GRU bias misplaced: samples at 2.5e-6 and 2.2e-5 of a 3e-4 error):
    it does not prune the search, and the hint says the shared weights are only probably right."""
    ref = np.zeros((3, 4, 2))
    ours = ref.copy()
    ours[0] += 1e-9  # rounding level
    ours[1] += 5e-6  # within atol = 1e-5, not within a hundredth of it
    ours[2] += 1e-3  # wrong
    ev = compare("output_0", ours, ref, 1e-5, 1e-4).evidence
    assert ev is not None and ev.exact == (0, 1) and ev.firm_exact == (0,)
    assert "probably right" in ev.hint()
    ours[1] = ref[1]
    ev = compare("output_0", ours, ref, 1e-5, 1e-4).evidence
    assert ev is not None and ev.firm_exact == (0, 1) and "activations) is right" in ev.hint()


def test_a_port_that_overflowed_is_told_so_not_ranked(tmp_path: Path) -> None:
    """NaN or inf in THEIRS: one line naming the output and the first bad element, exit 2; no candidate is ranked by
    an infinite distance (each one used to be listed as 'close', and --json wrote Infinity)."""
    x = _x()
    theirs = port(x)
    theirs[0, 3, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", theirs[:, -1] * np.inf)
    r = run_cli("diagnose", str(SAMPLES / f"{SAMPLE}.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npy"), "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert "NaN or infinite, the first at [0, 0]" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    ckpt = lstm_inspect.load(SAMPLES / f"{SAMPLE}.keras")
    with pytest.raises(lstm_inspect.InspectError, match=r"1 value\(s\) that are NaN or infinite, the first at \[0, 3"):
        diagnose(ckpt, [x], [theirs], layer="lstm")


def test_named_outputs_are_read_by_their_number_not_their_order_in_the_file(tmp_path: Path) -> None:
    """A port that saves output_2 before output_1 (np.savez keeps the writer's order) gave Keras's own outputs a
    confident 'outputs 1 and 2 swapped' diagnosis; `output_<k>` names now set the order (Keras's outputs of
    k3_functional_state, written in another order)."""
    with np.load(SAMPLES / "k3_functional_state.io.npz") as io:
        x, ys = io["x"], [io["y0"], io["y1"], io["y2"]]
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "theirs.npz", output_2=ys[2], output_0=ys[0], output_1=ys[1])
    r = run_cli("diagnose", str(SAMPLES / "k3_functional_state.keras"), "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "theirs.npz"))
    assert r.returncode == 0 and r.stdout.startswith("match"), r.stdout + r.stderr


def test_a_layers_last_step_is_told_to_give_the_sequence_and_a_bidirectional_is_offered_by_name() -> None:
    """With --layer the evidence does not send the user to --layer (they gave it): a layer's last step asks for
    its whole output sequence; an unknown name lists the Bidirectional's own name, which --layer takes whole."""
    ckpt = lstm_inspect.load(SAMPLES / f"{SAMPLE}.keras")
    with np.load(SAMPLES / f"{SAMPLE}.io.npz") as io:
        x, y = io["x"], io["y"]
    result = diagnose(ckpt, [x], [y * 1.3], layer="lstm")  # Keras's own last step, every value 30 % off
    assert "give its whole output sequence" in result.divergence and "(--layer)" not in result.divergence
    assert "(--layer)" in diagnose(ckpt, [x], [y * 1.3]).divergence  # the whole model's output: --layer is news
    bidir = lstm_inspect.load(SAMPLES / "k3_bidir_concat.keras")
    with pytest.raises(lstm_inspect.InspectError, match=r"a Bidirectional whole, where a command takes one: "
                                                       r"bidirectional\)"):
        bidir.direction("nope")
