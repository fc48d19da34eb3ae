"""The porting mistakes of one recurrent cell, for `diagnose`: in its weights, activations and step equations.

Every kind gets the mistakes its `Cell` attributes imply (each other order of its `gates`, each
recurrent activation a port might use, a dropped bias, transposed or swapped blocks); a kind with
mistakes of its own (an LSTM's cell activation, CuDNN bias halves and TF1's cell conventions:
forget_bias added at run time or after the sigmoid, the cell state clipped; a GRU's update and reset
gate equations and bias rows, a SimpleRNN's activation) registers them with `@mistakes_of(kind)`,
and the gate orders other libraries use with `KNOWN_ORDERS`. A new cell kind needs no edit here
unless it has mistakes of its own. Sequence-level mistakes (time order, masks, states, dropout at
inference, precision) are `diagnose`'s own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.model.cells.base import Cell, CellSettings, CellWeights, StepVariant, split_gates


@dataclass(frozen=True)
class CellMistake:
    """One way a port of a kind computes differently: in its weights or in its step equations."""

    name: str
    fix: str
    axis: str  # "order", "activation", "equation", "bias", "transpose", "forget", "clip": two of one axis never
    # combine
    weights: Callable[[Any, CellWeights], CellWeights] | None = None  # (direction, weights) -> weights
    step: StepVariant | None = None
    same_as_model: bool = False  # the model itself computes this (left out of the search)


# Gate orders other libraries use, by cell kind, with their names (any other order is named by its gates).
KNOWN_ORDERS: dict[str, dict[tuple[str, ...], str]] = {
    "LSTM": {("i", "o", "f", "c"): "ONNX's gate order i, o, f, c",
             ("i", "f", "o", "c"): "c and o swapped (i, f, o, c)",
             ("i", "c", "f", "o"): "Keras 1's stored order i, c, f, o (also TF1's i, j, f, o)"},
    "GRU": {("r", "z", "h"): "PyTorch's (and cuDNN's) order r, z, n"},
}

# A kind's own mistakes: (settings, storage) -> the mistakes after the common ones.
KindMistakes = Callable[[CellSettings, str], list[CellMistake]]
MISTAKES: dict[str, KindMistakes] = {}


def mistakes_of(kind: str) -> Callable[[KindMistakes], KindMistakes]:
    """Registers a cell kind's own mistakes."""
    def register(fn: KindMistakes) -> KindMistakes:
        MISTAKES[kind] = fn
        return fn
    return register


def cell_mistakes(cell: Cell, settings: CellSettings, storage: str, input_dim: int | None, units: int | None,
                  hard_sigmoid: str = "keras3") -> list[CellMistake]:
    """The mistakes a port of this kind makes in the weights, activations and step equations."""
    out = _common_mistakes(cell, settings, input_dim, units, hard_sigmoid)
    own = MISTAKES.get(cell.kind)
    if own is not None:
        out += own(settings, storage)
    return out


def _common_mistakes(cell: Cell, settings: CellSettings, input_dim: int | None, units: int | None,
                     hard_sigmoid: str) -> list[CellMistake]:
    out: list[CellMistake] = []
    known_orders = KNOWN_ORDERS.get(cell.kind, {})
    for order in itertools.permutations(cell.gates):
        if order == cell.gates:
            continue
        label = known_orders.get(order, f"gate order {', '.join(order)}")
        out.append(CellMistake(
            f"wrong gate order: {label}", f"Keras stores the gates as {', '.join(cell.gates)}: slice kernel, "
            "recurrent_kernel and bias in that order", "order", weights=_read_as(cell, order)))
    formulas = {"keras2": "clip(0.2·x + 0.5, 0, 1), Keras 2's", "keras3": "clip(x/6 + 0.5, 0, 1), Keras 3's"}
    own = settings.recurrent_activation
    if own is not None:
        mine = f"hard_sigmoid:{hard_sigmoid}" if own == "hard_sigmoid" else own
        described = f"hard_sigmoid = {formulas[hard_sigmoid].split(',')[0]}" if own == "hard_sigmoid" else own
        for name, label in (("sigmoid", "the logistic sigmoid"),
                            ("hard_sigmoid:keras2", f"hard_sigmoid as {formulas['keras2']}"),
                            ("hard_sigmoid:keras3", f"hard_sigmoid as {formulas['keras3']}")):
            out.append(CellMistake(
                f"recurrent activation: {label} where the model uses {described}",
                f"use this file's recurrent_activation, {described}", "activation",
                step=StepVariant(recurrent_activation=name), same_as_model=name == mine))
    if settings.use_bias:
        out.append(CellMistake("the bias left out", "add the bias to every gate", "bias",
                               weights=lambda d, w: CellWeights(kernel=w.kernel,
                                                                recurrent_kernel=w.recurrent_kernel, bias=None)))
    out.append(CellMistake(
        "each gate's recurrent block transposed (N_c × N_c)", "h_{t-1} multiplies recurrent_kernel from the "
        "left: z = h · U, not U · h", "transpose", weights=_per_block(cell, "recurrent_kernel")))
    if input_dim is not None and input_dim == units:
        out.append(CellMistake("each gate's input block transposed (N_i = N_c)", "x multiplies kernel from the "
                               "left: z = x · W", "transpose", weights=_per_block(cell, "kernel")))
        out.append(CellMistake("kernel and recurrent_kernel swapped (N_i = N_c)", "kernel acts on x, "
                               "recurrent_kernel on h", "transpose",
                               weights=lambda d, w: CellWeights(kernel=w.recurrent_kernel,
                                                                recurrent_kernel=w.kernel, bias=w.bias)))
    return out


def _read_as(cell: Cell, order: tuple[str, ...]) -> Callable[[Any, CellWeights], CellWeights]:
    """The port reads the stored gate blocks as if they were in `order` (block k taken as gate order[k])."""
    def apply(d: Any, w: CellWeights) -> CellWeights:
        def move(a: np.ndarray, axis: int = -1) -> np.ndarray:
            blocks = split_gates(a, cell.n_gates, axis)
            return np.concatenate([blocks[order.index(g)] for g in cell.gates], axis=axis)

        bias = None if w.bias is None else move(w.bias)
        return CellWeights(kernel=move(w.kernel), recurrent_kernel=move(w.recurrent_kernel), bias=bias)
    return apply


def _per_block(cell: Cell, which: str) -> Callable[[Any, CellWeights], CellWeights]:
    def apply(d: Any, w: CellWeights) -> CellWeights:
        a = getattr(w, which)
        flipped = np.concatenate([b.T for b in split_gates(a, cell.n_gates)], axis=1)
        return CellWeights(kernel=flipped if which == "kernel" else w.kernel,
                           recurrent_kernel=flipped if which == "recurrent_kernel" else w.recurrent_kernel,
                           bias=w.bias)
    return apply


def recurrent_bias_dropped(cell: Cell, settings: CellSettings, storage: str
                           ) -> Callable[[Any, CellWeights], CellWeights] | None:
    """The weights without the recurrent bias, for a kind that keeps one apart from the input bias (a
    reset_after GRU's bias[1], a CuDNN layer's second half); None where there is none (one bias: dropping the
    recurrent part at a zero state changes nothing). `diagnose`'s "step 0 special-cased" runs step 0 with them."""
    if cell.kind == "GRU" and settings.reset_after and settings.use_bias:
        return _bias_rows(1, 0)
    if cell.kind == "LSTM" and storage == "cudnn":
        return _cudnn_bias(0)
    return None


# ---- LSTM


@mistakes_of("LSTM")
def _lstm(settings: CellSettings, storage: str) -> list[CellMistake]:
    phi = settings.activation
    out = [
        CellMistake(f"{phi} left off c in h = o · {phi}(c)", f"h = o ⊙ {phi}(c)", "equation",
                    step=StepVariant(options={"cell_activation": "linear"}), same_as_model=phi == "linear"),
        CellMistake(f"sigmoid on the cell candidate instead of {phi}", f"c̃ = {phi}(z_c)", "equation",
                    step=StepVariant(activation="sigmoid", options={"cell_activation": phi}),
                    same_as_model=phi == "sigmoid"),
        CellMistake("no activation on the cell candidate", f"c̃ = {phi}(z_c)", "equation",
                    step=StepVariant(activation="linear", options={"cell_activation": phi}),
                    same_as_model=phi == "linear"),
    ]
    out += _tf1_mistakes()
    if storage == "cudnn":
        out += [CellMistake("CuDNNLSTM's recurrent bias dropped", "the bias is the input half plus the recurrent "
                            "half (bias[:4N_c] + bias[4N_c:])", "bias", weights=_cudnn_bias(0)),
                CellMistake("CuDNNLSTM's recurrent bias added twice", "add the recurrent half once", "bias",
                            weights=_cudnn_bias(2))]
    return out


# TF1's cell conventions in a port of a Keras LSTM (tf.nn.rnn_cell.LSTMCell / BasicLSTMCell, tf.compat.v1).
# Their gate order i, j, f, o is KNOWN_ORDERS's "Keras 1's stored order"; the state tuple order (c, h) is
# diagnose's (states handed over). Peepholes and num_proj are not candidates: a Keras LSTM has no peephole
# weights to misuse, and num_proj changes the output's width (a shape mismatch, not a value).
CELL_CLIPS = {10.0: "TFLite's converter gives a Keras LSTM's fused op cell_clip=10 (tensorflow#43649; "
                    "ConvertKerasLSTMLayer in tensorflow/compiler/mlir/lite/utils/lstm_utils.cc)",
              3.0: "tf.raw_ops.LSTMBlockCell's and BlockLSTM's default cell_clip=3 (tensorflow/core/ops/rnn_ops.cc)"}


def _tf1_mistakes() -> list[CellMistake]:
    keras_f = "Keras's forget gate is f = σ(z_f) with the stored bias: unit_forget_bias only sets b_f's initial value"
    return [
        # tensorflow#5090, coremltools#309, keras#10179: TF1's LSTMCell/BasicLSTMCell add forget_bias=1.0 at run
        # time; Keras has no such constant (unit_forget_bias, misread as one, only initialises b_f to 1).
        CellMistake("forget_bias=1.0 added at run time (TF1's LSTMCell, or unit_forget_bias misread): "
                    "f = σ(z_f + 1)", keras_f + ", already in the bias: add no constant (forget_bias=0 in a TF1 cell)",
                    "forget", weights=_forget_bias_plus_one),
        # apache/tvm PR #3410: TVM's TensorFlow LSTM import added the forget bias after the sigmoid.
        CellMistake("the forget bias added after the sigmoid: f = σ(z_f) + 1", keras_f + ": nothing is added to f",
                    "forget", step=StepVariant(options={"forget_bias_after_sigmoid": 1.0})),
    ] + [
        CellMistake(f"the cell state clipped to ±{clip:g} (cell_clip)", f"Keras never clips c ({why}): remove the "
                    "clip (cell_clip=None or 0)", "clip", step=StepVariant(options={"cell_clip": clip}))
        for clip, why in CELL_CLIPS.items()
    ]


def _forget_bias_plus_one(d: Any, w: CellWeights) -> CellWeights:
    """f = σ(z_f + 1): the bias's forget block plus 1 (a layer without bias gets a zero bias, 1 on f)."""
    n = w.units
    bias = np.zeros(4 * n, w.recurrent_kernel.dtype) if w.bias is None else np.array(w.bias, copy=True)
    bias[n:2 * n] += 1  # Keras's blocks i, f, c, o
    return CellWeights(kernel=w.kernel, recurrent_kernel=w.recurrent_kernel, bias=bias)


def _cudnn_bias(times: int) -> Any:
    """A CuDNN layer's input bias plus `times` × its recurrent bias (Keras adds each once)."""
    def apply(d: Any, w: CellWeights) -> CellWeights:
        raw = d.source.read([d.arrays[2].key])[0]
        n = raw.shape[0] // 2
        return CellWeights(kernel=w.kernel, recurrent_kernel=w.recurrent_kernel, bias=raw[:n] + times * raw[n:])
    return apply


# ---- GRU


@mistakes_of("GRU")
def _gru(settings: CellSettings, storage: str) -> list[CellMistake]:
    phi = settings.activation
    after = bool(settings.reset_after)
    out = [
        CellMistake("the update gate used the other way round: h = (1 − z)·h_prev + z·h̃",
                    "Keras keeps the old state where z is 1: h = z⊙h_prev + (1 − z)⊙h̃", "equation",
                    step=StepVariant(options={"update_inverted": True})),
        CellMistake("the reset gate applied " + ("before the recurrent product (reset_after=False)" if after else
                                                  "after the recurrent product (reset_after=True)"),
                    "this layer has reset_after=" + ("True: h̃ = φ(x_h + r ⊙ (h·U_h + b_h))" if after else
                                                     "False: h̃ = φ(x_h + (r ⊙ h)·U_h)"),
                    "equation", step=StepVariant(options={"reset_after": not after})),
        CellMistake(f"sigmoid on the candidate instead of {phi}", f"h̃ = {phi}(...)", "equation",
                    step=StepVariant(activation="sigmoid"), same_as_model=phi == "sigmoid"),
    ]
    if after and settings.use_bias:
        out += [
            CellMistake("the recurrent bias row (bias[1]) left out", "add bias[1] to h·recurrent_kernel (the "
                        "candidate's part inside the reset gate)", "bias", weights=_bias_rows(1, 0)),
            CellMistake("the input bias row (bias[0]) left out", "add bias[0] to x·kernel", "bias",
                        weights=_bias_rows(0, 1)),
            CellMistake("the two bias rows summed into one input bias", "bias[1] of the candidate goes inside "
                        "the reset gate: h̃ = φ(x·W_h + b_h + r ⊙ (h·U_h + b_hh))", "bias",
                        weights=_bias_rows(1, 1, summed=True)),
        ]
    return out


def _bias_rows(keep_input: int, keep_recurrent: int, summed: bool = False) -> Any:
    """A reset_after GRU's two bias rows, one dropped or both added into the input row."""
    def apply(d: Any, w: CellWeights) -> CellWeights:
        if w.bias is None or w.bias.ndim != 2:
            return w
        b_in, b_rec = w.bias[0] * keep_input, w.bias[1] * keep_recurrent
        if summed:
            b_in, b_rec = b_in + b_rec, np.zeros_like(b_rec)
        return CellWeights(kernel=w.kernel, recurrent_kernel=w.recurrent_kernel, bias=np.stack([b_in, b_rec]))
    return apply


# ---- SimpleRNN


@mistakes_of("SimpleRNN")
def _simple_rnn(settings: CellSettings, storage: str) -> list[CellMistake]:
    return [CellMistake(f"activation {other} where the model uses {settings.activation}",
                        f"h = {settings.activation}(...)", "activation", step=StepVariant(activation=other),
                        same_as_model=other == settings.activation)
            for other in ("tanh", "relu", "linear", "sigmoid")]


__all__ = ["KNOWN_ORDERS", "MISTAKES", "CellMistake", "cell_mistakes", "mistakes_of", "recurrent_bias_dropped"]
