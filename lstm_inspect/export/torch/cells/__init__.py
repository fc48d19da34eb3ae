"""Keras's recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional) in the PyTorch export.

Why: torch.nn.LSTM/GRU/RNN compute exactly Keras's equations only for some settings, and never Keras's
masks; this package decides, per direction, what the export runs and writes the small runtime model.py
needs for it. This module holds what every kind shares (`TorchCell`, the sequence loop's helpers, the layer
call); each kind's own part is one module registered with `@cell` in `registry.CELLS` (`lstm.py`, `gru.py`,
`simple_rnn.py`, named as `lstm_inspect/model/cells/`): its torch.nn module and gate order, when that module is
exact (`TorchCell.problem`), its step function and explicit cell class for model.py.

- Every recurrent layer is one module of model.py, the kind's `KerasLSTM`, `KerasGRU`, `KerasSimpleRNN` (a
  `KerasRNN`): its parameters are torch.nn.LSTM/GRU/RNN's (weight_ih_l0 ... and `_reverse` for a Bidirectional
  whose halves fit one module; PyTorch's gate order; CuDNN biases and Keras 1's arrays already converted by
  `RecurrentDirection.weights()`), its activations Keras's names (`keras_activation`).
- Where the kind's `problem(settings)` is None (tanh/sigmoid, GRU reset_after=True, SimpleRNN tanh/relu) the
  module is `fused=True`: it calls torch.nn's own op (torch.lstm, torch.gru, torch.rnn_tanh/relu), so its
  state_dict loads into the torch.nn module too. With a mask, in eager PyTorch and TorchScript (`packing()`),
  the op runs on each row's valid steps moved to the front (a stable sort of the mask) and packed as a
  PackedSequence's (data, batch_sizes), and the outputs go back to their steps with Keras's masked-step outputs
  (`packed_valid`, `unpacked_valid`; the ONNX target does the same with sequence_lens). Otherwise (under
  torch.jit.trace, torch.export and torch.compile, whose graphs would freeze the packed sizes, and for every
  layer torch.nn does not compute exactly) it runs Keras's step equations (`lstm_inspect/model/cells/lstm.py`,
  `gru.py` in both reset_after forms, `simple_rnn.py`) in the kind's loop (`LOOP`, one per kind), with the
  writing Keras's activations (hard_sigmoid of its generation).

The sequence semantics are Keras's `RNN` layer's, as `lstm_inspect.engine.loop.run_sequence` runs them
(`keras/src/layers/rnn/rnn.py`, the backend's `rnn` loop): go_backwards reads the input reversed and returns the
outputs in processing order; a masked step keeps the states and outputs zeros (zero_output_for_mask, which Keras's
Bidirectional sets for return_sequences) or the previous output (zeros before the first valid step). The mask is
read as a tensor (at every step of the loop, `torch.where`; once by the packing), never branched on: one path for
no padding, padding before or after, and holes, so torch.jit.trace and torch.export keep every path. The loop is a
Python loop in eager PyTorch and TorchScript, a TorchScript loop under torch.jit.trace
(`torch.jit.script_if_tracing`: a traced model keeps a free time axis), and torch's `scan` under torch.export
(`exporting()`): torch.export unrolls a Python loop, and torch.nn's RNN ops with it, at the example's length
(pytorch/pytorch#115092), while a scan keeps the time axis a `Dim`. Types are annotated (Optional, List) so that
TorchScript compiles model.py as it stands. The layer-level rules (states per direction, merge modes, time_major,
return_state order, the output mask) mirror `Network._recurrent_layer` through `recurrent_call`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_inspect.engine.network import is_stacked, recurrent_call, state_offset
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, Writer, is_sym, snippet
from lstm_inspect.export.torch.registry import CELLS

if TYPE_CHECKING:
    from lstm_inspect.model.cells.base import Cell, CellSettings, CellWeights
    from lstm_inspect.model.checkpoint import RecurrentDirection


snippet("exporting", '''
def exporting() -> bool:
    """True under torch.export (and torch.onnx.export's dynamo route): there a Python loop over time would be
    unrolled at the example's length and torch.nn's fused RNNs are decomposed the same way, so the recurrences
    run as torch's scan and the time axis stays free. False in eager, torch.jit.script/trace and torch.compile."""
    if not torch.jit.is_scripting():
        return torch.compiler.is_exporting()
    return False
''', imports=TYPING)
snippet("packing", """
def packing() -> bool:
    \"\"\"True in eager PyTorch and TorchScript: a masked layer torch.nn computes exactly runs torch.nn's fused op on
    each row's valid steps (`packed_valid`). False under torch.jit.trace, torch.export and torch.compile, whose
    graphs would freeze the packed sizes (each row's number of valid steps) at the example's: there the mask
    runs Keras's step loop.\"\"\"
    if not torch.jit.is_scripting():
        return not (torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling())
    return True
""", imports=TYPING)
snippet("packed_valid", """
def packed_valid(x: Tensor, mask: Tensor, state: List[Tensor]
                 ) -> Tuple[Tensor, Tensor, List[Tensor], Tensor, Tensor, Tensor]:
    \"\"\"Each row's valid steps moved to its front in time order (a stable sort of the mask), the rows sorted by
    their number of valid steps, longest first, and packed as torch.nn's fused ops take a PackedSequence: (data,
    batch_sizes, the states in that row order; for `unpacked_valid`: each row's place in that order, where each
    row's k-th valid step is in data (batch, steps), the rows' valid-step counts). A row with no valid step runs
    one (masked) step whose results `unpacked_valid` discards. No branch on the mask's values.\"\"\"
    batch, steps = mask.shape
    lengths = mask.sum(1)
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True)[1]
    rows = torch.sort(lengths, dim=0, descending=True, stable=True)[1]
    valid = torch.arange(steps, device=x.device)[:, None] < lengths.index_select(0, rows).clamp(min=1)[None, :]
    source = (order + torch.arange(batch, device=x.device)[:, None] * steps).index_select(0, rows).t()
    data = x.reshape(batch * steps, x.shape[2]).index_select(0, source[valid])
    batch_sizes = valid.sum(1)
    hx = [s.index_select(0, rows)[None] for s in state]
    unsorted = torch.empty_like(rows).scatter_(0, rows, torch.arange(batch, device=rows.device))
    place = (valid.flatten().cumsum(0) - 1).view(steps, batch).index_select(1, unsorted).t()
    return data, batch_sizes[batch_sizes > 0].cpu(), hx, unsorted, place, lengths
""", imports=TYPING)
snippet("unpacked_valid", """
def unpacked_valid(data: Tensor, final: List[Tensor], mask: Tensor, state: List[Tensor], unsorted: Tensor,
                   place: Tensor, lengths: Tensor, zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
    \"\"\"The fused op's packed outputs and final states back in the rows' and steps' places (`packed_valid`'s
    unsorted, place, lengths), with Keras's masked steps: zeros (zero_output_for_mask) or the previous valid
    output (zeros before the first), the states held (a row with no valid step keeps its initial states).\"\"\"
    batch, steps = mask.shape
    seen = mask.cumsum(1) - 1
    outputs = data.index_select(0, place.gather(1, seen.clamp(min=0)).flatten()).view(batch, steps, data.shape[1])
    kept = mask if zero_output_for_mask else seen >= 0
    outputs = outputs.masked_fill(~kept[:, :, None], 0.0)
    ran = (lengths > 0)[:, None]
    return outputs, [torch.where(ran, f[0].index_select(0, unsorted), s) for f, s in zip(final, state)]
""", imports=TYPING)
snippet("keep_masked", '''
def keep_masked(new: Tensor, state: Tensor, output: Tensor, valid: Tensor, zero_output_for_mask: bool
                ) -> Tuple[Tensor, Tensor]:
    """Keras's masked step on the states stacked (n_states, batch, units): where `valid` (batch, 1) is False the
    states stay and the output is zeros (zero_output_for_mask) or the previous output (zeros before the first
    valid step)."""
    masked = torch.zeros_like(output) if zero_output_for_mask else output
    return torch.where(valid, new, state), torch.where(valid, new[0], masked)
''', imports=TYPING)
snippet("scan_steps", '''
def scan_steps(step, args, xp, mask, state, zero_output_for_mask):
    """Keras's loop as torch's scan (torch._higher_order_ops.scan, a prototype of torch 2.x), for torch.export:
    the exported program keeps one loop over a free time axis. `step(xp_t, states, *args)` is the cell's step;
    returns what the cell's loop returns. Never compiled by TorchScript (its callers skip it when scripting)."""
    from torch._higher_order_ops.scan import scan

    def body(carry, inputs):
        new = torch.stack(step(inputs[0], list(carry[0].unbind(0)), *args))
        kept, output = keep_masked(new, carry[0], carry[1], inputs[1], zero_output_for_mask)
        return [kept, output.clone()], output.clone()

    xs = [xp.transpose(0, 1), mask.transpose(0, 1)[:, :, None]]
    carry, ys = scan(body, [state, torch.zeros_like(state[0])], xs)
    return ys.transpose(0, 1), list(carry[0].unbind(0))
''', needs=("keep_masked",))
snippet("KerasRNN", '''
class KerasRNN(nn.Module):
    """One Keras recurrent layer (one direction, or a Bidirectional's two as torch.nn's bidirectional=True), run
    as Keras's RNN layer runs it: forward(x, mask, state, reverse, go_backwards, zero_output_for_mask).

    Parameters are named and laid out as torch.nn.LSTM/GRU/RNN's (weight_ih_l0, weight_hh_l0, bias_ih_l0,
    bias_hh_l0, `_reverse` for the backward half; gates in torch.nn's order), so its state_dict loads into the
    torch.nn module where `fused` (that module computes Keras's equations: `fused_run` calls its op when no mask
    reaches the layer, `fused_packed` on the valid steps packed when one does, in eager and TorchScript).
    Otherwise Keras's loop runs step by step (`loop`, the kind's `*_loop` function). Activations are Keras's
    names (`keras_activation`).
    """

    gates, n_states = 1, 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, bidirectional: bool = False,
                 activation: str = "tanh", recurrent_activation: str = "sigmoid", fused: bool = False):
        super().__init__()
        self.hidden_size, self.fused, self.n_states = hidden_size, fused, type(self).n_states  # instance attributes
        self.activation, self.recurrent_activation = activation, recurrent_activation
        for suffix in ["_l0", "_l0_reverse"] if bidirectional else ["_l0"]:
            size = self.gates * hidden_size
            self.register_parameter("weight_ih" + suffix, nn.Parameter(torch.zeros(size, input_size)))
            self.register_parameter("weight_hh" + suffix, nn.Parameter(torch.zeros(size, hidden_size)))
            self.register_parameter("bias_ih" + suffix, nn.Parameter(torch.zeros(size)) if bias else None)
            self.register_parameter("bias_hh" + suffix, nn.Parameter(torch.zeros(size)) if bias else None)

    def weights(self, reverse: bool) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """One direction's weight_ih, weight_hh, bias_ih, bias_hh."""
        if reverse and hasattr(self, "weight_ih_l0_reverse"):
            return (self.weight_ih_l0_reverse, self.weight_hh_l0_reverse, self.bias_ih_l0_reverse,
                    self.bias_hh_l0_reverse)
        return self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, state: Optional[List[Tensor]] = None,
                reverse: bool = False, go_backwards: bool = False, zero_output_for_mask: bool = False
                ) -> Tuple[Tensor, List[Tensor]]:
        """One direction over x (batch, steps, features) from `state` ([h] or [h, c]; zeros when None), `reverse`
        choosing the backward half's weights: its outputs in processing order (batch, steps, units) and its final
        states. go_backwards reads x (and the mask) reversed in time."""
        weight_ih, weight_hh, bias_ih, bias_hh = self.weights(reverse)
        if go_backwards:
            x = x.flip(1)
            if mask is not None:
                mask = mask.flip(1)
        if state is None:
            state = [x.new_zeros(x.shape[0], self.hidden_size) for _ in range(self.n_states)]
        params = [weight_ih, weight_hh]
        if bias_ih is not None and bias_hh is not None:
            params = [weight_ih, weight_hh, bias_ih, bias_hh]
        if mask is None and self.fused and not exporting():
            return self.fused_run(x, state, params)
        if mask is not None and self.fused and packing():
            data, batch_sizes, hx, unsorted, place, lengths = packed_valid(x, mask, state)
            data, final = self.fused_packed(data, batch_sizes, hx, params)
            return unpacked_valid(data, final, mask, state, unsorted, place, lengths, zero_output_for_mask)
        if mask is None:  # the loop takes tensors only (torch.onnx.export writes it as an ONNX Loop)
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if bias_hh is None:
            bias_hh = torch.zeros_like(weight_hh[:, 0])
        return self.loop(F.linear(x, weight_ih, bias_ih), mask, torch.stack(state), weight_hh, bias_hh,
                         zero_output_for_mask)

    def fused_run(self, x: Tensor, state: List[Tensor], params: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise NotImplementedError

    def fused_packed(self, data: Tensor, batch_sizes: Tensor, state: List[Tensor], params: List[Tensor]
                     ) -> Tuple[Tensor, List[Tensor]]:
        raise NotImplementedError

    def loop(self, xp: Tensor, mask: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
        raise NotImplementedError
''', needs=("exporting", "packing", "packed_valid", "unpacked_valid"), imports=TYPING)

# Each cell kind's loop: this template with the kind's step function (`loop_snippet`), so the loop is written
# once and every kind's is a plain function TorchScript compiles (it has no function values).
LOOP = '''
@torch.jit.script_if_tracing
def {name}(xp: Tensor, mask: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor, activation: str,
        {pad}recurrent_activation: str, option: bool, zero_output_for_mask: bool) -> Tuple[Tensor, List[Tensor]]:
    """Keras's RNN loop of {step} over xp = x·kernel + bias (batch, steps, gates·units) in processing order, from
    the states stacked (n_states, batch, units), the mask (batch, steps) read as a tensor at every step (no
    branch on its values): the outputs (batch, steps, units) and the final states. A Python loop in eager
    PyTorch and TorchScript, a TorchScript loop under torch.jit.trace (script_if_tracing; tensors only, so
    torch.onnx.export writes an ONNX Loop), torch's scan under torch.export."""
    if not torch.jit.is_scripting():
        if torch.compiler.is_exporting():
            return scan_steps({step}, (weight_hh, bias_hh, activation, recurrent_activation, option), xp, mask,
                              state, zero_output_for_mask)
    output = torch.zeros_like(state[0])
    outputs: List[Tensor] = []
    for t in range(xp.shape[1]):
        new = torch.stack({step}(xp[:, t], list(state.unbind(0)), weight_hh, bias_hh, activation,
                          {spad}recurrent_activation, option))
        state, output = keep_masked(new, state, output, mask[:, t, None], zero_output_for_mask)
        outputs.append(output)
    return torch.stack(outputs, dim=1), list(state.unbind(0))
'''


def loop_snippet(name: str, step: str) -> None:
    """Register the loop function `name` of a cell kind whose step function is `step` (a snippet of its module)."""
    snippet(name, LOOP.format(name=name, step=step, pad=" " * (len(name) - 3), spad=" " * (len(step) + 1)),
            needs=(step, "keep_masked", "scan_steps"), imports=TYPING, before="KerasRNN")


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
    """(constructor, state_dict entries) of one direction's module (the kind's `Keras*` class of model.py), or of
    a Bidirectional's two halves as one module with bidirectional=True when `bidirectional_with` is its backward
    half. Its parameters are torch.nn's, so `fused` (torch.nn's module computes this direction exactly) means
    the state_dict loads into that module as well."""
    s, cell = d.settings, d.cell
    tc = torch_cell(cell)
    n_i, units = weights.input_dim, weights.units
    options = "" if s.use_bias else ", bias=False"
    halves = [("_l0", weights)]
    if bidirectional_with is not None:
        halves.append(("_l0_reverse", bidirectional_with[1]))
        options += ", bidirectional=True"
    arrays: dict[str, np.ndarray] = {}
    for suffix, cw in halves:
        for key, a in tc.arrays(cell, cw).items():
            if s.use_bias or not key.startswith("bias"):
                arrays[key + suffix] = a
    activation = w.act_name(s.activation, f"{what}: activation")
    if activation != "tanh":
        options += f', activation="{activation}"'
    if s.recurrent_activation is not None:
        recurrent = w.act_name(s.recurrent_activation, f"{what}: recurrent_activation")
        if recurrent != "sigmoid":
            options += f', recurrent_activation="{recurrent}"'
    options += _arguments(cell.kind_settings(s))
    if tc.problem(s) is None:
        options += ", fused=True"
    w.need(tc.explicit)
    return f"{tc.explicit}({n_i}, {units}{options})", arrays


def exact(d: RecurrentDirection) -> bool:
    """torch.nn's module computes this direction exactly (no explicit cell)."""
    return torch_cell(d.cell).problem(d.settings) is None


def _one_module(d: RecurrentDirection, other: RecurrentDirection) -> bool:
    """Both halves of a Bidirectional as one module with bidirectional=True (torch.nn's layout)."""
    a, b = d.settings, other.settings
    return (d.cell is other.cell and exact(d) == exact(other)
            and d.units == other.units and d.input_dim == other.input_dim and a.use_bias == b.use_bias
            and a.activation == b.activation and a.recurrent_activation == b.recurrent_activation
            and d.cell.kind_settings(a) == d.cell.kind_settings(b) and not a.go_backwards and b.go_backwards)


def _flag_args(d: RecurrentDirection, reverse: bool = False) -> str:
    s = d.settings
    return (", reverse=True" if reverse else "") + (", go_backwards=True" if s.go_backwards else "") + (
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
        """The layer's settings (a stack's last cell's: the others return sequences)."""
        return self.directions[-1].settings

    @property
    def mask_arg(self) -> str:
        return f", {self.mask}" if self.mask is not None else ""

    @property
    def out_mask(self) -> str | None:
        return self.mask if self.s.return_sequences else None

    def init(self, k: int) -> str:
        """Direction k's initial states as keras_rnn's argument (nothing when the call gives none)."""
        first, n = state_offset(self.directions, k), len(self.directions[k].cell.states)
        part = self.state_names[first: first + n] if len(self.state_names) >= first + n else None
        return f", state=[{', '.join(part)}]" if part else ""

    def call(self, attr: str, k: int, d: RecurrentDirection, reverse: bool = False, x: str | None = None) -> str:
        """The module call running direction k: `self.attr(x, mask, state=[...], flags)` (x: the layer's input)."""
        return f"self.{attr}({x or self.value}{self.mask_arg}{self.init(k)}{_flag_args(d, reverse)})"

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
    e.w.comment(f"{rc.name}: {e.kind}" + ("" if len(directions) == 1 else
                                           f" (cells {', '.join(d.kind[4:-1] for d in directions)}, run in turn)"
                                           if is_stacked(directions) else f" ({mode or 'no'} merge)"))
    if len(directions) == 1:
        return _one_direction(rc)
    if is_stacked(directions):
        return _stacked(rc)
    return _bidirectional(rc)


def _stacked(rc: RecurrentCall) -> list[Sym]:
    """An RNN over StackedRNNCells: one module per cell, each run over the previous one's output sequence (back in
    input time order when the stack goes backwards) with the layer's mask (engine.network.stacked_input)."""
    e, w, s, name = rc.e, rc.e.w, rc.s, rc.name
    x, outs = rc.value, []
    for k, (d, cw) in enumerate(zip(rc.directions, rc.weights)):
        ctor, arrays = direction_module(w, d, cw, f"layer {d.name}")
        attr = w.module(f"{e.key}:cell_{k}", f"{e.hint}_cell_{k}", ctor, arrays)
        last = k == len(rc.directions) - 1
        y = name if last else w.name(f"{name}_cell_{k}")
        state = w.name(f"{name}_cell_{k}_state") if s.return_state else "_"
        w.line(f"{y}, {state} = {rc.call(attr, k, d, x=x)}")
        if s.return_state:
            outs += _state_syms(w, f"{name}_cell_{k}", state, d)
        x = f"{y}.flip(1)" if d.settings.go_backwards else y  # the next cell reads it in input time order
    if s.return_sequences:
        if s.time_major:
            w.line(f"{name} = {rc.sequence_out(name)}")
    else:
        w.line(f"{name} = {name}[:, -1]")
    return [Sym(name, "float", rc.out_mask if not s.time_major else None), *outs]


def _one_direction(rc: RecurrentCall) -> list[Sym]:
    w, s, name, d = rc.e.w, rc.s, rc.name, rc.directions[0]
    attr = rc.module(d, rc.weights[0])
    state = w.name(f"{name}_state") if s.return_state else "_"
    w.line(f"{name}, {state} = {rc.call(attr, 0, d)}")
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
    """The locals of a Bidirectional's two halves: outputs (each in its processing order) and final states."""

    fw: str
    bw: str
    fw_state: str
    bw_state: str


def _bidirectional(rc: RecurrentCall) -> list[Sym]:
    """Both halves of a Bidirectional: one module with bidirectional=True when they fit one (the backward half
    run with reverse=True), else an nn.ModuleDict of two, named as Keras names the halves."""
    e, w, name = rc.e, rc.e.w, rc.name
    fw_d, bw_d = rc.directions
    h = Halves(w.name(f"{name}_forward"), w.name(f"{name}_backward"), w.name(f"{name}_forward_state"),
               w.name(f"{name}_backward_state"))
    if _one_module(fw_d, bw_d):
        attr = rc.module(fw_d, rc.weights[0], (bw_d, rc.weights[1]))
        fw_call, bw_call = rc.call(attr, 0, fw_d), rc.call(attr, 1, bw_d, reverse=True)
    else:
        parts = []
        arrays = {}
        # "forward" is nn.Module's own method, hence Keras's names of the halves
        for half, d, cw in (("forward_layer", fw_d, rc.weights[0]), ("backward_layer", bw_d, rc.weights[1])):
            ctor, half_arrays = direction_module(w, d, cw, f"layer {e.node.path} ({half})")
            parts.append(f'"{half}": {ctor}')
            arrays.update({f"{half}.{k}": v for k, v in half_arrays.items()})
        attr = w.module(e.key, e.hint, f"nn.ModuleDict({{{', '.join(parts)}}})", arrays)
        fw_call = rc.call(f'{attr}["forward_layer"]', 0, fw_d)
        bw_call = rc.call(f'{attr}["backward_layer"]', 1, bw_d)
    w.line(f"{h.fw}, {h.fw_state} = {fw_call}")
    w.line(f"{h.bw}, {h.bw_state} = {bw_call}")
    return _merged(rc, h)


def _merged(rc: RecurrentCall, h: Halves) -> list[Sym]:
    """The Bidirectional's outputs from its halves': merged by its merge_mode (or both), then the states."""
    w, s, name, out_mask = rc.e.w, rc.s, rc.name, rc.out_mask
    fw_d, bw_d = rc.directions
    mode = fw_d.merge_mode
    if s.return_sequences:  # the backward half back in input time order
        y, y_rev = rc.sequence_out(h.fw), rc.sequence_out(f"{h.bw}.flip(1)")
    else:  # each half's last step processed (the backward half's is the first in input order)
        y, y_rev = f"{h.fw}[:, -1]", f"{h.bw}[:, -1]"
    merged = {"concat": f"torch.cat([{y}, {y_rev}], dim=-1)", "sum": f"{y} + {y_rev}", "mul": f"{y} * {y_rev}",
              "ave": f"({y} + {y_rev}) / 2"}
    if mode is None:
        outs = [w.let(f"{name}_forward_output", y, mask=out_mask), w.let(f"{name}_backward_output", y_rev,
                                                                          mask=out_mask)]
    else:
        w.line(f"{name} = {merged[mode]}")
        outs = [Sym(name, "float", out_mask)]
    if s.return_state:
        outs += (_state_syms(w, f"{name}_forward", h.fw_state, fw_d)
                 + _state_syms(w, f"{name}_backward", h.bw_state, bw_d))
    return outs


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
    w.line(f"{y}, {state} = self.{attr}({x}{', go_backwards=True' if d.settings.go_backwards else ''})")
    names = [w.name(q) for q in d.cell.states]
    w.line(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {state}")
    return [y, *names]
