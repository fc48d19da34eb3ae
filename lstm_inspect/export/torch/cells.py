"""Keras's recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional) in the PyTorch export.

Why: torch.nn.LSTM/GRU/RNN compute exactly Keras's equations only for some settings, and never Keras's
masks; this module decides, per direction, what the export runs and writes the small runtime model.py
needs for it:

- `nn.LSTM` / `nn.GRU` / `nn.RNN` where the cell's `torch_problem(settings)` is None (tanh/sigmoid,
  GRU reset_after=True, SimpleRNN tanh/relu), a Bidirectional as one module with bidirectional=True
  when both halves fit one; the weights are `Cell.torch_arrays` (PyTorch's gate order; CuDNN biases
  and Keras 1's arrays already converted by `RecurrentDirection.weights()`).
- otherwise a small explicit cell written in model.py (`KerasLSTM`, `KerasGRU`, `KerasSimpleRNN`) with
  Keras's step equations (`lstm_inspect/model/cells/lstm.py`, `gru.py` in both reset_after forms,
  `simple_rnn.py`) and the writing Keras's activations (hard_sigmoid of its generation).

The sequence semantics are Keras's `RNN` layer's, as `lstm_inspect.engine.loop.run_sequence` runs them
(`keras/src/layers/rnn/rnn.py`, the backend's `rnn` loop): go_backwards reads the input reversed and
returns the outputs in processing order; a masked step keeps the states and outputs zeros
(zero_output_for_mask, which Keras's Bidirectional sets for return_sequences) or the previous output
(zeros before the first valid step). In the generated code a mask whose valid steps are one block in
every row (padding before and/or after them) runs through `pack_padded_sequence`, the block moved to
the front and the outputs put back where Keras has them (a row with no valid step keeps its initial
states and outputs zeros, as in Keras); a mask with holes runs step by step with the same weights. The
check is made at run time, on the mask itself. The layer-level rules (states per direction, merge modes, time_major,
return_state order, the output mask) mirror `Network._recurrent_layer` through `recurrent_call`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_inspect.export.torch.code import LayerEmit, Sym, Writer, is_sym, snippet

if TYPE_CHECKING:
    from lstm_inspect.model.cells import CellWeights
    from lstm_inspect.model.checkpoint import RecurrentDirection

PACKING = ("from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence",)

snippet("lstm_step", '''
def lstm_step(xp, state, weight_hh, bias_hh, activation, recurrent_activation):
    """Keras's LSTM step on x·kernel + bias (xp); gates i, f, g (Keras's c), o stacked as nn.LSTM stacks them."""
    h, c = state
    i, f, g, o = (xp + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=1)
    c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
    return [recurrent_activation(o) * activation(c), c]
''')
snippet("gru_step", '''
def gru_step(xp, state, weight_hh, bias_hh, activation, recurrent_activation, reset_after=True):
    """Keras's GRU step on x·kernel + bias (xp); gates r, z, n (Keras's h̃) stacked as nn.GRU stacks them.

    reset_after=True (nn.GRU's form): n = φ(x_n + r ⊙ (h·W_hn + b_hn)); False (Keras's older form):
    n = φ(x_n + (r ⊙ h)·W_hn). Then h = z ⊙ h_prev + (1 − z) ⊙ n.
    """
    (h,) = state
    x_r, x_z, x_n = xp.chunk(3, dim=1)
    w_r, w_z, w_n = weight_hh.chunk(3, dim=0)
    b_r, b_z, b_n = bias_hh.chunk(3) if bias_hh is not None else (None, None, None)
    r = recurrent_activation(x_r + F.linear(h, w_r, b_r))
    z = recurrent_activation(x_z + F.linear(h, w_z, b_z))
    if reset_after:
        n = activation(x_n + r * F.linear(h, w_n, b_n))
    else:
        n = activation(x_n + F.linear(r * h, w_n, b_n))
    return [z * h + (1 - z) * n]
''')
snippet("simple_rnn_step", '''
def simple_rnn_step(xp, state, weight_hh, bias_hh, activation):
    """Keras's SimpleRNN step on x·kernel + bias (xp): h = φ(xp + h_prev·recurrent_kernel)."""
    (h,) = state
    return [activation(xp + F.linear(h, weight_hh, bias_hh))]
''')
snippet("KerasCell", '''
class KerasCell(nn.Module):
    """One direction of a Keras recurrent layer run step by step, for settings torch.nn's RNNs do not have.

    Weights in torch.nn's layout: weight_ih (gates·units, inputs) acting on x, weight_hh (gates·units, units)
    on h, gates stacked in torch.nn's order.
    """

    gates, n_states = 1, 1

    def __init__(self, input_size, hidden_size, bias=True, activation=torch.tanh, recurrent_activation=None):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.zeros(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.zeros(self.gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(self.gates * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.zeros(self.gates * hidden_size)) if bias else None
        self.activation, self.recurrent_activation = activation, recurrent_activation
''')
snippet("KerasLSTM", '''
class KerasLSTM(KerasCell):
    """A Keras LSTM direction, step by step (gates i, f, g, o)."""

    gates, n_states = 4, 2

    def step(self, xp, state):
        return lstm_step(xp, state, self.weight_hh, self.bias_hh, self.activation, self.recurrent_activation)
''', needs=("KerasCell", "lstm_step"))
snippet("KerasGRU", '''
class KerasGRU(KerasCell):
    """A Keras GRU direction, step by step (gates r, z, n), in either reset_after form."""

    gates, n_states = 3, 1

    def __init__(self, *args, reset_after=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after

    def step(self, xp, state):
        return gru_step(xp, state, self.weight_hh, self.bias_hh, self.activation, self.recurrent_activation,
                        self.reset_after)
''', needs=("KerasCell", "gru_step"))
snippet("KerasSimpleRNN", '''
class KerasSimpleRNN(KerasCell):
    """A Keras SimpleRNN direction, step by step."""

    def step(self, xp, state):
        return simple_rnn_step(xp, state, self.weight_hh, self.bias_hh, self.activation)
''', needs=("KerasCell", "simple_rnn_step"))
snippet("TorchDirection", '''
class TorchDirection:
    """One direction of an nn.LSTM, nn.GRU or nn.RNN as step equations (for a mask with holes)."""

    def __init__(self, rnn, reverse=False):
        suffix = "_l0_reverse" if reverse else "_l0"
        self.rnn, self.hidden_size = rnn, rnn.hidden_size
        self.n_states = 2 if isinstance(rnn, nn.LSTM) else 1
        self.weight_ih, self.weight_hh = getattr(rnn, "weight_ih" + suffix), getattr(rnn, "weight_hh" + suffix)
        self.bias_ih = getattr(rnn, "bias_ih" + suffix) if rnn.bias else None
        self.bias_hh = getattr(rnn, "bias_hh" + suffix) if rnn.bias else None

    def step(self, xp, state):
        if isinstance(self.rnn, nn.LSTM):
            return lstm_step(xp, state, self.weight_hh, self.bias_hh, torch.tanh, torch.sigmoid)
        if isinstance(self.rnn, nn.GRU):
            return gru_step(xp, state, self.weight_hh, self.bias_hh, torch.tanh, torch.sigmoid)
        activation = torch.relu if self.rnn.nonlinearity == "relu" else torch.tanh
        return simple_rnn_step(xp, state, self.weight_hh, self.bias_hh, activation)
''', needs=("lstm_step", "gru_step", "simple_rnn_step"))
snippet("keras_loop", '''
def keras_loop(cell, x, mask, state, zero_output_for_mask):
    """Keras's RNN loop over x (already in processing order), one step at a time.

    A masked step keeps the states; its output is zeros (zero_output_for_mask) or the previous output
    (zeros before the first valid step). Returns the outputs (batch, steps, units) and the final states.
    """
    batch, steps = x.shape[:2]
    xp = F.linear(x, cell.weight_ih, cell.bias_ih)  # x·kernel + bias for every step at once
    if state is None:
        state = [x.new_zeros(batch, cell.hidden_size) for _ in range(cell.n_states)]
    output, outputs = x.new_zeros(batch, cell.hidden_size), []
    for t in range(steps):
        new = cell.step(xp[:, t], state)
        if mask is None:
            state, output = new, new[0]
        else:
            valid = mask[:, t, None]
            state = [torch.where(valid, n, s) for n, s in zip(new, state)]
            output = torch.where(valid, new[0], torch.zeros_like(output) if zero_output_for_mask else output)
        outputs.append(output)
    return torch.stack(outputs, dim=1), state
''')
snippet("packing", '''
def valid_block(mask):
    """(first valid step, number of valid steps) of each row when its valid steps are one block (padding before
    and/or after it), else None: a mask with holes."""
    lengths = mask.sum(dim=1)
    start = torch.where(lengths > 0, mask.to(torch.int8).argmax(dim=1), torch.zeros_like(lengths))
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
    block = (steps >= start[:, None]) & (steps < (start + lengths)[:, None])
    return (start, lengths) if torch.equal(mask, block) else None


def take_steps(x, index):
    """y[b, t] = x[b, index[b, t]], zeros where the index falls outside the sequence."""
    steps = x.shape[1]
    inside = (index >= 0) & (index < steps)
    y = x.gather(1, index.clamp(0, steps - 1)[..., None].expand(-1, -1, x.shape[2]))
    return torch.where(inside[..., None], y, torch.zeros_like(y))


def to_torch_state(rnn, state):
    """Keras's initial states ([h, c] per direction, forward first) as torch.nn's (directions, batch, units)."""
    if state is None:
        return None
    n = 2 if isinstance(rnn, nn.LSTM) else 1
    stacked = [torch.stack(list(state[k::n])).contiguous() for k in range(n)]
    return tuple(stacked) if n == 2 else stacked[0]


def from_torch_state(last):
    """torch.nn's final states as Keras's, one list ([h] or [h, c]) per direction."""
    parts = list(last) if isinstance(last, tuple) else [last]
    return [[p[k] for p in parts] for k in range(parts[0].shape[0])]


def run_packed(rnn, x, start, lengths, state):
    """An nn.LSTM/GRU/RNN over each row's valid block (`lengths` steps from `start`), packed: the outputs of
    the valid steps alone, first (zeros after), and each direction's final states. A row with no valid step
    keeps its initial states."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    valid_first = take_steps(x, steps + start[:, None])
    empty = lengths == 0
    packed = pack_padded_sequence(valid_first, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, last = rnn(packed, to_torch_state(rnn, state))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    out = torch.where(empty[:, None, None], torch.zeros_like(out), out)
    states = from_torch_state(last)
    n = len(states[0])
    for k, direction in enumerate(states):
        initial = state[n * k: n * (k + 1)] if state is not None else [torch.zeros_like(s) for s in direction]
        states[k] = [torch.where(empty[:, None], i, s) for i, s in zip(initial, direction)]
    return out, states


def keras_outputs(valid, lead, lengths, zero_output_for_mask):
    """Keras's outputs in processing order from those of the valid steps alone (valid first): zeros for the
    `lead` masked steps before them, then theirs, then zeros (zero_output_for_mask) or the last valid output."""
    steps = torch.arange(valid.shape[1], device=valid.device)[None, :]
    out = take_steps(valid, steps - lead[:, None])
    if zero_output_for_mask:
        return out
    return take_steps(out, torch.minimum(steps, (lead + lengths - 1).clamp(min=0)[:, None]))
''', imports=PACKING)
snippet("keras_rnn", '''
def keras_rnn(rnn, x, mask=None, state=None, go_backwards=False, zero_output_for_mask=False):
    """One direction of a Keras recurrent layer over x (batch, steps, features), as Keras's RNN layer runs it.

    Returns its outputs in processing order (batch, steps, units) and its final states ([h] or [h, c]).
    go_backwards reads the input reversed; a masked step keeps the states and outputs zeros
    (zero_output_for_mask) or the previous output (zeros before the first valid step). nn.LSTM/GRU/RNN run
    whole, packed, when each row's valid steps are one block (padding before and/or after them), step by
    step for a mask with holes; the Keras cells torch.nn lacks run step by step.
    """
    if go_backwards:
        x = x.flip(1)
        mask = None if mask is None else mask.flip(1)
    if mask is not None and bool(mask.all()):
        mask = None
    if isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)):
        if mask is None:
            out, last = rnn(x, to_torch_state(rnn, state))
            return out, from_torch_state(last)[0]
        block = valid_block(mask)
        if block is not None:
            start, lengths = block
            out, states = run_packed(rnn, x, start, lengths, state)
            return keras_outputs(out, start, lengths, zero_output_for_mask), states[0]
        rnn = TorchDirection(rnn)
    return keras_loop(rnn, x, mask, state, zero_output_for_mask)
''', needs=("packing", "TorchDirection", "keras_loop"))
snippet("keras_bidirectional", '''
def keras_bidirectional(rnn, x, mask=None, state=None, zero_output_for_mask=(False, False)):
    """Keras's Bidirectional over an nn.LSTM/GRU/RNN with bidirectional=True.

    Returns the forward outputs, the backward outputs in their processing order (reversed in time), and
    each half's final states, as keras_rnn would give them for each half.
    """
    if mask is not None and bool(mask.all()):
        mask = None
    n = 2 if isinstance(rnn, nn.LSTM) else 1
    block = None if mask is None else valid_block(mask)
    if mask is not None and block is None:  # a mask with holes: each half step by step
        fw, fw_state = keras_loop(TorchDirection(rnn), x, mask, None if state is None else state[:n],
                                  zero_output_for_mask[0])
        bw, bw_state = keras_loop(TorchDirection(rnn, reverse=True), x.flip(1), mask.flip(1),
                                  None if state is None else state[n:], zero_output_for_mask[1])
        return fw, bw, fw_state, bw_state
    units = rnn.hidden_size
    if block is None:
        out, last = rnn(x, to_torch_state(rnn, state))
        fw_state, bw_state = from_torch_state(last)
        return out[..., :units], out[..., units:].flip(1), fw_state, bw_state
    start, lengths = block
    out, (fw_state, bw_state) = run_packed(rnn, x, start, lengths, state)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    backward = take_steps(out[..., units:], lengths[:, None] - 1 - steps)  # its valid outputs in its own order
    fw = keras_outputs(out[..., :units], start, lengths, zero_output_for_mask[0])
    bw = keras_outputs(backward, x.shape[1] - start - lengths, lengths, zero_output_for_mask[1])
    return fw, bw, fw_state, bw_state
''', needs=("packing", "TorchDirection", "keras_loop"))

MERGE_MODES = ("concat", "sum", "mul", "ave", None)
# Each recurrent kind's explicit cell written into model.py (the snippets above), for settings torch.nn lacks.
EXPLICIT = {"LSTM": "KerasLSTM", "GRU": "KerasGRU", "SimpleRNN": "KerasSimpleRNN"}


def _arguments(options: dict[str, Any]) -> str:
    """Keyword arguments as model.py writes them: `, name=value` each, strings in double quotes."""
    return "".join(f", {k}=" + (f'"{v}"' if isinstance(v, str) else repr(v)) for k, v in options.items())


def direction_module(w: Writer, d: RecurrentDirection, weights: CellWeights, what: str,
                     bidirectional_with: tuple[RecurrentDirection, CellWeights] | None = None
                     ) -> tuple[str, dict[str, np.ndarray]]:
    """(constructor, state_dict entries) of one direction, or of a Bidirectional's two halves as one
    bidirectional torch.nn module when `bidirectional_with` is its backward half."""
    s, cell = d.settings, d.cell
    n_i, units = weights.input_dim, weights.units
    bias = "" if s.use_bias else ", bias=False"
    if cell.torch_problem(s) is None:
        extra = _arguments(cell.torch_options(s))
        halves = [("_l0", weights)]
        if bidirectional_with is not None:
            halves.append(("_l0_reverse", bidirectional_with[1]))
            extra += ", bidirectional=True"
        arrays: dict[str, np.ndarray] = {}
        for suffix, cw in halves:
            for key, a in cell.torch_arrays(cw).items():
                if s.use_bias or not key.startswith("bias"):
                    arrays[key + suffix] = a
        module = cell.torch_module.removeprefix("torch.")
        return f"{module}({n_i}, {units}{bias}{extra}, batch_first=True)", arrays
    w.need(EXPLICIT[cell.kind])
    act = w.act_fn(s.activation, f"{what}: activation")
    options = f", activation={act}"
    if s.recurrent_activation is not None:
        options += f", recurrent_activation={w.act_fn(s.recurrent_activation, f'{what}: recurrent_activation')}"
    options += _arguments(cell.kind_settings(s))
    arrays = {k: v for k, v in cell.torch_arrays(weights).items() if s.use_bias or not k.startswith("bias")}
    return f"{EXPLICIT[cell.kind]}({n_i}, {units}{bias}{options})", arrays


def _one_module(d: RecurrentDirection, other: RecurrentDirection) -> bool:
    """Both halves of a Bidirectional as one torch.nn module with bidirectional=True."""
    a, b = d.settings, other.settings
    return (d.cell.torch_problem(a) is None and other.cell.torch_problem(b) is None and d.cell is other.cell
            and d.units == other.units and d.input_dim == other.input_dim and a.use_bias == b.use_bias
            and a.activation == b.activation and not a.go_backwards and b.go_backwards)


def _flag_args(d: RecurrentDirection) -> str:
    s = d.settings
    return (", go_backwards=True" if s.go_backwards else "") + (
        ", zero_output_for_mask=True" if s.zero_output_for_mask else "")


def recurrent_layer(e: LayerEmit, directions: list[RecurrentDirection]) -> list[Sym]:
    """A recurrent layer's call (Network._recurrent_layer in PyTorch)."""
    from lstm_inspect.engine.network import recurrent_call

    w = e.w
    x, states, explicit, implicit = recurrent_call(e.args, e.keras_major, is_sym)
    if x is None:
        raise e.fail("it is called on no tensor")
    if explicit is not None:
        mask = explicit.name if explicit.kind == "bool" else w.let(f"{e.hint}_mask", f"{explicit.name} != 0",
                                                                    "bool").name
    else:
        mask = x.mask if implicit else None
    s = directions[0].settings
    value = x.name
    if s.time_major:  # tf.keras time_major: (steps, batch, features) in, sequences out the same way
        value = w.let(f"{e.hint}_input", f"{x.name}.transpose(0, 1)").name
        mask = None if mask is None else w.let(f"{e.hint}_mask", f"{mask}.transpose(0, 1)", "bool").name
    n = len(directions[0].cell.states)
    state_names = [t.name for t in states]
    mask_arg = f", {mask}" if mask is not None else ""
    mode = directions[0].merge_mode
    if len(directions) == 2 and mode not in MERGE_MODES:
        raise e.fail("its merge_mode is not one Keras defines (concat, sum, mul, ave or None)")
    weights = [d.weights() for d in directions]
    name = w.name(e.hint)
    w.comment(f"{name}: {e.kind}" + ("" if len(directions) == 1 else f" ({mode or 'no'} merge)"))

    def init(k: int) -> str:
        part = state_names[n * k: n * (k + 1)] if len(state_names) >= n * (k + 1) else None
        return f", state=[{', '.join(part)}]" if part else ""

    def sequence_out(expr: str) -> str:
        return f"{expr}.transpose(0, 1)" if s.time_major else expr

    out_mask = mask if s.return_sequences else None
    # no mask and the input in its own order: the torch.nn module is called as a PyTorch user would call it
    plain = mask is None and all(d.cell.torch_problem(d.settings) is None for d in directions)
    if len(directions) == 1:
        d = directions[0]
        ctor, arrays = direction_module(w, d, weights[0], f"layer {e.node.path}")
        attr = w.module(e.key, e.hint, ctor, arrays)
        state = w.name(f"{name}_state")
        if plain:  # go_backwards: the input reversed in time, the outputs in that processing order, as Keras
            last = w.name(f"{name}_last") if s.return_state else "_"
            given = f"{value}.flip(1)" if s.go_backwards else value
            w.line(f"{name}, {last} = self.{attr}({given}{_torch_initial_state(state_names[:n], n)})")
            if s.return_state:
                w.line(f"{state} = {_keras_states(last, n, 0)}")
        else:
            w.need("keras_rnn")
            w.line(f"{name}, {state} = keras_rnn(self.{attr}, {value}{mask_arg}{init(0)}{_flag_args(d)})")
        if s.return_sequences:
            if s.time_major:
                w.line(f"{name} = {sequence_out(name)}")
        else:
            w.line(f"{name} = {name}[:, -1]")
        outs = [Sym(name, "float", out_mask if not s.time_major else None)]
        if s.return_state:
            outs += _state_syms(w, name, state, d)
        return outs

    fw_d, bw_d = directions
    fw, bw = w.name(f"{name}_forward"), w.name(f"{name}_backward")
    fw_state, bw_state = w.name(f"{name}_forward_state"), w.name(f"{name}_backward_state")
    in_input_order = whole = False  # the backward half in input time order already (torch's bidirectional)
    if _one_module(fw_d, bw_d) and plain and len(state_names) in (0, 2 * n):
        ctor, arrays = direction_module(w, fw_d, weights[0], f"layer {e.node.path}", (bw_d, weights[1]))
        attr = w.module(e.key, e.hint, ctor, arrays)
        last = w.name(f"{name}_last") if s.return_state else "_"
        # a concat of whole sequences is the module's output as it stands
        whole = mode == "concat" and s.return_sequences and not s.time_major
        both = name if whole else w.name(f"{name}_both")
        w.line(f"{both}, {last} = self.{attr}({value}{_torch_initial_state(state_names, n)})")
        if not whole:
            w.line(f"{fw}, {bw} = {both}.chunk(2, dim=-1)")
        if s.return_state:
            w.line(f"{fw_state}, {bw_state} = {_keras_states(last, n, 0)}, {_keras_states(last, n, 1)}")
        in_input_order = True
    elif _one_module(fw_d, bw_d):
        ctor, arrays = direction_module(w, fw_d, weights[0], f"layer {e.node.path}", (bw_d, weights[1]))
        attr = w.module(e.key, e.hint, ctor, arrays)
        w.need("keras_bidirectional")
        given = ""  # the backward half from zeros when only the forward half's states are given (as the engine)
        if len(state_names) >= n:
            both = state_names[: 2 * n] if len(state_names) >= 2 * n else (
                state_names[:n] + [f"torch.zeros_like({h})" for h in state_names[:n]])
            given = f", state=[{', '.join(both)}]"
        zero = (fw_d.settings.zero_output_for_mask, bw_d.settings.zero_output_for_mask)
        zero_arg = f", zero_output_for_mask=({zero[0]}, {zero[1]})" if any(zero) else ""
        w.line(f"{fw}, {bw}, {fw_state}, {bw_state} = keras_bidirectional(self.{attr}, {value}{mask_arg}{given}"
               f"{zero_arg})")
    else:
        parts = []
        arrays = {}
        # the halves named as Keras's Bidirectional names them ("forward" is nn.Module's own method)
        for half, d, cw in (("forward_layer", fw_d, weights[0]), ("backward_layer", bw_d, weights[1])):
            ctor, half_arrays = direction_module(w, d, cw, f"layer {e.node.path} ({half})")
            parts.append(f'"{half}": {ctor}')
            arrays.update({f"{half}.{k}": v for k, v in half_arrays.items()})
        attr = w.module(e.key, e.hint, f"nn.ModuleDict({{{', '.join(parts)}}})", arrays)
        w.need("keras_rnn")
        w.line(f'{fw}, {fw_state} = keras_rnn(self.{attr}["forward_layer"], {value}{mask_arg}{init(0)}'
               f"{_flag_args(fw_d)})")
        w.line(f'{bw}, {bw_state} = keras_rnn(self.{attr}["backward_layer"], {value}{mask_arg}{init(1)}'
               f"{_flag_args(bw_d)})")
    if s.return_sequences:  # the backward half back in input time order
        y, y_rev = sequence_out(fw), sequence_out(bw if in_input_order else f"{bw}.flip(1)")
    else:  # the backward half's last step processed: the first in input order
        y, y_rev = f"{fw}[:, -1]", f"{bw}[:, 0]" if in_input_order else f"{bw}[:, -1]"
    merged = {"concat": f"torch.cat([{y}, {y_rev}], dim=-1)", "sum": f"{y} + {y_rev}", "mul": f"{y} * {y_rev}",
              "ave": f"({y} + {y_rev}) / 2"}
    if mode is None:
        outs = [w.let(f"{name}_forward_output", y, mask=out_mask), w.let(f"{name}_backward_output", y_rev,
                                                                          mask=out_mask)]
    else:
        if not (in_input_order and whole):
            w.line(f"{name} = {merged[mode]}")
        outs = [Sym(name, "float", out_mask)]
    if s.return_state:
        outs += _state_syms(w, f"{name}_forward", fw_state, fw_d) + _state_syms(w, f"{name}_backward", bw_state, bw_d)
    return outs


def _torch_initial_state(names: list[str], n: int) -> str:
    """Keras's initial states ([h, c] per direction, forward first) as a torch.nn module's second argument:
    (h_0, c_0) or h_0, each (directions, batch, units); nothing when none are given."""
    if not names:
        return ""
    stacked = [f"torch.stack([{', '.join(names[k::n])}])" for k in range(n)]
    return f", ({', '.join(stacked)})" if n == 2 else f", {stacked[0]}"


def _keras_states(last: str, n: int, k: int) -> str:
    """Direction k's final states as Keras gives them ([h, c] or [h]) from a torch.nn module's (h_n, c_n) or h_n."""
    return f"[{last}[0][{k}], {last}[1][{k}]]" if n == 2 else f"[{last}[{k}]]"


def _state_syms(w: Writer, name: str, state: str, d: RecurrentDirection) -> list[Sym]:
    names = [w.name(f"{name}_{q}") for q in d.cell.states]
    w.line(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {state}")
    return [Sym(q) for q in names]


def direction_alone(w: Writer, d: RecurrentDirection, x: str) -> list[str]:
    """`--layer`: one direction on x (batch, steps, N_i), unmasked from zero states: [y, h, (c)] with y the
    full output sequence in processing order."""
    ctor, arrays = direction_module(w, d, d.weights(), f"layer {d.name}")
    attr = w.module(d.name, d.name.replace("/", "_"), ctor, arrays)
    y, state = w.name("sequence"), w.name("state")
    if d.cell.torch_problem(d.settings) is None:
        n = len(d.cell.states)
        last = w.name("last")
        w.line(f"{y}, {last} = self.{attr}({x}{'.flip(1)' if d.settings.go_backwards else ''})")
        w.line(f"{state} = {_keras_states(last, n, 0)}")
    else:
        w.need("keras_rnn")
        w.line(f"{y}, {state} = keras_rnn(self.{attr}, {x}{', go_backwards=True' if d.settings.go_backwards else ''})")
    names = [w.name(q) for q in d.cell.states]
    w.line(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {state}")
    return [y, *names]
