"""Wall time of `diagnose` on the shared real files, with a port inside its space and ports outside it.

    python benchmarks/diagnose_time.py [FILE ...]

Issue 24 requires under 10 s per file with the larger space. For each file (default: the masked sentiment
BiLSTM, a Keras 3.10 stacked LSTM, the Keras 3.6 stacked GRU and the Keras 2.0 GRU of ../shared/realworld, see its
CATALOG.md) on its own `.io.npz` input, THEIRS is planted through the engine's own variants (a timing, not a
test: the tests plant with independent ports):

- `in space`: the whole model with gate blocks 1 and 2 swapped in every direction (LSTM i, c, f, o; GRU z, h, r),
  a gate order diagnose knows;
- `outside`: the whole model with a constant +0.5 on the last gate's pre-activation in every direction (LSTM o,
  GRU h), which no candidate reproduces: every single and the pairs run;
- `outside --layer`: the same on the first recurrent layer alone (its input as the model feeds it), where the
  per-gate evidence runs too (RUNS_PER_GATE runs per gate, and the teacher-forced step check for a GRU).

Prints the seconds of each `diagnose` call (the library call, the file already read), the candidates tried
(and ruled out by the evidence), the per-gate runs and their seconds (part of the call's), and what was concluded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.check.diagnose import diagnose
from lstm_inspect.engine.network import DirectionVariant, Network, RunRecord, Variant, run_layer
from lstm_inspect.model.cells.base import CellWeights, split_gates

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realworld"
FILES = ["sentiment_embed_maskzero_bilstm_tfkeras240.h5", "crypto_stacked_keras310.keras",
         "gru/gru_stacked_keras36.keras", "gru/gru_keras204_no_reset_after.h5"]
GOAL = 10.0


def swapped(d: Any, w: CellWeights) -> CellWeights:
    """Gate blocks 1 and 2 exchanged in every array (a wrong gate order)."""
    def move(a: np.ndarray) -> np.ndarray:
        b = split_gates(a, d.cell.n_gates)
        return np.concatenate([b[0], b[2], b[1], *b[3:]], axis=-1)

    bias = None if w.bias is None else move(w.bias)
    return CellWeights(kernel=move(w.kernel), recurrent_kernel=move(w.recurrent_kernel), bias=bias)


def offset(d: Any, w: CellWeights) -> CellWeights:
    """+0.5 on the last gate's input bias block (LSTM o, GRU h): outside diagnose's space (TF1's forget_bias, +1 on
    LSTM f, is a candidate)."""
    u, n = w.units, d.cell.n_gates
    bias = np.zeros(n * u, w.kernel.dtype) if w.bias is None else np.array(w.bias, copy=True)
    (bias[0] if bias.ndim == 2 else bias)[(n - 1) * u:] += 0.5
    return CellWeights(kernel=w.kernel, recurrent_kernel=w.recurrent_kernel, bias=bias)


def everywhere(fn: Any) -> Variant:
    return Variant(changes=((None, DirectionVariant(weights=(fn,))),))


def timed(ckpt: Any, xs: list[np.ndarray], theirs: list[np.ndarray], layer: str | None = None) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = diagnose(ckpt, xs, theirs, layer=layer)
    return time.perf_counter() - t0, result


def verdict(result: Any) -> str:
    if result.found:
        return f"found: {result.found[0].name[:60]}"
    if result.gates is not None and result.gates.best is not None:
        best = result.gates.best
        return (f"none; per gate: {best.gate} {best.delta:+.2f} ({'reproduces' if result.gates.reproduces else 'no'}"
                f"), step check: {','.join(s.verdict for s in result.gates.steps) or '-'}")
    return "none comes close" if not result.close else f"close: {result.close[0].name[:60]}"


def main(files: list[Path]) -> None:
    print(f"diagnose on real files (seconds per call; goal < {GOAL:g} s)")
    print(f"  {'file':<46} {'case':<16} {'s':>6} {'tried':>6} {'pruned':>6} {'gates, s':>10}  concluded")
    worst = 0.0
    for path in files:
        if not path.exists():
            print(f"  {path.name}: not here, skipped")
            continue
        ckpt = lstm_inspect.load(path)
        with np.load(f"{path}.io.npz") as io:
            xs = [io[k] for k in ("x", "x0", "x1") if k in io.files]
        rec = RunRecord()
        try:
            Network(ckpt).run(xs, rec)
        except InspectError as exc:  # e.g. a file whose Embedding stores no weights: its layers run alone only
            print(f"  {path.name}: the whole model does not run ({exc}), skipped")
            continue
        d0 = ckpt.directions[0]
        layer = d0.layer_path
        directions = ckpt.directions_of(layer)
        x_layer = d0.layer_layout(rec.layer_inputs[layer]) if layer in rec.layer_inputs else None
        cases = [("in space", xs, Network(ckpt, variant=everywhere(swapped)).run(xs), None),
                 ("outside", xs, Network(ckpt, variant=everywhere(offset)).run(xs), None)]
        if x_layer is not None:
            cases.append(("outside --layer", [x_layer],
                          run_layer(directions, x_layer, variant=everywhere(offset))[0], layer))
        for case, inputs, theirs, which in cases:
            secs, result = timed(ckpt, inputs, theirs, which)
            worst = max(worst, secs)
            gates = f"{result.gates.runs:>4} {result.gates.seconds:5.2f}" if result.gates is not None else \
                f"{'-':>4} {'-':>5}"
            print(f"  {path.relative_to(REAL) if path.is_relative_to(REAL) else path.name!s:<46} {case:<16} "
                  f"{secs:6.2f} {result.tried:>6} {result.pruned:>6} {gates}  {verdict(result)}")
    print(f"slowest: {worst:.2f} s ({'within' if worst < GOAL else 'OVER'} the {GOAL:g} s goal)")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or [REAL / f for f in FILES])
