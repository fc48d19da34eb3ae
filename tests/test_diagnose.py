"""`diagnose` names the porting mistake planted in THEIRS first.

Every THEIRS here is computed by the tests' own textbook layers (`reference_rnn`), from Keras's own
weights (the `.ref.npz` beside each sample), with one mistake (or two) planted: never by the engine
under test. The single mistakes of each model are enumerated here from the axes of the search
(`_space`), independently of `lstm_inspect.check.diagnose`, and the count diagnose offers must equal it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.check.diagnose import diagnose, mistakes
from lstm_inspect.check.mistakes import cell_mistakes

import reference_rnn as ref
from conftest import REALWORLD, SAMPLES, keras_refs, run_cli

# A port that uses Keras's block order[k] as gate k (i, f, c, o) believes the stored order is `believed(order)`.
ORDER_NAMES = {("i", "o", "f", "c"): "ONNX's gate order", ("i", "f", "o", "c"): "c and o swapped",
               ("i", "c", "f", "o"): "Keras 1's stored"}
ONNX = (0, 2, 3, 1)  # Keras blocks i, c, o, f used as gates i, f, c, o: the port believes i, o, f, c


def believed(order: tuple[int, ...]) -> tuple[str, ...]:
    stored = [""] * 4
    for gate, block in enumerate(order):
        stored[block] = "ifco"[gate]
    return tuple(stored)


def _w(sample: str, direction: str) -> dict[str, np.ndarray]:
    return keras_refs(SAMPLES / f"{sample}.ref.npz")[direction]


def lstm_port(w: dict[str, np.ndarray], x: np.ndarray, *, order: tuple[int, ...] | None = None, rec: str = "sigmoid",
              act: str = "tanh", cell_act: str | None = None, bias: bool = True, transpose_recurrent: bool = False,
              transpose_kernel: bool = False, swap_kernels: bool = False,
              reverse: bool = False, go_backwards: bool = False, dtype: type = np.float64, bf16: bool = False,
              mask: np.ndarray | None = None, zero_output: bool = False, return_sequences: bool = True,
              h0: np.ndarray | None = None, c0: np.ndarray | None = None, carry_rows: bool = False,
              late: bool = False, emit_c: bool = False, swap_axes: bool = False, warm: bool = False,
              forget_bias: float = 0.0, forget_after: float = 0.0, cell_clip: float | None = None,
              mask_rule: str = "keras") -> np.ndarray:
    """One LSTM direction as a port computes it, from Keras's own arrays; each argument a possible mistake.
    `mask_rule` "outputs" / "states": the mask applied to the outputs only / the states only."""
    k, r, b = w["kernel"], w["recurrent_kernel"], w.get("bias")
    if forget_bias:  # TF1's forget_bias added at run time: b_f + forget_bias (a zero bias if there is none)
        n = r.shape[0]
        b = np.zeros(4 * n) if b is None or not bias else np.array(b, np.float64)
        b[n:2 * n] += forget_bias
        bias = True
    if order is not None:
        k, r = ref.permuted(k, 4, list(order)), ref.permuted(r, 4, list(order))
        b = None if b is None else ref.permuted(b, 4, list(order))
    if transpose_recurrent:
        r = np.concatenate([blk.T for blk in ref.blocks(r, 4)], axis=1)
    if transpose_kernel:
        k = np.concatenate([blk.T for blk in ref.blocks(k, 4)], axis=1)
    if swap_kernels:
        k, r = r, k
    if bf16:
        k, r, b = (None if a is None else _bfloat16(a) for a in (k, r, b))
    if reverse:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    def keras(xb: np.ndarray, mb: np.ndarray | None, hb: Any, cb: Any, backwards: bool = go_backwards,
              sequences: bool = return_sequences or late) -> tuple[np.ndarray, list[np.ndarray]]:
        return ref.lstm(xb, k, r, b if bias else None, activation=ref.act(act), recurrent_activation=ref.act(rec),
                        cell_activation=ref.act(cell_act) if cell_act else None, mask=mb, go_backwards=backwards,
                        zero_output_for_mask=zero_output, dtype=dtype, return_sequences=sequences, h0=hb, c0=cb,
                        forget_offset=forget_after, cell_clip=cell_clip)

    def run(xb: np.ndarray, mb: np.ndarray | None, hb: Any, cb: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        if not emit_c:
            return keras(xb, mb, hb, cb)
        # c_t emitted where Keras emits h_t: one step at a time, c collected (held at masked steps)
        y, states = _emitting_c(lambda xt, mt, ht, ct: keras(xt, mt, ht, ct, False, True), xb, mb, hb, cb,
                                go_backwards, zero_output, dtype)
        return (y if return_sequences or late else y[:, -1]), states

    if mask_rule != "keras" and mask is not None:
        def textbook(xb: np.ndarray, mb: np.ndarray | None, hb: Any, cb: Any, seq: bool) -> tuple[np.ndarray, Any]:
            return ref.lstm(xb, k, r, b if bias else None, activation=ref.act(act), recurrent_activation=ref.act(rec),
                            cell_activation=ref.act(cell_act) if cell_act else None, mask=mb, dtype=dtype,
                            return_sequences=seq, h0=hb, c0=cb, forget_offset=forget_after, cell_clip=cell_clip)

        y = _one_mask_half(textbook, x, mask, mask_rule, zero_output)
        return (y if return_sequences else y[:, -1]).astype(np.float32)
    if warm:  # the port ran x once before and kept its states (TFLite): this call starts from that one's final states
        _, (h0, c0) = run(x, mask, h0, c0)
    if swap_axes:  # nn.LSTM without batch_first: (batch, steps) run as (steps, batch), then swapped back
        y, _ = run(np.swapaxes(x, 0, 1), None if mask is None else mask.T, h0, c0)
        y = np.swapaxes(y[:, ::-1] if go_backwards else y, 0, 1)  # in input order along the axis it ran over
        y = y[:, ::-1] if go_backwards else y  # then in the layer's processing order, as Keras returns it
    elif carry_rows:  # the port loops over samples and never resets h, c: row b starts from row b-1's final states
        ys, hb, cb = [], None if h0 is None else h0[:1], None if c0 is None else c0[:1]
        for row in range(x.shape[0]):
            yb, (hb, cb) = run(x[row:row + 1], None if mask is None else mask[row:row + 1], hb, cb)
            ys.append(yb)
        y = np.concatenate(ys)
    else:
        y, _ = run(x, mask, h0, c0)
    if late:  # h_{t-1} emitted at step t, zeros at step 0
        shifted = np.zeros_like(y)
        shifted[:, 1:] = y[:, :-1]
        y = shifted if return_sequences else shifted[:, -1]
    return y.astype(np.float32)


def _emitting_c(one: Any, x: np.ndarray, mask: np.ndarray | None, h: Any, c: Any, backwards: bool,
                zero_output: bool, dtype: type) -> tuple[np.ndarray, list[np.ndarray]]:
    """An LSTM loop that emits c_t: `one` runs a single step from (h, c); at a masked step the states are held and
    the output is the previous one (or 0), as Keras's loop does for h."""
    outs, last = [], None
    for t in (range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])):
        _, (h, c) = one(x[:, t:t + 1], None if mask is None else mask[:, t:t + 1], h, c)
        last = np.zeros(c.shape, dtype) if last is None or zero_output else last
        last = c if mask is None else np.where(mask[:, t:t + 1], c, last)
        outs.append(last)
    return np.stack(outs, axis=1), [h, c]


def _one_mask_half(lstm: Any, x: np.ndarray, mask: np.ndarray, rule: str, zero_output: bool) -> np.ndarray:
    """A port that masks the outputs only (the states run through masked steps) or the states only (the cell's
    fresh output written at masked steps), from a textbook LSTM `lstm(x, mask, h0, c0, return_sequences)`."""
    steps = mask.shape[1]
    if rule == "outputs":
        fresh = lstm(x, None, None, None, True)[0]
    else:  # one step from the states Keras holds after each prefix
        held = [(None, None)] + [tuple(lstm(x[:, :t], mask[:, :t], None, None, False)[1]) for t in range(1, steps)]
        fresh = np.stack([lstm(x[:, t:t + 1], None, *held[t], True)[0][:, 0] for t in range(steps)], axis=1)
    if rule == "states":
        return fresh
    y, prev = np.zeros_like(fresh), np.zeros_like(fresh[:, 0])
    for t in range(steps):
        y[:, t] = prev = np.where(mask[:, t, None], fresh[:, t], 0.0 if zero_output else prev)
    return y


def _bfloat16(a: np.ndarray) -> np.ndarray:
    bits = np.asarray(a, np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- the space of single mistakes, enumerated here

CLIPS = (10.0, 3.0)  # TFLite's fused LSTM's cell_clip, tf.raw_ops.LSTMBlockCell's default
RECURRENT_WORDS = {"sigmoid": "the logistic sigmoid", "hard_sigmoid:keras2": "Keras 2's",
                   "hard_sigmoid:keras3": "Keras 3's"}


@dataclass(frozen=True)
class Plant:
    """One porting mistake: `every` is lstm_port's arguments for every direction, `only` for one direction
    (by its role, "forward" or "backward"), `flip` whether a Bidirectional's backward half is flipped back."""

    label: str
    words: str  # what diagnose must say (a part of the mistake's name)
    every: dict[str, Any] = field(default_factory=dict)
    only: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    flip: bool = True
    interleave: bool = False  # the two directions' outputs reshaped from ONNX's (T, 2, B, H) as they lie

    def kwargs(self, role: str) -> dict[str, Any]:
        return {**self.every, **dict(dict(self.only).get(role, ()))}

    @property
    def exact(self) -> bool:
        """float16 arithmetic never reproduces another float16 computation to the last bit: it is named first
        as fitting THEIRS within its own rounding noise, not as exact. Every other mistake (bfloat16 weights
        included) is reproduced within the verify tolerance."""
        return "dtype" not in self.every


def _space(rec: str, *, act: str = "tanh", roles: tuple[str, ...] = ("forward",), bias: bool = True,
           square: bool = False, masked: bool = False, sequences: bool = True) -> list[Plant]:
    """Every single mistake issue 11 names for an LSTM model, from its axes: the 23 other gate orders, the
    recurrent activations a port might use, the candidate and cell activations, the bias, the transposes,
    the time order of each direction (and a Bidirectional's flip), the mask variants where there is a mask,
    the loop's (c emitted, states kept from a call, batch and time confused where the layer returns sequences),
    and the precision. `rec` is the model's own recurrent activation (hard_sigmoid with its generation);
    `roles` its directions ("forward", "backward" for go_backwards); the cell mistakes go to every direction."""
    out: list[Plant] = []
    for order in itertools.permutations(range(4)):
        if order != (0, 1, 2, 3):
            label = ORDER_NAMES.get(believed(order), "gate order " + ", ".join(believed(order)))
            out.append(Plant(f"order {order}", label, {"order": order}))
    out += [Plant(f"recurrent {name}", words, {"rec": name}) for name, words in RECURRENT_WORDS.items() if name != rec]
    if bias:
        out.append(Plant("bias dropped", "the bias left out", {"bias": False}))
    out.append(Plant("recurrent transposed", "recurrent block transposed", {"transpose_recurrent": True}))
    if square:  # N_i = N_c: the kernel's blocks can be transposed too, and the two kernels swapped
        out += [Plant("input transposed", "input block transposed", {"transpose_kernel": True}),
                Plant("kernels swapped", "kernel and recurrent_kernel swapped", {"swap_kernels": True})]
    if act != "linear":
        out.append(Plant(f"{act} off c", "left off c", {"cell_act": "linear"}))
    if act != "sigmoid":
        out.append(Plant("sigmoid candidate", "sigmoid on the cell candidate", {"act": "sigmoid", "cell_act": act}))
    if act != "linear":
        out.append(Plant("linear candidate", "no activation on the cell candidate",
                         {"act": "linear", "cell_act": act}))
    # TF1's cell conventions (tests/test_diagnose_tf1.py plants each on its own port; here they complete the space)
    out += [Plant("forget_bias", "forget_bias=1.0 added at run time", {"forget_bias": 1.0}),
            Plant("forget bias after sigmoid", "forget bias added after the sigmoid", {"forget_after": 1.0})]
    out += [Plant(f"cell_clip {clip:g}", f"clipped to ±{clip:g}", {"cell_clip": clip}) for clip in CLIPS]
    if len(roles) == 2:  # a Bidirectional: each cell mistake in one direction only, and the two interleaved
        out += [Plant(f"{p.label} ({role})", f"{p.words}|in the {role} direction only",
                      only=((role, tuple(p.every.items())),)) for role in roles for p in list(out)]
        out.append(Plant("interleaved", "directions interleaved across batch rows", interleave=True))
    for role in roles:
        if role == "backward":
            out.append(Plant("go_backwards ignored", "go_backwards ignored", only=(("backward", (("go_backwards",
                                                                                                 False),)),)))
        else:
            out.append(Plant(f"{role} reversed", "reversed in time", only=((role, (("reverse", True),)),)))
    if "backward" in roles:
        out.append(Plant("backward not flipped", "backward output not flipped", flip=False))
    if masked:
        out += [Plant("mask ignored", "masked steps not skipped", {"mask": None}),
                Plant("zeros at masked steps", "zeros output at masked steps", {"zero_output": True}),
                Plant("previous output at masked steps", "previous output repeated at masked steps",
                      {"zero_output": False}),
                Plant("outputs alone masked", "the mask applied to the outputs only", {"mask_rule": "outputs"}),
                Plant("states alone masked", "the mask applied to the states only", {"mask_rule": "states"}),
                Plant("masking any", "Masking read as 'any feature", {"mask": "any"})]
    out += [Plant("rows carried", "state carried across batch rows", {"carry_rows": True}),
            Plant("output late", "output one step late", {"late": True}),
            Plant("c emitted", "cell state c_t emitted", {"emit_c": True}),
            Plant("kept from a call", "state kept from a previous call", {"warm": True})]
    if sequences:  # the layer returns its sequence: a port over the wrong axes returns the same shape
        out.append(Plant("axes swapped", "batch and time axes confused", {"swap_axes": True}))
    out += [Plant("float16", "float16 arithmetic", {"dtype": np.float16}),
            Plant("bfloat16", "bfloat16 weights", {"bf16": True})]
    return out


def _offered(ckpt: Any, masked: bool, layer: str | None = None) -> list[str]:
    directions = [ckpt.direction(layer)] if layer else list(ckpt.directions)
    return [m.name for m in mistakes(ckpt, directions, masked)]


def _assert_complete(space: list[Plant], offered: list[str]) -> None:
    """The words of each enumerated mistake name exactly one mistake diagnose offers, and every offered one is
    named: a candidate diagnose lacks or adds fails here."""
    assert len(offered) == len(space), (len(offered), len(space), offered)
    named = {}
    for p in space:  # words "a|b": both in the name; a mistake in one direction only is named so
        words = p.words.split("|")
        hits = [n for n in offered if all(w in n for w in words) and ("direction only" in n) == (len(words) > 1)]
        assert len(hits) == 1, (p.label, hits)
        named[hits[0]] = p.label
    assert sorted(named) == sorted(offered)


def _named_first(result: Any, words: str | list[str], exact: bool = True) -> None:
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    for w in [words] if isinstance(words, str) else words:
        assert w in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]
    if exact:
        assert result.found[0].exact, result.found[0].to_dict()
        # Named first and alone: no other candidate reproduces THEIRS too. No two single mistakes compute the same
        # outputs on these models and inputs (the runner-up is 3e-2 or more from THEIRS), so no pair is declared
        # indistinguishable; one that were would fail here.
        assert [h.name for h in result.ranked if h.exact] == [result.found[0].name], [h.to_dict() for h in
                                                                                     result.ranked[:3]]


def _case(p: Plant) -> Any:
    return pytest.param(p, id=p.label)


def _idle(space: list[Plant], port: Any) -> set[str]:
    """The cell_clip plants that change nothing on this input, `port(plant or None)` being the port's outputs: no
    |c| reaches the clip (with σ gates and tanh, |c_t| ≤ t + 1, so 8 steps never reach 10). Diagnose finds each
    equal to the model and leaves it out (`excluded`); planted, the port is Keras on this input."""
    plain = port(None)
    return {p.label for p in space if any("cell_clip" in p.kwargs(role) for role in ("forward", "backward")) and
            np.array_equal(port(p), plain)}


def _check(result: Any, plant: Plant, space: list[Plant], idle: set[str], equal: int = 0) -> None:
    """Named first (or, for a clip that never binds here, THEIRS matches); when it stopped at the singles, every
    candidate offered was run or ruled out, and only the idle clips (and `equal` others) equal the model."""
    if plant.label in idle:
        assert result.matches
        return
    _named_first(result, plant.words.split("|"), exact=plant.exact)
    if result.found[0].exact:
        assert result.tried + result.pruned == len(space)
        # a clip can leave some samples exact, so it is never ruled out by them: the idle ones always run
        assert result.excluded == equal + len(idle)


# ---------------------------------------------------------------- a Keras 3 sigmoid model (the whole model)

K3 = _space("sigmoid")


def test_keras3_sigmoid_matrix_is_complete() -> None:
    _assert_complete(K3, _offered(lstm_inspect.load(SAMPLES / "k3_return_sequences.keras"), masked=False))


def test_keras3_and_keras2_ports_are_keras() -> None:
    """The tests' port, with no mistake, gives Keras's own outputs for the samples' stored inputs: the whole
    k3_return_sequences, and tfk_stacked_hard_sigmoid's lstm_1 → lstm_2 → Dense (read with h5py)."""
    import h5py

    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        np.testing.assert_allclose(lstm_port(_w("k3_return_sequences", "lstm_1"), io["x"]), io["y"], atol=1e-5)
    with np.load(SAMPLES / "tfk_stacked_hard_sigmoid.io.npz") as io, \
            h5py.File(SAMPLES / "tfk_stacked_hard_sigmoid.h5") as f:
        h1 = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_1"), io["x"], rec="hard_sigmoid:keras2")
        h2 = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_2"), h1, rec="hard_sigmoid:keras2",
                       return_sequences=False)
        dense = f["model_weights/dense/dense"]
        np.testing.assert_allclose(h2 @ dense["kernel:0"][()] + dense["bias:0"][()], io["y"], atol=1e-5)


@pytest.mark.parametrize("plant", [_case(p) for p in K3])
def test_keras3_sigmoid_model(plant: Plant) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_return_sequences.keras")
    x = _x((3, 8, 3))

    def port(p: Plant | None) -> np.ndarray:
        return lstm_port(_w("k3_return_sequences", "lstm_1"), x, **(p.kwargs("forward") if p else {}))

    _check(diagnose(ckpt, [x], [port(plant)]), plant, K3, _idle(K3, port))


# ---------------------------------------------------------------- a Keras 2 hard_sigmoid model (one layer)

K2 = _space("hard_sigmoid:keras2")


def test_keras2_hard_sigmoid_matrix_is_complete() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    _assert_complete(K2, _offered(ckpt, masked=False, layer="lstm_1"))


@pytest.mark.parametrize("plant", [_case(p) for p in K2])
def test_keras2_hard_sigmoid_layer(plant: Plant) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    x = _x((3, 8, 3), seed=1)

    def port(p: Plant | None) -> np.ndarray:
        return lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_1"), x,
                         **{"rec": "hard_sigmoid:keras2", **(p.kwargs("forward") if p else {})})

    _check(diagnose(ckpt, [x], [port(plant)], layer="lstm_1"), plant, K2, _idle(K2, port))


def test_the_last_step_alone_is_accepted_for_a_layer() -> None:
    """What `forward --layer` writes for return_sequences=False: (batch, N_c), compared as the last step."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    x = _x((3, 8, 6), seed=2)
    theirs = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_2"), x, rec="sigmoid", return_sequences=False)
    assert theirs.ndim == 2
    _named_first(diagnose(ckpt, [x], [theirs], layer="lstm_2"), "the logistic sigmoid")
    right = lstm_port(_w("tfk_stacked_hard_sigmoid", "lstm_2"), x, rec="hard_sigmoid:keras2", return_sequences=False)
    assert diagnose(ckpt, [x], [right], layer="lstm_2").matches


# ---------------------------------------------------------------- a Bidirectional model (the whole model)

BIDIR = "k3_bidir_concat"  # Bidirectional(LSTM(5, return_sequences=True)) → Dense(2), no mask


def _bidirectional(x: np.ndarray, plant: Plant | None = None) -> np.ndarray:
    """The whole of k3_bidir_concat as a port computes it: each direction by lstm_port, the backward half
    flipped back to input order, concatenated, then Keras's Dense."""
    plant = plant or Plant("none", "")
    w = keras_refs(SAMPLES / f"{BIDIR}.ref.npz")
    kernel, bias = _dense(SAMPLES / f"{BIDIR}.keras", "dense")
    y_f = lstm_port(w["bidirectional/forward_lstm_5"], x, **plant.kwargs("forward"))
    y_b = lstm_port(w["bidirectional/backward_lstm_5"], x, **{"go_backwards": True, **plant.kwargs("backward")})
    y = np.concatenate([y_f, y_b[:, ::-1] if plant.flip else y_b], axis=-1)
    if plant.interleave:  # ONNX's Y (T, 2, B, H) reshaped to (T, B, 2H) without moving the direction axis
        steps, batch = x.shape[1], x.shape[0]
        onnx_y = np.stack([y_f, y_b[:, ::-1]]).transpose(2, 0, 1, 3)
        y = onnx_y.reshape(steps, batch, -1).transpose(1, 0, 2)
    return (y @ kernel + bias).astype(np.float32)


def _dense(path: Path, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """A Dense layer's kernel and bias, read from the .keras archive with h5py (not by lstm-inspect)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        return f[f"layers/{layer}/vars/0"][()], f[f"layers/{layer}/vars/1"][()]


BIDIRECTIONAL = _space("sigmoid", roles=("forward", "backward"))


def test_bidirectional_port_is_keras() -> None:
    with np.load(SAMPLES / f"{BIDIR}.io.npz") as io:
        x, y = io["x"], io["y"]
    np.testing.assert_allclose(_bidirectional(x), y, atol=1e-5)


def test_bidirectional_matrix_is_complete() -> None:
    _assert_complete(BIDIRECTIONAL, _offered(lstm_inspect.load(SAMPLES / f"{BIDIR}.keras"), masked=False))


@pytest.mark.parametrize("plant", [_case(p) for p in BIDIRECTIONAL])
def test_bidirectional_model(plant: Plant) -> None:
    ckpt = lstm_inspect.load(SAMPLES / f"{BIDIR}.keras")
    x = _x((3, 7, 3), seed=3)
    idle = _idle(BIDIRECTIONAL, lambda p: _bidirectional(x, p))
    _check(diagnose(ckpt, [x], [_bidirectional(x, plant)]), plant, BIDIRECTIONAL, idle)


# ---------------------------------------------------------------- a masked model (the whole model)

MASKED_SAMPLE = "k3_masking"  # Masking(0.0) → LSTM(5, return_sequences=True)


def _masked_input() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES / f"{MASKED_SAMPLE}.io.npz") as io:
        x = io["x"]
    return x, np.any(x != 0, axis=-1)


def _masked(plant: Plant | None = None) -> np.ndarray:
    """A plain LSTM under a mask: masked steps keep the states and repeat the previous output. A plant's
    mask "any": a step masked where any feature is 0 (Keras: where all are)."""
    x, mask = _masked_input()
    kwargs = {"mask": mask, "zero_output": False, **(plant.kwargs("forward") if plant else {})}
    if isinstance(kwargs["mask"], str):
        kwargs["mask"] = np.all(x != 0, axis=-1)
    return lstm_port(_w(MASKED_SAMPLE, "lstm_11"), x, **kwargs)


MASKED = _space("sigmoid", masked=True)
# On a plain LSTM the third mask variant ("the previous output repeated where zeros are expected") is what
# Keras itself computes: diagnose offers it, finds on the run that it equals the model, and leaves it out
# (`Diagnosis.excluded`). It is planted on a masked Bidirectional below, where it is a mistake.
# Masking's rule read as "any feature": the sample's steps have all their features 0 or none, so it is no mistake
# on this input either (planted in tests/test_diagnose_bidir.py on an input with one feature 0).
MASKED_EQUAL_TO_MODEL = ("previous output at masked steps", "masking any")


def test_masked_port_is_keras() -> None:
    with np.load(SAMPLES / f"{MASKED_SAMPLE}.io.npz") as io:
        y = io["y"]
    np.testing.assert_allclose(_masked(), y, atol=1e-5)
    idle = _idle(MASKED, _masked)
    assert "cell_clip 10" in idle  # 7 steps: |c| never reaches 10
    for p in MASKED:  # the planted mistake changes the port's outputs, but for the one equal to the model
        if p.label not in idle:
            assert (np.array_equal(_masked(p), _masked())) == (p.label in MASKED_EQUAL_TO_MODEL), p.label


def test_masked_matrix_is_complete() -> None:
    _assert_complete(MASKED, _offered(lstm_inspect.load(SAMPLES / f"{MASKED_SAMPLE}.keras"), masked=True))


@pytest.mark.parametrize("plant", [_case(p) for p in MASKED if p.label not in MASKED_EQUAL_TO_MODEL])
def test_masked_model(plant: Plant) -> None:
    ckpt = lstm_inspect.load(SAMPLES / f"{MASKED_SAMPLE}.keras")
    x, _ = _masked_input()
    result = diagnose(ckpt, [x], [_masked(plant)])
    # every single run, the one equal to the model counted apart and not listed; when unpadded samples are exact,
    # the mistakes that act on every sample are ruled out, not run
    _check(result, plant, MASKED, _idle(MASKED, _masked), equal=len(MASKED_EQUAL_TO_MODEL))
    assert not any("previous output repeated" in h.name for h in result.ranked)


# ---------------------------------------------------------------- a masked Bidirectional: the third mask variant

# Masking(0.0) → Bidirectional(SimpleRNN(3, return_sequences=True)), written by Keras 3 and by tf_keras. No sample
# has a masked Bidirectional LSTM whose masked steps reach the model's outputs (k3_masked_merge's and
# k3_att_bilstm_text's are read only at unmasked steps further on), so the third mask variant, a sequence-level
# mistake, is planted on these.
BIDIR_MASKED = {"k3_bidir_simple_rnn.keras": "bidirectional_4", "tfk_bidir_simple_rnn.h5": "bidirectional_5"}


def _bidirectional_masked(sample: str, zero_output: bool = True, ignore_mask: bool = False) -> np.ndarray:
    """Inside a Bidirectional that returns sequences Keras forces zero_output_for_mask: masked steps output 0."""
    stem = sample.split(".")[0]
    with np.load(SAMPLES / f"{stem}.io.npz") as io:
        x = io["x"]
    mask = None if ignore_mask else np.any(x != 0, axis=-1)
    w = keras_refs(SAMPLES / f"{stem}.ref.npz")
    halves = []
    for half, back in (("forward", False), ("backward", True)):
        d = w[f"{BIDIR_MASKED[sample]}/{half}_simple_rnn_2"]
        halves.append(ref.simple_rnn(x, d["kernel"], d["recurrent_kernel"], d["bias"], mask=mask, go_backwards=back,
                                     zero_output_for_mask=zero_output)[0])
    return np.concatenate([halves[0], halves[1][:, ::-1]], axis=-1).astype(np.float32)


@pytest.mark.parametrize("sample", sorted(BIDIR_MASKED))
def test_bidirectional_masked_port_is_keras(sample: str) -> None:
    with np.load(SAMPLES / f"{sample.split('.')[0]}.io.npz") as io:
        x, y = io["x"], io["y"]
    np.testing.assert_allclose(_bidirectional_masked(sample), y, atol=1e-5)
    masked = ~np.any(x != 0, axis=-1)
    assert masked.any() and np.all(y[masked] == 0)  # Keras's own zeros at masked steps


@pytest.mark.parametrize("sample", sorted(BIDIR_MASKED))
@pytest.mark.parametrize("kwargs,words", [({"zero_output": False}, "previous output repeated at masked steps"),
                                          ({"ignore_mask": True}, "masked steps not skipped")],
                         ids=["previous output at masked steps", "mask ignored"])
def test_bidirectional_masked_model(sample: str, kwargs: dict[str, Any], words: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / sample)
    with np.load(SAMPLES / f"{sample.split('.')[0]}.io.npz") as io:
        x = io["x"]
    result = diagnose(ckpt, [x], [_bidirectional_masked(sample, **kwargs)])
    _named_first(result, words)
    # Here "zeros output at masked steps" is what Keras computes: counted as equal to the model, not listed; so is
    # Masking read as "any feature" (no step of these inputs has some features 0 and others not).
    assert result.excluded == 2 and not any("zeros output at masked steps" in h.name for h in result.ranked)
    assert result.tried + result.pruned == len(_offered(ckpt, masked=True))


# ---------------------------------------------------------------- candidates equal to the model


def test_candidates_equal_to_the_model_on_this_input_are_counted_not_listed(tmp_path: Path) -> None:
    """Diagnose offers the six mask variants on a masked model; a variant that computes what the model itself
    computes on the input run is left out of the ranking and counted in `excluded` /
    `candidates_equal_to_the_model`: two on a plain LSTM with masked steps (the previous output repeated, and
    Masking read as "any feature" where no step has some features 0), all six on an input with none."""
    ckpt = lstm_inspect.load(SAMPLES / f"{MASKED_SAMPLE}.keras")
    x, _ = _masked_input()
    plant = next(p for p in MASKED if p.label == "recurrent hard_sigmoid:keras2")
    theirs = _masked(plant)
    result = diagnose(ckpt, [x], [theirs])
    idle = len(_idle(MASKED, _masked))  # and the cell clips that never bind on this input
    assert result.excluded == 2 + idle and result.tried == len(MASKED)
    assert len(result.ranked) == len(MASKED) - 2 - idle
    assert not any("previous output repeated" in h.name for h in result.ranked)
    assert sum("mask" in h.name for h in result.ranked) == 4  # the other four variants are there

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", theirs)
    path = SAMPLES / f"{MASKED_SAMPLE}.keras"
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"),
                "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["candidates_equal_to_the_model"] == 2 + idle and doc["candidates_tried"] == len(MASKED)
    assert "Keras 2's" in doc["diagnosed"][0]["mistake"]
    assert not any("previous output repeated" in h["mistake"] for h in doc["ranked"])

    # No step masked in this input: every mask variant computes what the model does, and none is listed.
    full = _x(x.shape, seed=8)
    assert np.all(full != 0)
    theirs = lstm_port(_w(MASKED_SAMPLE, "lstm_11"), full, rec="hard_sigmoid:keras2")
    result = diagnose(ckpt, [full], [theirs])
    _named_first(result, "Keras 2's")
    idle = len(_idle(MASKED, lambda p: lstm_port(_w(MASKED_SAMPLE, "lstm_11"), full, **{
        "rec": "hard_sigmoid:keras2", **(p.kwargs("forward") if p else {})})))
    assert result.excluded == 6 + idle and result.tried == len(MASKED)
    assert not any("mask" in h.name for h in result.ranked)
    np.save(tmp_path / "full.npy", full)
    np.save(tmp_path / "theirs.npy", theirs)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "full.npy"), "--against", str(tmp_path / "theirs.npy"),
                "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["candidates_equal_to_the_model"] == 6 + idle


def test_no_candidate_equal_to_the_model_without_a_mask(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    x = _x((3, 8, 3), seed=9)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", lstm_port(_w("k3_return_sequences", "lstm_1"), x, bias=False))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"),
                "--json")
    doc = json.loads(r.stdout)
    # none but the cell clips no |c| reaches on this input (8 steps never reach 10)
    idle = _idle(K3, lambda p: lstm_port(_w("k3_return_sequences", "lstm_1"), x, **(p.kwargs("forward") if p else {})))
    assert "cell_clip 10" in idle
    assert r.returncode == 1 and doc["candidates_equal_to_the_model"] == len(idle)
    assert doc["candidates_tried"] == len(K3)


# A layer whose own settings make some cell mistakes no mistake at all: k3_mask_paths' "affine" LSTM has
# activation="linear" and Keras 3's hard_sigmoid. "linear left off c" and "no activation on the cell candidate"
# compute what it computes, as does "hard_sigmoid as Keras 3's": the cell marks them `same_as_model` and
# diagnose never offers them.
AFFINE = _space("hard_sigmoid:keras3", act="linear", sequences=False)


def _affine_input() -> np.ndarray:
    return _x((4, 8, 5), seed=10)


def _affine(plant: Plant | None = None) -> np.ndarray:
    kwargs = {"rec": "hard_sigmoid:keras3", "act": "linear", **(plant.kwargs("forward") if plant else {})}
    return lstm_port(_w("k3_mask_paths", "affine"), _affine_input(), **kwargs)


def test_affine_port_is_keras() -> None:
    """The port of the affine layer, fed Keras's own embedding of the sample's ids under their mask, gives
    Keras's output for that layer (the model's sixth output, its last step)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(SAMPLES / "k3_mask_paths.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        table = f["layers/embedding/vars/0"][()]
    with np.load(SAMPLES / "k3_mask_paths.io.npz") as data:
        ids, y = data["x"], data["y5"]
    assert np.any(ids == 0)
    mine = lstm_port(_w("k3_mask_paths", "affine"), table[ids], rec="hard_sigmoid:keras3", act="linear",
                     mask=ids != 0, return_sequences=False)
    np.testing.assert_allclose(mine, y, atol=1e-5)


def test_cell_mistakes_the_model_itself_makes_are_not_offered() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_mask_paths.keras")
    d = ckpt.direction("affine")
    marked = [m.name for m in cell_mistakes(d.cell, d.settings, d.storage, d.input_dim, d.units, d.hard_sigmoid)
              if m.same_as_model]
    same = [Plant("linear off c", "left off c", {"cell_act": "linear"}),
            Plant("linear candidate", "no activation on the cell candidate", {"act": "linear", "cell_act": "linear"}),
            Plant("recurrent hard_sigmoid:keras3", "Keras 3's", {"rec": "hard_sigmoid:keras3"})]
    assert len(marked) == len(same)
    for p in same:
        assert np.array_equal(_affine(p), _affine()), p.label  # the port computes the same: no mistake here
        assert sum(p.words in n for n in marked) == 1, (p.words, marked)
    offered = _offered(ckpt, masked=False, layer="affine")
    _assert_complete(AFFINE, offered)
    assert not any(p.words in n for p in same for n in offered)


@pytest.mark.parametrize("plant", [_case(p) for p in AFFINE])
def test_linear_hard_sigmoid_layer(plant: Plant) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_mask_paths.keras")
    result = diagnose(ckpt, [_affine_input()], [_affine(plant)], layer="affine")
    _check(result, plant, AFFINE, _idle(AFFINE, _affine))


# ---------------------------------------------------------------- states handed over, CuDNN biases


def test_decoder_started_from_zeros() -> None:
    """tfk_seq2seq: the decoder LSTM starts from the encoder's h and c; a port that starts from zeros."""
    ckpt = lstm_inspect.load(SAMPLES / "tfk_seq2seq.h5")
    w = keras_refs(SAMPLES / "tfk_seq2seq.ref.npz")
    dense = ckpt.read_layer("next")
    with np.load(SAMPLES / "tfk_seq2seq.io.npz") as io:
        x0, x1 = io["x0"], io["x1"]
    y = lstm_port(w["decoder"], x1)  # from zeros: the mistake
    logits = y @ dense[0] + dense[1]
    theirs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    _named_first(diagnose(ckpt, [x0, x1], [theirs]), "started from zeros")


@pytest.mark.parametrize("times,words", [(0, "recurrent bias dropped"), (2, "recurrent bias added twice")])
def test_cudnn_bias_halves(times: int, words: str) -> None:
    import h5py

    ckpt = lstm_inspect.load(SAMPLES / "tfk_cudnn.h5")
    w = dict(_w("tfk_cudnn", "cu_dnnlstm"))  # Keras's converted LSTM weights
    with h5py.File(SAMPLES / "tfk_cudnn.h5") as f:
        key = next(k for k in ckpt.directions[0].arrays if k.shape == (40,)).key
        raw = f[key][()]
    w["bias"] = raw[:20] + times * raw[20:]
    dense = ckpt.read_layer(next(m.name for m in ckpt.layers if m.class_name == "Dense"))
    x = _x((2, 6, 3), seed=4)
    theirs = (lstm_port(w, x) @ dense[0] + dense[1]).astype(np.float32)
    _named_first(diagnose(ckpt, [x], [theirs]), words)


# ---------------------------------------------------------------- pairs of mistakes

PAIRS = [
    ("ONNX order + Keras 2 hard_sigmoid", {"order": ONNX, "rec": "hard_sigmoid:keras2"},
     ["ONNX's gate order", "Keras 2's"]),
    ("bias dropped + time reversed", {"bias": False, "reverse": True}, ["the bias left out", "reversed in time"]),
    ("recurrent transposed + Keras 3 hard_sigmoid", {"transpose_recurrent": True, "rec": "hard_sigmoid:keras3"},
     ["recurrent block transposed", "Keras 3's"]),
    ("c and o swapped + tanh off c", {"order": (0, 1, 3, 2), "cell_act": "linear"},
     ["c and o swapped", "left off c"]),
]


@pytest.mark.parametrize("label,kwargs,words", PAIRS, ids=[c[0] for c in PAIRS])
def test_pairs_of_mistakes(label: str, kwargs: dict[str, Any], words: list[str]) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_return_sequences.keras")
    x = _x((3, 8, 3), seed=5)
    theirs = lstm_port(_w("k3_return_sequences", "lstm_1"), x, **kwargs)
    result = diagnose(ckpt, [x], [theirs])
    _named_first(result, words)
    assert result.found[0].exact


def _pair(a: str, b: str, space: list[Plant]) -> Plant:
    """Two single mistakes of a model's space planted together."""
    pa, pb = (next(p for p in space if p.label == label) for label in (a, b))
    only = dict(pa.only)
    for role, kw in pb.only:
        only[role] = tuple({**dict(only.get(role, ())), **dict(kw)}.items())
    return Plant(f"{a} + {b}", "", {**pa.every, **pb.every}, tuple(only.items()), pa.flip and pb.flip)


MODEL_PAIRS = [
    ("bidirectional", "backward not flipped", "recurrent hard_sigmoid:keras2"),
    ("bidirectional", "go_backwards ignored", "order (0, 2, 3, 1)"),
    ("bidirectional", "forward reversed", "bias dropped"),
    ("masked", "mask ignored", "bias dropped"),
    ("masked", "zeros at masked steps", "recurrent hard_sigmoid:keras3"),
    ("masked", "forward reversed", "sigmoid candidate"),
]


@pytest.mark.parametrize("model,a,b", MODEL_PAIRS, ids=[f"{m}: {a} + {b}" for m, a, b in MODEL_PAIRS])
def test_pairs_on_the_bidirectional_and_masked_models(model: str, a: str, b: str) -> None:
    space = BIDIRECTIONAL if model == "bidirectional" else MASKED
    plant = _pair(a, b, space)
    words = [next(p.words for p in space if p.label == label) for label in (a, b)]
    if model == "bidirectional":
        ckpt = lstm_inspect.load(SAMPLES / f"{BIDIR}.keras")
        x = _x((3, 7, 3), seed=3)
        theirs = _bidirectional(x, plant)
    else:
        ckpt = lstm_inspect.load(SAMPLES / f"{MASKED_SAMPLE}.keras")
        x, _ = _masked_input()
        theirs = _masked(plant)
    result = diagnose(ckpt, [x], [theirs])
    _named_first(result, words)


# ---------------------------------------------------------------- square layers of a real file


SQUARE_FILE = REALWORLD / "stock_stacked3_keras210.h5"  # lstm_1: LSTM(50) fed by LSTM(50), tanh/sigmoid
SQUARE = _space("sigmoid", square=True)


def _square_weights(layer: str = "lstm_1", cell: str = "lstm_cell_1") -> dict[str, np.ndarray]:
    """The real file's arrays of one LSTM, read with h5py (not lstm-inspect)."""
    import h5py

    if not SQUARE_FILE.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    with h5py.File(SQUARE_FILE) as f:
        group = f[f"model_weights/{layer}/{layer}/{cell}"]
        return {role: group[f"{role}:0"][()] for role in ("kernel", "recurrent_kernel", "bias")}


def test_square_port_is_keras() -> None:
    """The port of the whole real model (LSTM → LSTM → LSTM → Dense) gives what Keras returned (its .io.npz)."""
    import h5py

    _square_weights()  # skips without the real files
    with np.load(f"{SQUARE_FILE}.io.npz") as io:
        x, y = io["x"], io["y"]
    h = x
    for layer, cell, sequences in (("lstm", "lstm_cell", True), ("lstm_1", "lstm_cell_1", True),
                                   ("lstm_2", "lstm_cell_2", False)):
        h = lstm_port(_square_weights(layer, cell), h, return_sequences=sequences)
    with h5py.File(SQUARE_FILE) as f:
        dense = f["model_weights/dense/dense"]
        np.testing.assert_allclose(h @ dense["kernel:0"][()] + dense["bias:0"][()], y, atol=1e-5)


def test_square_layer_matrix_is_complete() -> None:
    """N_i = N_c: the kernel's blocks can be transposed and the two kernels swapped, two more mistakes."""
    _square_weights()
    _assert_complete(SQUARE, _offered(lstm_inspect.load(SQUARE_FILE), masked=False, layer="lstm_1"))


@pytest.mark.parametrize("plant", [_case(p) for p in SQUARE])
def test_square_layer_of_a_real_file(plant: Plant) -> None:
    w = _square_weights()
    x = _x((2, 6, 50), seed=6)

    def port(p: Plant | None) -> np.ndarray:
        return lstm_port(w, x, **(p.kwargs("forward") if p else {}))

    result = diagnose(lstm_inspect.load(SQUARE_FILE), [x], [port(plant)], layer="lstm_1")
    _check(result, plant, SQUARE, _idle(SQUARE, port))


# ---------------------------------------------------------------- the command


def test_cli_exit_codes_and_divergence(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        x, y = io["x"], io["y"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "right.npy", y)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "right.npy"))
    assert r.returncode == 0 and "match" in r.stdout
    odd = y.copy()
    odd[:, 4:] += np.linspace(0, 0.05, odd.shape[1] - 4)[None, :, None]  # a drift no known mistake makes
    np.save(tmp_path / "odd.npy", odd)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "odd.npy"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["diagnosed"] == [] and "step 5" in doc["divergence"]
    assert "recurrence" in doc["divergence"]
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "shape" in r.stderr


def test_cli_names_a_planted_mistake(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    x = _x((3, 8, 3), seed=7)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", lstm_port(_w("k3_return_sequences", "lstm_1"), x, rec="hard_sigmoid:keras2"))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "theirs.npy"))
    assert r.returncode == 1, r.stderr
    assert "1. recurrent activation: hard_sigmoid as clip(0.2·x + 0.5, 0, 1), Keras 2's" in r.stdout
    assert "exactly" in r.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_tolerances_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
        np.save(tmp_path / "y.npy", io["y"] + 100)
    for option in ("--atol", "--rtol"):
        r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "y.npy"),
                    option, value)
        assert r.returncode == 2 and option in r.stderr and "match" not in r.stdout



