"""Per-gate evidence for `diagnose` when no known mistake reproduces THEIRS and THEIRS holds one layer's output.

Two questions the error of a layer's output can answer with a few more engine runs (research for issue 24,
"Signatures that prune the search", point 5):

- **Does one gate's bias explain it?** For each gate of the cell (LSTM i, f, c, o; GRU z, r, h; SimpleRNN its
  one pre-activation), the constant δ added to that gate's pre-activation in every unit (through the bias block: a
  weight change, the cell untouched; a layer without bias gets a zero bias first) that brings the layer's output
  closest to THEIRS: a coarse grid over [−4, 4], a golden-section search around its best point, then Gauss-Newton
  steps on the signed residual, which land on δ exactly when THEIRS is such an offset (RUNS_PER_GATE runs per
  gate). TensorFlow 1's `forget_bias=1.0`, which `tf.nn.rnn_cell.LSTMCell` adds at run time (tensorflow#5090,
  keras#10179, coremltools#309), applied to a Keras LSTM whose bias already holds it, is δ = +1 on f exactly; an
  offset that only cuts the error (10x or more) points at that gate's pre-activation.
- **Is the step right and the loop wrong?** For a GRU or a SimpleRNN, h is the whole state: the correct step run
  from THEIRS's own h_{t−1} (every step of every sample at once, as one batch) reproduces THEIRS's h_t when the
  port's step equations are right, whatever its loop does with states, order or masks (states carried across rows
  or calls, rows or steps in another order, a mask ignored). Step 0 starts from zeros: if only it differs, the
  state each row starts from is wrong. (An output emitted one step late reads as a step mistake here; it is a
  candidate of the search.)

Runs are charged as the search's are (`budget.Limits.runs`); the caller says how many are left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import DirectionVariant, Variant, run_direction
from lstm_inspect.model.cells.base import CellWeights
from lstm_inspect.model.checkpoint import RecurrentDirection

# The offsets tried on each gate's pre-activation: [−SPAN, SPAN], a grid of unit steps (δ = 0 is the model itself),
# GOLDEN golden-section steps around the grid's best point, then NEWTON Gauss-Newton steps (two runs each).
SPAN, GOLDEN, NEWTON = 4, 4, 3
RUNS_PER_GATE = 2 * SPAN + (GOLDEN + 2) + 2 * NEWTON  # 20
_PHI = (math.sqrt(5) - 1) / 2

Run = Callable[[Variant | None], list[np.ndarray]]


@dataclass(frozen=True)
class GateFit:
    """The best constant offset δ on one gate's pre-activation and the largest error it leaves to THEIRS."""

    gate: str
    delta: float
    max_abs: float

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "offset": self.delta, "max_abs_error_vs_theirs": self.max_abs}


@dataclass(frozen=True)
class StepCheck:
    """The correct step run from THEIRS's own h_{t−1}, against THEIRS's h_t (GRU, SimpleRNN): `verdict` "loop"
    (every step reproduced), "start" (all but step 0) or "step" (the step differs); `max_abs` its largest error."""

    direction: str
    verdict: str
    max_abs: float

    def line(self, several: bool) -> str:
        where = f"{self.direction}: " if several else ""
        if self.verdict == "loop":
            return (f"{where}the step equations are right: each step run from THEIRS's own h_{{t−1}} reproduces its "
                    "h_t; the mistake is in the loop (states, order, masks)")
        if self.verdict == "start":
            return (f"{where}the step equations are right: each step from step 1 on, run from THEIRS's own h_{{t−1}}, "
                    "reproduces its h_t; step 0 (from zero states) differs: the state each row starts from (carried "
                    "across rows or calls, or initial states)")
        return (f"{where}the step itself differs: run from THEIRS's own h_{{t−1}}, the correct step does not give its "
                f"h_t (max |Δ| {self.max_abs:.1e})")

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "verdict": self.verdict, "max_abs_error_vs_theirs": self.max_abs}


@dataclass(repr=False)
class GateEvidence:
    """What the per-gate runs showed: the best gate's offset (`best`) against the error without it (`gap`),
    whether it reproduces THEIRS (`reproduces`) or cuts the error `close` times or more (`explains`); every
    gate's best (`fits`); the teacher-forced step checks (`steps`); `note` when the budget left no room."""

    gate_names: dict[str, str]  # the cell's: "f" -> "forget"
    forget_gate: str | None  # the cell's forget gate (LSTM f), where TF1's forget_bias acts
    directions: tuple[str, ...]
    gap: float
    close: float
    fits: list[GateFit] = field(default_factory=list)
    reproduces: bool = False
    steps: list[StepCheck] = field(default_factory=list)
    runs: int = 0
    note: str = ""
    both: bool = False  # a Bidirectional's two directions, fitted with one offset
    seconds: float = 0.0  # the wall time of the runs (benchmarks/diagnose_time.py)

    @property
    def best(self) -> GateFit | None:
        return min(self.fits, key=lambda f: f.max_abs, default=None)

    @property
    def explains(self) -> bool:
        best = self.best
        return best is not None and best.delta != 0 and math.isfinite(best.max_abs) and \
            best.max_abs * self.close <= self.gap

    def _gate(self, g: str) -> str:
        """"forget gate's"; a cell of one gate (SimpleRNN) has only "the" pre-activation."""
        return f"{self.gate_names.get(g, g)} gate's " if len(self.gate_names) > 1 else ""

    def lines(self) -> list[str]:
        """One line for the gates, one per direction for the step check: what the CLI prints under the evidence."""
        return [text for _, text in self.labelled()]

    def labelled(self) -> list[tuple[str, str]]:
        """The lines with what each is about: ("per gate", ...), ("step check", ...)."""
        return [("per gate", self.note)] if self.note else [("per gate", self._gate_line())] + \
            [("step check", s.line(len(self.steps) > 1)) for s in self.steps]

    def _gate_line(self) -> str:
        best = self.best
        where = " in both directions" if self.both else f" in {self.directions[0]}" if self.directions and \
            "/" in self.directions[0] else ""
        if best is not None and self.explains:
            verb = "reproduces THEIRS" if self.reproduces else f"explains most of it ({self.close:g}x or more)"
            tf1 = (": the port adds a constant to that pre-activation (a convention like TF1's forget_bias, or a "
                   "bias shifted)"
                   if self.reproduces else ": most of the error is in that gate's pre-activation (its bias or weights)")
            if best.gate == self.forget_gate and abs(abs(best.delta) - 1) < 5e-3:
                tf1 = (": TensorFlow 1's forget_bias=1.0 added to a Keras LSTM (whose bias already holds it)"
                       if best.delta > 0 else ": TensorFlow 1's forget_bias=1.0 the wrong way (subtracted from a "
                       "bias that holds it, or left out where the port's bias lacks it)")
            return (f"a constant {best.delta:+.2f} on the {self._gate(best.gate)}pre-activation{where} {verb} "
                    f"(max |Δ| {self.gap:.1e} → {best.max_abs:.1e}){tf1}")
        if best is not None and best.delta != 0:
            return (f"no single gate's constant offset explains it (best: {best.gate} {best.delta:+.2f}, max |Δ| "
                    f"{self.gap:.1e} → {best.max_abs:.1e})")
        if best is not None:
            return "no single gate's constant offset explains it (none brings THEIRS closer)"
        return "no gate was fitted"

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"directions": list(self.directions), "max_abs_error_without": self.gap,
                "best": best.to_dict() if best else None, "explains": self.explains, "reproduces": self.reproduces,
                "per_gate": [f.to_dict() for f in self.fits], "step_check": [s.to_dict() for s in self.steps],
                "runs": self.runs, "note": self.note or None, "lines": self.lines()}


def runs_needed(directions: list[RecurrentDirection], sequences: bool) -> int:
    """The engine runs `gate_evidence` makes for these directions."""
    d0 = directions[0]
    teacher = len(directions) if sequences and len(d0.cell.states) == 1 else 0
    return len(d0.cell.gates) * RUNS_PER_GATE + teacher


def _offset(index: int, n_gates: int, delta: float) -> Callable[[RecurrentDirection, CellWeights], CellWeights]:
    """δ added to gate `index`'s input bias block (its pre-activation in every unit); a zero bias if none."""
    def fn(d: RecurrentDirection, w: CellWeights) -> CellWeights:
        u = w.units
        bias = np.zeros(n_gates * u, w.kernel.dtype) if w.bias is None else np.array(w.bias, copy=True)
        row = bias[0] if bias.ndim == 2 else bias
        row[index * u:(index + 1) * u] += delta
        return CellWeights(kernel=w.kernel, recurrent_kernel=w.recurrent_kernel, bias=bias)

    return fn


class _Fit:
    """The offsets of one gate tried so far. They are compared by the root-mean-square of their residual to THEIRS,
    which changes smoothly with δ where the largest error does not (a saturated output that flips sign keeps max |Δ|
    at 2 for every δ but the right one); the best one's largest error (`best_err`) is what is reported."""

    def __init__(self, run: Run, theirs: list[np.ndarray], variant: Callable[[float], Variant], gap: float) -> None:
        self.run, self.theirs, self.variant = run, [np.asarray(t, np.float64) for t in theirs], variant
        self.best, self.best_err, self.best_rms = 0.0, gap, math.inf  # δ = 0 is the model: its error is the gap
        self.residual: np.ndarray | None = None
        self.runs = 0

    def residual_at(self, delta: float) -> np.ndarray | None:
        self.runs += 1
        try:
            with np.errstate(all="ignore"):
                outs = self.run(self.variant(delta))
        except InspectError:
            return None
        r = np.concatenate([(np.asarray(o, np.float64) - t).ravel() for o, t in zip(outs, self.theirs)])
        return r if r.size and np.all(np.isfinite(r)) else None

    def error(self, delta: float) -> float:
        """The root-mean-square residual at δ (inf when the run fails or is not finite); the best one is kept."""
        r = self.residual_at(delta)
        rms = float(np.sqrt(np.mean(r * r))) if r is not None else math.inf
        if rms < self.best_rms:
            self.best, self.best_rms, self.best_err, self.residual = delta, rms, float(np.max(np.abs(r))), r
        return rms

    def search(self, tol: float) -> None:
        """The grid, the golden section around its best point, Gauss-Newton from there (until within `tol`)."""
        for k in range(-SPAN, SPAN + 1):
            if k:
                self.error(float(k))
        self._golden(max(-SPAN, self.best - 1.0), min(SPAN, self.best + 1.0))
        for _ in range(NEWTON):
            if self.best_err <= tol or not self._newton():
                break

    def within(self, theirs: np.ndarray, atol: float, rtol: float) -> bool:
        """The best offset reproduces THEIRS (`theirs` flattened) within the tolerance."""
        return self.residual is not None and bool(np.all(np.abs(self.residual) <= atol + rtol * np.abs(theirs)))

    def _golden(self, lo: float, hi: float) -> None:
        a, b = hi - _PHI * (hi - lo), lo + _PHI * (hi - lo)
        fa, fb = self.error(a), self.error(b)
        for _ in range(GOLDEN):
            if fa <= fb:
                hi, b, fb = b, a, fa
                a = hi - _PHI * (hi - lo)
                fa = self.error(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + _PHI * (hi - lo)
                fb = self.error(b)

    def _newton(self) -> bool:
        """One Gauss-Newton step on the signed residual from the best δ; False when it cannot move."""
        if self.residual is None:
            return False
        h = 1e-3
        moved = self.residual_at(self.best + h)
        if moved is None:
            return False
        slope = (moved - self.residual) / h
        denominator = float(slope @ slope)
        if denominator <= 0:
            return False
        step = -float(slope @ self.residual) / denominator
        step = max(-1.0, min(1.0, step))
        before = self.best_rms
        self.error(self.best + step)
        return self.best_rms < before


def gate_offsets(run: Run, theirs: list[np.ndarray], targets: list[RecurrentDirection], gap: float, atol: float,
                 rtol: float) -> tuple[list[GateFit], bool, int]:
    """Each gate's best constant offset (the same in every target direction): (fits, the best one reproduces THEIRS
    within the tolerance, runs made)."""
    gates = targets[0].cell.gates
    flat = np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in theirs])
    fits: list[tuple[GateFit, bool]] = []
    runs = 0
    for k, g in enumerate(gates):
        def variant(delta: float, k: int = k) -> Variant:
            change = DirectionVariant(weights=(_offset(k, len(gates), delta),))
            return Variant(changes=tuple((d.name, change) for d in targets))

        fit = _Fit(run, theirs, variant, gap)
        fit.search(tol=atol)
        runs += fit.runs
        fits.append((GateFit(g, fit.best, fit.best_err), fit.within(flat, atol, rtol)))
    best = min(fits, key=lambda f: f[0].max_abs)
    return [f for f, _ in fits], best[1], runs


def _processing_order(directions: list[RecurrentDirection], theirs: list[np.ndarray]) -> list[np.ndarray] | None:
    """Each direction's h sequence in THEIRS (batch-major, in the order the direction processed its steps), or None
    when THEIRS does not hold them apart (a last step only, a Bidirectional merged by sum, ave or mul)."""
    d0 = directions[0]
    seqs = [d0.layer_layout(np.asarray(t, np.float64)) for t in theirs]
    if any(s.ndim != 3 for s in seqs):
        return None
    if len(directions) == 1:  # a direction alone: its outputs in its processing order, as it returns them
        return seqs
    n = d0.units or 0
    if d0.merge_mode == "concat" and len(seqs) == 1 and seqs[0].shape[-1] == 2 * n:
        halves = [seqs[0][..., :n], seqs[0][..., n:]]
    elif d0.merge_mode is None and len(seqs) == 2:
        halves = seqs
    else:
        return None
    # a Bidirectional's halves are in input order; its backward direction processed them last first
    return [h[:, ::-1] if d.settings.go_backwards else h for d, h in zip(directions, halves)]


def step_checks(directions: list[RecurrentDirection], x: np.ndarray, theirs: list[np.ndarray], atol: float,
                rtol: float) -> list[StepCheck]:
    """The teacher-forced check of each direction of a GRU or SimpleRNN (h is its whole state); [] for an LSTM, or
    when THEIRS holds no per-direction sequence."""
    if len(directions[0].cell.states) != 1:
        return []
    seqs = _processing_order(directions, theirs)
    if seqs is None or not all(np.all(np.isfinite(q)) for q in seqs):
        return []
    out = []
    xb = directions[0].layer_layout(np.asarray(x))
    for d, seq in zip(directions, seqs):
        xp = xb[:, ::-1] if d.settings.go_backwards else xb
        b, t, n = seq.shape
        prev = np.concatenate([np.zeros((b, 1, n)), seq[:, :-1]], axis=1).reshape(b * t, n)
        res = run_direction(d, np.ascontiguousarray(xp).reshape(b * t, 1, -1), initial_state=[prev.astype(np.float32)],
                            variant=DirectionVariant(ignore_go_backwards=True))
        got = np.asarray(res.outputs, np.float64).reshape(b, t, n)
        err = np.abs(got - seq)
        bad = err > atol + rtol * np.abs(seq)
        verdict = "loop" if not bad.any() else "start" if not bad[:, 1:].any() else "step"
        out.append(StepCheck(d.name, verdict, float(err.max())))
    return out


def gate_evidence(run: Run, directions: list[RecurrentDirection], x: np.ndarray, theirs: list[np.ndarray],
                  halves_exact: dict[str, bool] | None, gap: float, close: float, runs_left: int, atol: float,
                  rtol: float) -> GateEvidence:
    """The per-gate fits and step checks of one layer (`directions`: a direction, or a Bidirectional's two) within
    `runs_left` engine runs. A Bidirectional whose concatenated output has one half exact is fitted in the other
    direction alone (and only its step is checked); else the same offset goes into every direction."""
    targets = directions
    if halves_exact is not None and len(directions) == 2 and sum(halves_exact.values()) == 1:
        targets = [d for d, ok in zip(directions, halves_exact.values()) if not ok]
    d0 = directions[0]
    result = GateEvidence(dict(d0.cell.gate_names), d0.cell.forget_gate, tuple(d.name for d in targets), gap, close,
                          both=len(targets) > 1)
    sequences = all(np.ndim(t) == 3 for t in theirs)
    needed = runs_needed(directions, sequences)
    if not math.isfinite(gap):
        result.note = "no gate was fitted: THEIRS holds NaN or Inf where the model's outputs are finite"
        return result
    if needed > runs_left:
        result.note = (f"the per-gate evidence was not computed: it needs {needed} more runs than the step budget "
                       "leaves (raise --max-steps)")
        return result
    start = time.perf_counter()
    result.fits, result.reproduces, result.runs = gate_offsets(run, theirs, targets, gap, atol, rtol)
    checks = step_checks(directions, x, theirs, atol, rtol)
    result.steps = [c for c in checks if c.direction in result.directions]
    result.runs += len(checks)
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["RUNS_PER_GATE", "GateEvidence", "GateFit", "StepCheck", "gate_evidence", "runs_needed"]
