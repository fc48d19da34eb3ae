"""Why a port does not match Keras: re-run the engine under each common porting mistake.

The engine reproduces Keras (see `verify`), so THEIRS is compared with the engine's outputs;
then the engine runs again with one mistake at a time (a wrong gate order, the other
hard_sigmoid, a dropped bias, transposed blocks, time reversed, masks mishandled, tanh left off c,
reduced precision), and the mistakes are ranked by how close they bring it to THEIRS.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lstm_inspect.errors import InspectError
from lstm_inspect.gates import GATES, LSTMWeights
from lstm_inspect.model import Checkpoint, LSTMDirection
from lstm_inspect.network import Network, Variant, run_direction
from lstm_inspect.verify import Comparison, compare

KNOWN_ORDERS = {("i", "o", "f", "c"): "ONNX's gate order i, o, f, c",
                ("i", "f", "o", "c"): "c and o swapped (MIOpen's order i, f, o, c)",
                ("i", "c", "f", "o"): "Keras 1's stored order i, c, f, o",
                ("i", "j", "f", "o"): "TF1's order i, j, f, o"}


@dataclass(frozen=True)
class Mistake:
    name: str
    fix: str
    variant: Variant
    applies: Callable[[Checkpoint], bool] = lambda ckpt: True


def _reorder(order: tuple[str, ...]) -> Callable[[LSTMDirection, LSTMWeights], LSTMWeights]:
    """The port reads Keras's fused blocks as if they were in `order` (block k taken as gate order[k])."""
    def apply(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
        u = w.units
        perm = [GATES.index(g) for g in order]  # which Keras block the port uses as gate i, f, c, o

        def move(a: np.ndarray) -> np.ndarray:
            blocks = [a[..., k * u:(k + 1) * u] for k in range(4)]
            return np.concatenate([blocks[perm.index(GATES.index(g))] for g in GATES], axis=-1)

        return LSTMWeights(move(w.kernel), move(w.recurrent_kernel), None if w.bias is None else move(w.bias))
    return apply


def _per_gate(fn: Callable[[np.ndarray], np.ndarray], which: str) -> Callable[[LSTMDirection, LSTMWeights], LSTMWeights]:
    def apply(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
        u = w.units
        k, r = w.kernel, w.recurrent_kernel
        if which == "kernel":
            k = np.concatenate([fn(k[:, g * u:(g + 1) * u]) for g in range(4)], axis=1)
        else:
            r = np.concatenate([fn(r[:, g * u:(g + 1) * u]) for g in range(4)], axis=1)
        return LSTMWeights(k, r, w.bias)
    return apply


def _swap_blocks(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
    return LSTMWeights(w.recurrent_kernel, w.kernel, w.bias)


def _cudnn_bias(times: int) -> Callable[[LSTMDirection, LSTMWeights], LSTMWeights]:
    """CuDNNLSTM's input bias plus `times` × its recurrent bias (Keras adds each once)."""
    def apply(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
        if d.storage != "cudnn":
            return w
        raw = d.source.read([d.arrays[2].key])[0]
        n = 4 * w.units
        return LSTMWeights(w.kernel, w.recurrent_kernel, raw[:n] + times * raw[n:])
    return apply


def _no_bias(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
    return LSTMWeights(w.kernel, w.recurrent_kernel, None)


def _bfloat16(d: LSTMDirection, w: LSTMWeights) -> LSTMWeights:
    def round_bf16(a: np.ndarray) -> np.ndarray:
        bits = np.asarray(a, np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)
    return LSTMWeights(round_bf16(w.kernel), round_bf16(w.recurrent_kernel),
                       None if w.bias is None else round_bf16(w.bias))


def _uses(ckpt: Checkpoint, pred: Callable[[LSTMDirection], bool]) -> bool:
    return any(pred(d) for d in ckpt.layers)


def mistakes(ckpt: Checkpoint) -> list[Mistake]:
    out: list[Mistake] = []
    for order in itertools.permutations(GATES):
        if order == GATES:
            continue
        label = KNOWN_ORDERS.get(order, f"gate order {', '.join(order)}")
        out.append(Mistake(f"wrong gate order: {label}", "Keras stores the gates as i, f, c, o: slice kernel, "
                           "recurrent_kernel and bias in that order", Variant(weights=_reorder(order))))
    hs = _uses(ckpt, lambda d: d.settings.recurrent_activation == "hard_sigmoid")
    other = "keras3" if ckpt.layers and ckpt.layers[0].hard_sigmoid == "keras2" else "keras2"
    defs = {"keras2": "0.2·x + 0.5 (Keras 2)", "keras3": "x/6 + 0.5 (Keras 3)"}
    mine = "keras2" if other == "keras3" else "keras3"
    out += [
        Mistake(f"hard_sigmoid as clip({defs[other]}) instead of clip({defs[mine]})",
                f"this file's Keras defines hard_sigmoid as clip({defs[mine]}, 0, 1)",
                Variant(recurrent_activation=f"hard_sigmoid:{other}"), lambda c: hs),
        Mistake("sigmoid where the model uses hard_sigmoid", f"use hard_sigmoid = clip({defs[mine]}, 0, 1)",
                Variant(recurrent_activation="sigmoid"), lambda c: hs),
        Mistake("hard_sigmoid where the model uses sigmoid", "use the logistic sigmoid 1 / (1 + e^-x)",
                Variant(recurrent_activation=f"hard_sigmoid:{mine}"), lambda c: not hs),
        Mistake("the bias left out", "add bias (the fused 4·N_c vector, i, f, c, o) to every gate",
                Variant(weights=_no_bias), lambda c: _uses(c, lambda d: d.settings.use_bias)),
        Mistake("CuDNNLSTM's recurrent bias dropped", "the bias is the input half plus the recurrent half "
                "(bias[:4N_c] + bias[4N_c:])", Variant(weights=_cudnn_bias(0)),
                lambda c: _uses(c, lambda d: d.storage == "cudnn")),
        Mistake("CuDNNLSTM's recurrent bias added twice", "add the recurrent half once",
                Variant(weights=_cudnn_bias(2)), lambda c: _uses(c, lambda d: d.storage == "cudnn")),
        Mistake("the recurrent kernel transposed (each gate's N_c × N_c block)", "h_{t-1} multiplies "
                "recurrent_kernel from the left: z = h · U, not U · h", Variant(weights=_per_gate(np.transpose, "recurrent"))),
        Mistake("the kernel transposed (each gate's block, N_i = N_c)", "x multiplies kernel from the left: "
                "z = x · W", Variant(weights=_per_gate(np.transpose, "kernel")),
                lambda c: _uses(c, lambda d: d.input_dim == d.units)),
        Mistake("input and recurrent kernels swapped (N_i = N_c)", "kernel acts on x, recurrent_kernel on h",
                Variant(weights=_swap_blocks), lambda c: _uses(c, lambda d: d.input_dim == d.units)),
        Mistake("go_backwards ignored: the backward direction ran forward in time", "reverse the input in time "
                "for a go_backwards direction", Variant(ignore_go_backwards=True),
                lambda c: _uses(c, lambda d: d.settings.go_backwards)),
        Mistake("the backward output not flipped back to input order", "Bidirectional flips the backward "
                "sequence back before merging", Variant(backward_output_not_flipped=True),
                lambda c: _uses(c, lambda d: d.wrapper is not None and d.settings.return_sequences)),
        Mistake("masked steps not skipped (the mask ignored)", "at a masked step keep h and c and output the "
                "previous output (or 0 in a Bidirectional)", Variant(ignore_mask=True)),
        Mistake("zeros output at masked steps instead of the previous output", "a plain LSTM repeats its last "
                "unmasked output at masked steps", Variant(zero_output_for_mask=True)),
        Mistake("the previous output not repeated at masked steps (zeros expected)", "inside Bidirectional, "
                "masked steps output 0", Variant(zero_output_for_mask=False)),
        Mistake("tanh left off c in h = o · tanh(c)", "h = o ⊙ tanh(c)", Variant(cell_activation="linear")),
        Mistake("sigmoid on the cell candidate instead of tanh", "c̃ = tanh(z_c)",
                Variant(activation="sigmoid", cell_activation="tanh")),
        Mistake("no activation on the cell candidate", "c̃ = tanh(z_c)",
                Variant(activation="linear", cell_activation="tanh")),
        Mistake("float16 arithmetic", "compute in float32 (Keras's precision)", Variant(dtype=np.float16)),
        Mistake("bfloat16 weights", "keep the weights in float32", Variant(weights=_bfloat16)),
    ]
    return [m for m in out if m.applies(ckpt)]


@dataclass
class Hypothesis:
    name: str
    fix: str
    max_abs: float
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        return {"mistake": self.name, "fix": self.fix, "max_abs_error_vs_theirs": self.max_abs, "fits": self.fits}


@dataclass
class Diagnosis:
    file: str
    matches: bool
    baseline: list[Comparison]  # THEIRS against the engine (= Keras)
    ranked: list[Hypothesis] = field(default_factory=list)
    divergence: str = ""

    @property
    def found(self) -> list[Hypothesis]:
        return [h for h in self.ranked if h.fits]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "matches": self.matches, "against_engine": [c.to_dict() for c in self.baseline],
                "diagnosed": [h.to_dict() for h in self.found], "ranked": [h.to_dict() for h in self.ranked[:8]],
                "divergence": self.divergence or None}


def diagnose(ckpt: Checkpoint, xs: list[np.ndarray], theirs: list[np.ndarray], layer: str | None = None,
             atol: float = 1e-5, rtol: float = 1e-4) -> Diagnosis:
    """THEIRS (outputs of a port for xs) against the engine; when they differ, rank the mistakes."""
    if layer is not None:
        d = ckpt.layer(layer)
        d.check_input(np.asarray(xs[0]))

        def run(v: Variant | None) -> list[np.ndarray]:
            return [run_direction(d, xs[0], variant=v).outputs]
    else:
        xs = Network(ckpt).check_inputs(xs)

        def run(v: Variant | None) -> list[np.ndarray]:
            return Network(ckpt, variant=v, cache_weights=True).run(xs)

    ours = run(None)
    if len(theirs) != len(ours) or any(np.shape(t) != np.shape(o) for t, o in zip(theirs, ours)):
        raise InspectError(f"THEIRS holds outputs of shapes {[np.shape(t) for t in theirs]} but the model gives "
                           f"{[o.shape for o in ours]} for this input")
    baseline = [compare(f"output_{k}", t, o, atol, rtol) for k, (t, o) in enumerate(zip(theirs, ours))]
    result = Diagnosis(str(ckpt.file), all(c.ok for c in baseline), baseline)
    if result.matches:
        return result
    tolerance = [atol + rtol * np.abs(t).max() for t in theirs]
    for m in mistakes(ckpt):
        try:
            with np.errstate(all="ignore"):
                outs = run(m.variant)
        except InspectError:
            continue
        errs = [float(np.nanmax(np.abs(np.asarray(o, np.float64) - t))) if o.shape == np.shape(t) else np.inf
                for o, t in zip(outs, theirs)]
        err = max(errs) if all(np.isfinite(errs)) else float("inf")
        precision = m.variant.dtype is not None or m.name.startswith("bfloat16")
        # a precision mistake never reproduces THEIRS bit for bit: it fits when it explains most of the gap
        fits = all(e <= tol for e, tol in zip(errs, tolerance)) or (
            precision and err < 0.2 * max(c.max_abs for c in baseline))
        result.ranked.append(Hypothesis(m.name, m.fix, err, fits))
    result.ranked.sort(key=lambda h: (not h.fits, h.max_abs))
    worst = next(c for c in baseline if not c.ok)
    if worst.per_step:
        grows = worst.per_step[0] <= atol
        where = ", ".join(f"{k} {v}" for k, v in (worst.first_bad or {}).items())
        result.divergence = (f"{worst.name} first diverges at {where}; " + (
            "the error starts after step 0 and grows over time: a recurrence problem (recurrent_kernel, the "
            "state carried, masking)" if grows else
            "the error is there from step 0: an input-projection problem (kernel, bias, gate order, activations)"))
    else:
        result.divergence = f"{worst.name} differs by up to {worst.max_abs:.3g}"
    return result
