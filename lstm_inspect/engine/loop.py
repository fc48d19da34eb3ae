"""The sequence loop every recurrent cell shares, as Keras's `RNN` layer runs it, in NumPy.

A cell (`lstm_inspect.model.cells`) computes one step; this runs it over time
(`keras/src/layers/rnn/rnn.py` and the backend's `rnn` loop):

- the input part `x_t · kernel + bias` of every step is one matrix product over many steps at
  once (a bounded chunk, so memory stays O(batch·units) however long the sequence); only the
  recurrence loops over time, on preallocated buffers;
- `go_backwards` consumes the input reversed in time, and the outputs stay in that processing
  order (as Keras returns them);
- masked steps (Masking layer, Embedding mask_zero): the cell computes its new states but they
  are not kept, so the state carries through; the output at a masked step is 0 when
  `zero_output_for_mask` (Bidirectional forces it for return_sequences) and otherwise repeats the
  previous output (0 before the first unmasked step, as on Keras's TensorFlow backend). A port
  that applies the mask to one of the two only (`mask_states` / `mask_outputs` False, for
  `check.diagnose`) keeps the new states, or emits the cell's fresh output, at masked steps;
- initial states default to zeros; return_sequences keeps every output, else only the last;
- a cell whose states are feature maps (ConvLSTM: (batch, *spatial, filters)) gives its step a `project`
  (the input convolution of many steps at once, in place of the product with `kernel`) and a `state_shape`
  (the states' shape after the batch, from one input step's); the rest of the loop is the same. Its mask is
  (batch, steps) or, as Keras's TensorFlow loop broadcasts a Masking layer's (batch, steps, *spatial) mask
  (`keras/src/backend/tensorflow/rnn.py` `_expand_mask`), one per pixel: each pixel keeps its own states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_inspect.base import progress, threads
from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.cells.base import Step


@dataclass
class SequenceResult:
    outputs: np.ndarray  # (batch, steps, units) in processing order, or (batch, 1, units) for the last only
    states: list[np.ndarray]  # the final carried states, in the cell's order (h first)
    trace: dict[str, np.ndarray] | None = None  # per quantity (batch, steps, width), in processing order

    @property
    def h(self) -> np.ndarray:
        return self.states[0]

    @property
    def c(self) -> np.ndarray:
        return self.states[1]

    @property
    def last_output(self) -> np.ndarray:
        return self.outputs[:, -1]


# The input projection is computed this many (batch·step·projection) values at a time, so memory
# stays O(batch·units) however long the sequence (8 MB of float32 per chunk).
PROJECTION_CHUNK = 2 << 20


def run_sequence(
    step: Step,
    x: np.ndarray,
    *,
    units: int,
    trace_widths: dict[str, int] | None = None,
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    initial_state: list[np.ndarray] | None = None,
    dtype: type = np.float32,
    return_sequences: bool = True,
    mask_states: bool = True,
    mask_outputs: bool = True,
) -> SequenceResult:
    """One recurrent direction over x of shape (batch, steps, input_dim).

    `trace_widths` ({quantity: width}) asks the step to record its intermediates at every step.
    `mask_states` / `mask_outputs` False: the mask kept from the states / the outputs (a port's mistakes).
    """
    x = np.asarray(x, dtype=dtype)
    if go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    batch, steps = x.shape[:2]
    features = x.shape[2:]
    if steps == 0 or batch == 0:
        raise InspectError(f"the input has {steps} time steps and a batch of {batch}; a recurrent layer needs "
                           "at least one of each")
    project = getattr(step, "project", None)
    shape = tuple(step.state_shape(features)) if project is not None else (units,)
    if initial_state is None:
        states = [np.zeros((batch, *shape), dtype=dtype) for _ in range(step.n_states)]
    else:
        states = [np.array(s, dtype=dtype) for s in initial_state]
    new = [np.empty_like(s) for s in states]
    outputs = np.empty((batch, steps if return_sequences else 1, *shape), dtype=dtype)
    last = np.zeros((batch, *shape), dtype=dtype)  # the previous output (masking repeats it)
    record = ({q: np.empty((batch, steps, *shape[:-1], w), dtype=dtype) for q, w in trace_widths.items()}
              if trace_widths else None)

    width = step.kernel.shape[-1] * int(np.prod(shape[:-1]))
    chunk = max(1, min(steps, PROJECTION_CHUNK // max(1, batch * width)))
    projection = np.empty((batch * chunk, width), dtype=dtype)
    # h written straight into the output sequence when nothing masks it (no copy per step)
    direct = mask is None and return_sequences
    # BLAS threads per product, from the product's size and whether other processes hold cores now
    free = threads.free_cores()
    step_threads = threads.step_threads(batch, units, width, free)
    projection_threads = threads.projection_threads(batch * chunk, int(np.prod(features)), width, free)
    for t0 in range(0, steps, chunk):
        progress.advance("time steps", t0, steps)
        t1 = min(steps, t0 + chunk)
        # x_t · kernel + bias for the steps t0..t1 in one matrix product
        with threads.limited(projection_threads):
            rows = _projected(step, x[:, t0:t1], projection[: batch * (t1 - t0)])
        x_proj = rows.reshape(batch, t1 - t0, *shape[:-1], step.kernel.shape[-1])
        with threads.limited(step_threads):  # the small per-step products: see lstm_inspect.base.threads
            for t in range(t0, t1):
                if direct:
                    new[0] = outputs[:, t]
                step(x_proj[:, t - t0], states, new, record, t)
                if mask is None:
                    states, new = new, states  # the new states become the carried ones (buffers swap, no copy)
                    if direct:
                        continue
                    out = states[0]
                else:
                    m = mask[:, t]  # (batch,), or a ConvLSTM's per-pixel mask (batch, *spatial): broadcast
                    m = m.reshape(m.shape + (1,) * (len(shape) + 1 - m.ndim))
                    states, new, out = _masked_step(states, new, last, m, zero_output_for_mask, mask_states,
                                                    mask_outputs)
                if return_sequences:
                    outputs[:, t] = out
                elif t == steps - 1:
                    outputs[:, 0] = out
    if direct:  # the carried h may be a view of the outputs: the final states own their memory
        states = [np.array(s) for s in states]
    return SequenceResult(outputs, states, record)


def _projected(step: Step, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x_t · kernel + bias for the steps of x (batch, steps, ...) into `rows` (batch·steps, width); a cell with
    feature maps (`step.project`) computes its input convolution, bias included."""
    project = getattr(step, "project", None)
    if project is not None:
        rows[...] = project(x.reshape(-1, *x.shape[2:])).reshape(rows.shape)
        return rows
    np.matmul(x.reshape(-1, x.shape[-1]), step.kernel, out=rows)
    if step.input_bias is not None:
        rows += step.input_bias
    return rows


def _masked_step(states: list[np.ndarray], new: list[np.ndarray], last: np.ndarray, m: np.ndarray,
                 zero_output_for_mask: bool, mask_states: bool, mask_outputs: bool
                 ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """A step under a mask `m` (batch, 1): the masked rows keep their old states and output 0 or the previous
    output (`last`, updated in place). Returns (carried states, spare buffers, the output)."""
    fresh = new[0]
    if mask_states:
        for s, n in zip(states, new):
            np.copyto(s, n, where=m)
    else:  # a port's mistake: the states run through masked steps
        states, new = new, states
    if not mask_outputs:  # a port's mistake: the cell's fresh output written at masked steps
        return states, new, fresh
    if zero_output_for_mask:
        last[...] = 0.0
    np.copyto(last, fresh, where=m)
    return states, new, last


def merge_bidirectional(forward: np.ndarray, backward: np.ndarray, merge_mode: str | None
                        ) -> np.ndarray | list[np.ndarray]:
    """Keras Bidirectional's merge of the forward output and the (already time-aligned) backward output."""
    if merge_mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / 2
    if merge_mode is None:
        return [forward, backward]
    raise InspectError(f"Bidirectional merge_mode {merge_mode!r} is not one Keras defines")
