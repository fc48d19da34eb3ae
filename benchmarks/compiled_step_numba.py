"""A compiled LSTM step (numba), the measurement behind keeping the NumPy engine as the only path (issue 17).

    python -m venv /tmp/nb && /tmp/nb/bin/pip install numba     # not a dependency of lstm-inspect
    /tmp/nb/bin/python benchmarks/compiled_step_numba.py

numba's own matrix product needs SciPy's BLAS, so the recurrent product is written as loops here. Measured on
this machine (2 cores, 2026-11-27): 18-21 us a step on (1, 200, 32, 64) where the NumPy engine takes 8.5 and
torch 2.1 (one thread each); 26 ms a step on (32, 100, 64, 256); the first call compiles for 4.4 s, later runs
load the cache in 0.16 s; numba and llvmlite take 208 MB installed.
"""

from __future__ import annotations

import time
from typing import Any

import numba
import numpy as np

SHAPES = [(1, 200, 32, 64), (32, 100, 64, 256), (1, 1000, 128, 512)]


@numba.njit(cache=True)
def lstm_forward(xp: Any, recurrent: Any, h0: Any, c0: Any) -> Any:
    """xp (T, B, 4U) = x·kernel + bias (gates i, f, c, o); the recurrence, step by step."""
    steps, batch, width = xp.shape
    units = width // 4
    h = h0.copy()
    c = c0.copy()
    out = np.empty((steps, batch, units), dtype=xp.dtype)
    z = np.empty((batch, width), dtype=xp.dtype)
    for t in range(steps):
        for b in range(batch):
            for j in range(width):
                acc = xp[t, b, j]
                for k in range(units):
                    acc += h[b, k] * recurrent[k, j]
                z[b, j] = acc
        for b in range(batch):
            for u in range(units):
                i = 1.0 / (1.0 + np.exp(-z[b, u]))
                f = 1.0 / (1.0 + np.exp(-z[b, units + u]))
                g = np.tanh(z[b, 2 * units + u])
                o = 1.0 / (1.0 + np.exp(-z[b, 3 * units + u]))
                c[b, u] = f * c[b, u] + i * g
                h[b, u] = o * np.tanh(c[b, u])
        out[t] = h
    return out


def median(f: Any, n: int = 7) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[n // 2]


def main() -> None:
    for batch, steps, n_i, units in SHAPES:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch, steps, n_i)).astype(np.float32)
        kernel = (rng.normal(size=(n_i, 4 * units)) * 0.1).astype(np.float32)
        recurrent = (rng.normal(size=(units, 4 * units)) * 0.1).astype(np.float32)
        zeros = np.zeros((batch, units), np.float32)

        def run(x: Any = x, kernel: Any = kernel, recurrent: Any = recurrent, zeros: Any = zeros) -> Any:
            xp = np.ascontiguousarray((x @ kernel).transpose(1, 0, 2))
            return lstm_forward(xp, recurrent, zeros, zeros)

        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
        took = median(run)
        print(f"numba {(batch, steps, n_i, units)}: {took * 1e3:.2f} ms ({took / steps * 1e6:.1f} us a step); "
              f"first call (compile or cache load) {first * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
