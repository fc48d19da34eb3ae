"""How many BLAS threads each of the engine's matrix products gets.

A recurrent layer makes two kinds of products. The input projection x·kernel of many steps at once
is one large matrix product: it gains from every core, and gets the BLAS default. The recurrence
makes one small product per time step, h·recurrent_kernel of (batch × N_c)·(N_c × G·N_c): below a
few tens of MFLOP, BLAS threads cost more than they save, and when another process keeps a core
busy, OpenBLAS's threads wait for each other at every call. Measured on 2 cores (OpenBLAS 0.3.31,
SkylakeX kernels, `benchmarks/engine_speed.py` prints the table): a (4 × 512)·(512 × 2048) product took
0.48 ms on one thread and 22 ms on two with a busy neighbour; (64 × 1024)·(1024 × 4096) took 8.3 ms
on one thread and 4.3 ms on two quiet, 8.3 ms on two busy. So the recurrence runs on one thread
unless each step's product is large (STEP_THREADS_BATCH rows and STEP_THREADS_FLOPS).

The limit is set with threadpoolctl around the engine's own loop only, and restored after it: the
user's BLAS setting is never changed outside the engine's calls. Without threadpoolctl (it is a
dependency, but a vendored NumPy may hide its BLAS), nothing is limited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

# A per-step product gets BLAS threads only from this many rows (batch) and this many flops.
STEP_THREADS_BATCH, STEP_THREADS_FLOPS = 16, 32e6

_controller: Any = None


def _blas() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (found once), or None."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except (ImportError, OSError):  # no threadpoolctl, or it cannot inspect this process: limit nothing
            _controller = False
    return _controller or None


def step_threads(batch: int, units: int, width: int) -> int | None:
    """BLAS threads for a (batch × units)·(units × width) product per step; None: the BLAS default."""
    if batch >= STEP_THREADS_BATCH and 2.0 * batch * units * width >= STEP_THREADS_FLOPS:
        return None
    return 1


@contextlib.contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """BLAS limited to `threads` inside the block (None: unchanged), restored after it."""
    controller = _blas() if threads is not None else None
    if controller is None:
        yield
        return
    with controller.limit(limits=threads, user_api="blas"):
        yield
