"""A whole Keras model run in NumPy: the graph that joins its layers.

Recurrent layers run through their cell (`lstm_inspect.model.cells`) and the shared sequence loop
(`lstm_inspect.engine.loop`), Bidirectional around them; every other layer through the layer registry
(`lstm_inspect.engine.layers`), raw ops through the op whitelist (`lstm_inspect.engine.ops`). Sequential models
run as a chain; Functional models in the topological order of their calls (`ModelGraph.calls`),
several inputs and outputs included; nested models run as sub-graphs.

`run_layer` runs one recurrent layer alone (a Bidirectional's two directions merged as Keras's Bidirectional
merges them, `bidirectional_output`; an RNN over StackedRNNCells as its cells in turn, each over the previous
one's outputs, `stacked_input`); `trace` keeps each direction's values at every step with the input it
consumed and the mask it saw (`Trace`, the `trace` command and `Checkpoint.trace`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from lstm_inspect.base.budget import Budget, Limits, current_limits, values
from lstm_inspect.base.display import brief, html_table
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, Tensor
from lstm_inspect.engine.loop import SequenceResult, merge_bidirectional, run_sequence
from lstm_inspect.engine.ops import OpError, op_supported, run_op_layer
from lstm_inspect.engine.user_layers import UserLayer, engine_runs, refusal, run_user_layer, user_layer
from lstm_inspect.model.architecture import (
    Call,
    ConfigError,
    LayerNode,
    ModelGraph,
    TensorRef,
    declared_input_shape,
    flatten,
    split_rnn_call,
)
from lstm_inspect.model.cells.base import CellWeights, StepVariant, keras_major_minor
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection, check_sizes, weight_names


@dataclass
class RunRecord:
    """What a run leaves behind besides the outputs: recurrent layers' outputs (every layer's with
    `every_layer`), every direction's trace. What it keeps counts against the run's memory budget."""

    layer_outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    layer_inputs: dict[str, np.ndarray] = field(default_factory=dict)  # what each recurrent layer was fed
    initial_states: dict[str, list[np.ndarray]] = field(default_factory=dict)  # states handed to a layer
    traces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)  # mask each direction saw
    final_states: dict[str, list[np.ndarray]] = field(default_factory=dict)  # each direction's, its first call
    trace_inputs: dict[str, np.ndarray] = field(default_factory=dict)  # each traced direction's input (batch-major)
    every_layer: bool = False  # keep every layer's outputs, not only the recurrent layers' (the PyTorch export)


WeightFn = Callable[[RecurrentDirection, CellWeights], CellWeights]


@dataclass(frozen=True)
class DirectionVariant:
    """How a port might compute one direction differently from Keras (see `diagnose`)."""

    weights: tuple[WeightFn, ...] = ()  # applied in order to the Keras weights
    step: StepVariant | None = None  # other activations or equations
    ignore_mask: bool = False
    zero_output_for_mask: bool | None = None
    ignore_go_backwards: bool = False  # a go_backwards direction run on the input in its own order
    reverse_time: bool = False  # a forward direction run over the input reversed in time
    zero_initial_state: bool = False  # the states another layer hands over ignored
    swap_initial_states: bool = False  # the two states handed over taken as (c, h), TF1's LSTMStateTuple order
    carry_rows: bool = False  # row b starts from row b-1's final states (a port looping over samples)
    late_output: bool = False  # h_{t-1} emitted at step t (zeros at step 0)
    mask_outputs_only: bool = False  # the states run through masked steps; only the outputs are masked
    mask_states_only: bool = False  # the states held at masked steps, but the cell's fresh output emitted there
    first_output: bool = False  # the first processed step's output returned as the last (return_sequences=False)
    emit_c: bool = False  # an LSTM's cell state c_t emitted as its output instead of h_t
    batch_time_swapped: bool = False  # (batch, steps) run as (steps, batch) and swapped back
    output_flipped: bool = False  # a go_backwards direction's output flipped back to input time order
    first_step_weights: tuple[WeightFn, ...] = ()  # the weights step 0 runs with (its recurrent bias dropped)
    start_states: tuple[np.ndarray, ...] | None = None  # the states to start from where none are handed over

    def then(self, other: DirectionVariant) -> DirectionVariant:
        """Both departures at once: weight changes in order, flags either sets, reversals cancel, and other's
        setting wins where both set one (a new field needs no edit here)."""
        merged: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "step":
                merged[f.name] = a if b is None else b if a is None else StepVariant(
                    activation=b.activation or a.activation,
                    recurrent_activation=b.recurrent_activation or a.recurrent_activation,
                    options={**a.options, **b.options})
            elif f.name == "reverse_time":
                merged[f.name] = a != b
            elif f.default == ():  # weight changes: in order
                merged[f.name] = a + b
            elif f.default is False:
                merged[f.name] = a or b
            else:
                merged[f.name] = b if b is not None else a
        return DirectionVariant(**merged)


@dataclass(frozen=True)
class Variant:
    """Departures from Keras for a whole model: per direction (name, or None for every direction)."""

    changes: tuple[tuple[str | None, DirectionVariant], ...] = ()
    backward_output_not_flipped: bool = False  # Bidirectional: the backward sequence left in processing order
    dtype: type | None = None
    directions_interleaved: bool = False  # Bidirectional concat: ONNX's [T, 2, B, H] reshaped to [T, B, 2H]
    masking_any: bool = False  # Masking masks a step where any feature equals mask_value (Keras: all of them)
    after_a_call: bool = False  # run once before (a warm-up call), this run starting from that call's final states
    stacked_states: bool = False  # each recurrent layer started from the final states of the one before it

    def for_direction(self, name: str) -> DirectionVariant | None:
        found = None
        for target, change in self.changes:
            if target is None or target == name:
                found = change if found is None else found.then(change)
        return found

    def __add__(self, other: Variant) -> Variant:
        return Variant(self.changes + other.changes,
                       self.backward_output_not_flipped or other.backward_output_not_flipped,
                       other.dtype or self.dtype, self.directions_interleaved or other.directions_interleaved,
                       self.masking_any or other.masking_any, self.after_a_call or other.after_a_call,
                       self.stacked_states or other.stacked_states)

    def first_call(self) -> Variant:
        """The warm-up call of `after_a_call`: every other departure, from the usual states."""
        return replace(self, after_a_call=False)


def started_from(states: dict[str, list[np.ndarray]]) -> Variant:
    """Each direction (by name) started from these states instead of zeros: the second call of a port that keeps
    its states across calls (TFLite keeps an LSTM's states in variable tensors unless they are reset:
    tensorflow#26786, #47813, #38312; tflite-micro PR #1389)."""
    return Variant(changes=tuple((name, DirectionVariant(start_states=tuple(st))) for name, st in states.items()))


def _rows_in_turn(step: Any, x: np.ndarray, mask: np.ndarray | None, start: list[np.ndarray] | None,
                  loop: dict[str, Any]) -> SequenceResult:
    """A port that runs the rows of a batch one after another and never resets its states (diagnose's
    "state carried across batch rows"): row 0 starts from `start` (or zeros), row b from row b-1's final states."""
    outs: list[np.ndarray] = []
    states: list[list[np.ndarray]] = []
    carried = None if start is None else [np.asarray(a)[:1] for a in start]
    for b in range(x.shape[0]):
        r = run_sequence(step, x[b:b + 1], mask=None if mask is None else mask[b:b + 1], initial_state=carried,
                         **loop)
        outs.append(r.outputs)
        states.append(r.states)
        carried = [np.array(a, copy=True) for a in r.states]
    return SequenceResult(np.concatenate(outs), [np.concatenate(k) for k in zip(*states)])


def run_direction(
    d: RecurrentDirection, x: np.ndarray, mask: np.ndarray | None = None,
    initial_state: list[np.ndarray] | None = None, dtype: type = np.float32, trace: bool = False,
    sequences: bool = True, weights: CellWeights | None = None, variant: DirectionVariant | None = None,
    budget: Budget | None = None,
) -> SequenceResult:
    """One direction on its own input (batch, steps, N_i), with the activations the writing Keras defined.

    `sequences=False` keeps only the last output (what return_sequences=False returns), so a
    long sequence needs no (batch, steps, units) buffer. Its steps and buffers are counted against
    `budget` (a whole model's run), or a budget of its own, before anything is allocated. `variant`: how a
    port computes it differently (`diagnose`); a trace is always Keras's own loop.
    """
    s = d.settings
    v = variant or DirectionVariant()
    x = np.asarray(x)
    if v.batch_time_swapped and not trace:
        return _batch_time_swapped(d, x, mask, initial_state, dtype, sequences, weights, v, budget)
    charge_direction(budget or Budget(where=str(d.source.path)), d, x.shape, dtype, trace, sequences)
    w = weights if weights is not None else d.weights()
    for fn in v.weights:
        w = fn(d, w)
    if v.reverse_time:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    step = _variant_step(d, w, dtype, x.shape[0], v, trace)
    row_step = _variant_step(d, w, dtype, 1, v, trace) if v.carry_rows and not trace else None
    units = w.units
    del w, weights  # the step holds its own copy: the stored arrays need not stay in memory while it runs
    widths = None
    if trace:
        widths = {q: d.cell.trace_width(q, units) for q in d.cell.trace_quantities}
    backwards = s.go_backwards and not v.ignore_go_backwards
    swapped = v.emit_c and not trace and len(d.cell.states) == 2
    start = _start(v, initial_state, swapped)
    used_mask = None if v.ignore_mask else mask
    first = s.conv is not None and s.conv.data_format == "channels_first"
    if first:  # a channels_first ConvLSTM runs channels_last (its step's convolutions), and is moved back below
        x = s.conv.to_last(x)
        start = None if start is None else [s.conv.to_last(np.asarray(a)) for a in start]
    loop = dict(units=units, trace_widths=widths, go_backwards=backwards, dtype=dtype,
                zero_output_for_mask=s.zero_output_for_mask if v.zero_output_for_mask is None
                else v.zero_output_for_mask,
                return_sequences=sequences or v.late_output or v.output_flipped or v.first_output,
                mask_states=not v.mask_outputs_only, mask_outputs=not v.mask_states_only)
    if row_step is not None:
        res = _rows_in_turn(row_step, x, used_mask, start, loop)
    else:
        res = run_sequence(step, x, mask=used_mask, initial_state=start, **loop)  # type: ignore[arg-type]
    if swapped:  # the loop carried (c, h): c was emitted, the final states are Keras's (h, c)
        res = SequenceResult(res.outputs, res.states[::-1], res.trace)
    if not trace:
        res = _emitted(res, v, sequences)
    if res.trace is not None and used_mask is not None:
        hold_masked_states(res.trace, d.cell.states, np.asarray(used_mask, bool)[:, ::-1] if backwards
                           else np.asarray(used_mask, bool), start)
    if first:
        back = s.conv.from_last
        res = SequenceResult(back(res.outputs), [back(a) for a in res.states],
                             None if res.trace is None else {q: back(a) for q, a in res.trace.items()})
    return res


def _start(v: DirectionVariant, initial_state: list[np.ndarray] | None, swapped: bool) -> list[np.ndarray] | None:
    """The states a run starts from: the ones handed over (unless the port ignores them or swaps them), else the
    variant's (a previous call's final states), else None (zeros); in the loop's order (c first when `swapped`)."""
    start = None if v.zero_initial_state else initial_state
    if v.swap_initial_states and start is not None:
        start = list(start[::-1])  # the port hands over (c, h) where Keras takes [h, c]
    if start is None and v.start_states is not None:
        start = list(v.start_states)
    return start[::-1] if swapped and start is not None else start


def _variant_step(d: RecurrentDirection, w: CellWeights, dtype: type, batch: int, v: DirectionVariant,
                  trace: bool) -> Any:
    """The cell's step for a port's variant: its own states order (`emit_c`), its own first step."""
    step = d.cell.step(w, d.settings, dtype, batch, d.hard_sigmoid, v.step)
    if trace:
        return step
    if v.first_step_weights:
        first = w
        for fn in v.first_step_weights:
            first = fn(d, first)
        step = _FirstStepApart(step, d.cell.step(first, d.settings, dtype, batch, d.hard_sigmoid, v.step))
    if v.emit_c and len(d.cell.states) == 2:
        step = _StatesSwapped(step)
    return step


class _FirstStepApart:
    """A port that special-cases step 0 ("no hidden state yet"): it runs with other weights there, e.g. without
    the recurrent part and its bias (ml-explore/mlx#3249, PR #3252: nn.GRU skipped b_hn at the first step
    when hidden=None). Only the input bias may differ in the projection the loop computes with `kernel`."""

    def __init__(self, step: Any, first: Any) -> None:
        self.step, self.first = step, first
        self.kernel, self.input_bias, self.n_states = step.kernel, step.input_bias, step.n_states
        zero = np.zeros(step.kernel.shape[1], step.kernel.dtype)
        ib = zero if step.input_bias is None else step.input_bias
        self.shift = (zero if first.input_bias is None else first.input_bias) - ib

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        if t == 0:
            self.first(xp + self.shift, states, new, record, t)
        else:
            self.step(xp, states, new, record, t)


class _StatesSwapped:
    """An LSTM step whose states the loop carries as (c, h), so what it emits is c_t: a port returning the cell
    state where Keras returns h (research #8; keras PR #11726 documented which is which)."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.kernel, self.input_bias, self.n_states = step.kernel, step.input_bias, step.n_states

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        self.step(xp, states[::-1], new[::-1], record, t)


def _emitted(res: SequenceResult, v: DirectionVariant, sequences: bool) -> SequenceResult:
    """What a port emits from the loop's outputs: one step late (h_{t-1} at step t, zeros at step 0), a
    go_backwards direction's outputs flipped back to input order (ONNX direction='reverse' emits them so:
    onnx#2881, onnxruntime#4187), the first processed step's output as the last."""
    out = res.outputs
    if v.late_output:
        late = np.zeros_like(out)
        late[:, 1:] = out[:, :-1]
        out = late
    if v.output_flipped:
        out = out[:, ::-1]
    if out is res.outputs and not v.first_output:
        return res
    if not sequences:  # the last output, or the first processed step's (a port returning output[0])
        out = out[:, :1] if v.first_output else out[:, -1:]
    return SequenceResult(out, res.states, res.trace)


def _batch_time_swapped(d: RecurrentDirection, x: np.ndarray, mask: np.ndarray | None,
                        initial_state: list[np.ndarray] | None, dtype: type, sequences: bool,
                        weights: CellWeights | None, v: DirectionVariant, budget: Budget | None) -> SequenceResult:
    """A port that runs (batch, steps, ·) data as (steps, batch, ·) and swaps the result back: PyTorch's nn.LSTM
    without batch_first=True (pytorch#1538), ONNX's layout (sonos/tract PR #1014); the transposing form (a reshape
    would scramble the rows instead). Its outputs come back in input order along the axis it ran over, then in the
    layer's processing order."""
    inner = replace(v, batch_time_swapped=False)
    res = run_direction(d, np.swapaxes(x, 0, 1), None if mask is None else np.swapaxes(mask, 0, 1), initial_state,
                        dtype, False, sequences, weights, inner, budget)
    if not sequences:
        return res
    backwards = d.settings.go_backwards and not v.ignore_go_backwards
    out = res.outputs[:, ::-1] if backwards else res.outputs
    out = np.swapaxes(out, 0, 1)
    return SequenceResult(np.ascontiguousarray(out[:, ::-1] if backwards else out), res.states)


def hold_masked_states(trace: dict[str, np.ndarray], states: tuple[str, ...], valid: np.ndarray,
                       initial_state: list[np.ndarray] | None) -> None:
    """A trace's states at masked steps made the state the layer holds after that step (the last unmasked
    step's, or the initial state before any), as Keras carries it and a port's state variable holds it; the
    gates keep what the cell computed there (`valid`: (batch, steps) in processing order, True = processed)."""
    steps = valid.shape[1]
    steps_at = np.arange(steps).reshape(1, steps, *([1] * (valid.ndim - 2)))  # a ConvLSTM mask: per pixel
    last = np.maximum.accumulate(np.where(valid, steps_at, -1), axis=1)  # last valid step so far
    for k, q in enumerate(states):
        if q not in trace:
            continue
        a = trace[q]
        index = last.reshape(last.shape + (1,) * (a.ndim - last.ndim))  # over the units, or a ConvLSTM's map
        held = np.take_along_axis(a, np.maximum(index, 0), axis=1)
        before = np.zeros(a.shape[:1] + a.shape[2:], a.dtype) if initial_state is None else \
            np.asarray(initial_state[k], a.dtype)
        trace[q] = np.where(index < 0, before[:, None], held)


def bidirectional_output(fw: SequenceResult, bw: SequenceResult, d: RecurrentDirection, unflipped: bool = False,
                         interleaved: bool = False) -> list[np.ndarray]:
    """What Keras's Bidirectional returns from its two directions' runs (batch-major), as a list (two arrays for
    merge_mode=None): the backward sequence flipped back to input time order, then merged by `merge_mode`; the
    layer's own layout (time-major for a time_major layer). `unflipped`, `interleaved`: a port's mistakes (see
    `diagnose`); `interleaved` (concat only): ONNX's Y [T, 2, B, H] (or torch's h_n [2, B, H]) reshaped to
    [T, B, 2H] ([B, 2H]) as it lies, so each row holds halves of other (direction, sample) pairs (pytorch #11368)."""
    s = d.settings
    if s.return_sequences:
        y, y_rev = fw.outputs, bw.outputs if unflipped else bw.outputs[:, ::-1]
    else:
        y, y_rev = fw.last_output, bw.last_output
    if interleaved and d.merge_mode == "concat":
        both = np.stack([y, y_rev])  # (2, B, T, H) or (2, B, H)
        if both.ndim == 3:
            return [both.reshape(y.shape[0], -1)]
        flat = np.ascontiguousarray(both.transpose(2, 0, 1, 3)).reshape(y.shape[1], y.shape[0], -1)  # ONNX's Y
        return [d.layer_layout(flat.transpose(1, 0, 2))]
    if s.return_sequences:
        y, y_rev = d.layer_layout(y), d.layer_layout(y_rev)
    merged = merge_bidirectional(y, y_rev, d.merge_mode)
    return merged if isinstance(merged, list) else [merged]


def is_stacked(directions: list[RecurrentDirection]) -> bool:
    """The directions are the cells of one RNN over StackedRNNCells (not a Bidirectional's halves)."""
    return directions[0].stack_index is not None


def state_offset(directions: list[RecurrentDirection], k: int) -> int:
    """Where direction k's states start in the layer's flat list of states (each direction's in turn)."""
    return sum(len(d.cell.states) for d in directions[:k])


def stacked_input(d: RecurrentDirection, res: SequenceResult) -> np.ndarray:
    """What the next cell of a StackedRNNCells reads from cell `d`'s run: its output sequence in input time order
    (the loop returns a go_backwards run's outputs in processing order), so that the next cell, going backwards
    too, reads cell d's output of the same step at every step. The same mask applies: a step masked for the stack
    holds every cell's state, whatever the next cell would have read there (keras/src/layers/rnn/
    stacked_rnn_cells.py runs the cells in turn inside one step of RNN's loop)."""
    return np.ascontiguousarray(res.outputs[:, ::-1]) if d.settings.go_backwards else res.outputs


def run_layer(directions: list[RecurrentDirection], x: np.ndarray, initial_state: list[np.ndarray] | None = None,
              dtype: type = np.float32, trace: bool = False, mask: np.ndarray | None = None,
              variant: Variant | None = None, weights: dict[str, CellWeights] | None = None
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[SequenceResult]]:
    """One recurrent layer alone on x as the layer takes it: one direction, or a Bidirectional's two merged as
    Keras merges them. Returns (outputs as the layer returns them, the final states in Keras's return_state
    order (forward's, then backward's), each direction's run). `initial_state`: every direction's states in
    that order. `mask`: (batch, steps) as the layer takes it, or None."""
    d0 = directions[0]
    xb = d0.layer_layout(np.asarray(x))  # batch-major, as the engine runs it
    if mask is not None:
        mask = np.asarray(mask, bool)
        mask = np.swapaxes(mask, 0, 1) if d0.settings.time_major else mask
        if mask.shape != xb.shape[:2]:
            raise InspectError(f"layer {d0.layer_path or d0.name}: the mask has shape {mask.shape}, the input "
                               f"{xb.shape}")
    n_all = state_offset(directions, len(directions))
    if initial_state is not None and len(initial_state) != n_all:
        raise InspectError(f"layer {d0.layer_path or d0.name}: takes {n_all} initial state(s) "
                           f"({', '.join(s for d in directions for s in d.cell.states)}), {len(initial_state)} "
                           "were given")
    sequences = directions[-1].settings.return_sequences
    if variant is not None and variant.after_a_call and not trace:
        first = variant.first_call()
        _, _, warm = run_layer(directions, x, initial_state, dtype, False, mask, first, weights)
        variant = first + started_from({d.name: r.states for d, r in zip(directions, warm)})
    results: list[SequenceResult] = []
    for k, d in enumerate(directions):
        first = state_offset(directions, k)
        init = None if initial_state is None else list(initial_state[first: first + len(d.cell.states)])
        if k and is_stacked(directions):
            xb = stacked_input(directions[k - 1], results[-1])
        d.check_input(xb, init)
        change = variant.for_direction(d.name) if variant is not None else None
        dt = variant.dtype if variant is not None and variant.dtype else dtype
        results.append(run_direction(d, xb, mask, init, dt, trace, sequences=d.settings.return_sequences or trace,
                                     weights=None if weights is None else weights.get(d.name), variant=change))
    states = [st for r in results for st in r.states]
    if len(directions) == 1 or is_stacked(directions):
        r = results[-1]
        return [d0.layer_layout(r.outputs) if sequences else r.last_output], states, results
    unflipped = bool(variant is not None and variant.backward_output_not_flipped)
    interleaved = bool(variant is not None and variant.directions_interleaved)
    return bidirectional_output(results[0], results[1], d0, unflipped, interleaved), states, results


def charge_direction(budget: Budget, d: RecurrentDirection, shape: tuple[int, ...], dtype: type, trace: bool,
                     sequences: bool) -> None:
    """A direction's steps, and the buffers its loop allocates (outputs, the trace, the input in the engine's
    dtype), against the budget before it runs (`engine.run_sequence`); each step weighs its multiply-adds,
    batch × (N_i + N_c) × gates × N_c (`Budget.steps`). An input that is not (batch, steps,
    features) is left to the checks that name what is wrong with it. A ConvLSTM's are feature maps: its step weighs
    both convolutions, batch × pixels × kernel taps × (C_in + F) × 4 × F."""
    if len(shape) != d.cell.input_ndim(d.settings):
        return
    batch, steps = shape[:2]
    features = int(np.prod(shape[2:]))
    units, pixels, taps = d.units or shape[-1], 1, 1
    conv = d.settings.conv
    if conv is not None:  # (pixels of the states) × F per step, from the input's spatial size
        channels_last = (shape[0], *shape[3:], shape[2]) if conv.data_format == "channels_first" else shape
        pixels = int(np.prod(conv.state_shape(tuple(channels_last[2:-1]))))
        taps = int(np.prod(conv.kernel_size))
    buffers = [(batch, steps if sequences else 1, pixels * units), (batch, steps, features)]
    if trace:
        buffers += [(batch, steps, pixels * d.cell.trace_width(q, units)) for q in d.cell.trace_quantities]
    site = budget.site
    budget.site = site or f"layer {d.name}"
    budget.need(*buffers, itemsize=np.dtype(dtype).itemsize, what="the output sequence, input and trace buffers")
    inputs = (d.input_dim or shape[-1]) if conv is not None else features
    budget.steps(steps, work=float(batch) * pixels * taps * (inputs + units) * d.cell.n_gates * units)
    budget.site = site


# Default inputs (stats, plot, verify without --input): this batch, and this many steps where the
# model lets the length free. A model that fixes more steps than MAX_DEFAULT_STEPS needs --input.
DEFAULT_BATCH, DEFAULT_STEPS, MAX_DEFAULT_STEPS = 4, 10, 4096


class Network:
    """Runs a checkpoint's model graph in NumPy."""

    def __init__(self, ckpt: Checkpoint, dtype: type = np.float32, trace: bool = False,
                 cache_weights: bool = False, variant: Variant | None = None,
                 weights: dict[str, CellWeights] | None = None, limits: Limits | None = None) -> None:
        if ckpt.graph is None:
            raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so the whole model cannot run; "
                               "run one recurrent direction with --layer, or give the architecture with --config")
        self.ckpt, self.dtype, self.trace, self.variant = ckpt, dtype, trace, variant
        self.limits = limits  # None: the limits in force when it runs (`budget.limited`, the environment)
        self.budget = Budget(limits)
        self._previous_states: list[np.ndarray] | None = None
        # Kept across runs when asked (repeated forward calls); otherwise each direction's weights
        # are read when it runs and dropped after, so memory stays at one layer's weights.
        self._weights: dict[str, CellWeights] | None = dict(weights) if weights is not None else (
            {} if cache_weights else None)
        self.ctx = Context(dtype, ckpt.keras_version, keras_major_minor(ckpt.keras_version)[0] or 2,
                           masking_any=bool(variant is not None and variant.masking_any))
        self.directions: dict[str, list[RecurrentDirection]] = {}
        for d in ckpt.directions:
            self.directions.setdefault(d.layer_path, []).append(d)
        self._check_supported(ckpt.graph)

    @property
    def keras_major(self) -> int:
        return self.ctx.keras_major

    # ---------------------------------------------------------------- inputs

    def input_nodes(self) -> list[LayerNode]:
        graph = self.ckpt.graph
        assert graph is not None
        if graph.class_name == "Sequential":
            return [graph.layers[0]] if graph.layers else []
        by_name = {n.name: n for n in graph.layers}
        return [by_name[r.layer] for r in graph.inputs if r.layer in by_name]

    def input_specs(self) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
        """(name, declared shape with None for free axes, 'ids' or 'float') per model input."""
        graph = self.ckpt.graph
        assert graph is not None
        specs = []
        for node in self.input_nodes():
            shape = declared_input_shape(graph, node)
            if shape is None and isinstance(node.config.get("input_dim"), int) and node.class_name != "Embedding":
                shape = [None, None, node.config["input_dim"]]
            if shape is not None:
                shape = _checked_shape(shape, node.name)
            first = self._first_consumer(node)
            kind = "ids" if first is not None and first.class_name == "Embedding" else "float"
            specs.append((node.name, shape, kind))
        return specs

    def vocabulary(self, input_name: str) -> int | None:
        """input_dim of the Embedding an input feeds (None if it feeds none)."""
        node = next((n for n in self.input_nodes() if n.name == input_name), None)
        first = self._first_consumer(node) if node is not None else None
        if first is None or first.class_name != "Embedding":
            return None
        vocab = first.config.get("input_dim")
        return int(vocab) if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0 else None

    def _first_consumer(self, node: LayerNode) -> LayerNode | None:
        graph = self.ckpt.graph
        assert graph is not None
        if node.class_name != "InputLayer":
            return node
        if graph.class_name == "Sequential":
            rest = graph.layers[1:]
            return rest[0] if rest else None
        for other in graph.layers:
            if any(r.layer == node.name for call in other.inbound for r in call.tensors()):
                return other
        return None

    def check_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        specs = self.input_specs()
        if len(xs) != len(specs):
            names = ", ".join(name for name, _, _ in specs)
            raise InspectError(f"{self.ckpt.file}: the model takes {len(specs)} input(s) ({names}), "
                               f"{len(xs)} were given")
        out = []
        for x, (name, shape, kind) in zip(xs, specs):
            x = np.asarray(x)
            check_sizes(x.shape, f"input {name}")
            if shape is not None:
                want = "(" + ", ".join("batch" if k == 0 else ("any" if n is None else str(n))
                                       for k, n in enumerate(shape)) + ")"
                if x.ndim != len(shape):
                    raise InspectError(f"input {name}: has shape {x.shape} but the model expects {want}")
                if shape[-1] is not None and x.shape[-1] != shape[-1] and len(shape) > 2:
                    raise InspectError(f"input {name}: has {x.shape[-1]} features per step but the model expects "
                                       f"{shape[-1]}, shape {want}")
            if kind == "ids":
                whole = x.dtype.kind != "f" or bool(np.all(np.isfinite(x) & (x == np.round(x))))
                if x.dtype.kind not in "fiu" or not whole:
                    raise InspectError(f"input {name}: feeds an Embedding, so it must hold integer token ids")
                x = x.astype(np.int64)
                vocab = self.vocabulary(name)
                if x.size and vocab is not None and (x.min() < 0 or x.max() >= vocab):
                    raise InspectError(f"input {name}: token ids must lie in [0, {vocab - 1}] (the Embedding's "
                                       f"input_dim), found {x.min()}..{x.max()}")
            elif x.dtype.kind not in "fiub":
                raise InspectError(f"input {name}: has dtype {x.dtype}, not numbers")
            elif not np.all(np.isfinite(x)):
                raise InspectError(f"input {name}: contains NaN or Inf")
            out.append(x)
        return out

    # ---------------------------------------------------------------- running

    def run(self, xs: list[np.ndarray], record: RunRecord | None = None) -> list[np.ndarray]:
        """The model's outputs, in the model's output order (what model.predict returns, as a list)."""
        graph = self.ckpt.graph
        assert graph is not None
        xs = self.check_inputs(xs)
        rec = record if record is not None else RunRecord()
        if self.variant is not None and self.variant.after_a_call:
            return self._after_a_call(xs, rec)
        self.budget = Budget(self.limits or current_limits(), str(self.ckpt.file))
        self._previous_states = None  # the last recurrent layer's final states (`Variant.stacked_states`)
        self.budget.itemsize = max(4, np.dtype(self.dtype).itemsize)
        self.budget.hold(xs)
        with self.budget.active():
            outs = self._run_graph(graph, [Tensor(x) for x in xs], rec)
        return [t.value for t in outs]

    def _after_a_call(self, xs: list[np.ndarray], rec: RunRecord) -> list[np.ndarray]:
        """A port that keeps its states across calls (diagnose's `Variant.after_a_call`): the model run once on
        xs, then again with every direction starting from its final states of that first call."""
        assert self.variant is not None
        first = self.variant.first_call()
        warm = RunRecord()
        Network(self.ckpt, self.dtype, variant=first, weights=self._weights, limits=self.limits).run(xs, warm)
        again = Network(self.ckpt, self.dtype, variant=first + started_from(warm.final_states),
                        weights=self._weights, limits=self.limits)
        outs = again.run(xs, rec)
        self.budget = again.budget
        return outs

    def _run_graph(self, graph: ModelGraph, inputs: list[Tensor], rec: RunRecord) -> list[Tensor]:
        return walk_graph(graph, inputs, lambda node, args, k: self._apply(node, args, rec, call=k),
                          str(self.ckpt.file), lambda o: isinstance(o, Tensor), self._release)

    def _release(self, outs: list[Tensor]) -> None:
        self.budget.drop(_arrays(outs))

    def _apply(self, node: LayerNode, args: Call, rec: RunRecord, call: int = 0) -> list[Tensor]:
        inputs = list(_tensors_in(args.args))
        if node.children is not None:
            return self._nested(node, inputs, rec, call)
        self.budget.site = f"graph op {node.name}" if node.is_op else f"layer {node.path} ({node.class_name})"
        if node.path in self.directions:
            outs = self._recurrent_layer(node, args, rec)
        elif node.is_op:
            outs = [self._op(node, args)]
        elif (mine := user_layer(node)) is not None:
            outs = self._user_layer(mine, node, inputs + _tensors_in(args.kwargs))
        else:
            kind = LAYERS.get(node.class_name)
            if kind is None or not engine_runs(node):
                raise InspectError(f"{self.ckpt.file}: {refusal(node)}")
            if not inputs and not _tensors_in(args.kwargs):  # tensors passed by keyword only: mha(query=q, value=v)
                raise InspectError(f"{self.ckpt.file}: layer {node.path} ({node.class_name}) is called on no tensor")
            kwargs = {k: v for k, v in args.kwargs.items()}
            self._precheck(node, inputs + _tensors_in(kwargs))
            layer_call = LayerCall(node, inputs, self.ckpt.read_layer(node.path), self.ctx, kwargs)
            outs = self._naming_the_file(kind.run, layer_call)
        self.budget.site = ""
        self.budget.hold(_arrays(outs))
        if call == 0 and (rec.every_layer or node.path in self.directions):
            rec.layer_outputs[node.path] = [t.value for t in outs]
            self.budget.hold(_arrays(outs))  # kept until the run ends
        return outs

    def _user_layer(self, mine: UserLayer, node: LayerNode, tensors: list[Tensor]) -> list[Tensor]:
        """A layer the user gave a NumPy function for (`engine.user_layers`): it gets the layer's stored weights by
        name, in Keras's order."""
        keys = [a.key for a in self.ckpt.layer_arrays.get(node.path, [])]
        weights = dict(zip(weight_names(keys, node.class_name), self.ckpt.read_layer(node.path)))
        try:
            return [Tensor(a) for a in run_user_layer(mine, node, tensors, weights, self.ctx)]
        except InspectError as exc:
            raise InspectError(f"{self.ckpt.file}: {exc}") from exc

    def _naming_the_file(self, run: Callable[[LayerCall], list[Tensor]], call: LayerCall) -> list[Tensor]:
        """A layer function's refusal (the file's weights or settings do not fit) as one sentence naming the file."""
        try:
            return run(call)
        except InspectError as exc:
            if str(exc).startswith(f"{self.ckpt.file}: "):
                raise
            raise type(exc)(f"{self.ckpt.file}: {exc}") from exc

    def _nested(self, node: LayerNode, inputs: list[Tensor], rec: RunRecord, call: int) -> list[Tensor]:
        """A nested model: its own graph, whose outputs its walk already holds."""
        outs = self._run_graph(node.children, inputs, rec)
        if call == 0 and rec.every_layer:
            rec.layer_outputs[node.path] = [t.value for t in outs]
            self.budget.hold(_arrays(outs))
        return outs

    def _precheck(self, node: LayerNode, inputs: list[Tensor]) -> None:
        """The output a layer that keeps its inputs' shape (or changes only the features, by its registered `dims`)
        would allocate, and one temporary of that size, against the budget before it runs. The layers that grow
        other axes (RepeatVector, UpSampling, padding, attention scores, Embedding...) check their own sizes
        where they compute them (`LayerCall.need`)."""
        shapes = [tuple(np.shape(t.value)) for t in inputs]
        if not shapes:
            return
        try:
            shape = np.broadcast_shapes(*shapes)
        except ValueError:
            shape = max(shapes, key=values)
        kind = LAYERS[node.class_name]
        inner = node.config.get("layer")
        reshapes = "Reshape" in (node.class_name, inner.get("class_name") if isinstance(inner, dict) else None)
        if kind.dims is not None and shape and not reshapes:  # a Reshape's last axis says nothing of its size
            dims = kind.dims(node, [s[-1] if s else None for s in shapes])
            if dims and isinstance(dims[0], int) and dims[0] > 0:
                shape = (*shape[:-1], dims[0])
        self.budget.need(shape, shape, what="its output and a temporary")

    def _op(self, node: LayerNode, args: Call) -> Tensor:
        try:
            return Tensor(run_op_layer(node, [_value(a) for a in args.args],
                                       {k: _value(v) for k, v in args.kwargs.items()}))
        except OpError as exc:
            raise InspectError(f"{self.ckpt.file}: graph op {node.name}: {exc}") from exc

    def _recurrent_layer(self, node: LayerNode, args: Call, rec: RunRecord) -> list[Tensor]:
        x, state_tensors, explicit, implicit = recurrent_call(args, self.keras_major, lambda o: isinstance(o, Tensor))
        if x is None:
            raise InspectError(f"{self.ckpt.file}: layer {node.path} is called on no tensor")
        states = [np.asarray(t.value) for t in state_tensors]
        if explicit is not None:
            mask = np.asarray(explicit.value).astype(bool)
        else:
            mask = x.mask if implicit else None
        directions = self.directions[node.path]
        s = directions[-1].settings  # the layer's (a stack's last cell's: the others return sequences)
        value = np.asarray(x.value)
        if node.path not in rec.layer_inputs:
            rec.layer_inputs[node.path] = value
            self.budget.hold([value])  # kept until the run ends
        if s.time_major:
            # tf.keras time_major: (steps, batch, features) in, sequences out the same way
            value = np.swapaxes(value, 0, 1)
            mask = None if mask is None else np.swapaxes(mask, 0, 1)
        self._check_recurrent_input(node, directions[0], value, mask)
        if states:
            rec.initial_states.setdefault(node.path, states)
        states = states or self._stacked_start(directions, value.shape[0])
        results = []
        for k, d in enumerate(directions):
            first = state_offset(directions, k)
            n_states = len(d.cell.states)
            init = states[first: first + n_states] if len(states) >= first + n_states else None
            if k and is_stacked(directions):  # a stacked cell reads the previous cell's outputs
                value = stacked_input(directions[k - 1], results[-1])
            if init is not None:
                d.check_input(value, init)
            change = self.variant.for_direction(d.name) if self.variant is not None else None
            res = run_direction(d, value, mask, init, self.variant.dtype if self.variant and self.variant.dtype
                                else self.dtype, self.trace, sequences=d.settings.return_sequences or self.trace,
                                weights=self._weights_of(d), variant=change, budget=self.budget)
            rec.masks[d.name] = mask
            rec.final_states.setdefault(d.name, res.states)
            if res.trace is not None:
                rec.traces[d.name] = res.trace
                self.budget.hold(res.trace.values())  # kept until the run ends
                if value is not rec.layer_inputs[node.path]:  # a later call, time-major, a stacked cell's input
                    self.budget.hold([value])
                rec.trace_inputs[d.name] = value  # the input of the call these values come from
            results.append(res)
        self._previous_states = [st for r in results for st in r.states]
        out_mask = mask if s.return_sequences else None

        def sequence_out(a: np.ndarray) -> np.ndarray:
            return np.swapaxes(a, 0, 1) if s.time_major else a

        if len(directions) == 1 or is_stacked(directions):
            res = results[-1]
            out = sequence_out(res.outputs) if s.return_sequences else res.last_output
            tensors = [Tensor(out, out_mask if not s.time_major else None)]
            if s.return_state:
                tensors += [Tensor(st) for r in results for st in r.states]
            return tensors
        fw, bw = results
        v = self.variant
        merged = bidirectional_output(fw, bw, directions[0], unflipped=bool(v and v.backward_output_not_flipped),
                                      interleaved=bool(v and v.directions_interleaved))
        tensors = [Tensor(m, out_mask) for m in merged]
        if s.return_state:
            tensors += [Tensor(st) for st in fw.states] + [Tensor(st) for st in bw.states]
        return tensors

    def _stacked_start(self, directions: list[RecurrentDirection], batch: int) -> list[np.ndarray]:
        """A port that wires a stack wrong (research #14, the PyTorch h_n layout [layer0, layer1, ...] read off by
        one layer): a recurrent layer given no states starts from the final states of the one run before it, where
        their shapes allow; otherwise (and in Keras) from zeros."""
        previous = self._previous_states
        if self.variant is None or not self.variant.stacked_states or previous is None:
            return []
        want = [(batch, d.units) for d in directions for _ in d.cell.states]
        return list(previous) if [np.shape(a) for a in previous] == want else []

    def _check_recurrent_input(self, node: LayerNode, d: RecurrentDirection, x: np.ndarray,
                               mask: np.ndarray | None) -> None:
        if x.ndim != d.cell.input_ndim(d.settings) or (d.input_dim is not None and d.channels(x) != d.input_dim):
            raise InspectError(f"{self.ckpt.file}: layer {node.path} is fed shape {x.shape} but expects "
                               f"{d.input_layout}")
        check_sizes(x.shape, f"layer {node.path}: its input")
        if mask is not None and mask.shape != x.shape[:2] and not (
                d.settings.conv is not None and d.settings.conv.data_format == "channels_last"
                and mask.shape == x.shape[:-1]):  # a ConvLSTM's per-pixel mask (a Masking layer's)
            raise InspectError(f"{self.ckpt.file}: layer {node.path}: the mask has shape {mask.shape}, the input "
                               f"{x.shape}")

    def _weights_of(self, d: RecurrentDirection) -> CellWeights:
        if self._weights is None:
            return d.weights()
        if d.name not in self._weights:
            self._weights[d.name] = d.weights()
        return self._weights[d.name]

    def _check_supported(self, graph: ModelGraph) -> None:
        for node in graph.walk():
            if node.children is not None or node.path in self.directions:
                continue
            if node.is_op:
                problem = op_supported(node)
                if problem:
                    raise InspectError(f"{self.ckpt.file}: graph op {node.name}: {problem}")
            elif not engine_runs(node):
                raise InspectError(f"{self.ckpt.file}: {refusal(node)}")


def walk_graph(graph: ModelGraph, inputs: list[Any], apply: Callable[[LayerNode, Call, int], list[Any]],
               where: str, is_tensor: Callable[[Any], bool],
               release: Callable[[list[Any]], None] | None = None) -> list[Any]:
    """A model graph evaluated call by call: `apply(node, call with its tensors resolved, call index)`.

    Generic in what a tensor is (arrays in the engine, graph names in the exporters): a
    Sequential runs as a chain, a Functional in the topological order of its calls, a nested
    model as a sub-graph through `apply`'s own recursion (its node has `children`). Each call's
    outputs are let go (`release(outputs)`, and no longer referenced here) once every call that
    consumes them has run, unless they are the graph's outputs: a run holds what is still needed,
    not every layer's output (the graph's own inputs belong to the caller).
    """
    if graph.class_name == "Sequential":
        return _walk_chain(graph.layers, inputs, apply, release)
    by_name = {n.name: n for n in graph.layers}
    input_names = [r.layer for r in graph.inputs]
    produced: dict[tuple[str, int], list[Any]] = {}

    def lookup(ref: TensorRef) -> Any:
        key = graph.producer_of(ref, by_name) or (ref.layer, 0)
        outs = produced.get(key)
        if outs is None or ref.tensor >= len(outs):
            raise InspectError(f"{where}: a layer's input refers to output {ref.tensor} of "
                               f"{ref.layer}, which that layer does not produce")
        return outs[ref.tensor]

    try:
        order = graph.calls()
        uses = _uses(graph, order, by_name)
    except ConfigError as exc:
        raise InspectError(f"{where}: {exc}") from exc
    for node, k in order:
        if node.class_name == "InputLayer":
            if node.name not in input_names:
                raise InspectError(f"{where}: input layer {node.name} is not a model input")
            produced[(node.name, 0)] = [inputs[input_names.index(node.name)]]
            continue
        call = node.inbound[k] if k < len(node.inbound) else Call()
        try:
            resolved = Call(_resolve(call.args, lookup), _resolve(call.kwargs, lookup))
        except ConfigError as exc:
            raise InspectError(f"{where}: {exc}") from exc
        produced[(node.name, k)] = apply(node, resolved, k)
        del resolved
        _let_go(_consumed(graph, call, by_name), uses, produced, by_name, release)
    try:
        return [lookup(r) for r in graph.outputs]
    except ConfigError as exc:
        raise InspectError(f"{where}: {exc}") from exc


def _walk_chain(layers: list[LayerNode], inputs: list[Any], apply: Callable[[LayerNode, Call, int], list[Any]],
                release: Callable[[list[Any]], None] | None) -> list[Any]:
    """A Sequential's layers one after the other, each one's input let go once the next has run."""
    current = list(inputs)
    for k, node in enumerate(layers):
        previous, current = current, apply(node, Call(list(current)), 0)
        if release is not None and k > 0:
            release(previous)
    return current


def _resolve(obj: Any, lookup: Callable[[TensorRef], Any]) -> Any:
    """A call's arguments with every TensorRef replaced by its tensor (through dicts and lists)."""
    if isinstance(obj, TensorRef):
        return lookup(obj)
    if isinstance(obj, dict):
        return {k: _resolve(v, lookup) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, lookup) for v in obj]
    return obj


def _let_go(consumed: list[tuple[str, int]], uses: Counter[tuple[str, int]], produced: dict[tuple[str, int], list[Any]],
            by_name: dict[str, LayerNode], release: Callable[[list[Any]], None] | None) -> None:
    """One use of each consumed output counted off; outputs no call needs any more are dropped (and released)."""
    for key in consumed:
        uses[key] -= 1
        if uses[key] == 0 and key in produced and by_name[key[0]].class_name != "InputLayer":
            done = produced.pop(key)
            if release is not None:
                release(done)


def _consumed(graph: ModelGraph, call: Call, by_name: dict[str, LayerNode]) -> list[tuple[str, int]]:
    """The (layer, call) keys whose outputs a call reads, once per reference."""
    return [graph.producer_of(ref, by_name) or (ref.layer, 0) for ref in call.tensors()]


def _uses(graph: ModelGraph, order: list[tuple[LayerNode, int]], by_name: dict[str, LayerNode]
          ) -> Counter[tuple[str, int]]:
    """How many references each call's outputs will get: from the calls that consume them, and one that is never
    given back for each of the graph's outputs (they are returned)."""
    uses: Counter[tuple[str, int]] = Counter()
    for node, k in order:
        if node.class_name != "InputLayer":
            uses.update(_consumed(graph, node.inbound[k] if k < len(node.inbound) else Call(), by_name))
    uses.update(graph.producer_of(r, by_name) or (r.layer, 0) for r in graph.outputs)
    return uses


def recurrent_call(args: Call, keras_major: int, is_tensor: Callable[[Any], bool]
                   ) -> tuple[Any, list[Any], Any, bool]:
    """(input, initial states, explicit mask, whether the input's own mask applies) of one recurrent call.

    Keras 3 fills in the implicit mask only for a call with a single tensor argument: an RNN given
    initial_state tensors runs unmasked (keras/src/layers/layer.py). Keras 1/2 always pass it.
    """
    x, states, explicit = split_rnn_call(args, is_tensor)
    n_tensors = len(list(flatten(args.args, is_tensor))) + len(list(flatten(args.kwargs, is_tensor)))
    implicit = explicit is None and not (keras_major >= 3 and n_tensors > 1)
    return x, states, explicit, implicit


def _checked_shape(shape: Any, name: str) -> tuple[int | None, ...]:
    """A declared batch shape: a list of positive integers or None, batch first."""
    if not isinstance(shape, list) or not 1 <= len(shape) <= 6:
        raise InspectError(f"input {name}: the declared shape {shape!r} is not a list of 1 to 6 sizes")
    out: list[int | None] = []
    for n in shape:
        if n is None:
            out.append(None)
        elif isinstance(n, int) and not isinstance(n, bool) and n > 0:
            out.append(n)
        else:
            raise InspectError(f"input {name}: the declared shape {shape!r} holds {n!r}, not a positive size")
    return tuple(out)


def _value(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.value
    if isinstance(obj, list):
        return [_value(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _value(v) for k, v in obj.items()}
    return obj


def _arrays(tensors: list[Tensor]) -> list[np.ndarray]:
    return [t.value for t in tensors if isinstance(t, Tensor)] + [
        t.mask for t in tensors if isinstance(t, Tensor) and t.mask is not None]


def _tensors_in(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    return []


def default_inputs(net: Network, seed: int = 0, batch: int = DEFAULT_BATCH, steps: int = DEFAULT_STEPS
                   ) -> list[np.ndarray]:
    """A seeded input of the model's input shape: token ids (some padded with the masked id 0) for Embedding.

    Free axes get `steps`; a model that fixes more than MAX_DEFAULT_STEPS on an axis needs --input.
    """
    rng = np.random.default_rng(seed)
    xs = []
    for name, shape, kind in net.input_specs():
        dims = list(shape) if shape is not None else [None, None, None]
        dims[0] = batch
        dims = [steps if d is None else int(d) for d in dims]
        if any(d > MAX_DEFAULT_STEPS for d in dims[1:]) or float(np.prod(dims, dtype=np.float64)) > 1 << 24:
            raise InspectError(f"input {name}: the model declares the shape {tuple(shape or ())}, too large for a "
                               "made-up input; pass your own with --input")
        if kind == "ids":
            vocab = net.vocabulary(name) or 2
            x = rng.integers(1, max(vocab, 2), size=dims)
            if x.ndim == 2:
                for b in range(x.shape[0]):
                    x[b, x.shape[1] - b % 3:] = 0  # right padding of varying length
            xs.append(x.astype(np.int32))
        else:
            xs.append(rng.normal(size=dims).astype(np.float32))
    return xs


def trace_run(ckpt: Checkpoint, xs: list[np.ndarray] | None = None, seed: int = 0, dtype: type = np.float32
              ) -> tuple[RunRecord, str]:
    """Every direction's trace: from the whole model on xs (a seeded random input when None), or, when
    the model cannot run whole and no input was given, from each direction alone on a seeded random
    input. Each direction's input is in `trace_inputs`. Returns the record and a description of the input."""
    rec = RunRecord()
    if ckpt.graph is not None:
        try:
            net = Network(ckpt, dtype, trace=True)
        except InspectError:  # a layer the engine does not run: each direction alone, if no input was given
            if xs is not None:
                raise
        else:
            net.run(xs if xs is not None else default_inputs(net, seed), rec)
            return rec, "the given input" if xs is not None else f"a seeded random input (seed {seed})"
    elif xs is not None:
        raise InspectError(f"{ckpt.file}: stores weights only, so the model cannot run on an input; "
                           "give the architecture with --config")
    rng = np.random.default_rng(seed)
    for d in ckpt.directions:
        x = rng.normal(size=d.random_input_shape(DEFAULT_BATCH, 2 * DEFAULT_STEPS)).astype(np.float32)
        res = run_direction(d, x, trace=True, dtype=dtype)
        if res.trace is not None:
            rec.traces[d.name] = res.trace
        rec.masks[d.name] = None
        rec.trace_inputs[d.name] = x
    return rec, f"a seeded random input (seed {seed}) to each direction alone"


@dataclass(repr=False)
class DirectionTrace:
    """One direction's values at every time step, all (batch, steps, ...) in processing order: step k of a
    go_backwards direction consumed input step steps-1-k.

    `x`: the input the direction consumed at each step (batch, steps, N_i): what the layer below produced,
    e.g. an Embedding's vectors; `mask`: (batch, steps), True where the step was processed (all True when
    nothing masks the layer). At a masked step the gates hold what the cell computed there (Keras computes
    and discards them) and the states (h, and c for an LSTM) the state held after it: the last processed
    step's, or the initial state. `values`: the cell's quantities (`Cell.trace_quantities`).
    """

    name: str
    parts: tuple[str, ...]
    x: np.ndarray
    mask: np.ndarray
    values: dict[str, np.ndarray]
    masked: bool = False  # whether a mask reached the layer

    def __getitem__(self, quantity: str) -> np.ndarray:
        return self.arrays()[quantity]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name: the cell's quantities, then x and mask (what `trace` writes)."""
        return {**self.values, "x": self.x, "mask": self.mask}

    def __repr__(self) -> str:
        batch, steps = self.mask.shape
        return (f"<DirectionTrace {brief(self.name)}: batch {batch}, {steps} steps, "
                f"{', '.join(self.arrays())}{', masked' if self.masked else ''}>")

    def _repr_html_(self) -> str:
        return html_table(f"DirectionTrace {self.name}", ("array", "shape", "dtype"),
                          [(q, "×".join(map(str, a.shape)), str(a.dtype)) for q, a in self.arrays().items()])


@dataclass(repr=False)
class Trace:
    """Every traced direction (`DirectionTrace`), by name in the order the model runs them; `input` says what
    input they come from. `trace[name]` takes a direction's full name or its last part."""

    file: str
    input: str
    directions: dict[str, DirectionTrace]

    def __getitem__(self, name: str) -> DirectionTrace:
        if name in self.directions:
            return self.directions[name]
        found = [t for n, t in self.directions.items() if n.split("/")[-1] == name]
        if len(found) == 1:
            return found[0]
        raise KeyError(f"no traced direction {name!r}; traced: {', '.join(self.directions)}")

    def __iter__(self) -> Any:
        return iter(self.directions.values())

    def __len__(self) -> int:
        return len(self.directions)

    def arrays(self) -> dict[tuple[str, ...], dict[str, np.ndarray]]:
        """{direction name parts: {array name: array}}, what `io.arrays.write_trace` writes."""
        return {t.parts: t.arrays() for t in self.directions.values()}

    def __repr__(self) -> str:
        return f"<Trace of {len(self)} direction(s) from {self.input}: {', '.join(map(brief, self.directions))}>"

    def _repr_html_(self) -> str:
        return html_table(f"Trace from {self.input}", ("direction", "batch", "steps", "masked", "arrays"),
                          [(t.name, str(t.mask.shape[0]), str(t.mask.shape[1]), "yes" if t.masked else "no",
                            ", ".join(t.arrays())) for t in self])


def direction_trace(d: RecurrentDirection, values: dict[str, np.ndarray], x: np.ndarray, mask: np.ndarray | None
                    ) -> DirectionTrace:
    """A direction's trace with its input and mask (batch-major, input time order) put in processing order."""
    x = np.asarray(x)
    valid = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    if d.settings.go_backwards:
        x, valid = x[:, ::-1], valid[:, ::-1]
    return DirectionTrace(d.name, d.parts, np.ascontiguousarray(x), np.ascontiguousarray(valid), dict(values),
                          mask is not None)


def trace(ckpt: Checkpoint, xs: list[np.ndarray] | None = None, seed: int = 0, layer: str | None = None,
          initial_state: list[np.ndarray] | None = None, dtype: type = np.float32) -> Trace:
    """Every direction's trace (`Trace`) from the whole model on xs, or from one layer alone (`layer`: a
    direction's name or a Bidirectional's, whose two directions both run) on xs[0] as the layer takes it,
    from `initial_state` (every direction's states). Without xs, a seeded random input."""
    if layer is not None:
        directions = ckpt.directions_of(layer)
        d0 = directions[0]
        if xs is None:
            x = np.random.default_rng(seed).normal(size=d0.random_input_shape(DEFAULT_BATCH, DEFAULT_STEPS))
            x, source = d0.layer_layout(x.astype(np.float32)), f"a seeded random input (seed {seed})"
        else:
            if len(xs) != 1:
                raise InspectError(f"layer {layer}: takes one input, {len(xs)} were given")
            x, source = np.asarray(xs[0]), "the given input"
        _, _, results = run_layer(directions, x, initial_state, dtype, trace=True)
        xb = d0.layer_layout(x).astype(dtype)  # traces are batch-major, as for the whole model
        traced = {d.name: direction_trace(d, r.trace or {}, xb, None) for d, r in zip(directions, results)}
        return Trace(str(ckpt.file), source, traced)
    if initial_state is not None:
        raise InspectError("an initial state needs a layer: a whole model takes its states from its own graph")
    rec, source = trace_run(ckpt, xs, seed, dtype)
    traced = {}
    for d in ckpt.directions:
        if d.name not in rec.traces:
            continue
        traced[d.name] = direction_trace(d, rec.traces[d.name], rec.trace_inputs[d.name], rec.masks.get(d.name))
    return Trace(str(ckpt.file), source, traced)


def as_inputs(x: Any) -> list[np.ndarray]:
    """One array, or a list of arrays in the model's input order."""
    if isinstance(x, (list, tuple)):
        return [np.asarray(a) for a in x]
    return [np.asarray(x)]


