"""Why a port does not match Keras: search the space of porting mistakes for the one that reproduces it.

The engine reproduces Keras (see `verify`), so THEIRS is compared with the engine's outputs; then
the engine runs again with each mistake a port makes, and the mistakes are ranked by how close they
bring it to THEIRS. The space is built from axes, each a list of alternatives:

- the cell's own (`check.mistakes.cell_mistakes`): every gate order, every recurrent activation a port might use
  (sigmoid, Keras 2's and Keras 3's hard_sigmoid), candidate and cell activations, a dropped bias
  or CuDNN bias half (a GRU's bias rows), transposed or swapped blocks, and the step equations (a
  GRU's update gate the other way round, its reset gate before or after the product); TF1's LSTM
  conventions (forget_bias=1.0 added at run time, or after the sigmoid; the cell state clipped as
  TFLite and LSTMBlockCell clip it);
- dropout applied at inference, old-style (x and/or h scaled by 1 − rate in every layer that sets one);
- the sequence's: each direction run over time reversed (a forward one) or in its own order (a
  go_backwards one), a Bidirectional's backward output left unflipped, the mask ignored or zeroed
  (only where the model has a mask), states handed over by another layer ignored or, for an LSTM,
  handed over as (c, h) (only where there are), the states carried from one batch row into the
  next (a port looping over samples), the output emitted one step late (h_{t-1} at step t), the
  mask applied to the outputs alone or to the states alone, a Masking layer's rule read as "any
  feature", and reduced precision;
- a Bidirectional's: its directions interleaved across batch rows (ONNX's Y reshaped as it lies), the
  merged sequence's last step taken as the final output, and every cell and mask mistake in one of
  its directions only;
- the loop's around a correct step (research #1, #4, #6, #8, #14, #15 of issue 24): an LSTM's c_t emitted
  instead of h_t, the batch and time axes confused (PyTorch without batch_first; only where the outputs keep
  their shape), a standalone go_backwards layer's output flipped back to input order (as ONNX's reverse direction
  emits it), step 0 run without the recurrent part where a recurrent bias acts there (a reset_after GRU, a CuDNN
  layer), a stacked layer started from the final states of the one before it (where their shapes allow), and the
  states kept from a previous call (the same input run twice, as TFLite does unless reset);
- the model's outputs: same-shaped outputs returned in another order ([output, c, h]; a Bidirectional's states
  in PyTorch's h_n, c_n layout), compared without a rerun.

Every single mistake is tried, then pairs of mistakes from different axes, most promising first,
within a budget (a mistake copied into one direction is tried alone, never in a pair). All the runs
share one step budget (`budget.Limits.runs`): the model's own run counts once per run the search
will make (the model twice, then each single mistake's: none to reorder the outputs, two for a
repeated call), so a model whose run fits the budget but
whose search would not is refused before the search starts, in one line naming --max-steps; pairs
are tried only while what is left of the budget pays for them. A candidate whose outputs equal the
model's own is not a mistake on this input and is left out. One that reproduces THEIRS within the
verify tolerance is "exact"; where one in a single direction does so as exactly as one in the whole
layer, the narrower one is named first.

Before the search, the error is broken down per sample and step (and per half of a Bidirectional's
concatenated output): `verify.Evidence`. When some samples are exact, the mistakes that act on every
sample alike (the cell's, time order, precision) cannot be the cause and are not tried; when one half of
a Bidirectional's concatenated output is exact, only the mistakes of the other direction alone are. When
nothing reproduces THEIRS, a candidate is listed as "close" only when it cuts the largest error CLOSE
times or more (it explains at least 90 % of it); otherwise diagnose says none comes close and gives the
evidence, never a ranking of unrelated mistakes whose error is about the raw error. Where THEIRS is one
layer's output, the evidence goes on per gate (`check.gate_evidence`): the constant offset on each gate's
pre-activation that brings the output closest to THEIRS, and for a GRU or SimpleRNN whether the correct
step run from THEIRS's own h_{t−1} reproduces it (the step right, the loop wrong); those runs share the
same step budget.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstm_inspect.base import budget, progress
from lstm_inspect.base.display import brief, html_table
from lstm_inspect.base.errors import InspectError
from lstm_inspect.check.gate_evidence import GateEvidence, gate_evidence, runs_needed
from lstm_inspect.check.mistakes import cell_mistakes, recurrent_bias_dropped
from lstm_inspect.check.verify import Comparison, Evidence, compare
from lstm_inspect.engine.network import (
    DirectionVariant,
    Network,
    RunRecord,
    Variant,
    as_inputs,
    charge_direction,
    run_direction,
    run_layer,
    started_from,
)
from lstm_inspect.model.cells.base import CellWeights, StepVariant
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection

# Pairs are tried until one fits exactly, this many have run, or the search has taken this many seconds (the
# singles included; the search then stays within 10 s on the shared real files with the per-gate evidence after it).
MAX_PAIRS, SEARCH_SECONDS = 2000, 6.0
# At most this many orders of the model's same-shaped outputs are tried (they need no rerun).
MAX_REORDERS = 24
# A candidate that does not reproduce THEIRS is "close" when it cuts the largest error this many times or more.
CLOSE = 10.0
# The axes of mistakes that can leave some samples exact (the others act on every sample alike). Precision is
# one: its errors are small, so a sample with small activations can stay within the tolerance. So is a special
# first step: a row whose step 0 is masked (pre-padding) discards it in Keras and in the port alike.
PER_SAMPLE_AXES = ("mask", "state", "rows", "precision", "cell:clip", "first step")


@dataclass(frozen=True)
class Mistake:
    """One porting mistake: `variant` how the engine reruns it; `reorder` the model's outputs in the order the
    port returns them (THEIRS[k] is output reorder[k]; no rerun when the variant is empty); `runs` how many
    engine runs it costs."""

    name: str
    fix: str
    axis: str
    variant: Variant
    precision: bool = False
    alone: bool = False  # tried on its own only, never in a pair (a mistake copied into one direction)
    reorder: tuple[int, ...] = ()
    runs: int = 1

    def __add__(self, other: Mistake) -> Mistake:
        return Mistake(f"{self.name} + {other.name}", f"{self.fix}; and {other.fix}", f"{self.axis}+{other.axis}",
                       self.variant + other.variant, self.precision or other.precision,
                       reorder=self.reorder or other.reorder, runs=max(self.runs, other.runs, 1))


def _bfloat16(d: Any, w: CellWeights) -> CellWeights:
    def round_bf16(a: np.ndarray) -> np.ndarray:
        bits = np.asarray(a, np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)

    return w.with_blocks(round_bf16)


RUNS_BY = "diagnose makes (the model twice, then one per porting mistake)"


@contextmanager
def _sharing(runs: int) -> Iterator[None]:
    """Every engine run inside counts its steps `runs` times: the search's runs share one step budget."""
    with budget.limited(dataclasses.replace(budget.current_limits(), runs=runs, runs_by=RUNS_BY)):
        yield


def _for(name: str | None, change: DirectionVariant) -> Variant:
    return Variant(changes=((name, change),))


def mistakes(ckpt: Checkpoint, directions: list[RecurrentDirection], masked: bool, axes: bool | None = None
             ) -> list[Mistake]:
    """Every single mistake that applies to these directions (the whole model's, or one alone), family by family.
    `axes`: whether a port that confuses the batch and time axes returns outputs of the right shape (None: where
    every direction returns its sequence and no states)."""
    out = _cell_family(directions) + _dropout_family(directions) + _time_family(directions) + _state_family(directions)
    if masked:
        out += _mask_family(directions)
    if masked and any(m.class_name == "Masking" for m in ckpt.layers):
        # research24 §9f (reasoned): Keras's Masking masks a step only where ALL its features equal mask_value
        out.append(Mistake("Masking read as 'any feature equals mask_value' (Keras masks a step only where all of "
                           "them do)", "mask a step only when every feature equals mask_value: "
                           "mask = any(x != mask_value, axis=-1) marks the steps kept", "mask",
                           Variant(masking_any=True)))
    out += _bidirectional_family(directions) + _one_direction_family(directions, masked)
    return out + _loop_family(directions, axes) + _precision_family()


def _cell_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """The cell's own mistakes (`check.mistakes`), once per kind and settings, in every direction of that kind."""
    out: list[Mistake] = []
    by_kind: dict[tuple[str, str, str], list[RecurrentDirection]] = {}
    for d in directions:
        s = d.settings
        key = (d.cell.kind, str((s.activation, s.recurrent_activation, s.reset_after, s.use_bias)), d.storage)
        by_kind.setdefault(key, []).append(d)
    several = len(by_kind) > 1
    for ds in by_kind.values():
        d0 = ds[0]
        where = f" (in {', '.join(d.name for d in ds)})" if several else ""
        # the input block's transposes only where every direction is square (N_i = N_c)
        square = all(d.input_dim == d.units for d in ds)
        for m in cell_mistakes(d0.cell, d0.settings, d0.storage, d0.input_dim if square else None, d0.units,
                               d0.hard_sigmoid):
            if m.same_as_model:
                continue
            change = DirectionVariant(weights=(m.weights,) if m.weights else (), step=m.step)
            variant = Variant(changes=tuple((d.name, change) for d in ds))
            out.append(Mistake(m.name + where, m.fix, f"cell:{m.axis}", variant))
    return out


def _dropout_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """Dropout applied at inference (lmnt-com/haste#18, keras#8907, tensorflow#35724) as old-style dropout scales,
    in every direction that sets a rate, by its own: x·(1 − dropout) before the kernel, h_{t−1}·(1 − recurrent_dropout)
    before the recurrent kernel, where Keras's training masks act. Keras's dropout is inverted (scaled while
    training) and does nothing at inference. x·(1 − p) times kernel is x times kernel·(1 − p): a weight change."""
    out: list[Mistake] = []
    fix = "Keras drops and scales only while training: at inference use x and h as they are"
    on_x = [d for d in directions if d.settings.dropout > 0]
    on_h = [d for d in directions if d.settings.recurrent_dropout > 0]

    def rates(ds: list[RecurrentDirection], of: str) -> str:
        kept = [f"{1 - getattr(d.settings, of):g}" for d in ds]
        if len(directions) == 1:
            return f" = {kept[0]}"
        return " (" + ", ".join(f"{k} in {d.name}" for k, d in zip(kept, ds)) + ")"

    def scaled(x: bool, h: bool) -> Variant:
        return Variant(changes=tuple((d.name, DirectionVariant(weights=(_dropout_scaled(x, h),)))
                                     for d in directions if (x and d in on_x) or (h and d in on_h)))

    if on_x:
        out.append(Mistake(f"dropout applied at inference: x scaled by 1 − dropout{rates(on_x, 'dropout')}", fix,
                           "dropout", scaled(True, False)))
    if on_h:
        out.append(Mistake("recurrent dropout applied at inference: h_(t−1) scaled by 1 − recurrent_dropout"
                           f"{rates(on_h, 'recurrent_dropout')}", fix, "dropout", scaled(False, True)))
    if on_x and on_h:
        out.append(Mistake(f"dropout and recurrent dropout applied at inference: x scaled by 1 − dropout"
                           f"{rates(on_x, 'dropout')}, h_(t−1) by 1 − recurrent_dropout"
                           f"{rates(on_h, 'recurrent_dropout')}", fix, "dropout", scaled(True, True)))
    return out


def _dropout_scaled(x: bool, h: bool) -> Callable[[Any, CellWeights], CellWeights]:
    """kernel·(1 − dropout) and/or recurrent_kernel·(1 − recurrent_dropout), by the direction's own rates."""
    def apply(d: Any, w: CellWeights) -> CellWeights:
        keep_x = np.float32(1 - d.settings.dropout) if x else np.float32(1)
        keep_h = np.float32(1 - d.settings.recurrent_dropout) if h else np.float32(1)
        return CellWeights(kernel=w.kernel * keep_x, recurrent_kernel=w.recurrent_kernel * keep_h, bias=w.bias)
    return apply


def _time_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """Time order and what is emitted when: reversals, a Bidirectional's backward output, outputs shifted."""
    out: list[Mistake] = []
    for d in directions:
        one = f" ({d.name})" if len(directions) > 1 else ""
        if d.settings.go_backwards:
            out.append(Mistake(f"go_backwards ignored: the backward direction ran forward in time{one}",
                               "reverse the input in time for a go_backwards direction", "time",
                               _for(d.name, DirectionVariant(ignore_go_backwards=True))))
        else:
            out.append(Mistake(f"the input reversed in time{one}", "feed the sequence in its own order, first step "
                               "first", "time", _for(d.name, DirectionVariant(reverse_time=True))))
    out.append(Mistake("output one step late: h_{t−1} emitted at step t (zeros at step 0)", "update the states, "
                       "then emit h_t", "emit", _for(None, DirectionVariant(late_output=True))))
    if any(d.wrapper is not None and d.settings.return_sequences for d in directions):
        out.append(Mistake("the backward output not flipped back to input order", "Bidirectional flips the backward "
                           "sequence back before merging", "time", Variant(backward_output_not_flipped=True)))
    return out


def _state_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """Where each row's states start: states handed over ignored or as (c, h), states carried from one row into the
    next."""
    out: list[Mistake] = []
    for d in directions:
        one = f" ({d.name})" if len(directions) > 1 else ""
        if d.initial_state_from:
            out.append(Mistake(f"the states handed over ignored: started from zeros{one}",
                               f"start {d.name} from {', '.join(d.initial_state_from)}", "state",
                               _for(d.name, DirectionVariant(zero_initial_state=True))))
    # tensorflow#17133, #13943, frugally-deep#145: states handed over in TF1's LSTMStateTuple order (c, h), in
    # every direction that receives them (a port hands them over one way)
    given = [d for d in directions if d.initial_state_from and d.cell.states == ("h", "c")]
    if given:
        where = f" (in {', '.join(d.name for d in given)})" if len(directions) > 1 else ""
        out.append(Mistake(f"the states handed over as (c, h), TF1's LSTMStateTuple order: h and c swapped{where}",
                           "Keras's initial_state is [h, c] (an LSTM with return_state returns [output, h, c]): "
                           "hand over h first", "state", Variant(changes=tuple(
                               (d.name, DirectionVariant(swap_initial_states=True)) for d in given))))
    out.append(Mistake("state carried across batch rows: row b starts from row b−1's final states", "reset the "
                       "states to zeros (or the given initial states) at the start of every sample, or run the batch "
                       "as one (batch, N_c) array", "rows", _for(None, DirectionVariant(carry_rows=True))))
    return out


def _mask_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """How masked steps are handled (only where the model has a mask)."""
    return [
        Mistake("masked steps not skipped (the mask ignored)", "at a masked step keep the states and output the "
                "previous output (or 0 in a Bidirectional)", "mask", _for(None, DirectionVariant(ignore_mask=True))),
        Mistake("zeros output at masked steps instead of the previous output", "a plain recurrent layer repeats "
                "its last unmasked output at masked steps", "mask",
                _for(None, DirectionVariant(zero_output_for_mask=True))),
        Mistake("the previous output repeated at masked steps (zeros expected)", "inside Bidirectional, masked "
                "steps output 0", "mask", _for(None, DirectionVariant(zero_output_for_mask=False))),
        # research24 §9a: the port runs every step through the cell and masks what it emits afterwards; with
        # pre-padding (pad_sequences's default) every valid step of a padded sample is wrong, with post-padding the
        # final states (and a return_sequences=False output) only.
        Mistake("the mask applied to the outputs only: the states run through the masked steps", "at a masked "
                "step keep the states as they were (h, c), not only the output", "mask",
                _for(None, DirectionVariant(mask_outputs_only=True))),
        # research24 §9b: the states are held at masked steps but the step's fresh h is written out there.
        Mistake("the mask applied to the states only: the cell's fresh output emitted at masked steps", "at a "
                "masked step output the previous output (or 0 in a Bidirectional), not the new h", "mask",
                _for(None, DirectionVariant(mask_states_only=True))),
    ]


def _loop_family(directions: list[RecurrentDirection], axes: bool | None) -> list[Mistake]:
    """Mistakes in the loop around a correct step: what is emitted, which axis is time, the first step, the
    states a layer or a call starts from (research #1, #4, #6, #8, #14, #15)."""
    out: list[Mistake] = []
    lstm = [d for d in directions if "c" in d.cell.states]
    if lstm:  # research #8: a port returning c (or its state list in another order); keras PR #11726
        out.append(Mistake("the cell state c_t emitted instead of h_t", "an LSTM outputs h_t = o ⊙ tanh(c_t); c_t "
                           "is its second state (Keras returns [output, h, c])", "emit",
                           Variant(changes=tuple((d.name, DirectionVariant(emit_c=True)) for d in lstm))))
    if axes is None:  # otherwise the port's outputs or states have another shape (pytorch#1538)
        axes = all(d.settings.return_sequences and not d.settings.return_state and not d.initial_state_from
                   for d in directions)
    if axes:
        out.append(Mistake("batch and time axes confused: (batch, steps) run as (steps, batch)", "transpose, never "
                           "reshape, between (batch, steps, ·) and (steps, batch, ·); set batch_first=True "
                           "(PyTorch) or the layout (ONNX)", "axes", _for(None, DirectionVariant(
                               batch_time_swapped=True))))
    for d in directions:  # research #15: onnx#2881, onnxruntime#4187
        if d.wrapper is None and d.settings.go_backwards and d.settings.return_sequences:
            one = f" ({d.name})" if len(directions) > 1 else ""
            out.append(Mistake(f"the go_backwards layer's output flipped back to input order{one}", "a go_backwards "
                               "layer returns its outputs in processing order (last input step first); only "
                               "Bidirectional flips them back", "time", _for(d.name, DirectionVariant(
                                   output_flipped=True))))
    first = [(d, fn) for d in directions if not d.initial_state_from
             and (fn := recurrent_bias_dropped(d.cell, d.settings, d.storage)) is not None]
    if first:  # research #6: ml-explore/mlx#3249, PR #3252 (nn.GRU skipped b_hn at the first step)
        out.append(Mistake("step 0 special-cased: the first step run without the recurrent part (its recurrent "
                           "bias left out)", "start from zero states and run the same step at t = 0: the recurrent "
                           "bias acts there too", "first step", Variant(changes=tuple(
                               (d.name, DirectionVariant(first_step_weights=(fn,))) for d, fn in first))))
    if _stacked_alike(directions):  # research #14 (reasoned; onnx-tensorflow#409 for initial states)
        out.append(Mistake("stacked layers wired wrong: a layer started from the final states of the layer before "
                           "it", "start every layer and direction from its own initial states (zeros unless given)",
                           "stack", Variant(stacked_states=True)))
    out.append(Mistake("state kept from a previous call: this call started from the final states of the one before "
                       "(the same input run twice)", "reset the states to zeros at the start of every call "
                       "(TFLite: reset_all_variables())", "calls", Variant(after_a_call=True), runs=2))
    return out


def _stacked_alike(directions: list[RecurrentDirection]) -> bool:
    """Whether a recurrent layer given no states follows one whose final states have its shapes."""
    layers: dict[str, list[RecurrentDirection]] = {}
    for d in directions:
        layers.setdefault(d.layer_path, []).append(d)
    shapes = [([(d.units, st) for d in ds for st in d.cell.states], not ds[0].initial_state_from)
              for ds in layers.values()]
    return any(after == before and free for (before, _), (after, free) in itertools.pairwise(shapes))


def _output_family(ckpt: Checkpoint, theirs: list[np.ndarray]) -> list[Mistake]:
    """The model's outputs returned in another order (research #8: [output, c, h]; a Bidirectional's states in
    PyTorch's h_n, c_n layout [fwd_h, bwd_h, fwd_c, bwd_c] where Keras returns fwd_h, fwd_c, bwd_h, bwd_c, keras
    PR #11726): permutations of same-shaped outputs, at most MAX_REORDERS, compared without a rerun."""
    roles = _output_roles(ckpt, len(theirs))
    groups: dict[tuple[Any, ...], list[int]] = {}
    for k, t in enumerate(theirs):
        groups.setdefault((np.shape(t), np.asarray(t).dtype.kind), []).append(k)
    out: list[Mistake] = []
    for group in groups.values():
        for perm in itertools.islice(itertools.permutations(group), 1, None):  # the first is the model's own
            if len(out) >= MAX_REORDERS:
                return out
            order = list(range(len(theirs)))
            for k, src in zip(group, perm):
                order[k] = src
            out.append(_reordered(tuple(order), roles))
    return out


def _reordered(order: tuple[int, ...], roles: list[str]) -> Mistake:
    moved = [k for k, src in enumerate(order) if k != src]
    if len(moved) == 2:
        a, b = moved
        (owner_a, _, what_a), (owner_b, _, what_b) = roles[a].rpartition("'s "), roles[b].rpartition("'s ")
        both = f"{owner_a}'s {what_a} and {what_b}" if owner_a and owner_a == owner_b else f"{roles[a]} and {roles[b]}"
        name = f"outputs {a} and {b} swapped ({both})"
        if {what_a, what_b} == {"forward c", "backward h"}:
            name += ": PyTorch's h_n, c_n layout"
    else:
        held = ", ".join(f"{roles[order[k]]}" for k in moved)
        name = f"outputs {', '.join(map(str, moved))} hold outputs {', '.join(str(order[k]) for k in moved)} ({held})"
    return Mistake(name, "return the outputs in the model's order: " + ", ".join(roles), "outputs", Variant(),
                   reorder=order, runs=0)


def _output_roles(ckpt: Checkpoint, n: int) -> list[str]:
    """What each of the model's outputs is, in words: a layer's output, or which of a recurrent layer's states (a
    Bidirectional returns its merged output, or both halves for merge_mode=None, then forward's states, then
    backward's)."""
    refs = list(ckpt.graph.outputs) if ckpt.graph is not None else []
    roles = []
    for k in range(n):
        ref = refs[k] if k < len(refs) else None
        if ref is None:
            roles.append(f"output {k}")
            continue
        ds = [d for d in ckpt.directions if d.layer_path == ref.layer]
        halves = ("forward ", "backward ") if len(ds) > 1 else ("",)
        merged = halves if len(ds) > 1 and ds[0].merge_mode is None else ("",)
        states = [f"{half}{st}" for half, d in zip(halves, ds) for st in d.cell.states]
        if not ds or ref.tensor < len(merged):
            roles.append(f"{ref.layer}'s {merged[ref.tensor] if ds else ''}output")
        else:
            k_state = ref.tensor - len(merged)
            roles.append(f"{ref.layer}'s {states[k_state]}" if k_state < len(states) else
                         f"{ref.layer}'s output {ref.tensor}")
    return roles


def _bidirectionals(directions: list[RecurrentDirection]) -> dict[str, list[RecurrentDirection]]:
    """The Bidirectional layers among these directions, by layer: (forward, backward)."""
    pairs: dict[str, list[RecurrentDirection]] = {}
    for d in directions:
        if d.wrapper is not None:
            pairs.setdefault(d.layer_path, []).append(d)
    return {k: sorted(v, key=lambda d: d.direction != "forward") for k, v in pairs.items() if len(v) == 2}


def _bidirectional_family(directions: list[RecurrentDirection]) -> list[Mistake]:
    """How a Bidirectional's two directions are laid out or picked when they are merged."""
    out: list[Mistake] = []
    pairs = _bidirectionals(directions)
    if any(p[0].merge_mode == "concat" for p in pairs.values()):
        # research24 §11: pytorch PR #11368 (torch.onnx's bidirectional output), discuss.pytorch.org t/119521
        # (h_n.view(B, -1)). With one sample the reshape is the concatenation: equal to the model, left out.
        out.append(Mistake("directions interleaved across batch rows: ONNX's Y [T, num_directions, B, H] (or "
                           "h_n [2, B, H]) reshaped to [T, B, 2H] ([B, 2H]) as it lies", "move the direction axis "
                           "next to H first: Y.transpose to [T, B, num_directions, H] (h_n to [B, 2, H]), then "
                           "reshape", "layout", Variant(directions_interleaved=True)))
    for layer, (_, bwd) in pairs.items():
        if bwd.settings.return_sequences:
            continue
        # research24 §7: discuss.pytorch.org t/10333 (h(t) of forward with h(0) of backward): output[:, -1] of the
        # merged sequence holds the backward layer's first step (it has seen x[T−1] alone), not its final state.
        of = f" ({layer})" if len(pairs) > 1 else ""
        out.append(Mistake(f"the merged sequence's last step taken as the final output: the backward half is the "
                           f"backward layer's first step, not its final state{of}", "take the backward direction's "
                           "final state (its output at t = 0 once flipped back, or h_n[1]), not y[:, T−1]", "emit",
                           _for(bwd.name, DirectionVariant(first_output=True))))
    return out


def _one_direction_family(directions: list[RecurrentDirection], masked: bool) -> list[Mistake]:
    """A mistake in one direction of a Bidirectional only (research24 §10: NVIDIA/TensorRT#1649, first columns
    right and last ones wrong; onnx/onnx-tensorflow#409; onnxruntime#4187): each cell mistake and, where the model
    has a mask, each mask mistake restricted to the forward or the backward direction. The backward direction run
    without the mask is issue 24's third port (§9d): the padded row reversed and run unmasked."""
    out: list[Mistake] = []
    pairs = _bidirectionals(directions)
    for layer, pair in pairs.items():
        of = f" ({layer})" if len(pairs) > 1 else ""
        for d in pair:
            only = f" in the {d.direction} direction only{of}"
            for m in cell_mistakes(d.cell, d.settings, d.storage, d.input_dim, d.units, d.hard_sigmoid):
                if not m.same_as_model:
                    change = DirectionVariant(weights=(m.weights,) if m.weights else (), step=m.step)
                    out.append(Mistake(m.name + only, f"{m.fix} (in {d.name})", f"cell:{m.axis}", _for(d.name, change),
                                       alone=True))
            for m in _mask_family([d]) if masked else []:
                change = next(c for _, c in m.variant.changes)
                if change.zero_output_for_mask == d.settings.zero_output_for_mask:
                    continue  # the direction's own rule for masked outputs: no mistake
                unmasked = ": the padded row reversed and run unmasked" if change.ignore_mask and \
                    d.direction == "backward" else ""
                out.append(Mistake(m.name + only + unmasked, f"{m.fix} (in {d.name})", m.axis, _for(d.name, change),
                                   alone=True))
    return out


def _precision_family() -> list[Mistake]:
    """Reduced precision: never bit-exact, it fits when THEIRS lies within its rounding noise."""
    return [
        Mistake("float16 arithmetic", "compute in float32 (Keras's precision)", "precision",
                Variant(dtype=np.float16), precision=True),
        Mistake("bfloat16 weights", "keep the weights in float32", "precision",
                _for(None, DirectionVariant(weights=(_bfloat16,))), precision=True),
    ]


@dataclass(repr=False)
class Hypothesis:
    """One porting mistake tried: `max_abs` how far its outputs are from THEIRS; `fits` whether it explains
    THEIRS, `exact` within the verify tolerance; `fix` what to change in the port; `pair` two mistakes at once."""

    name: str
    fix: str
    max_abs: float
    fits: bool
    exact: bool = False
    pair: bool = False

    def __repr__(self) -> str:
        verdict = "exact" if self.exact else "fits" if self.fits else "no"
        return f"<Hypothesis {brief(self.name, 80)}: {verdict}, max |Δ| {self.max_abs:.2e}>"

    def to_dict(self) -> dict[str, Any]:
        return {"mistake": self.name, "fix": self.fix, "max_abs_error_vs_theirs": self.max_abs, "fits": self.fits,
                "exact": self.exact, "pair": self.pair}


@dataclass(repr=False)
class Diagnosis:
    """What `diagnose` concluded: `matches` when THEIRS already equals Keras (the engine); else `found`, the
    mistakes that reproduce THEIRS, best first (`ranked`: every one tried), and `divergence`, where THEIRS
    first departs."""

    file: str
    matches: bool
    baseline: list[Comparison]  # THEIRS against the engine (= Keras)
    ranked: list[Hypothesis] = field(default_factory=list)
    divergence: str = ""
    tried: int = 0  # candidates run (singles and pairs)
    excluded: int = 0  # candidates that compute what the model itself does on this input
    evidence: Evidence | None = None  # where the first failing output's error sits (samples, steps, halves)
    pruned: int = 0  # candidates not tried because the evidence rules them out (some samples exact)
    gates: GateEvidence | None = None  # per-gate offsets and the step check, when nothing fits a layer's output
    runs: int = 0  # engine runs made (the model twice, then each candidate's own: the step budget's count)

    @property
    def found(self) -> list[Hypothesis]:
        return [h for h in self.ranked if h.fits]

    @property
    def close(self) -> list[Hypothesis]:
        """Single candidates that do not reproduce THEIRS but cut the largest error CLOSE times or more. A pair that
        only comes close is not listed: two mistakes each removing part of the error is what unrelated mistakes
        do by chance (a pair is named only when it reproduces THEIRS)."""
        gap = max((c.max_abs for c in self.baseline), default=0.0)
        return [h for h in self.ranked if not h.fits and not h.pair and h.max_abs * CLOSE <= gap]

    def __repr__(self) -> str:
        if self.matches:
            return "<Diagnosis: THEIRS matches Keras>"
        found = self.found
        best = f"{len(found)} mistake(s) reproduce THEIRS, first: {brief(found[0].name, 80)}" if found else \
            "no known mistake reproduces THEIRS"
        return f"<Diagnosis: mismatch; {best} ({self.tried} tried)>"

    def _repr_html_(self) -> str:
        rows = [(h.name, "exact" if h.exact else "fits" if h.fits else "close", f"{h.max_abs:.2e}", h.fix)
                for h in (self.found or self.close[:3])]
        title = "THEIRS matches Keras" if self.matches else f"mismatch: {self.divergence}"
        if not rows and self.gates is not None:  # nothing fits: the per-gate evidence, a row per line
            rows = [(label, "evidence", "", line) for label, line in self.gates.labelled()]
        return html_table(title, ("mistake", "verdict", "max |Δ| to THEIRS", "fix"), rows)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "matches": self.matches, "against_engine": [c.to_dict() for c in self.baseline],
                "diagnosed": [h.to_dict() for h in self.found],
                "ranked": [h.to_dict() for h in (self.found + self.close)[:8]],
                "close": [h.to_dict() for h in self.close[:8]], "close_factor": CLOSE,
                "evidence": self.evidence.to_dict() if self.evidence else None,
                "gates": self.gates.to_dict() if self.gates else None,
                "divergence": self.divergence or None, "candidates_tried": self.tried,
                "candidates_equal_to_the_model": self.excluded, "candidates_ruled_out_by_evidence": self.pruned}


Run = Callable[[Variant | None], list[np.ndarray]]


def diagnose(ckpt: Checkpoint, xs: list[np.ndarray], theirs: list[np.ndarray], layer: str | None = None,
             atol: float = 1e-5, rtol: float = 1e-4) -> Diagnosis:
    """THEIRS (outputs of a port for xs) against the engine; when they differ, rank the mistakes."""
    ckpt.refuse_not_yet("diagnose", layer)
    theirs = [np.asarray(t) for t in theirs]
    for k, t in enumerate(theirs):
        if t.dtype.kind not in "fiu":
            raise InspectError(f"THEIRS holds {t.dtype}, not numbers")
        bad = ~np.isfinite(t)
        if bad.any():  # no porting mistake is ranked by an infinite distance: say where the port overflowed instead
            where = ", ".join(str(int(i)) for i in np.unravel_index(int(np.argmax(bad)), t.shape))
            raise InspectError(f"THEIRS output_{k} holds {int(bad.sum())} value(s) that are NaN or infinite, the first "
                               f"at [{where}]: diagnose compares numbers; find where the port overflows or divides by "
                               "zero first (verify --against shows the first step that differs)")
    last_step = False
    pair = ckpt.directions_of(layer) if layer is not None else []
    halves = tuple(d.name for d in pair) if len(pair) > 1 and pair[0].merge_mode == "concat" else ()
    if layer is not None:
        run, directions, masked, per_run, last_step = _layer_runner(ckpt, layer, xs, theirs)
    else:
        run, directions, masked, per_run = _network_runner(ckpt, xs)
    # A layer's last step over the wrong axes is (steps, N), not (batch, N), unless batch = steps.
    axes = False if layer is not None and theirs[0].ndim == 2 and np.shape(xs[0])[:1] != np.shape(xs[0])[1:2] \
        else None
    singles = mistakes(ckpt, directions, masked, axes)
    if layer is None:
        singles += _output_family(ckpt, theirs)
    with _sharing(_runs(singles)):
        # the per-gate evidence's runs are kept out of what the pairs may spend
        reserve = runs_needed(directions, all(np.ndim(t) == 3 for t in theirs)) if layer is not None else 0
        result = _search(run, theirs, singles, per_run, layer, last_step, atol, rtol, str(ckpt.file), halves, reserve)
    if layer is not None and not result.matches and not result.found:
        result.gates = _gate_evidence(run, directions, xs[0], theirs, result, per_run, atol, rtol)
    return result


def _runs(singles: list[Mistake]) -> int:
    """The engine runs a search makes: the model twice, then each single mistake's own."""
    return 2 + sum(m.runs for m in singles)


def _gate_evidence(run: Run, directions: list[RecurrentDirection], x: np.ndarray, theirs: list[np.ndarray],
                   result: Diagnosis, per_run: int, atol: float, rtol: float) -> GateEvidence:
    """When nothing reproduces a layer's output: each gate's best constant offset and the teacher-forced step check
    (`check.gate_evidence`), their runs charged as the search's, within what is left of the step budget."""
    used = result.runs
    needed = runs_needed(directions, all(np.ndim(t) == 3 for t in theirs))
    left = budget.current_limits().max_steps // max(1, per_run) - used
    gap = max(c.max_abs for c in result.baseline)
    halves = result.evidence.halves_exact if result.evidence is not None else None
    with _sharing(used + needed):
        return gate_evidence(run, directions, x, theirs, halves, gap, CLOSE, left, atol, rtol)


def _layer_runner(ckpt: Checkpoint, layer: str, xs: list[np.ndarray], theirs: list[np.ndarray]
                  ) -> tuple[Run, list[RecurrentDirection], bool, int, bool]:
    """One recurrent layer alone: (run, directions, masked, steps per run, THEIRS is its last step)."""
    if len(ckpt.directions_of(layer)) > 1:
        return _bidirectional_runner(ckpt, layer, xs)
    d = ckpt.direction(layer)
    x = d.layer_layout(np.asarray(xs[0]))
    d.check_input(x)
    directions = [d]
    weights = d.weights()
    sequences = theirs[0].ndim == 3
    last_step = theirs[0].ndim == 2

    def run(v: Variant | None) -> list[np.ndarray]:
        if v is not None and v.after_a_call:  # a warm-up call first, this one from its final states
            warm = run_direction(d, x, dtype=v.dtype or np.float32, weights=weights, sequences=False,
                                 variant=v.first_call().for_direction(d.name))
            v = v.first_call() + started_from({d.name: warm.states})
        change = v.for_direction(d.name) if v is not None else None
        dtype = v.dtype if v is not None and v.dtype else np.float32
        res = run_direction(d, x, dtype=dtype, weights=weights, variant=change, sequences=sequences)
        return [d.layer_layout(res.outputs) if sequences else res.last_output]

    masked = False
    with _sharing(_runs(mistakes(ckpt, directions, masked))):
        one = budget.Budget(where=str(d.source.path))
        charge_direction(one, d, x.shape, np.float32, False, sequences)
    return run, directions, masked, one.used_steps, last_step


def _bidirectional_runner(ckpt: Checkpoint, layer: str, xs: list[np.ndarray]
                          ) -> tuple[Run, list[RecurrentDirection], bool, int, bool]:
    """A Bidirectional alone, by its Keras name: both directions run and merged as Keras merges them; or the cells
    of a StackedRNNCells run in turn (the first reads x, each next one the previous one's outputs)."""
    directions = ckpt.directions_of(layer)
    x = np.asarray(xs[0])
    weights = {d.name: d.weights() for d in directions}

    def run(v: Variant | None) -> list[np.ndarray]:
        return run_layer(directions, x, variant=v, weights=weights)[0]

    with _sharing(_runs(mistakes(ckpt, directions, False))):
        one = budget.Budget(where=str(ckpt.file))
        directions[0].check_input(directions[0].layer_layout(x))
        for d in directions:
            shape = d.layer_layout(x).shape
            charge_direction(one, d, (*shape[:2], d.input_dim or shape[2]), np.float32, False, True)
    return run, directions, False, one.used_steps, False


def _network_runner(ckpt: Checkpoint, xs: list[np.ndarray]) -> tuple[Run, list[RecurrentDirection], bool, int]:
    """The whole model, run once here to learn its masks: (run, directions, masked, steps per run)."""
    net = Network(ckpt)
    xs = net.check_inputs(xs)
    directions = list(ckpt.directions)
    record = RunRecord()
    with _sharing(_runs(mistakes(ckpt, directions, False))):  # the mask's mistakes are known after it
        net.run(xs, record)
    masked = any(m is not None for m in record.masks.values())
    per_run = net.budget.used_steps
    cache: dict[str, CellWeights] = {}
    for d in directions:
        cache[d.name] = d.weights()

    def run(v: Variant | None) -> list[np.ndarray]:
        return Network(ckpt, variant=v, weights=cache).run(xs)

    return run, directions, masked, per_run


def diagnose_port(ckpt: Checkpoint, x: Any, theirs: Any, layer: str | None = None, atol: float = 1e-5,
                  rtol: float = 1e-4) -> Diagnosis:
    """`diagnose` as the library offers it (`lstm_inspect.diagnose`): x and THEIRS each one array or a list (the
    model's inputs; the port's outputs), `layer` a direction or a Bidirectional by its Keras name."""
    return diagnose(ckpt, as_inputs(x), as_inputs(theirs), layer, atol, rtol)


def _exact_samples_inform(run: Run, singles: list[Mistake], ours: list[np.ndarray], exact: tuple[int, ...],
                          atol: float) -> bool:
    """Whether the samples THEIRS gets right can rule out the mistakes that act on every sample: the first such
    mistake must move each of them. A row that every such mistake leaves as it is (all padding, or zeros into a
    layer without bias) proves nothing, and pruning on it would rule out the very mistake the port made."""
    probe = next((m for m in singles if m.axis not in PER_SAMPLE_AXES and m.runs), None)
    if probe is None:
        return False
    outs = run(probe.variant)
    rows = list(exact)
    moved = np.zeros(len(rows), bool)
    for o, own in zip(outs, ours):
        if np.ndim(o) == 0 or np.shape(o) != np.shape(own):
            return False
        diff = np.abs(np.asarray(o, np.float64)[rows] - np.asarray(own, np.float64)[rows])
        moved |= np.max(diff.reshape(len(rows), -1), axis=1) > atol
    return bool(np.all(moved))


def _touched(m: Mistake, names: tuple[str, ...]) -> set[str]:
    """The directions (of `names`) whose half of the output a mistake can change: those its changes name (all for
    a change to every direction), the backward one for its flip, all for any other change of the whole layer."""
    v = m.variant
    out: set[str] = set()
    for target, _ in v.changes:
        out |= set(names) if target is None else {target} & set(names)
    if v.backward_output_not_flipped:
        out.add(names[-1])
    if dataclasses.replace(v, changes=(), backward_output_not_flipped=False) != Variant():
        out |= set(names)
    return out


def _prune_on_halves(run: Run, singles: list[Mistake], ours: list[np.ndarray], evidence: Evidence,
                     halves: tuple[str, ...], atol: float) -> list[Mistake]:
    """When one half of a Bidirectional's concatenated output is exact, the mistakes that would move it are ruled
    out: only those in the other direction alone are tried (research24, signature 4). Precision mistakes are
    kept (their errors can stay within the tolerance); and, as for exact samples, nothing is pruned unless the
    first ruled-out cell mistake really moves that half on this input (else the half proves nothing)."""
    split = evidence.halves_exact or {}
    if len(halves) != 2 or len(split) != 2 or sum(split.values()) != 1 or len(ours) != 1:
        return singles
    exact = 0 if split["forward"] else 1
    kept = [m for m in singles if m.axis == "precision" or halves[exact] not in _touched(m, halves)]
    probe = next((m for m in singles if m not in kept and m.axis.startswith("cell:")), None)
    if probe is None or len(kept) == len(singles):
        return singles
    out, own = np.asarray(run(probe.variant)[0], np.float64), np.asarray(ours[0], np.float64)
    k = own.shape[-1] // 2
    if out.shape != own.shape or not np.max(np.abs(out - own)[..., exact * k:(exact + 1) * k]) > atol:
        return singles
    return kept


def _search(run: Run, theirs: list[np.ndarray], singles: list[Mistake], per_run: int, layer: str | None,
            last_step: bool, atol: float, rtol: float, file: str, halves: tuple[str, ...] = (), reserve: int = 0
            ) -> Diagnosis:
    """The model's own outputs against THEIRS, then each single mistake, then pairs while the budget lasts."""
    started = time.monotonic()
    ours = run(None)
    if len(theirs) != len(ours) or any(np.shape(t) != np.shape(o) for t, o in zip(theirs, ours)):
        raise InspectError(f"THEIRS holds outputs of shapes {[np.shape(t) for t in theirs]} but the model gives "
                           f"{[o.shape for o in ours]} for this input"
                           + ("" if layer is None else " (the whole sequence or, for --layer, its last step)"))
    baseline = [compare(f"output_{k}" if layer is None else f"layer {layer}" + (" (last step)" if last_step else ""),
                        t, o, atol, rtol, halves=bool(halves), of_layer=layer is not None)
                for k, (t, o) in enumerate(zip(theirs, ours))]
    result = Diagnosis(file, all(c.ok for c in baseline), baseline, runs=2)
    if result.matches:
        return result
    result.evidence = next(c.evidence for c in baseline if not c.ok)
    space = len(singles)
    if result.evidence is not None:
        singles = _prune_on_halves(run, singles, ours, result.evidence, halves, atol)
    if result.evidence is not None and result.evidence.firm_exact and \
            _exact_samples_inform(run, singles, ours, result.evidence.firm_exact, atol):
        singles = [m for m in singles if m.axis in PER_SAMPLE_AXES]
    result.pruned = space - len(singles)
    gap = max(c.max_abs for c in baseline)

    def distance(outs: list[np.ndarray]) -> tuple[float, bool, float]:
        """(max |candidate − THEIRS|, within tolerance of THEIRS, max |candidate − the model's own outputs|)."""
        errs, ok, own_errs = [], True, []
        for o, t, own in zip(outs, theirs, ours):
            if o.shape != np.shape(t):
                return float("inf"), False, float("inf")
            o64 = np.asarray(o, np.float64)
            diff = np.abs(o64 - t)
            errs.append(float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf"))
            ok = ok and bool(np.all(diff <= atol + rtol * np.abs(t)))
            to_own = np.abs(o64 - own)
            own_errs.append(float(np.max(to_own)) if np.all(np.isfinite(to_own)) else float("inf"))
        return max(errs), ok, max(own_errs)

    scored: list[tuple[Mistake, float]] = []

    def attempt(m: Mistake) -> bool:
        result.runs += m.runs
        try:
            with np.errstate(all="ignore"):
                outs = run(m.variant) if m.variant != Variant() else ours
        except InspectError:
            return False
        if m.reorder:
            outs = [outs[k] for k in m.reorder]
        result.tried += 1
        progress.advance("porting mistakes tried", result.tried)
        err, ok, from_own = distance(outs)
        if from_own <= 1e-3 * atol:  # computes what the model itself does on this input: not a mistake here
            result.excluded += 1
            return False
        # Reduced precision never reproduces THEIRS bit for bit: it fits when THEIRS lies within the candidate's
        # own rounding noise (its distance from the float32 outputs) of both the candidate and the model (a port's
        # own float16 rounding is independent of the candidate's, so the candidate need not be nearer than the model)
        # and nothing in the evidence contradicts it (`_precision_can_fit`). It is then "consistent", not "exact".
        pure_precision = m.axis == "precision" and _precision_can_fit(result.evidence)
        fits = ok or (pure_precision and gap <= 4 * from_own and err <= 4 * from_own)
        result.ranked.append(Hypothesis(m.name, m.fix, err, fits, exact=ok, pair="+" in m.axis))
        scored.append((m, err))
        return ok

    exact = [m for m in singles if attempt(m)]
    affordable = budget.current_limits().max_steps // max(1, per_run) - _runs(singles) - reserve
    if not exact:
        _try_pairs(sorted(((m, e) for m, e in scored if not m.alone), key=lambda item: item[1]), attempt,
                   min(MAX_PAIRS, affordable), started + SEARCH_SECONDS)
    # Where a mistake in one direction alone reproduces THEIRS as exactly as one in the whole layer (the other
    # direction's change does nothing on this input), the narrower one is named first: it says which half is right.
    # Exact ones keep the order of the space among themselves (their errors differ by rounding noise alone, which
    # differs from one CPU to another).
    narrower = {m.name for m in singles if m.alone}
    result.ranked.sort(key=lambda h: (not h.exact, not h.fits, h.name not in narrower, 0.0 if h.exact else h.max_abs))
    result.divergence = _divergence(baseline, hint=not result.found)  # a found mistake says more than the hint
    return result


def _precision_can_fit(ev: Evidence | None) -> bool:
    """Reduced precision perturbs every sample from the first step on: not what THEIRS shows when a sample is exact
    at rounding level, a Bidirectional's half is exact, or every sample is exact at step 0."""
    if ev is None:
        return True
    halves = ev.halves_exact or {}
    return not ev.firm_exact and not any(halves.values()) and min(ev.from_step.values(), default=0) == 0


def _try_pairs(ranked: list[tuple[Mistake, float]], attempt: Callable[[Mistake], bool], max_pairs: int,
               deadline: float) -> None:
    """Pairs of mistakes from different axes, the pairs of the closest singles first, at most `max_pairs`, until
    `deadline` (time.monotonic())."""
    if max_pairs <= 0:
        return
    order = sorted((i + j, i, j) for i in range(len(ranked)) for j in range(i + 1, len(ranked)))
    tried = 0
    for _, i, j in order:
        a, b = ranked[i][0], ranked[j][0]
        if set(a.axis.split("+")) & set(b.axis.split("+")):
            continue
        if attempt(a + b):
            return
        tried += 1
        if tried >= max_pairs or time.monotonic() > deadline:
            return


def _divergence(baseline: list[Comparison], hint: bool = True) -> str:
    """Where THEIRS first departs and what the evidence (per sample, step, half) shows; `hint`: and what that
    suggests (left out when a mistake was found: a general hint could contradict it)."""
    worst = next(c for c in baseline if not c.ok)
    where = ", ".join(f"{k} {v}" for k, v in (worst.first_bad or {}).items())
    head = f"{worst.name} first diverges at {where}" if where else f"{worst.name} differs by up to {worst.max_abs:.3g}"
    if worst.evidence is None:
        return head
    lines = "; ".join(worst.evidence.lines())
    return f"{head}; {lines}: {worst.evidence.hint()}" if hint else f"{head}; {lines}"


__all__ = ["Diagnosis", "Hypothesis", "Mistake", "StepVariant", "diagnose", "diagnose_port", "mistakes"]
