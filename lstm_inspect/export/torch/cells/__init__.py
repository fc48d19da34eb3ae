"""Keras's recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional) in the PyTorch export.

Why: torch.nn.LSTM/GRU/RNN compute exactly Keras's equations only for some settings, and never Keras's
masks; this package decides, per direction, what the export runs and writes the small runtime model.py
needs for it. This module holds what every kind shares (`TorchCell`, the sequence loop's helpers, the layer
call); each kind's own part is one module registered with `@cell` in `registry.CELLS` (`lstm.py`, `gru.py`,
`simple_rnn.py`, named as `lstm_inspect/model/cells/`): its torch.nn module and gate order, when that module is
exact (`TorchCell.problem`), its step function and explicit cell class for model.py.

- `nn.LSTM` / `nn.GRU` / `nn.RNN` where the kind's `problem(settings)` is None (tanh/sigmoid,
  GRU reset_after=True, SimpleRNN tanh/relu), a Bidirectional as one module with bidirectional=True
  when both halves fit one; the weights are `TorchCell.arrays` (PyTorch's gate order; CuDNN biases
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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_inspect.engine.network import recurrent_call
from lstm_inspect.export.torch.code import LayerEmit, Sym, Writer, is_sym, snippet
from lstm_inspect.export.torch.registry import CELLS

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import Cell, CellSettings, CellWeights
    from lstm_inspect.model.checkpoint import RecurrentDirection

PACKING = ("from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence",)

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


class TorchCell:
    """One cell kind in the PyTorch target (`CELLS[kind]`, registered with `@cell` by its module in this
    package): the torch.nn module computing it, its gate order, and the explicit cell model.py carries (a
    snippet of that module) for the settings torch.nn has no exact form of."""

    kind = ""  # the model's Cell.kind, set by `@cell`
    module = ""  # "torch.nn.LSTM"
    order: tuple[str, ...] = ()  # this kind's gates in PyTorch's block order
    labels = ""  # PyTorch's names of those blocks, e.g. "i, f, g, o"
    explicit = ""  # the explicit cell class written into model.py, e.g. "KerasLSTM"

    def problem(self, settings: CellSettings) -> str | None:
        """Why the PyTorch module cannot compute exactly what Keras does with these settings (None: it can)."""
        if settings.recurrent_activation not in (None, "sigmoid"):
            return (f"{self.module} has only sigmoid gates; this layer's recurrent_activation is "
                    f"{settings.recurrent_activation}")
        if settings.activation != "tanh":
            return f"{self.module} has only tanh; this layer's activation is {settings.activation}"
        return None

    def refusal(self, settings: CellSettings) -> str | None:
        """Why the PyTorch module has no state_dict for these settings at all (None: it has one, exact or not)."""
        return None

    def options(self, settings: CellSettings) -> dict[str, Any]:
        """Constructor arguments of the PyTorch module beyond sizes and bias (SimpleRNN's nonlinearity)."""
        return {}

    def arrays(self, cell: Cell, w: CellWeights) -> dict[str, np.ndarray]:
        """weight_ih, weight_hh, bias_ih, bias_hh of one direction (no layer suffix), PyTorch's gate order."""
        b_in, b_rec = cell.bias_pair(w)
        return {
            "weight_ih": cell.reordered_T(w.kernel, self.order),
            "weight_hh": cell.reordered_T(w.recurrent_kernel, self.order),
            "bias_ih": cell.reorder(b_in, self.order),
            "bias_hh": cell.reorder(b_rec, self.order),
        }


def torch_cell(cell: Cell) -> TorchCell:
    """This target's code for the model's cell kind (`dump --layout pytorch` and the export both use it)."""
    return CELLS[cell.kind]


def _arguments(options: dict[str, Any]) -> str:
    """Keyword arguments as model.py writes them: `, name=value` each, strings in double quotes."""
    return "".join(f", {k}=" + (f'"{v}"' if isinstance(v, str) else repr(v)) for k, v in options.items())


def direction_module(w: Writer, d: RecurrentDirection, weights: CellWeights, what: str,
                     bidirectional_with: tuple[RecurrentDirection, CellWeights] | None = None
                     ) -> tuple[str, dict[str, np.ndarray]]:
    """(constructor, state_dict entries) of one direction, or of a Bidirectional's two halves as one
    bidirectional torch.nn module when `bidirectional_with` is its backward half."""
    s, cell = d.settings, d.cell
    tc = torch_cell(cell)
    n_i, units = weights.input_dim, weights.units
    bias = "" if s.use_bias else ", bias=False"
    if tc.problem(s) is None:
        extra = _arguments(tc.options(s))
        halves = [("_l0", weights)]
        if bidirectional_with is not None:
            halves.append(("_l0_reverse", bidirectional_with[1]))
            extra += ", bidirectional=True"
        arrays: dict[str, np.ndarray] = {}
        for suffix, cw in halves:
            for key, a in tc.arrays(cell, cw).items():
                if s.use_bias or not key.startswith("bias"):
                    arrays[key + suffix] = a
        module = tc.module.removeprefix("torch.")
        return f"{module}({n_i}, {units}{bias}{extra}, batch_first=True)", arrays
    w.need(tc.explicit)
    act = w.act_fn(s.activation, f"{what}: activation")
    options = f", activation={act}"
    if s.recurrent_activation is not None:
        options += f", recurrent_activation={w.act_fn(s.recurrent_activation, f'{what}: recurrent_activation')}"
    options += _arguments(cell.kind_settings(s))
    arrays = {k: v for k, v in tc.arrays(cell, weights).items() if s.use_bias or not k.startswith("bias")}
    return f"{tc.explicit}({n_i}, {units}{bias}{options})", arrays


def exact(d: RecurrentDirection) -> bool:
    """torch.nn's module computes this direction exactly (no explicit cell)."""
    return torch_cell(d.cell).problem(d.settings) is None


def _one_module(d: RecurrentDirection, other: RecurrentDirection) -> bool:
    """Both halves of a Bidirectional as one torch.nn module with bidirectional=True."""
    a, b = d.settings, other.settings
    return (exact(d) and exact(other) and d.cell is other.cell
            and d.units == other.units and d.input_dim == other.input_dim and a.use_bias == b.use_bias
            and a.activation == b.activation and not a.go_backwards and b.go_backwards)


def _flag_args(d: RecurrentDirection) -> str:
    s = d.settings
    return (", go_backwards=True" if s.go_backwards else "") + (
        ", zero_output_for_mask=True" if s.zero_output_for_mask else "")


@dataclass
class RecurrentCall:
    """One call of a recurrent layer being written: its input, mask and initial states as model.py names them."""

    e: LayerEmit
    directions: list[RecurrentDirection]
    value: str  # the input, batch first
    mask: str | None  # the boolean mask, batch first
    state_names: list[str]
    name: str = ""  # the layer's output local
    weights: list[CellWeights] = field(default_factory=list)

    @property
    def s(self) -> CellSettings:
        return self.directions[0].settings

    @property
    def n(self) -> int:
        """States per direction."""
        return len(self.directions[0].cell.states)

    @property
    def mask_arg(self) -> str:
        return f", {self.mask}" if self.mask is not None else ""

    @property
    def out_mask(self) -> str | None:
        return self.mask if self.s.return_sequences else None

    @property
    def plain(self) -> bool:
        """No mask and the input in its own order: the torch.nn module is called as a PyTorch user would call it."""
        return self.mask is None and all(exact(d) for d in self.directions)

    def init(self, k: int) -> str:
        """Direction k's initial states as keras_rnn's argument (nothing when the call gives none)."""
        n = self.n
        part = self.state_names[n * k: n * (k + 1)] if len(self.state_names) >= n * (k + 1) else None
        return f", state=[{', '.join(part)}]" if part else ""

    def sequence_out(self, expr: str) -> str:
        return f"{expr}.transpose(0, 1)" if self.s.time_major else expr

    def module(self, d: RecurrentDirection, weights: CellWeights, backward: tuple[RecurrentDirection, CellWeights]
               | None = None) -> str:
        """The layer's attribute holding one direction's module (or both halves' bidirectional one)."""
        e = self.e
        ctor, arrays = direction_module(e.w, d, weights, f"layer {e.node.path}", backward)
        return e.w.module(e.key, e.hint, ctor, arrays)


def _recurrent_call(e: LayerEmit, directions: list[RecurrentDirection]) -> RecurrentCall:
    """The call's input, mask and initial states (Network._recurrent_layer's rules through `recurrent_call`)."""
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
    return RecurrentCall(e, directions, value, mask, [t.name for t in states])


def recurrent_layer(e: LayerEmit, directions: list[RecurrentDirection]) -> list[Sym]:
    """A recurrent layer's call (Network._recurrent_layer in PyTorch)."""
    rc = _recurrent_call(e, directions)
    mode = directions[0].merge_mode
    if len(directions) == 2 and mode not in MERGE_MODES:
        raise e.fail("its merge_mode is not one Keras defines (concat, sum, mul, ave or None)")
    rc.weights = [d.weights() for d in directions]
    rc.name = e.w.name(e.hint)
    e.w.comment(f"{rc.name}: {e.kind}" + ("" if len(directions) == 1 else f" ({mode or 'no'} merge)"))
    if len(directions) == 1:
        return _one_direction(rc)
    return _bidirectional(rc)


def _one_direction(rc: RecurrentCall) -> list[Sym]:
    w, s, name, n, d = rc.e.w, rc.s, rc.name, rc.n, rc.directions[0]
    attr = rc.module(d, rc.weights[0])
    state = w.name(f"{name}_state")
    if rc.plain:  # go_backwards: the input reversed in time, the outputs in that processing order, as Keras
        last = w.name(f"{name}_last") if s.return_state else "_"
        given = f"{rc.value}.flip(1)" if s.go_backwards else rc.value
        w.line(f"{name}, {last} = self.{attr}({given}{_torch_initial_state(rc.state_names[:n], n)})")
        if s.return_state:
            w.line(f"{state} = {_keras_states(last, n, 0)}")
    else:
        w.need("keras_rnn")
        w.line(f"{name}, {state} = keras_rnn(self.{attr}, {rc.value}{rc.mask_arg}{rc.init(0)}{_flag_args(d)})")
    if s.return_sequences:
        if s.time_major:
            w.line(f"{name} = {rc.sequence_out(name)}")
    else:
        w.line(f"{name} = {name}[:, -1]")
    outs = [Sym(name, "float", rc.out_mask if not s.time_major else None)]
    if s.return_state:
        outs += _state_syms(w, name, state, d)
    return outs


@dataclass
class Halves:
    """The locals of a Bidirectional's two halves: outputs and final states."""

    fw: str
    bw: str
    fw_state: str
    bw_state: str
    in_input_order: bool = False  # the backward half in input time order already (torch's bidirectional)
    whole: bool = False  # the module's output is the layer's (a concat of whole sequences)


def _bidirectional(rc: RecurrentCall) -> list[Sym]:
    w, name = rc.e.w, rc.name
    fw_d, bw_d = rc.directions
    fw, bw = w.name(f"{name}_forward"), w.name(f"{name}_backward")
    h = Halves(fw, bw, w.name(f"{name}_forward_state"), w.name(f"{name}_backward_state"))
    if _one_module(fw_d, bw_d) and rc.plain and len(rc.state_names) in (0, 2 * rc.n):
        _one_plain_module(rc, h)
    elif _one_module(fw_d, bw_d):
        _one_masked_module(rc, h)
    else:
        _two_modules(rc, h)
    return _merged(rc, h)


def _one_plain_module(rc: RecurrentCall, h: Halves) -> None:
    """Both halves as one bidirectional torch.nn module, called as a PyTorch user would call it."""
    w, s, name, n = rc.e.w, rc.s, rc.name, rc.n
    fw_d, bw_d = rc.directions
    attr = rc.module(fw_d, rc.weights[0], (bw_d, rc.weights[1]))
    last = w.name(f"{name}_last") if s.return_state else "_"
    # a concat of whole sequences is the module's output as it stands
    h.whole = fw_d.merge_mode == "concat" and s.return_sequences and not s.time_major
    both = name if h.whole else w.name(f"{name}_both")
    w.line(f"{both}, {last} = self.{attr}({rc.value}{_torch_initial_state(rc.state_names, n)})")
    if not h.whole:
        w.line(f"{h.fw}, {h.bw} = {both}.chunk(2, dim=-1)")
    if s.return_state:
        w.line(f"{h.fw_state}, {h.bw_state} = {_keras_states(last, n, 0)}, {_keras_states(last, n, 1)}")
    h.in_input_order = True


def _one_masked_module(rc: RecurrentCall, h: Halves) -> None:
    """Both halves as one bidirectional torch.nn module, run by keras_bidirectional (a mask, or one half's states)."""
    w, n, names = rc.e.w, rc.n, rc.state_names
    fw_d, bw_d = rc.directions
    attr = rc.module(fw_d, rc.weights[0], (bw_d, rc.weights[1]))
    w.need("keras_bidirectional")
    given = ""  # the backward half from zeros when only the forward half's states are given (as the engine)
    if len(names) >= n:
        both = names[: 2 * n] if len(names) >= 2 * n else (names[:n] + [f"torch.zeros_like({s})" for s in names[:n]])
        given = f", state=[{', '.join(both)}]"
    zero = (fw_d.settings.zero_output_for_mask, bw_d.settings.zero_output_for_mask)
    zero_arg = f", zero_output_for_mask=({zero[0]}, {zero[1]})" if any(zero) else ""
    w.line(f"{h.fw}, {h.bw}, {h.fw_state}, {h.bw_state} = keras_bidirectional(self.{attr}, {rc.value}{rc.mask_arg}"
           f"{given}{zero_arg})")


def _two_modules(rc: RecurrentCall, h: Halves) -> None:
    """Each half its own module (an nn.ModuleDict), each run by keras_rnn."""
    e, w = rc.e, rc.e.w
    fw_d, bw_d = rc.directions
    parts = []
    arrays = {}
    # the halves named as Keras's Bidirectional names them ("forward" is nn.Module's own method)
    for half, d, cw in (("forward_layer", fw_d, rc.weights[0]), ("backward_layer", bw_d, rc.weights[1])):
        ctor, half_arrays = direction_module(w, d, cw, f"layer {e.node.path} ({half})")
        parts.append(f'"{half}": {ctor}')
        arrays.update({f"{half}.{k}": v for k, v in half_arrays.items()})
    attr = w.module(e.key, e.hint, f"nn.ModuleDict({{{', '.join(parts)}}})", arrays)
    w.need("keras_rnn")
    w.line(f'{h.fw}, {h.fw_state} = keras_rnn(self.{attr}["forward_layer"], {rc.value}{rc.mask_arg}{rc.init(0)}'
           f"{_flag_args(fw_d)})")
    w.line(f'{h.bw}, {h.bw_state} = keras_rnn(self.{attr}["backward_layer"], {rc.value}{rc.mask_arg}{rc.init(1)}'
           f"{_flag_args(bw_d)})")


def _merged(rc: RecurrentCall, h: Halves) -> list[Sym]:
    """The Bidirectional's outputs from its halves': merged by its merge_mode (or both), then the states."""
    w, s, name, out_mask = rc.e.w, rc.s, rc.name, rc.out_mask
    fw_d, bw_d = rc.directions
    mode = fw_d.merge_mode
    fw, bw = h.fw, h.bw
    if s.return_sequences:  # the backward half back in input time order
        y, y_rev = rc.sequence_out(fw), rc.sequence_out(bw if h.in_input_order else f"{bw}.flip(1)")
    else:  # the backward half's last step processed: the first in input order
        y, y_rev = f"{fw}[:, -1]", f"{bw}[:, 0]" if h.in_input_order else f"{bw}[:, -1]"
    merged = {"concat": f"torch.cat([{y}, {y_rev}], dim=-1)", "sum": f"{y} + {y_rev}", "mul": f"{y} * {y_rev}",
              "ave": f"({y} + {y_rev}) / 2"}
    if mode is None:
        outs = [w.let(f"{name}_forward_output", y, mask=out_mask), w.let(f"{name}_backward_output", y_rev,
                                                                          mask=out_mask)]
    else:
        if not (h.in_input_order and h.whole):
            w.line(f"{name} = {merged[mode]}")
        outs = [Sym(name, "float", out_mask)]
    if s.return_state:
        outs += (_state_syms(w, f"{name}_forward", h.fw_state, fw_d)
                 + _state_syms(w, f"{name}_backward", h.bw_state, bw_d))
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
    if exact(d):
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
