"""Keras recurrent layers as ONNX: the LSTM, GRU and RNN operators where they compute exactly what
Keras computes, and a Scan over Keras's own step equations where they cannot.

The operators (onnx.ai/onnx/operators: LSTM, GRU, RNN) take Keras's math when their activations
are among theirs (HardSigmoid with the writing Keras's slope) and GRU's linear_before_reset is
Keras's reset_after; gates are reordered by the kind's code (`OnnxCell.arrays`). A direction with
go_backwards is the operator's "reverse" direction, its outputs flipped into Keras's processing
order (under a mask, the operator runs forward on the input reversed in time).

Masks are known only at run time, so one graph serves every mask, with no branch (an `If` would hide
its weights and the values it reads from the outer graph from tools such as onnxruntime's quantizer): each
row's valid steps, in processing order, are moved to the front of the sequence (a TopK over the mask, a
Gather), the operator runs on them with `sequence_lens`, and its outputs are moved back to the steps
they belong to. A masked step keeps the states, so running the valid steps alone is Keras's loop
(`lstm_inspect.engine.loop.run_sequence`); a masked step outputs zeros or the output of the latest valid
step before it (zeros before the first), as that loop does. Rows with no valid step keep their initial
states, as in Keras. The Scan applies the mask with Where at every step. Each weight is one initializer.

This package holds what every kind shares (the operator, the Scan, the mask's compaction, Bidirectional); each
kind's own part is a module (lstm.py, gru.py, simple_rnn.py, as `lstm_inspect.model.cells`) registering an
`OnnxCell` in `registry.CELLS`: its operator, gate layout, attributes and step equations. A new cell kind is
one more module here, imported by `lstm_inspect.export.onnx`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import Context
from lstm_inspect.engine.network import is_stacked, recurrent_call, state_offset
from lstm_inspect.export.onnx.graph import Graph, Sym, activation, rnn_op_activation, value_info
from lstm_inspect.export.onnx.registry import CELLS
from lstm_inspect.model.architecture import Call, LayerNode
from lstm_inspect.model.cells.base import CellWeights
from lstm_inspect.model.checkpoint import RecurrentDirection


@dataclass
class DirectionOut:
    seq: str  # (steps, batch, units) in processing order (time-major)
    last: str  # (batch, units): the output at the last processed step
    states: list[str]  # (batch, units) each, the cell's order (h first)


def split_units(g: Graph, a: str, n: int, units: int) -> list[str]:
    """The n blocks of `units` columns of a (batch, n·units) tensor (a fused array's gates)."""
    return g.split(a, [units] * n, axis=1)


def _step_weights(g: Graph, d: RecurrentDirection, w: CellWeights, dtype: type) -> tuple[str, str | None,
                                                                                           dict[str, str]]:
    """(kernel, input bias, the step's constants) for the Scan, in Keras's stored gate order."""
    hint = d.name
    const = lambda a, what: g.const(np.asarray(a, dtype=dtype), f"{hint}.{what}", dtype)  # noqa: E731
    input_bias, consts = CELLS[d.cell.kind].step_weights(d, w, const)
    return (const(w.kernel, "kernel"), None if input_bias is None else const(input_bias, "bias"), consts)


# ---------------------------------------------------------------- the operator


def op_attributes(d: RecurrentDirection) -> dict[str, Any] | None:
    """The operator's activations for this direction, or None when it cannot compute Keras's."""
    acts = []
    for name in CELLS[d.cell.kind].activations(d.settings):
        found = rnn_op_activation(name, d.hard_sigmoid)
        if found is None:
            return None
        acts.append(found)
    attrs: dict[str, Any] = {"activations": [a for a, _, _ in acts]}
    alphas = [alpha for _, alpha, _ in acts if alpha is not None]
    betas = [beta for _, _, beta in acts if beta is not None]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    attrs.update(CELLS[d.cell.kind].attributes(d.settings))
    return attrs


def _run_op(g: Graph, d: RecurrentDirection, w: CellWeights, attrs: dict[str, Any], x_tm: str, lens: str | None,
            init: list[str] | None, reverse: bool, dtype: type) -> tuple[str, list[str]]:
    """The ONNX operator over x_tm (steps, batch, N_i): (Y (steps, batch, units) by input position, final states)."""
    arrays = CELLS[d.cell.kind].direction_arrays(d, w)
    const = lambda k: g.const(np.asarray(arrays[k], dtype=dtype)[None], f"{d.name}.{k}", dtype)  # noqa: E731
    inputs = [x_tm, const("W"), const("R"), const("B"), lens or ""]
    if init is not None:
        inputs += [g.unsqueeze(s, [0]) for s in init]
    while inputs and inputs[-1] == "":
        inputs.pop()
    n_out = 1 + len(d.cell.states)
    outs = g.op(CELLS[d.cell.kind].op, *inputs, outputs=n_out, hint=d.name, hidden_size=w.units,
                direction="reverse" if reverse else "forward", **attrs)
    return g.squeeze(outs[0], [1]), [g.squeeze(s, [0]) for s in outs[1:]]


def _last(g: Graph, seq: str) -> str:
    """seq[-1] of a time-major sequence."""
    return g.squeeze(g.op("Slice", seq, g.ints([-1]), g.ints([1 << 62]), g.ints([0])), [0])


def _op_plain(g: Graph, d: RecurrentDirection, w: CellWeights, attrs: dict[str, Any], x_tm: str,
              init: list[str] | None, dtype: type) -> DirectionOut:
    """The operator alone, for a layer Keras gives no mask (go_backwards is the operator's reverse direction)."""
    reverse = bool(d.settings.go_backwards)
    y, states = _run_op(g, d, w, attrs, x_tm, None, init, reverse, dtype)
    seq = g.reverse(y, 0) if reverse else y
    return DirectionOut(seq, _last(g, seq), states)


@dataclass
class Compaction:
    """How a (steps, batch) mask in processing order moves each row's valid steps to its front, as (steps, batch)
    indices into a (steps·batch, n) flattening of a sequence: `order` the input step at each compacted position
    (valid steps first, in order), `latest` the compacted position of the latest valid step at or before t (0
    before the first); `lens` (batch,) int32 the valid steps per row, `seen` (steps, batch) bool a valid step at
    or before t, `mask` the mask itself."""

    order: str
    lens: str
    seen: str
    latest: str
    mask: str


def compaction(g: Graph, mask_tm: str, backwards: bool) -> Compaction:
    """The compaction of a time-major mask, read in processing order (reversed for go_backwards); computed once
    per mask and order (both directions of a layer, and layers sharing a mask, share it)."""
    key = ("compaction", mask_tm, backwards)
    if key in g.cache:
        return g.cache[key]
    mask = g.reverse(mask_tm, 0, hint="mask_backwards") if backwards else mask_tm
    m = g.cast(mask, "int")
    zero, one = g.const(0, "zero64", np.int64), g.const(1, "one64", np.int64)
    steps, batch = g.shape_range(mask, 0, 1), g.shape_range(mask, 1, 2)  # (1,) each
    t = g.unsqueeze(g.op("Range", zero, g.squeeze(steps, [0]), one), [1])  # (steps, 1)
    row = g.unsqueeze(g.op("Range", zero, g.squeeze(batch, [0]), one), [0])  # (1, batch)
    # the sort key: a valid step t ranks t, a masked one steps + t; TopK's ascending order is a stable partition
    key_tm = g.op("Add", g.op("Mul", g.op("Sub", one, m), steps), t)
    _, order = g.op("TopK", key_tm, steps, axis=0, largest=0, sorted=1, outputs=2, hint="compaction")
    count = g.op("CumSum", m, zero)
    seen = g.op("Greater", count, zero, hint="seen_valid")
    latest = g.op("Max", g.op("Sub", count, one), zero)
    flat = lambda index: g.op("Add", g.op("Mul", index, batch), row)  # noqa: E731  (t, b) -> t·batch + b
    lens = g.cast(g.reduce("ReduceSum", m, [0], keepdims=False), "int32")
    g.cache[key] = Compaction(flat(order), lens, seen, flat(latest), mask)
    return g.cache[key]


def _gather_steps(g: Graph, seq: str, index: str) -> str:
    """seq[t', b, :] for every (t, b), t' read from `index` (a `Compaction` index): (steps, batch, n) gathered
    along time."""
    rows = g.op("Reshape", seq, g.op("Concat", g.ints([-1]), g.shape_range(seq, 2, 3), axis=0))  # (steps·batch, n)
    return g.op("Gather", rows, index, axis=0)


def _op_masked(g: Graph, d: RecurrentDirection, w: CellWeights, attrs: dict[str, Any], x_tm: str, mask_tm: str,
               init: list[str] | None, dtype: type) -> DirectionOut:
    """The operator under any mask, in one graph with no branch: each row's valid steps (in processing order)
    moved to its front, the operator run on them with `sequence_lens`, its outputs moved back. A masked step
    keeps the states, so the valid steps alone give Keras's states and outputs; a masked step outputs zeros or
    the output of the latest valid step before it (zeros before the first), as Keras's loop does."""
    backwards = bool(d.settings.go_backwards)
    c = compaction(g, mask_tm, backwards)
    x_p = g.reverse(x_tm, 0) if backwards else x_tm
    y, states = _run_op(g, d, w, attrs, _gather_steps(g, x_p, c.order), c.lens, init, False, dtype)
    zero = g.const(0.0, "zero", dtype)
    valid = g.unsqueeze(g.op("Greater", c.lens, g.const(0, "zero32", np.int32)), [1])  # (batch, 1)
    # a row with no valid step keeps its initial states (the operator gives zeros)
    states = [g.op("Where", valid, st, init[k] if init is not None else zero) for k, st in enumerate(states)]
    shown = c.mask if d.settings.zero_output_for_mask else c.seen
    seq = g.op("Where", g.unsqueeze(shown, [2]), _gather_steps(g, y, c.latest), zero, hint=f"{d.name}.seq")
    return DirectionOut(seq, _last(g, seq), states)


# ---------------------------------------------------------------- the Scan


def _scan_branch(g: Graph, d: RecurrentDirection, w: CellWeights, x_tm: str, mask_tm: str | None,
                 init: list[str] | None, ctx: Context) -> DirectionOut:
    """Keras's step equations in a Scan over time, masked steps handled as Keras's loop handles them."""
    s, dtype, units = d.settings, ctx.dtype, w.units
    kernel, bias, consts = _step_weights(g, d, w, dtype)
    xp = g.op("MatMul", x_tm, kernel, hint=f"{d.name}.x_kernel")
    if bias is not None:
        xp = g.op("Add", xp, bias)
    n_states = len(d.cell.states)
    if init is None:
        batch = g.shape_range(x_tm, 1, 2)
        zeros = g.filled(g.op("Concat", batch, g.ints([units]), axis=0), 0.0)
        init = [zeros] * n_states
    body = g.sub()
    state_in = [body.names.fresh(f"{d.name}.{q}_prev") for q in d.cell.states]
    out_prev = body.names.fresh(f"{d.name}.out_prev") if mask_tm is not None else None
    xp_t = body.names.fresh(f"{d.name}.xp_t")
    m_t = body.names.fresh(f"{d.name}.mask_t") if mask_tm is not None else None
    act_name, rec_name = d.settings.activation, d.settings.recurrent_activation
    act = lambda v: activation(body, act_name, v, d.hard_sigmoid)  # noqa: E731
    rec = lambda v: activation(body, rec_name or "linear", v, d.hard_sigmoid)  # noqa: E731
    new = CELLS[d.cell.kind].step(body, xp_t, state_in, consts, units, act, rec)
    if m_t is None:
        state_out = [body.op("Identity", n) for n in new]
        out = body.op("Identity", new[0], hint=f"{d.name}.out")
        extra_in: list[str] = []
        extra_out: list[str] = []
    else:
        m = body.unsqueeze(m_t, [1])
        state_out = [body.op("Where", m, n, old) for n, old in zip(new, state_in)]
        other = body.const(0.0, "zero", dtype) if s.zero_output_for_mask else out_prev
        out = body.op("Where", m, new[0], other, hint=f"{d.name}.out")
        out_next = body.op("Identity", out)
        extra_in, extra_out = [out_prev], [out_next]  # type: ignore[list-item]
    from onnx import helper

    inputs = [value_info(n, "float", 2) for n in state_in + extra_in] + [value_info(xp_t, "float", 2)]
    if m_t is not None:
        inputs.append(value_info(m_t, "bool", 1))
    outputs = [value_info(n, "float", 2) for n in state_out + extra_out] + [value_info(out, "float", 2)]
    graph = helper.make_graph(body.nodes, g.names.fresh(f"{d.name}_step"), inputs, outputs)
    scan_inputs = [xp] + ([mask_tm] if mask_tm is not None else [])
    initial = list(init) + ([g.op("Mul", init[0], g.const(0.0, "zero", dtype))] if m_t is not None else [])
    outs = g.op("Scan", *initial, *scan_inputs, outputs=len(initial) + 1, hint=f"{d.name}.scan", body=graph,
                num_scan_inputs=len(scan_inputs),
                scan_input_directions=[int(s.go_backwards)] * len(scan_inputs))
    seq = outs[-1]
    return DirectionOut(seq, _last(g, seq), list(outs[:n_states]))


# ---------------------------------------------------------------- one direction, one layer


def emit_direction(g: Graph, d: RecurrentDirection, w: CellWeights, x_tm: str, mask_tm: str | None,
                   init: list[str] | None, ctx: Context) -> DirectionOut:
    attrs = op_attributes(d)
    if attrs is None:
        return _scan_branch(g, d, w, x_tm, mask_tm, init, ctx)
    if mask_tm is None:
        return _op_plain(g, d, w, attrs, x_tm, init, ctx.dtype)
    return _op_masked(g, d, w, attrs, x_tm, mask_tm, init, ctx.dtype)


def _emit_directions(g: Graph, directions: list[RecurrentDirection],
                     weights: Callable[[RecurrentDirection], CellWeights], x_tm: str, mask_tm: str | None,
                     states: list[str], ctx: Context) -> list[DirectionOut]:
    """Each direction of the layer on its input: the layer's (one direction, a Bidirectional's halves), or for the
    cells of a StackedRNNCells the previous cell's outputs, in processing order, so reversed back to input order when
    going backwards (engine.network.stacked_input)."""
    results: list[DirectionOut] = []
    for k, d in enumerate(directions):
        first, n_states = state_offset(directions, k), len(d.cell.states)
        init = states[first: first + n_states] if len(states) >= first + n_states else None
        if k and is_stacked(directions):
            prev = results[-1].seq
            x_tm = g.reverse(prev, 0) if directions[k - 1].settings.go_backwards else prev
        results.append(emit_direction(g, d, weights(d), x_tm, mask_tm, init, ctx))
    return results


def emit_recurrent(g: Graph, node: LayerNode, directions: list[RecurrentDirection], args: Call, ctx: Context,
                   weights: Callable[[RecurrentDirection], CellWeights]) -> list[Sym]:
    """One recurrent layer (one direction, Bidirectional's two, or a StackedRNNCells's cells), as
    `Network._recurrent_layer` runs it."""
    is_sym = lambda o: isinstance(o, Sym)  # noqa: E731
    x, state_syms, explicit, implicit = recurrent_call(args, ctx.keras_major, is_sym)
    if x is None:
        raise InspectError(f"layer {node.path} is called on no tensor")
    if explicit is not None:
        mask = explicit.name if explicit.kind == "bool" else g.cast(explicit.name, "bool")
    else:
        mask = x.mask if implicit else None
    s = directions[-1].settings  # the layer's (a stack's last cell's: the others return sequences)
    value = x.name if x.kind == "float" else g.cast(x.name, "float")
    if s.time_major:  # tf.keras time_major: (steps, batch, features) in and out
        x_tm, mask_tm = value, mask
        mask_bm = None if mask is None else g.op("Transpose", mask, perm=[1, 0])
    else:
        x_tm = g.op("Transpose", value, perm=[1, 0, 2], hint=f"{node.name}.time_major")
        mask_tm = None if mask is None else g.op("Transpose", mask, perm=[1, 0])
        mask_bm = mask
    states = [st.name if st.kind == "float" else g.cast(st.name, "float") for st in state_syms]
    results = _emit_directions(g, directions, weights, x_tm, mask_tm, states, ctx)
    units = directions[-1].units
    out_mask = mask_bm if s.return_sequences else None

    def batch_major(seq_tm: str) -> str:
        return seq_tm if s.time_major else g.op("Transpose", seq_tm, perm=[1, 0, 2])

    if len(directions) == 1 or is_stacked(directions):
        res = results[-1]
        if s.return_sequences:
            out = Sym(batch_major(res.seq), 3, mask=None if s.time_major else out_mask, dim=units)
        else:
            out = Sym(res.last, 2, dim=units)
        tensors = [out]
        if s.return_state:
            tensors += [Sym(st, 2, dim=d.units) for d, r in zip(directions, results) for st in r.states]
        return tensors
    fw, bw = results
    if s.return_sequences:
        y, y_rev = batch_major(fw.seq), batch_major(g.reverse(bw.seq, 0))  # the backward half in input order
        rank = 3
    else:
        y, y_rev, rank = fw.last, bw.last, 2
    mode = directions[0].merge_mode
    both = units + directions[1].units if units and directions[1].units else None
    if mode == "concat":
        merged = [Sym(g.op("Concat", y, y_rev, axis=-1, hint=node.name), rank, mask=out_mask, dim=both)]
    elif mode in ("sum", "mul"):
        merged = [Sym(g.op("Add" if mode == "sum" else "Mul", y, y_rev, hint=node.name), rank, mask=out_mask,
                      dim=units)]
    elif mode == "ave":
        merged = [Sym(g.op("Div", g.op("Add", y, y_rev), g.const(2.0, "two", ctx.dtype), hint=node.name), rank,
                      mask=out_mask, dim=units)]
    elif mode is None:
        merged = [Sym(y, rank, mask=out_mask, dim=units), Sym(y_rev, rank, mask=out_mask, dim=units)]
    else:
        raise InspectError(f"layer {node.path}: Bidirectional merge_mode {mode!r} is not one Keras defines")
    if s.return_state:
        merged += [Sym(st, 2, dim=units) for st in fw.states] + [Sym(st, 2, dim=units) for st in bw.states]
    return merged

