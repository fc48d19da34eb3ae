"""Checking outputs against Keras: the engine's, or the user's own reimplementation's.

Some models amplify float32 rounding: a recurrent block with a large gain (σ_max of the recurrent kernel in
the tens) or an unbounded activation (relu) turns the last bit of one step into whole units a few steps
later. Then two correct float32 implementations (Keras's kernels and the engine's NumPy) part as far as the
engine parts from itself run in float64, and a mismatch says nothing about the port. So when a comparison
fails, the engine is run in float32 and in float64 (`rounding_sensitivity`); if those two differ past the
tolerance, the report says so (both figures, and the layer and step where they part) and judges each
output again with the tolerance widened, step by step, by SLACK times that spread's envelope: its largest
value so far or up to LOOKAHEAD steps later (two float32 runs part from the float64 one at their own pace, a
step or two apart, and a saturated unit that flips in one run gives a whole unit at once). A wrong port still
fails where the model is not yet sensitive: at the first steps, the spread is the float32 rounding of one
step (~1e-8), far below what a wrong gate order, bias or activation gives.

A failed comparison carries its `Evidence`: which samples are exact, from which step each wrong one departs,
whether the error fades (a wrong starting state is forgotten), which units (the last axis) differ and which differ
first, and whether the error is small and flat (noise-level: every sample, step and unit, far below the outputs'
scale, as approximate activations and quantized arithmetic give: hls4ml's lookup tables and fixed point, hls4ml#412,
#329, #1030). Its hint says only what that shows (a port whose sample 0 is exact has its weights and gate order
right, whatever the step profile; a port whose error starts in one unit has what every unit shares right).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base.budget import Budget
from lstm_inspect.base.display import brief, html_table
from lstm_inspect.base.errors import InspectError
from lstm_inspect.check.keras_ref import clean_config, run_keras, run_keras_direction
from lstm_inspect.engine.loop import SequenceResult
from lstm_inspect.engine.network import (
    DEFAULT_BATCH,
    DEFAULT_STEPS,
    Network,
    RunRecord,
    as_inputs,
    bidirectional_output,
    charge_direction,
    default_inputs,
    is_stacked,
    run_direction,
    run_layer,
)
from lstm_inspect.model.checkpoint import Checkpoint, check_sizes

# How far another float32 implementation may stray, in the engine's own float32-vs-float64 spread: on the tests'
# Keras 3 LSTM with σ_max 60 and relu LSTM, 5 seeds each, Keras's distance to the engine (float32 or float64) past
# the tolerance was at most 4.2 times the spread's envelope with a 4-step look-ahead (1.7 for the relu LSTM).
SLACK = 8.0
LOOKAHEAD = 4


# An error is said to fade when its largest value over the last quarter of the steps is this many times smaller than
# at the step where it starts (a wrong starting state is forgotten; a wrong step function is not).
FADES = 10.0
# The error is noise-level when it is at most NOISE times the outputs' scale (max |ref|) and flat: the largest error of
# each sample, of each step and of each unit is within FLAT times the largest of all. A float16 port of k3_single
# (6 samples, 20 steps) is at 0.1 % and flat within 3x; σ and tanh from 1024-entry lookup tables (hls4ml's default
# table_size) at 1.6 %, flat within 2.1x. A structural mistake is not flat (step 0 exact, one unit, some samples) or is
# of the outputs' own scale (TF1's forget_bias: 54 %).
NOISE, FLAT = 0.03, 10.0


def _runs(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    parts: list[str] = []
    for k in ids:
        if parts and k == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{k}"
        else:
            parts.append(str(k))
    return ", ".join(parts[:6]) + (", ..." if len(parts) > 6 else "")


def _samples(ids: list[int]) -> str:
    return f"sample{'s' if len(ids) > 1 else ''} {_runs(ids)}"


def _verb(ids: list[int]) -> str:
    return " differs" if len(ids) == 1 else " differ"


def _units(ids: tuple[int, ...], of: int) -> str:
    """(2, 4), 5 -> "units 2, 4 of 5"; every one -> "all 5 units"."""
    if len(ids) == of:
        return f"all {of} units" if of > 1 else "the unit"
    return f"unit{'s' if len(ids) > 1 else ''} {_runs(list(ids))} of {of}"


@dataclass(frozen=True)
class Evidence:
    """Where an output's error sits, measured before any guess: which samples are exact (within the tolerance),
    from which step each wrong sample departs (sequences), whether the error fades, grows or stays, for a
    Bidirectional's concatenated output which half (forward, backward) is exact, which units (the last axis) differ
    and which differ first, and whether the error is noise-level (small and flat, see NOISE)."""

    samples: int
    exact: tuple[int, ...]  # samples within the tolerance everywhere
    from_step: dict[int, int]  # wrong sample -> the first step past tolerance (sequences only)
    profile: str  # "fades", "grows", "stays" or "" (no steps)
    halves_exact: dict[str, bool] | None = None  # "forward"/"backward" -> that half within the tolerance
    units: int = 0  # the size of the last axis
    wrong_units: tuple[int, ...] = ()  # the units (last axis) past tolerance somewhere
    first_units: tuple[int, ...] = ()  # those past tolerance at the first wrong step (sequences; else wrong_units)
    noise: float = 0.0  # max |Δ| / the outputs' scale when the error is noise-level (see NOISE), else 0
    max_abs: float = 0.0  # the largest error
    firm: tuple[int, ...] | None = None  # the exact samples within a hundredth of the tolerance (None: all of `exact`)
    of_layer: bool = False  # the output is one recurrent layer's (--layer), not the model's

    @property
    def firm_exact(self) -> tuple[int, ...]:
        """The exact samples close enough to prove something: within a hundredth of the tolerance (rounding
        level), so that a mistake whose effect on them stays just inside the tolerance cannot pass for exact."""
        return self.exact if self.firm is None else self.firm

    def lines(self) -> list[str]:
        """A few lines: "sample 0 exact; samples 1-2 differ from step 0 (the error fades over the steps)", "unit 2 of 5
        differs first (step 0), then all 5 units", "the forward half exact; the backward half differs"."""
        wrong = [b for b in range(self.samples) if b not in self.exact]
        parts = [f"{_samples(list(self.exact))} exact"] if self.exact else []
        if self.from_step:
            by_step: dict[int, list[int]] = {}
            for b in wrong:
                by_step.setdefault(self.from_step[b], []).append(b)
            every = "every sample differs" if not self.exact and self.samples > 1 else _samples(wrong) + _verb(wrong)
            if len(by_step) == 1:
                parts.append(f"{every} from step {next(iter(by_step))}")
            else:
                parts.append(f"{every}: " + ", ".join(f"{_samples(bs)} from step {t}"
                                                      for t, bs in sorted(by_step.items())[:4]))
            parts[-1] += {"fades": " (the error fades over the steps)", "grows": " (the error grows over the steps)",
                          "stays": " (the error stays)"}.get(self.profile, "")
        elif wrong:
            parts.append("every sample differs" if not self.exact and self.samples > 1 else
                         f"{_samples(wrong)}{_verb(wrong)}")
        out = ["; ".join(parts)]
        if self.wrong_units and self.units > 1:
            out.append(self._units_line())
        if self.halves_exact is not None:
            out.append("; ".join(f"the {h} half {'exact' if ok else 'differs'}" for h, ok in self.halves_exact.items()))
        return out

    def _units_line(self) -> str:
        """"all 5 units differ", "units 2, 4 of 5 differ", "unit 2 of 5 differs first (step 0), then all 5 units"."""
        wrong = _units(self.wrong_units, self.units)
        verb = "differs" if len(self.wrong_units) == 1 and self.units > 1 else "differ"
        if self.first_units == self.wrong_units:
            return f"{wrong} {verb}"
        start = min(self.from_step.values(), default=0)
        verb = "differs" if len(self.first_units) == 1 else "differ"
        return f"{_units(self.first_units, self.units)} {verb} first (step {start}), then {wrong}"

    def _few_units_first(self) -> bool:
        """The error starts in a few units (fewer than half of them), not in every one."""
        return 0 < 2 * len(self.first_units) < self.units

    def _unit_clause(self) -> str:
        """What the units add to a hint: an error starting in a few units is theirs, one in every unit is shared."""
        if self.units <= 1 or not self.first_units:
            return ""
        first = _units(self.first_units, self.units)
        start = min(self.from_step.values(), default=0)
        if self._few_units_first() and start > 0:
            return (f"; only {first} depart{'s' if len(self.first_units) == 1 else ''} first, at step {start}: a few "
                    "units leaving late is what a clip or saturation reached only by large values gives (cell_clip, "
                    "a clipped activation, a fixed-point range), not a cause every unit shares")
        if self._few_units_first():
            return (f"; it starts in {first} alone: that unit's own weights (its columns of kernel, recurrent_kernel "
                    "and bias), not what every unit shares (gate order, activations, the loop)")
        if len(self.first_units) == self.units:
            return "; every unit differs from the first wrong step: a cause all units share"
        return ""

    def _exact_samples_hint(self) -> str:
        """Some samples exact: what every sample shares is right; the wrong ones' first steps say what differs."""
        firm = len(self.firm_exact) == len(self.exact)
        shared = (f"{_samples(list(self.exact))} exact, so what every sample shares (kernel, bias, gate order, "
                  "activations) is right" if firm else
                  f"{_samples(list(self.exact))} within the tolerance but not all at rounding level, so what every "
                  "sample shares (kernel, bias, gate order, activations) is probably right, though a small shared "
                  "mistake can look like this")
        late = min(self.from_step.values(), default=0)
        if late == 0:
            return (f"{shared}; look at what differs per sample: the state a row starts from (states carried across "
                    "batch rows or calls), padding and masks, the order of the rows")
        if self._few_units_first():
            return (f"{shared}; the others depart late (from step {late}), in {_units(self.first_units, self.units)} "
                    "first: a clip or saturation that only some samples reach (cell_clip, a clipped activation, a "
                    "fixed-point range), not the state a row starts from (that shows at step 0)")
        return (f"{shared}; the others depart late (from step {late}): what only some samples reach at later steps "
                "(a clip or saturation, masks and padding), not the state a row starts from (that shows at step 0)")

    def _noise_hint(self) -> str:
        return (f"every sample, step and unit differs by a small, flat error (max |Δ| {self.max_abs:.1e}, "
                f"{100 * self.noise:.2g} % of the outputs' scale, no sample, step or unit apart): consistent with "
                "approximate activations (lookup tables, piecewise-linear σ/tanh) or quantized arithmetic (fixed "
                "point, float16) rather than a structural mistake, which moves outputs by their own scale; widen the "
                "tables or types if it is too large")

    def hint(self) -> str:
        """What the evidence shows about where the mistake is, and nothing it contradicts."""
        halves = self.halves_exact or {}
        if len(halves) == 2 and sum(halves.values()) == 1:
            wrong = next(h for h, ok in halves.items() if not ok)
            return (f"only the {wrong} half differs: the mistake is in the {wrong} direction alone (its weights, "
                    "its time order, its mask or which of its steps is taken)")
        if self.exact:
            return self._exact_samples_hint()
        if self.noise:
            return self._noise_hint()
        starts = min(self.from_step.values(), default=0)
        units = self._unit_clause()
        if self.from_step and starts > 0:
            return (f"every sample is exact up to step {starts - 1}: a recurrence problem (the recurrent kernel, the "
                    f"forget gate and its bias, the state carried, masking), not the input projection{units}")
        if self.profile == "fades":
            return ("every sample differs from step 0 and the error fades: a wrong starting state (states carried "
                    "over or initial states) or a first step computed apart, more likely than the step function")
        if self._few_units_first():
            return f"every sample differs from step 0{units}" if self.profile else \
                f"every sample differs{units}"
        if self.profile:
            return ("every sample differs from step 0 and the error does not fade: look at what every step shares "
                    f"(kernel, bias, gate order, activations) or which step is emitted{units}")
        if self.of_layer:
            return ("what every sample shares is suspect (kernel, bias, gate order, activations); this is the layer's "
                    "last step: give its whole output sequence to see from which step it differs")
        return ("what every sample shares is suspect (kernel, bias, gate order, activations); this output holds no "
                "steps: compare a recurrent layer's sequence (--layer) to see from which step it differs")

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "exact_samples": list(self.exact),
                "first_step_past_tolerance": {str(b): t for b, t in self.from_step.items()} or None,
                "profile": self.profile or None, "halves_exact": self.halves_exact,
                "units": {"of": self.units, "differ": list(self.wrong_units), "differ_first": list(self.first_units)},
                "noise_level": self.noise or None, "lines": self.lines(), "hint": self.hint()}


def _noise_level(err: np.ndarray, exact: tuple[int, ...], scale: float) -> float:
    """max |Δ| / scale when the error is small and flat (see NOISE, FLAT): every sample's, step's and unit's largest
    error within FLAT times the largest of all; else 0."""
    top = float(err.max()) if err.size else 0.0
    if exact or scale <= 0 or not np.isfinite(top) or top <= 0 or top > NOISE * scale:
        return 0.0
    axes = [tuple(a for a in range(err.ndim) if a != keep) for keep in range(err.ndim)]
    if all(float(err.max(axis=ax).min()) * FLAT >= top for ax in axes):
        return top / scale
    return 0.0


def evidence(bad: np.ndarray, err: np.ndarray, halves: bool = False, scale: float = 0.0,
             loose: np.ndarray | None = None) -> Evidence:
    """`bad`, `err`: (sample, step, unit) or (sample, unit) past-tolerance flags and |errors|; `halves`: the last
    axis is a Bidirectional's forward and backward outputs concatenated; `scale`: the outputs' largest |value| (the
    error is noise-level only well below it); `loose`: the elements past a hundredth of the tolerance (the exact samples
    free of them are `firm`)."""
    n = bad.shape[0]
    per_sample = bad.reshape(n, -1).any(axis=1)
    exact = tuple(int(b) for b in np.flatnonzero(~per_sample))
    from_step: dict[int, int] = {}
    profile = ""
    if bad.ndim == 3:
        steps = bad.any(axis=2)
        from_step = {int(b): int(np.argmax(steps[b])) for b in np.flatnonzero(per_sample)}
        wrong = err[per_sample].max(axis=(0, 2))
        start = min(from_step.values(), default=0)
        tail = wrong[max(start + 1, wrong.size - max(1, wrong.size // 4)):]
        if tail.size:
            last, first = float(tail.max()), float(wrong[start])
            profile = "fades" if last * FADES <= first else "grows" if last >= FADES * first else "stays"
    split = None
    if halves and bad.shape[-1] % 2 == 0:
        k = bad.shape[-1] // 2
        split = {"forward": not bad[..., :k].any(), "backward": not bad[..., k:].any()}
    units = bad.shape[-1]
    wrong_units = tuple(int(u) for u in np.flatnonzero(bad.reshape(-1, units).any(axis=0)))
    first_units = wrong_units
    if bad.ndim == 3 and bad.any():
        t = int(np.argmax(bad.any(axis=(0, 2))))
        first_units = tuple(int(u) for u in np.flatnonzero(bad[:, t].any(axis=0)))
    firm = None if loose is None else tuple(b for b in exact if not loose[b].any())
    return Evidence(n, exact, from_step, profile, split, units, wrong_units, first_units,
                    _noise_level(err, exact, scale), float(err.max()) if err.size else 0.0, firm)


@dataclass(repr=False)
class Comparison:
    """One output compared element-wise: ok when |ours - ref| <= atol + rtol·|ref| everywhere.

    `max_abs`, `max_rel`: the largest absolute and relative error; `first_bad`: where the first element past
    tolerance is; `per_step`: the largest error at each time step (sequences)."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    ok: bool
    first_bad: dict[str, int] | None  # where the first element past tolerance is (sample, step, unit)
    per_step: list[float] | None  # max |error| at each time step, for sequences
    evidence: Evidence | None = None  # where the error sits (per sample, step, half), when past tolerance

    def __repr__(self) -> str:
        return (f"<Comparison {brief(self.name)} {'ok' if self.ok else 'MISMATCH'}: max |Δ| {self.max_abs:.2e}, "
                f"shape {self.shape}>")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "max_abs_error": self.max_abs,
                "max_rel_error": self.max_rel, "ok": self.ok, "first_past_tolerance": self.first_bad,
                "error_per_step": self.per_step, "evidence": self.evidence.to_dict() if self.evidence else None}


def compare(name: str, ours: np.ndarray, ref: np.ndarray, atol: float, rtol: float,
            slack: np.ndarray | float = 0.0, halves: bool = False, of_layer: bool = False) -> Comparison:
    """`slack`: an extra tolerance (per step for a sequence, see `rounding_sensitivity`), 0 unless the model
    amplifies float32 rounding on this input; `halves`: ref is a Bidirectional's concatenated output (the
    evidence says which half is exact); `of_layer`: ours is one recurrent layer's output (--layer), not the model's."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Comparison(name, tuple(ref.shape), float("inf"), float("inf"), False,
                          {"shape_expected": list(ref.shape), "shape_found": list(ours.shape)}, None)  # type: ignore[dict-item]
    err = np.abs(ours - ref)
    err = np.where(np.isnan(err), np.inf, err)
    bad = err > atol + rtol * np.abs(ref) + slack
    significant = np.abs(ref) > atol
    max_rel = float(np.max(err[significant] / np.abs(ref[significant]))) if significant.any() else 0.0
    first = None
    if bad.any():
        if bad.ndim == 3:  # (sample, step, unit): the earliest step first, then sample, then unit
            t = int(np.argmax(bad.any(axis=(0, 2))))
            b = int(np.argmax(bad[:, t].any(axis=1)))
            first = {"sample": b, "step": t, "unit": int(np.argmax(bad[b, t]))}
        else:
            idx = np.unravel_index(int(np.argmax(bad.reshape(-1))), bad.shape)
            first = {"sample": int(idx[0]), "unit": int(idx[-1])} if bad.ndim >= 2 else {"index": int(idx[0])}
    per_step = [float(e) for e in err.max(axis=(0, 2))] if err.ndim == 3 else None
    finite = np.abs(ref[np.isfinite(ref)])
    scale = float(finite.max()) if finite.size else 0.0
    loose = err > (atol + rtol * np.abs(ref) + slack) / 100
    found = evidence(bad, err, halves, scale, loose) if bad.any() and bad.ndim >= 2 else None
    found = dataclasses.replace(found, of_layer=True) if found is not None and of_layer else found
    return Comparison(name, tuple(ref.shape), float(err.max()) if err.size else 0.0, max_rel, not bad.any(), first,
                      per_step, found)


@dataclass(repr=False)
class VerifyReport:
    """What `verify` concluded: `ok` when every compared output (`comparisons`) is within the tolerance;
    `reference` the Keras that computed the reference; `against` THEIRS's file when a port was compared."""

    file: Path
    reference: str
    against: Path | None
    atol: float
    rtol: float
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)
    sensitivity: Sensitivity | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def __repr__(self) -> str:
        worst = max((c.max_abs for c in self.comparisons), default=0.0)
        return (f"<VerifyReport {'ok' if self.ok else 'MISMATCH'}: {len(self.comparisons)} output(s) vs "
                f"{self.reference}, max |Δ| {worst:.2e}>")

    def _repr_html_(self) -> str:
        rows = [(c.name, "×".join(map(str, c.shape)), f"{c.max_abs:.2e}", f"{c.max_rel:.2e}", "✓" if c.ok else "✗")
                for c in self.comparisons]
        return html_table(f"verify {Path(self.file).name} vs {self.reference}: {'ok' if self.ok else 'MISMATCH'}",
                          ("output", "shape", "max |Δ|", "max rel", "ok"), rows)

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "reference": self.reference,
                "compared": "theirs" if self.against else "engine",
                "against": str(self.against) if self.against else None, "atol": self.atol, "rtol": self.rtol,
                "ok": self.ok, "outputs": [c.to_dict() for c in self.comparisons], "notes": self.notes,
                "float32_sensitivity": self.sensitivity.to_dict() if self.sensitivity else None}


@dataclass(frozen=True)
class Sensitivity:
    """The engine run in float32 and in float64 differ past the tolerance on this input: the model amplifies
    float32 rounding (see the module's docstring)."""

    spread: float  # max |engine float32 - engine float64| over the compared outputs
    start: str  # where the two runs first part past the tolerance: "layer lstm, step 6"
    slack: dict[str, np.ndarray | float]  # compared output -> the tolerance added (SLACK x the spread)

    def to_dict(self) -> dict[str, Any]:
        return {"float32_vs_float64_max_abs": self.spread, "starts": self.start, "slack_factor": SLACK}

    def note(self, comparisons: list[Comparison], whose: str) -> str:
        worst = max((c.max_abs for c in comparisons), default=0.0)
        return (f"the model is sensitive to float32 rounding on this input: the engine in float32 and in float64 "
                f"differ by up to {self.spread:.2e} (from {self.start}), {whose} and Keras by up to {worst:.2e}; "
                f"each output is judged within {SLACK:g}x that float32 spread, step by step (from {LOOKAHEAD} steps "
                "ahead: a wrong port shows at the first steps, where it is ~1e-8)")


def _slack(e32: np.ndarray, e64: np.ndarray) -> np.ndarray | float:
    """SLACK times the float32 spread: for a (sample, step, unit) sequence, per step, its largest value so far or
    up to LOOKAHEAD steps later."""
    spread = np.abs(np.asarray(e32, np.float64) - np.asarray(e64, np.float64))
    if spread.ndim == 3:
        so_far = np.maximum.accumulate(spread.max(axis=(0, 2)))
        ahead = so_far[np.minimum(np.arange(so_far.size) + LOOKAHEAD, so_far.size - 1)]
        return SLACK * ahead[None, :, None]
    return SLACK * float(spread.max()) if spread.size else 0.0


def _first_parting(runs: dict[str, tuple[np.ndarray, np.ndarray]], atol: float, rtol: float) -> str:
    """The first sequence (a direction's h, in model order) whose float32 and float64 runs part, and the step."""
    for name, (a, b) in runs.items():
        c = compare(name, a, b, atol, rtol)
        if not c.ok and c.first_bad is not None:
            return f"{name}, step {c.first_bad['step']}" if "step" in c.first_bad else name
    return "the first output"


def rounding_sensitivity(engine: dict[str, tuple[np.ndarray, np.ndarray]], sequences: dict[str, tuple[
                         np.ndarray, np.ndarray]], atol: float, rtol: float) -> Sensitivity | None:
    """`engine`: each compared output's (float32, float64) engine values; `sequences`: the recurrent directions'
    (float32, float64) h traces, to place where the runs part. None when the two agree within the tolerance."""
    if all(compare(n, a, b, atol, rtol).ok for n, (a, b) in engine.items()):
        return None
    spread = max(float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in engine.values())
    start = _first_parting({**sequences, **engine}, atol, rtol)
    return Sensitivity(spread, start, {n: _slack(a, b) for n, (a, b) in engine.items()})


def _model_runs(ckpt: Checkpoint, xs: list[np.ndarray], keras: Any, dtype: type
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The engine's compared outputs (each top-level recurrent layer's, then the model's) and its directions' h."""
    rec = RunRecord()
    outs = Network(ckpt, dtype, trace=True).run(xs, rec)
    named = {f"layer {path}": rec.layer_outputs[path][0] for path in keras.layer_outputs}
    named.update({f"output_{k}": o for k, o in enumerate(outs)})
    return named, {f"layer {d}": t["h"] for d, t in rec.traces.items() if "h" in t}


def _model_sensitivity(ckpt: Checkpoint, xs: list[np.ndarray], keras: Any, atol: float, rtol: float
                       ) -> Sensitivity | None:
    (o32, h32), (o64, h64) = (_model_runs(ckpt, xs, keras, dt) for dt in (np.float32, np.float64))
    return rounding_sensitivity({n: (o32[n], o64[n]) for n in o32}, {n: (h32[n], h64[n]) for n in h32 if n in h64},
                                atol, rtol)


def _judge(pairs: list[tuple[str, np.ndarray, np.ndarray]], atol: float, rtol: float,
           sensitivity: Callable[[], Sensitivity | None]) -> tuple[list[Comparison], Sensitivity | None]:
    """Each (name, ours or theirs, Keras's) compared; when one fails and the engine's float32 and float64 runs
    part on this input, all compared again within the model's float32 sensitivity."""
    comparisons = [compare(n, o, ref, atol, rtol) for n, o, ref in pairs]
    if all(c.ok for c in comparisons):
        return comparisons, None
    sens = sensitivity()
    if sens is None:
        return comparisons, None
    return [compare(n, o, ref, atol, rtol, sens.slack.get(n, 0.0)) for n, o, ref in pairs], sens


def hard_sigmoid_notes(ckpt: Checkpoint, reference: str) -> list[str]:
    if not any(d.settings.recurrent_activation == "hard_sigmoid" or d.settings.activation == "hard_sigmoid"
               for d in ckpt.directions):
        return []
    writer = "Keras 3: clip(x/6 + 0.5, 0, 1)" if ckpt.directions[0].hard_sigmoid == "keras3" \
        else "Keras 1/2: clip(0.2·x + 0.5, 0, 1)"
    runner = "clip(x/6 + 0.5, 0, 1)" if reference.startswith("keras ") else "clip(0.2·x + 0.5, 0, 1)"
    agree = "agree" if (reference.startswith("keras ")) == (ckpt.directions[0].hard_sigmoid == "keras3") else "DISAGREE"
    return [f"hard_sigmoid: the file's Keras ({ckpt.keras_version}) defines it as {writer}; the reference "
            f"{reference} computes {runner}; they {agree}"]


def verify(
    ckpt: Checkpoint, xs: list[np.ndarray], theirs: list[np.ndarray] | None = None, against: Path | None = None,
    atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32,
) -> VerifyReport:
    """Run Keras and compare: the engine's layer and final outputs, or THEIRS (final outputs) with Keras's."""
    clean_config(ckpt)  # what Keras will be handed, vetted first: a refused key is named before anything runs
    _refuse_non_finite(ckpt)
    net = Network(ckpt, dtype)
    xs = net.check_inputs(xs)
    rec = RunRecord()
    outs = net.run(xs, rec)  # the engine first: a model past the resource budget is refused before Keras builds it
    keras = run_keras(ckpt, xs)
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    if theirs is not None:
        if len(theirs) != len(keras.outputs):
            raise InspectError(f"{against}: holds {len(theirs)} output(s) but the model gives {len(keras.outputs)}")
        for k, (t, ref) in enumerate(zip(theirs, keras.outputs)):
            _same_shape(against, f"output_{k}", t, ref)
            pairs.append((f"output_{k}", t, ref))
    else:
        pairs += [(f"layer {path}", rec.layer_outputs[path][0], ref) for path, ref in keras.layer_outputs.items()]
        pairs += [(f"output_{k}", o, ref) for k, (o, ref) in enumerate(zip(outs, keras.outputs))]
    comparisons, sens = _judge(pairs, atol, rtol, lambda: _model_sensitivity(ckpt, xs, keras, atol, rtol))
    notes = keras.notes + hard_sigmoid_notes(ckpt, keras.library)
    if sens is not None:
        notes.append(sens.note(comparisons, "theirs" if theirs is not None else "the engine"))
    return VerifyReport(ckpt.file, keras.library, against, atol, rtol, comparisons, notes, sens)


def verify_direction(
    ckpt: Checkpoint, name: str, x: np.ndarray, theirs: np.ndarray | None = None, against: Path | None = None,
    atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32,
) -> VerifyReport:
    """One direction alone: the engine's (or THEIRS) output against Keras's.

    THEIRS may be the whole output sequence (batch, steps, N_c) or only its last step (batch, N_c),
    what `forward --layer` writes for a layer with return_sequences=False; the same is compared.
    """
    d = ckpt.direction(name)
    _refuse_non_finite(ckpt, d.name)
    x = np.asarray(x)
    if x.ndim != d.cell.input_ndim(d.settings) or d.channels(x) != d.input_dim:
        raise InspectError(f"layer {d.name}: input has shape {x.shape} but the layer expects {d.input_layout}")
    check_sizes(x.shape, f"layer {d.name}: the input")
    # x is as the layer takes it ((steps, batch, N_i) for a time_major layer), and so is Keras's sequence
    ref, library = run_keras_direction(ckpt, d.name, x)
    what = "sequence"
    if theirs is not None and np.ndim(theirs) == 2 and ref.ndim == 3:
        ref, what = d.layer_layout(ref)[:, -1], "last step"
    if theirs is not None:
        theirs = np.asarray(theirs)
        _same_shape(against, f"the {what}", theirs, ref)
    def engine(dt: type) -> np.ndarray:
        out = d.layer_layout(run_direction(d, d.layer_layout(x), dtype=dt).outputs)
        return d.layer_layout(out)[:, -1] if what == "last step" else out

    name = f"layer {d.name} ({what})"
    ours = theirs if theirs is not None else engine(dtype)
    comparisons, sens = _judge([(name, ours, ref)], atol, rtol, lambda: rounding_sensitivity(
        {name: (engine(np.float32), engine(np.float64))}, {}, atol, rtol))
    notes = hard_sigmoid_notes(ckpt, library)
    if ckpt.settings_from == "defaults":
        notes.append("this file stores no architecture: Keras ran the direction with the default settings shown by "
                     "show")
    if sens is not None:
        notes.append(sens.note(comparisons, "theirs" if theirs is not None else "the engine"))
    return VerifyReport(ckpt.file, library, against, atol, rtol, comparisons, notes, sens)


def _same_shape(against: Path | None, what: str, theirs: np.ndarray, ref: np.ndarray) -> None:
    if np.shape(theirs) != np.shape(ref):
        raise InspectError(f"{against}: {what} has shape {tuple(np.shape(theirs))} but Keras gives "
                           f"{tuple(np.shape(ref))} for this input")
    if np.asarray(theirs).dtype.kind not in "fiu":
        raise InspectError(f"{against}: {what} holds {np.asarray(theirs).dtype}, not numbers")


def _refuse_non_finite(ckpt: Checkpoint, only: str | None = None) -> None:
    """NaN or Inf weights make every output NaN: nothing to verify, so say it instead of a mismatch."""
    for d in ckpt.directions:
        if only is not None and d.name != only:
            continue
        d.weights()
        if d.warnings:
            raise InspectError(f"{ckpt.file}: {d.warnings[0]}, so there is nothing to verify")


def verify_layer(ckpt: Checkpoint, name: str, x: np.ndarray, theirs: Any = None, against: Path | None = None,
                 atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32) -> VerifyReport:
    """One recurrent layer alone: a direction (`verify_direction`), or a Bidirectional by its Keras name, whose
    two directions Keras runs each (`run_keras_direction`) and whose outputs are merged as its Bidirectional
    merges them; compared with the engine's merged output (or THEIRS: the layer's output, a list of two for
    merge_mode=None)."""
    directions = ckpt.directions_of(name)
    if len(directions) == 1:
        one = theirs[0] if isinstance(theirs, list) else theirs
        return verify_direction(ckpt, directions[0].name, x, one, against, atol, rtol, dtype)
    for d in directions:
        _refuse_non_finite(ckpt, d.name)
    d0 = directions[0]
    x = np.asarray(x)
    d0.check_input(d0.layer_layout(x))
    keras_outs, library, how = _keras_layer(ckpt, directions, x)
    what = f"layer {d0.layer_path}"
    names = [what] if len(keras_outs) == 1 else [f"{what} ({d.direction})" for d in directions]
    if theirs is not None:
        theirs = theirs if isinstance(theirs, list) else [theirs]
        if len(theirs) != len(keras_outs):
            raise InspectError(f"{against}: holds {len(theirs)} output(s) but layer {d0.layer_path} gives "
                               f"{len(keras_outs)}")
        for n, t, ref in zip(names, theirs, keras_outs):
            _same_shape(against, n, np.asarray(t), ref)
        ours = [np.asarray(t) for t in theirs]
    else:
        ours = run_layer(directions, x, dtype=dtype)[0]

    def spreads() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        o32, o64 = (run_layer(directions, x, dtype=dt)[0] for dt in (np.float32, np.float64))
        return {n: (a, b) for n, a, b in zip(names, o32, o64)}

    comparisons, sens = _judge(list(zip(names, ours, keras_outs)), atol, rtol,
                               lambda: rounding_sensitivity(spreads(), {}, atol, rtol))
    notes = [*hard_sigmoid_notes(ckpt, library), how]
    if sens is not None:
        notes.append(sens.note(comparisons, "theirs" if theirs is not None else "the engine"))
    return VerifyReport(ckpt.file, library, against, atol, rtol, comparisons, notes, sens)


def _keras_layer(ckpt: Checkpoint, directions: list[Any], x: np.ndarray) -> tuple[list[np.ndarray], str, str]:
    """Keras's outputs of a layer of several directions, each run by Keras alone (`run_keras_direction`): a
    Bidirectional's halves merged as it merges them, or a StackedRNNCells's cells in turn, each on the previous
    one's Keras outputs back in input time order (as `engine.network.stacked_input` feeds them). Returns (the
    outputs, the library, a note saying how)."""
    d0, library = directions[0], ""
    if is_stacked(directions):
        value = x
        for d in directions:
            ref, library = run_keras_direction(ckpt, d.name, value)
            value = np.asarray(ref)[:, ::-1] if d.settings.go_backwards else np.asarray(ref)
        return [np.asarray(ref)], library, (f"Keras ran each cell of {d0.layer_path} alone, each on the previous "
                                            "one's outputs (as its StackedRNNCells runs them within each step)")
    refs = []
    for d in directions:
        ref, library = run_keras_direction(ckpt, d.name, x)
        refs.append(SequenceResult(d.layer_layout(np.asarray(ref)), []))
    return bidirectional_output(refs[0], refs[1], d0), library, (
        f"Keras ran each direction of {d0.layer_path} alone; their outputs are merged as its Bidirectional merges "
        f"them (merge_mode={d0.merge_mode})")


def check(ckpt: Checkpoint, x: Any = None, theirs: Any = None, layer: str | None = None, seed: int = 0,
          atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32, against: Path | None = None
          ) -> VerifyReport:
    """`verify` as the library offers it (`lstm_inspect.verify`): the whole model, or one recurrent layer alone
    (`layer`: a direction, or a Bidirectional by its Keras name), on x, or on a seeded random input of the
    model's shape when x is None (token ids for an Embedding; (4, 10, N_i) for a layer). THEIRS: a port's
    outputs for the same input, compared with Keras's instead of the engine's."""
    if layer is not None:
        d = ckpt.directions_of(layer)[0]
        if x is None:
            x = np.random.default_rng(seed).normal(size=d.random_input_shape(DEFAULT_BATCH, DEFAULT_STEPS))
            x = x.astype(np.float32)
        x = as_inputs(x)[0] if isinstance(x, (list, tuple)) else np.asarray(x)
        charge_direction(Budget(where=str(ckpt.file)), d, d.layer_layout(x).shape, dtype, False, True)
        return verify_layer(ckpt, layer, x, theirs, against, atol, rtol, dtype)
    xs = as_inputs(x) if x is not None else default_inputs(Network(ckpt, dtype), seed)
    return verify(ckpt, xs, None if theirs is None else as_inputs(theirs), against, atol, rtol, dtype)
