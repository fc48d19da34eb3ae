"""How many BLAS threads each of the engine's matrix products gets.

A recurrent layer makes two kinds of products. The input projection x·kernel of many steps at once
is one large matrix product: it gains from every free core. The recurrence makes one small product
per time step, h·recurrent_kernel of (batch × N_c)·(N_c × G·N_c): below a few tens of MFLOP, BLAS
threads cost more than they save. And when another process keeps a core busy, OpenBLAS's threads
wait for each other at every call: measured on 2 cores (OpenBLAS 0.3.31, SkylakeX kernels,
`benchmarks/engine_speed.py` prints the table), a (4 × 512)·(512 × 2048) product took 0.47 ms on one
thread and 0.68 ms on two beside a busy process (22 ms in another run), and a whole small LSTM
three times its quiet time, where one thread kept it within 1.7 times.

So: a product gets BLAS threads only when it is large (STEP_THREADS_BATCH rows and
STEP_THREADS_FLOPS for a step; PROJECTION_THREADS_FLOPS for the projection) and no other process
is running on the machine's cores right now (Linux: the runnable tasks of /proc/loadavg, less this
process's own; elsewhere this check is skipped). Otherwise one thread.

The limit is set with threadpoolctl around the engine's own loop only, and restored after it: the
user's BLAS setting is never changed outside the engine's calls. Without threadpoolctl (it is a
dependency, but a vendored NumPy may hide its BLAS), nothing is limited.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# A per-step product gets BLAS threads only from this many rows (batch) and this many flops; the input
# projection from this many flops.
STEP_THREADS_BATCH, STEP_THREADS_FLOPS, PROJECTION_THREADS_FLOPS = 16, 32e6, 32e6

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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def others_running() -> int:
    """Tasks of other processes running or ready to run right now (0 where the system does not say).

    /proc/loadavg's fourth field counts the runnable tasks of the whole machine at this instant; this
    process's own runnable threads (itself, BLAS threads still spinning) are taken off.
    """
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/stat") as f:
                own += f.read().rsplit(")", 1)[-1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - own)


def free_cores() -> int:
    """Cores this process can use now without waiting for another process."""
    return max(1, _cores() - others_running())


def step_threads(batch: int, units: int, width: int, free: int | None = None) -> int | None:
    """BLAS threads for a (batch × units)·(units × width) product per step; None: the BLAS default."""
    free = free_cores() if free is None else free
    if free > 1 and batch >= STEP_THREADS_BATCH and 2.0 * batch * units * width >= STEP_THREADS_FLOPS:
        return None if free >= _cores() else free  # never more threads than cores nobody else holds
    return 1


def projection_threads(rows: int, inner: int, width: int, free: int | None = None) -> int | None:
    """BLAS threads for the input projection (rows × inner)·(inner × width); None: the BLAS default."""
    free = free_cores() if free is None else free
    if free > 1 and 2.0 * rows * inner * width >= PROJECTION_THREADS_FLOPS:
        return None if free >= _cores() else free
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
