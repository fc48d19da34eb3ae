"""Per-gate statistics: of the weights, and of the gates' activations on an input.

Saturation follows Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015): a gate value is left-saturated below 0.1 and right-saturated above 0.9. For a
signed quantity (an LSTM's cell candidate c̃ or a GRU's h̃, tanh, in [-1, 1]) the same cut-offs
are taken on (v + 1) / 2, i.e. below -0.8 and above 0.8. Masked steps are left out of every
activation statistic. Which trace quantity is each gate's activation comes from the cell
(`Cell.gate_traces`): LSTM i, f, c̃, o; GRU z, r, h̃; SimpleRNN h.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lstm_inspect.base import progress
from lstm_inspect.base.display import brief, html_table
from lstm_inspect.engine.network import as_inputs, trace_run
from lstm_inspect.model.cells.base import Gate
from lstm_inspect.model.checkpoint import RecurrentDirection

NEAR_ZERO = 1e-3
LEFT, RIGHT = 0.1, 0.9
DEAD_STD = 1e-6


@dataclass
class BlockStats:
    """One block of one gate: W_x (input), W_h (recurrent) or b (bias)."""

    shape: list[int]
    mean: float
    std: float
    min: float
    max: float
    frobenius: float
    max_abs: float
    near_zero: float  # fraction with |w| < 1e-3
    nan: int
    inf: int
    spectral_norm: float | None = None  # recurrent blocks: largest singular value
    stable_rank: float | None = None  # ||U||_F² / ||U||_2²


def block_stats(w: np.ndarray, recurrent: bool = False) -> BlockStats:
    w64 = np.asarray(w, dtype=np.float64)
    finite = w64[np.isfinite(w64)]
    if finite.size == 0:
        finite = np.zeros(1)
    stats = BlockStats(
        shape=list(w.shape), mean=float(finite.mean()), std=float(finite.std()), min=float(finite.min()),
        max=float(finite.max()), frobenius=float(np.sqrt(np.sum(finite**2))), max_abs=float(np.abs(finite).max()),
        near_zero=float(np.mean(np.abs(finite) < NEAR_ZERO)), nan=int(np.isnan(w64).sum()),
        inf=int(np.isinf(w64).sum()),
    )
    if recurrent and stats.nan == 0 and stats.inf == 0:
        top = top_singular_value(np.asarray(w, dtype=np.float32))
        stats.spectral_norm = top
        stats.stable_rank = float(stats.frobenius**2 / top**2) if top > 0 else 0.0
    return stats


# Below this size a full SVD is as fast as iterating; above it, Lanczos finds the top singular value
# in a few dozen products with the matrix (a 4096 × 4096 block: ~0.2 s against ~20 s for the full SVD).
FULL_SVD_UNTIL = 384
LANCZOS_MAX, LANCZOS_TOL = 400, 1e-9


def top_singular_value(a: np.ndarray) -> float:
    """‖a‖₂, the largest singular value: the spectral norm, and with ‖a‖_F the stable rank ‖a‖_F²/‖a‖₂².

    Lanczos on aᵀa with full reorthogonalization (the products with `a` in its stored float32, the
    Lanczos vectors in float64), stopped when the top Ritz value moves less than LANCZOS_TOL
    relatively; a full SVD for small blocks, or if Lanczos has not settled.
    """
    if a.size == 0:
        return 0.0
    if min(a.shape) <= FULL_SVD_UNTIL:
        return float(np.linalg.svd(a.astype(np.float64), compute_uv=False)[0])
    n = a.shape[1]
    v = np.random.default_rng(0).standard_normal(n)
    v /= np.linalg.norm(v)
    basis, alphas, betas = [v], [], []
    previous = 0.0
    for k in range(LANCZOS_MAX):
        av = a @ basis[-1].astype(np.float32)
        w = (a.T @ av).astype(np.float64)  # aᵀa v
        alphas.append(float(basis[-1] @ w))
        q = np.asarray(basis)
        w -= q.T @ (q @ w)  # full reorthogonalization, twice for stability
        w -= q.T @ (q @ w)
        beta = float(np.linalg.norm(w))
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        top = float(np.linalg.eigvalsh(t)[-1])
        if beta < 1e-12 * max(top, 1e-300) or (k > 4 and abs(top - previous) <= LANCZOS_TOL * top):
            return float(np.sqrt(max(top, 0.0)))
        previous = top
        betas.append(beta)
        basis.append(w / beta)
    return float(np.linalg.svd(a.astype(np.float64), compute_uv=False)[0])


@dataclass
class GateActivationStats:
    mean: float
    std: float
    left_saturated: float  # fraction of (sample, step, unit) values below 0.1 (c̃: below -0.8)
    right_saturated: float  # above 0.9 (c̃: above 0.8)


@dataclass(repr=False)
class DirectionStats:
    """One direction's statistics: `weights[gate][block]` (`BlockStats`, blocks W_x, W_h, b), and from the
    input's run `activations[gate]` (`GateActivationStats`), the ranges of c and h, and `dead_units`."""

    name: str
    weights: dict[str, dict[str, BlockStats]]  # gate -> {"W_x", "W_h", "b"}
    notes: list[str] = field(default_factory=list)
    activations: dict[str, GateActivationStats] | None = None
    c_range: list[float] | None = None
    h_range: list[float] | None = None
    dead_units: list[int] | None = None  # units whose h never changes on the input
    steps_used: int | None = None  # (sample, step) pairs counted, masked ones left out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        acts = "" if not self.activations else ", activations " + ", ".join(
            f"{g} {a.mean:+.2f}" for g, a in self.activations.items())
        return f"<DirectionStats {brief(self.name)}: {len(self.weights)} gate(s){acts}>"

    def _repr_html_(self) -> str:
        rows = [(g, block, "×".join(map(str, b.shape)), f"{b.mean:+.3f}", f"{b.std:.3f}", f"{b.max_abs:.3f}",
                 "" if b.spectral_norm is None else f"{b.spectral_norm:.3f}")
                for g, blocks in self.weights.items() for block, b in blocks.items()]
        return html_table(f"{self.name}: weights", ("gate", "block", "shape", "mean", "std", "max|w|", "σ_max"), rows)


def weight_stats(d: RecurrentDirection, gates: dict[str, Gate]) -> DirectionStats:
    out: dict[str, dict[str, BlockStats]] = {}
    for g in d.cell.gates:
        out[g] = {"W_x": block_stats(gates[g].W_x), "W_h": block_stats(gates[g].W_h, recurrent=True)}
        if d.settings.use_bias:
            out[g]["b"] = block_stats(gates[g].b)
            if gates[g].b_h is not None:
                out[g]["b_h"] = block_stats(gates[g].b_h)
    notes = []
    if d.settings.use_bias and d.cell.forget_gate in out:
        b_f = out[d.cell.forget_gate]["b"].mean
        if abs(b_f - 1.0) < 0.1:
            notes.append(f"forget-gate bias mean {b_f:.3f} sits near 1: where unit_forget_bias starts it "
                         "(untrained, or the bias barely moved)")
        elif b_f < 0:
            notes.append(f"forget-gate bias mean {b_f:.3f} is below 0: the network learned to forget fast")
    bad = sum(b.nan + b.inf for blocks in out.values() for b in blocks.values())
    if bad:
        notes.append(f"{bad} weights are NaN or Inf: every output of this direction will be NaN")
    return DirectionStats(d.name, out, notes)


def activation_stats(stats: DirectionStats, d: RecurrentDirection, trace: dict[str, np.ndarray],
                     mask: np.ndarray | None) -> None:
    """Fill in activation statistics from an engine trace (processing order) and the input mask."""
    h = trace["h"]
    valid = np.ones(h.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and d.settings.go_backwards:
        valid = valid[:, ::-1]  # the trace is in processing order
    acts: dict[str, GateActivationStats] = {}
    for g, (quantity, scale) in d.cell.gate_traces.items():
        v = trace[quantity][valid].astype(np.float64)
        v01 = (v + 1.0) / 2.0 if scale == "signed" else v
        acts[g] = GateActivationStats(
            mean=float(v.mean()) if v.size else 0.0, std=float(v.std()) if v.size else 0.0,
            left_saturated=float(np.mean(v01 < LEFT)) if v.size else 0.0,
            right_saturated=float(np.mean(v01 > RIGHT)) if v.size else 0.0,
        )
    stats.activations = acts
    h = h[valid]
    if "c" in trace:
        c = trace["c"][valid]
        stats.c_range = [float(c.min()), float(c.max())] if c.size else None
    stats.h_range = [float(h.min()), float(h.max())] if h.size else None
    stats.dead_units = [int(u) for u in np.flatnonzero(h.std(axis=0) < DEAD_STD)] if h.size else None
    stats.steps_used = int(valid.sum())


@dataclass(repr=False)
class StatsReport:
    """`stats`' result: one `DirectionStats` per direction; `activations_from` says which input ran."""

    file: str
    activations_from: str  # what input the activation statistics come from
    directions: list[DirectionStats]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "activations_from": self.activations_from,
                "layers": [d.to_dict() for d in self.directions]}

    def __getitem__(self, name: str) -> DirectionStats:
        for st in self.directions:
            if st.name == name or st.name.split("/")[-1] == name:
                return st
        raise KeyError(f"no direction {name!r}; there are: {', '.join(st.name for st in self.directions)}")

    def __repr__(self) -> str:
        return (f"<StatsReport of {len(self.directions)} direction(s), activations from {self.activations_from}: "
                f"{', '.join(brief(st.name) for st in self.directions)}>")

    def _repr_html_(self) -> str:
        rows = [(st.name, st.steps_used, ", ".join(f"{g} {a.mean:+.3f}" for g, a in (st.activations or {}).items()),
                 "" if st.dead_units is None else len(st.dead_units)) for st in self.directions]
        return html_table(f"stats, activations from {self.activations_from}",
                          ("direction", "(sample, step) pairs", "gate means", "dead units"), rows)


def collect(ckpt: Any, xs: list[np.ndarray] | None = None, seed: int = 0) -> StatsReport:
    """Weight statistics for every direction (read one at a time), and activation statistics from
    an engine run (`network.trace_run`)."""
    ckpt.refuse_not_yet("stats")
    directions = []
    for k, d in enumerate(ckpt.directions):
        progress.advance("directions' weight statistics", k, len(ckpt.directions))
        directions.append(weight_stats(d, d.gates()))
    progress.advance("directions' weight statistics", len(ckpt.directions), len(ckpt.directions))
    rec, source = trace_run(ckpt, xs, seed)
    for d, st in zip(ckpt.directions, directions):
        if d.name in rec.traces:
            activation_stats(st, d, rec.traces[d.name], rec.masks.get(d.name))
    return StatsReport(str(ckpt.file), source, directions)


def stats(ckpt: Any, x: Any = None, seed: int = 0) -> StatsReport:
    """`stats` as the library offers it (`lstm_inspect.stats`): x one array or a list of the model's inputs,
    or None for a seeded random input of the model's shape."""
    return collect(ckpt, None if x is None else as_inputs(x), seed)
