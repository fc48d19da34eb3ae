"""One resource budget for everything a file can make the engine build.

A checkpoint of a few kilobytes decides sizes the engine would allocate: RepeatVector's `n`,
UpSampling's `size`, an FFT's `fft_length`, constants broadcast against each other, attention
scores of Tq×Tv, a sequence loop of millions of Python steps. Keras would build the same tensors
(keras/src/layers/reshaping/repeat_vector.py, up_sampling1d.py, ...); the engine refuses them first.

One budget per engine run (`Network.run`, or one direction alone in `network.run_direction`):

- memory: the bytes of the tensors the run holds (each layer's outputs until nothing downstream
  needs them, what the caller asked to keep) plus what the next layer or op would allocate,
  computed from shapes before anything is allocated (`need`);
- steps: the recurrent steps the run makes, steps × directions summed over layers (`steps`), each step
  weighed by its work: a step of at most STEP_WORK multiply-adds (batch × (N_i + N_c) × gates × N_c, the
  input projection and the recurrent product of one step) counts as one, a wider one as that many times
  STEP_WORK. A few-kilobyte file can declare an LSTM of thousands of units (its weights deflate in a zip):
  counting its steps alone let one run do minutes of matrix products within the step budget.

Defaults a laptop survives (2 GB, 250,000 steps: seconds of step loop); `--max-memory 8GB` / `--max-steps N` on every
command that runs the engine, `LSTM_INSPECT_MAX_MEMORY` / `LSTM_INSPECT_MAX_STEPS` in the
environment, or `limited(Limits(...))` around library calls raise them. Runs that share one budget
(diagnose's, one per porting mistake) set `Limits.runs`: each run's steps count that many times. Over budget: one line
naming the layer, the size it would need and the option (`BudgetError`, exit 2).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError

DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB of live tensors
DEFAULT_MAX_STEPS = 250_000  # recurrent steps × directions per run: seconds of step loop (about 10 s for stats)
# The multiply-adds one step may do and still count as one: DEFAULT_MAX_STEPS steps of this size are under a
# minute of matrix products on a laptop even at batch 1, the slowest case (matrix-vector products; measured on 2
# shared cores at a quarter of this, 2**18: LSTMs of 362, 1300 and 2048 units at the most steps allowed ran 6 s, 9 s
# and 11 s of CPU), while real models at the batch of 4 that stats and plot make up (a two-layer Bidirectional
# LSTM of 1024 units over 500 steps) run under the default.
STEP_WORK = 1 << 20
ENV_MEMORY, ENV_STEPS = "LSTM_INSPECT_MAX_MEMORY", "LSTM_INSPECT_MAX_STEPS"
MEMORY_OPTION = f"--max-memory (or {ENV_MEMORY})"
STEPS_OPTION = f"--max-steps (or {ENV_STEPS})"

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


class BudgetError(InspectError):
    """A run that would exceed the resource budget (bad input: exit 2)."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_steps: int = DEFAULT_MAX_STEPS
    # Runs of the same cost that share the step budget, and who makes them (diagnose: the model, then one run per
    # porting mistake): each run's steps count this many times.
    runs: int = 1
    runs_by: str = ""


def parse_size(text: str, what: str = "--max-memory") -> int:
    """'8GB', '512MB', '2GiB', '1.5g' or a number of bytes (units are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise InspectError(f"{what} must be a size such as 8GB, 512MB or a number of bytes, not {text!r}")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise InspectError(f"{what} must be more than 0 bytes, not {text!r}")
    return size


def parse_steps(text: Any, what: str = "--max-steps") -> int:
    try:
        n = int(str(text).strip().replace("_", ""))
    except ValueError:
        n = 0
    if n <= 0:
        raise InspectError(f"{what} must be a positive whole number of steps, not {text!r}")
    return n


def limits_from(max_memory: str | None = None, max_steps: Any = None) -> Limits:
    """The limits an option asks for, else the environment's, else the defaults."""
    memory = max_memory if max_memory is not None else os.environ.get(ENV_MEMORY)
    steps = max_steps if max_steps is not None else os.environ.get(ENV_STEPS)
    return Limits(parse_size(memory, "--max-memory" if max_memory is not None else ENV_MEMORY)
                  if memory not in (None, "") else DEFAULT_MAX_BYTES,
                  parse_steps(steps, "--max-steps" if max_steps is not None else ENV_STEPS)
                  if steps not in (None, "") else DEFAULT_MAX_STEPS)


_LIMITS: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("limits", default=None)
_ACTIVE: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def current_limits() -> Limits:
    """The limits set by `limited`, else from the environment, else the defaults."""
    return _LIMITS.get() or limits_from()


@contextlib.contextmanager
def limited(limits: Limits) -> Iterator[None]:
    """Every engine run inside uses these limits (the CLI's --max-memory / --max-steps, or an API caller's)."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


def human(nbytes: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def values(shape: Iterable[int]) -> float:
    """How many values a shape holds, as a float (no overflow whatever the file declares)."""
    return float(np.prod([float(n) for n in shape], dtype=np.float64)) if shape else 1.0


class Budget:
    """The memory and steps one engine run holds, and what it is about to allocate."""

    def __init__(self, limits: Limits | None = None, where: str = "") -> None:
        self.limits = limits or current_limits()
        self.where = where  # the file, for the message
        self.site = ""  # the layer or op about to run ("layer x (RepeatVector)")
        self.itemsize = 4
        self._held: dict[int, list[Any]] = {}  # id of the memory's owner -> [nbytes, count, the owner]
        self.held_bytes = 0
        self.used_steps = 0

    # -------------------------------------------------------- what the run holds

    def hold(self, arrays: Iterable[Any]) -> None:
        for a in arrays:
            owner = _owner(a)
            if owner is None:
                continue
            entry = self._held.get(id(owner))
            if entry is None:
                self._held[id(owner)] = [owner.nbytes, 1, owner]
                self.held_bytes += owner.nbytes
            else:
                entry[1] += 1

    def drop(self, arrays: Iterable[Any]) -> None:
        for a in arrays:
            owner = _owner(a)
            entry = self._held.get(id(owner)) if owner is not None else None
            if entry is None:
                continue
            entry[1] -= 1
            if entry[1] <= 0:
                self.held_bytes -= entry[0]
                del self._held[id(owner)]

    # -------------------------------------------------------- checks before allocation

    def need(self, *shapes: Any, itemsize: int | None = None, what: str = "its output") -> None:
        """Refuse, before allocation, arrays of these shapes on top of what the run holds."""
        size = itemsize or self.itemsize
        nbytes = sum(values(s) for s in shapes) * size
        if self.held_bytes + nbytes > self.limits.max_bytes:
            largest = max(shapes, key=values) if shapes else ()
            shape = "(" + ", ".join(str(int(n)) for n in largest) + ")"
            held = f" on top of {human(self.held_bytes)} the run already holds" if self.held_bytes >= 1 << 20 else ""
            raise BudgetError(f"{self._prefix()}would need {human(nbytes)} ({what}, {shape}){held}, more than the "
                              f"memory budget of {human(self.limits.max_bytes)}; raise it with {MEMORY_OPTION} "
                              "if this machine has the memory")

    def steps(self, steps: int, directions: int = 1, work: float = 0.0) -> None:
        """Count a recurrent layer's steps × directions against the step budget, before it runs; a step of
        `work` multiply-adds over STEP_WORK counts as work / STEP_WORK steps."""
        weight = max(1.0, float(work) / STEP_WORK)
        charged = int(np.ceil(float(steps) * directions * weight))
        total = self.used_steps + charged
        runs = max(1, self.limits.runs)
        if total * runs > self.limits.max_steps:
            of = f" ({steps:,} steps × {directions} directions)" if directions > 1 else ""
            heavy = (f" of {int(work):,} multiply-adds each, counted as {charged:,} steps of {STEP_WORK:,}"
                     if weight > 1 else "")
            before = f" after {self.used_steps:,} already run" if self.used_steps else ""
            shared = (f" in each of the {runs} runs {self.limits.runs_by or 'that share the budget'}, "
                      f"{total * runs:,} in all" if runs > 1 else "")
            raise BudgetError(f"{self._prefix()}would run {steps * directions:,} recurrent steps{of}{heavy}{before}"
                              f"{shared}, more than the budget of {self.limits.max_steps:,}; raise it with "
                              f"{STEPS_OPTION}")
        self.used_steps = total

    def _prefix(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{where}{self.site} " if self.site else where + "the run "

    # -------------------------------------------------------- the run it belongs to

    @contextlib.contextmanager
    def active(self) -> Iterator[Budget]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def _owner(a: Any) -> np.ndarray | None:
    if not isinstance(a, np.ndarray):
        return None
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def active() -> Budget:
    """The budget of the run in progress, or a fresh one (an op or layer called on its own)."""
    found = _ACTIVE.get()
    return found if found is not None else Budget()


def need(*shapes: Any, itemsize: int | None = None, what: str = "its output") -> None:
    """`Budget.need` on the run in progress: what a layer or op is about to allocate."""
    active().need(*shapes, itemsize=itemsize, what=what)
