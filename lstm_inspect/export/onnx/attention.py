"""Keras's attention layers (Attention, AdditiveAttention, MultiHeadAttention) as ONNX operators.

Why: recurrent models put attention over their LSTM's sequences, and `export --to onnx` must write the
whole model. Each emitter mirrors the engine's function (`lstm_inspect/engine/layers/attention.py`, where every
rule is documented against its Keras source: `keras/src/layers/attention/attention.py`,
`additive_attention.py`, `multi_head_attention.py`, `keras/src/layers/activations/softmax.py`,
`keras/src/backend/tensorflow/nn.py` `dot_product_attention`; `tf_keras/src/layers/attention/*.py`,
`tf_keras/src/layers/activation/softmax.py`), per Keras generation and Keras 3 release: masked scores
lose 1e9 (in float32, so a fully masked row is uniform), Keras 3.0-3.11 broadcast the value mask
unexpanded, 3.15 zeroes padded query steps with a where; MultiHeadAttention folds in the implicit masks
(tf.keras from 2.10), takes `dot_product_attention` from 3.7 on 3-D inputs (masked logits set to
-0.7·float32 max), otherwise its Softmax (adding -1e9 before 3.13, setting it from 3.13, zeroing masked
weights from 3.10), and from 3.8 clears the Keras masks of the tensors it read. Which rule applies is the
engine module's decision (`score_settings`, `mha_settings`, `mha_mask_plan`, ...); the masks are known only
at run time, so each rule is written as graph operators (Where, And, Range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.engine.layers.attention import (
    DPA_NEGATIVE,
    LARGE,
    MaskSource,
    MhaMaskPlan,
    MhaSettings,
    additive_scale_size,
    call_flag,
    dense_causal,
    dense_mask_arguments,
    keras_release,
    mha_arguments,
    mha_attention_axes,
    mha_attention_equation,
    mha_mask_plan,
    mha_output_shape,
    mha_settings,
    query_mask_by_where,
    refuse_training,
    score_settings,
    value_mask_per_query,
)
from lstm_inspect.engine.layers.registry import LayerCall
from lstm_inspect.export.onnx.graph import Graph, Sym
from lstm_inspect.export.onnx.registry import OnnxCall, layer


@dataclass
class Mask:
    """A mask in the graph: its tensor's name, rank and kind ("bool", "float" or "int", as it was given)."""

    name: str
    rank: int
    kind: str = "bool"


def _flag(c: OnnxCall, key: str) -> bool:
    return call_flag(c, key, Sym)


def _weights(c: OnnxCall, shapes: list[tuple[Any, ...]]) -> list[np.ndarray]:
    """The stored arrays, checked as the engine checks them (None: any size)."""
    if shapes:
        LayerCall(c.node, [], c.weights, c.ctx).expect(shapes)
    elif c.weights:
        raise c.fail(f"the file stores {len(c.weights)} weight arrays for it, its config implies none")
    return list(c.weights)


def _float(c: OnnxCall, s: Sym) -> str:
    return s.name if s.kind == "float" else c.g.cast(s.name, "float")


def _truth(g: Graph, m: Mask) -> Mask:
    """The mask as booleans (nonzero is True, as numpy's astype(bool))."""
    return m if m.kind == "bool" else Mask(g.cast(m.name, "bool"), m.rank)


def _as_float(g: Graph, m: Mask) -> str:
    return m.name if m.kind == "float" else g.cast(m.name, "float")


def _and(g: Graph, a: Mask | None, b: Mask) -> Mask:
    return b if a is None else Mask(g.op("And", a.name, b.name), max(a.rank, b.rank))


def _unsqueeze(g: Graph, m: Mask, axis: int) -> Mask:
    return Mask(g.unsqueeze(m.name, [axis]), m.rank + 1, m.kind)


def _steps(g: Graph, x: str, axis: int) -> str:
    """Shape(x)[axis] as a scalar int64."""
    shape = g.op("Shape", x)
    return g.squeeze(g.op("Slice", shape, g.ints([axis]), g.ints([axis + 1 if axis != -1 else 1 << 62]),
                          g.ints([0])), [0])


def _positions(g: Graph, x: str, axis: int) -> str:
    """0, 1, ..., Shape(x)[axis] - 1 (int64)."""
    return g.op("Range", g.const(0, "zero", np.int64), _steps(g, x, axis), g.const(1, "one", np.int64))


def _causal(g: Graph, q: str, q_axis: int, v: str, v_axis: int, window: int | None = None) -> Mask:
    """Keras's causal mask (Tq, Tv): query step i sees the steps j <= i; with a window, the steps |i - j| < window."""
    rows = g.unsqueeze(_positions(g, q, q_axis), [1])
    cols = g.unsqueeze(_positions(g, v, v_axis), [0])
    if window is None:
        return Mask(g.op("GreaterOrEqual", rows, cols, hint="causal"), 2)
    near = g.op("Less", g.op("Abs", g.op("Sub", rows, cols)), g.const(window, "window", np.int64), hint="window")
    return Mask(near, 2)


def _softmax(g: Graph, x: str, axes: list[int], hint: str | None = None) -> str:
    """exp(x - max) / sum over the (trailing) axes, as the engine's softmax."""
    if len(axes) == 1:
        return g.op("Softmax", x, axis=axes[0], hint=hint)
    e = g.op("Exp", g.op("Sub", x, g.reduce("ReduceMax", x, axes)))
    return g.op("Div", e, g.reduce("ReduceSum", e, axes), hint=hint)


# ---------------------------------------------------------------- Attention, AdditiveAttention


def _dense_inputs(c: OnnxCall) -> tuple[Sym, Sym, Sym]:
    if not 2 <= len(c.inputs) <= 3:
        raise c.fail(f"it takes [query, value] or [query, value, key], it was given {len(c.inputs)} tensor(s)")
    q, v = c.inputs[0], c.inputs[1]
    k = c.inputs[2] if len(c.inputs) > 2 else v
    for name, s in (("query", q), ("value", v), ("key", k)):
        if s.rank < 3:
            raise c.fail(f"its {name} has rank {s.rank}; it needs (batch, steps, features)")
    refuse_training(c, c.config.get("dropout", 0.0))
    return q, v, k


def _features(c: OnnxCall, q: Sym, k: Sym, what: str) -> None:
    if q.dim is not None and k.dim is not None and q.dim != k.dim:
        raise c.fail(f"the query has {q.dim} features and the key {k.dim}: {what}")


def _broadcast_sum(c: OnnxCall, q: str, k: str) -> str:
    """q[..., :, None, :] + k[..., None, :, :]: (..., Tq, Tv, features)."""
    return c.g.op("Add", c.g.unsqueeze(q, [-2]), c.g.unsqueeze(k, [-3]))


@layer("Attention")
def attention(c: OnnxCall) -> list[Sym]:
    g = c.g
    settings = score_settings(c)
    mode, use_scale = settings.mode, settings.use_scale
    q, v, k = _dense_inputs(c)
    w = _weights(c, settings.scalar_weights())
    qf, kf = _float(c, q), _float(c, k)
    if mode == "dot":
        _features(c, q, k, "no dot product")
        perm = [*range(k.rank - 2), k.rank - 1, k.rank - 2]
        scores = g.op("MatMul", qf, g.op("Transpose", kf, perm=perm), hint=f"{c.hint}.scores")
        if use_scale:
            scores = g.op("Mul", scores, c.const(w[0], "scale"))
    else:
        _features(c, q, k, "they cannot be added")
        summed = _broadcast_sum(c, qf, kf)
        if use_scale:
            summed = g.op("Mul", c.const(w[0], "scale"), summed)
        scores = g.op("Mul", c.const(w[-1], "concat_score_weight"),
                      g.reduce("ReduceSum", g.op("Tanh", summed), [-1], keepdims=False), hint=f"{c.hint}.scores")
    return _apply_scores(c, scores, q, v)


@layer("AdditiveAttention")
def additive_attention(c: OnnxCall) -> list[Sym]:
    g = c.g
    use_scale = score_settings(c).use_scale
    q, v, k = _dense_inputs(c)
    dim = additive_scale_size(c.ctx.keras_major, q.dim, v.dim)
    w = _weights(c, [(dim,)] if use_scale else [])
    _features(c, q, k, "they cannot be added")
    if use_scale and q.dim is not None and w[0].shape[-1] not in (1, q.dim):
        raise c.fail(f"its scale has {w[0].shape[-1]} entries and the query {q.dim} features")
    tanh = g.op("Tanh", _broadcast_sum(c, _float(c, q), _float(c, k)))
    if use_scale:
        tanh = g.op("Mul", c.const(w[0], "scale"), tanh)
    scores = g.reduce("ReduceSum", tanh, [-1], keepdims=False, hint=f"{c.hint}.scores")
    return _apply_scores(c, scores, q, v)


def _given_mask(c: OnnxCall, m: Any, what: str) -> Mask | None:
    if m is None:
        return None
    if not isinstance(m, Sym):
        raise c.fail(f"the {what} is {type(m).__name__}, not a tensor")
    return Mask(m.name, m.rank, m.kind)


def _implicit(s: Sym) -> Mask | None:
    """A tensor's Keras mask: booleans over all its axes but the last."""
    return None if s.mask is None else Mask(s.mask, s.rank - 1)


def _dense_masks(c: OnnxCall, q: Sym, v: Sym) -> tuple[Mask | None, Mask | None]:
    """(query mask, value mask): the `mask=[...]` argument, or the inputs' implicit Keras masks."""
    given = dense_mask_arguments(c)
    if given is not None:
        return _given_mask(c, given[0], "query mask"), _given_mask(c, given[1], "value mask")
    return _implicit(c.inputs[0]), _implicit(c.inputs[1])


def _apply_scores(c: OnnxCall, scores: str, q: Sym, v: Sym) -> list[Sym]:
    """Mask, softmax and weighted sum of the values (the engine's `_apply_scores`)."""
    g = c.g
    q_mask, v_mask = _dense_masks(c, q, v)
    causal = dense_causal(c, Sym)
    release = keras_release(c.ctx)
    keep: Mask | None = None
    if causal:
        keep = _causal(g, scores, -2, scores, -1)
    if v_mask is not None:
        vm = _truth(g, v_mask)
        if value_mask_per_query(release, causal, vm.rank):
            vm = _unsqueeze(g, vm, -2)
        # else Keras 3.0-3.11: the value mask broadcast against the scores unexpanded (the engine's rule; a batch
        # other than 1 or Tq fails at run time, as in Keras)
        keep = _and(g, vm, keep) if keep is not None else vm
    if keep is not None:
        lowered = g.op("Sub", scores, g.const(np.float32(LARGE)))
        scores = g.op("Where", keep.name, scores, lowered, hint=f"{c.hint}.masked")
    weights = g.op("Softmax", scores, axis=-1, hint=f"{c.hint}.weights")
    out = g.op("MatMul", weights, _float(c, v), hint=c.hint)
    out_mask = None
    if q_mask is not None:
        truth = _truth(g, q_mask)
        if query_mask_by_where(release):
            out = g.op("Where", g.unsqueeze(truth.name, [-1]), out, g.const(0.0), hint=c.hint)
        else:
            out = g.op("Mul", out, g.unsqueeze(_as_float(g, q_mask), [-1]), hint=c.hint)
        out_mask = truth.name
    result = [Sym(out, q.rank, mask=out_mask, dim=v.dim)]
    if _flag(c, "return_attention_scores"):
        result.append(Sym(weights, q.rank))
    return result


# ---------------------------------------------------------------- MultiHeadAttention


class _Proj:
    """One EinsumDense of the layer as MatMul + Add on the flattened kernel: (..., d) -> (..., *out)."""

    def __init__(self, c: OnnxCall, role: str, kernel: np.ndarray, bias: np.ndarray | None, bound: int) -> None:
        self.c, self.role = c, role
        self.out = [int(n) for n in kernel.shape[bound:]]
        size = int(np.prod(self.out))
        self.kernel = c.const(kernel.reshape(-1, size), f"{role}_kernel")
        self.bias = None if bias is None else c.const(bias.reshape(size), f"{role}_bias")
        self.bound = bound

    def __call__(self, x: str, rank: int) -> str:
        """x of rank `rank` (its last `bound` axes contracted) through the dense."""
        g, hint = self.c.g, f"{self.c.hint}.{self.role}"
        free = rank - self.bound
        if self.bound > 1:
            x = g.op("Reshape", x, g.ints([0] * free + [-1]))
        y = g.op("MatMul", x, self.kernel, hint=hint)
        if self.bias is not None:
            y = g.op("Add", y, self.bias, hint=hint)
        if len(self.out) > 1:
            y = g.op("Reshape", y, g.ints([0] * free + self.out), hint=hint)
        return y


@layer("MultiHeadAttention")
def multi_head_attention(c: OnnxCall) -> list[Sym]:
    g, cfg = c.g, c.config
    s = mha_settings(c)
    major, key_dim, use_bias = s.release[0], s.key_dim, s.use_bias
    args = mha_arguments(c, Sym)
    query, value = args["query"], args["value"]
    key = args["key"] if args.get("key") is not None else value
    if query.rank < 3 or value.rank != query.rank or key.rank != query.rank:
        raise c.fail(f"its query, value and key have ranks {query.rank}, {value.rank} and {key.rank}; they must be "
                     "(batch, steps, features) or more, all of one rank")
    out_shape = mha_output_shape(c, query.dim)

    roles, shapes = s.weight_layout(query.dim, key.dim, value.dim, out_shape)
    w = _weights(c, shapes)
    per = 2 if use_bias else 1
    dense = {role: _Proj(c, role, w[per * k], w[per * k + 1] if use_bias else None, 1)
             for k, (role, _, _) in enumerate(roles)}
    output = _Proj(c, "output", w[-per], w[-1] if use_bias else None, 2)
    out_shape = output.out

    rank = query.rank + 1  # of the projections: (batch, steps..., heads, dim)
    q_in, k_in, v_in = _float(c, query), _float(c, key), _float(c, value)
    q, k, v = dense["query"](q_in, query.rank), dense["key"](k_in, key.rank), dense["value"](v_in, value.rank)

    return_scores = _flag(c, "return_attention_scores")
    causal = _flag(c, "use_causal_mask")
    out_mask = query.mask
    mask, causal_only = _mha_mask(c, mha_mask_plan(c, s, args, causal, Sym), query, value)
    if s.clears_masks:
        for t in (query, value, key):
            t.mask = None
    scale = g.const(np.float32(1.0 / math.sqrt(float(key_dim))))
    scores = None
    if s.dot_product_attention(return_scores, rank):
        out = _dot_product_attention(c, q, k, v, mask, causal_only, scale)
    else:
        if causal_only:
            mask = _unsqueeze(g, _causal(g, q_in, 1, v_in, 1), 0)
        axes = mha_attention_axes(c, cfg.get("attention_axes"), rank, major)
        dot, combine, scores_rank = mha_attention_equation(rank, axes)
        scores = g.op("Einsum", k, g.op("Mul", q, scale), equation=dot, hint=f"{c.hint}.scores")
        norm_axes = list(range(scores_rank - len(axes), scores_rank))
        if mask is not None:
            while mask.rank < scores_rank:
                mask = _unsqueeze(g, mask, -len(axes) * 2 - 1)
        scores = _masked_softmax(c, s, scores, mask, norm_axes)
        out = g.op("Einsum", scores, v, equation=combine)
    if s.use_gate:
        out = g.op("Mul", out, g.op("Sigmoid", dense["gate"](q_in, query.rank)))
    y = output(out, rank)
    result = [Sym(y, query.rank - 1 + len(out_shape), mask=out_mask, dim=out_shape[-1])]
    if return_scores and scores is not None:
        result.append(Sym(scores, scores_rank))
    return result


def _mha_mask(c: OnnxCall, plan: MhaMaskPlan, query: Sym, value: Sym) -> tuple[Mask | None, bool]:
    """The attention mask the engine's `_mha_mask` builds, and whether Keras 3.15's causal-only path applies."""
    g = c.g
    if plan.causal_only:
        return None, True
    explicit = plan.explicit
    attention_mask = None if explicit is None else Mask(explicit.name, explicit.rank, explicit.kind)

    def mask(source: MaskSource | None) -> Mask | None:
        if source is None:
            return None
        t = source.tensor
        return Mask(t.name, t.rank, t.kind) if source.given else _implicit(t)

    auto: Mask | None = None
    q_mask = mask(plan.query)
    if q_mask is not None:
        auto = _unsqueeze(g, _truth(g, q_mask), -1)
    for m in (mask(plan.value), mask(plan.key)):
        if m is not None:
            auto = _and(g, auto, _unsqueeze(g, _truth(g, m), -2))
    q_in, v_in = query.name, value.name
    if plan.causal:
        auto = _and(g, auto, _unsqueeze(g, _causal(g, q_in, 1, v_in, 1), 0))
    if plan.window is not None:
        auto = _and(g, auto, _unsqueeze(g, _causal(g, q_in, 1, v_in, 1, plan.window), 0))
    if attention_mask is not None and plan.explicit_as_bool:
        attention_mask = _truth(g, attention_mask)
    if auto is not None:
        return (auto if attention_mask is None else _and(g, attention_mask, auto)), False
    return attention_mask, False


def _masked_softmax(c: OnnxCall, s: MhaSettings, scores: str, mask: Mask | None, axes: list[int]) -> str:
    """Keras's Softmax layer with a mask, as the writing release computes it (the engine's `_masked_softmax`)."""
    g, hint = c.g, f"{c.hint}.scores"
    if mask is None:
        return _softmax(g, scores, axes, hint)
    if s.softmax_sets_masked:
        if mask.kind != "bool":
            mask = Mask(g.op("Greater", _as_float(g, mask), g.const(0.5)), mask.rank)
        scores = g.op("Where", mask.name, scores, g.const(np.float32(-LARGE)))
    else:
        # scores += (1 - mask) * -1e9, in float32: an unmasked score stays, a masked one loses 1e9
        adder = g.op("Mul", g.op("Sub", g.const(1.0), _as_float(g, mask)), g.const(np.float32(-LARGE)))
        scores = g.op("Where", g.op("Equal", adder, g.const(0.0)), scores, g.op("Add", scores, adder))
    out = _softmax(g, scores, axes, hint)
    if s.softmax_zeroes_masked:  # a fully masked row comes out zero, not uniform
        if mask.kind == "bool":
            out = g.op("Where", mask.name, out, g.const(0.0), hint=hint)
        else:
            out = g.op("Mul", out, _as_float(g, mask), hint=hint)
    return out


def _dot_product_attention(c: OnnxCall, q: str, k: str, v: str, mask: Mask | None, causal: bool, scale: str) -> str:
    """keras.ops.dot_product_attention on TensorFlow, (B, T, N, H) inputs (the engine's `_dot_product_attention`)."""
    g = c.g
    logits = g.op("Mul", g.op("Einsum", q, k, equation="btnh,bsnh->bnts"), scale, hint=f"{c.hint}.logits")
    keep = None
    if mask is not None:
        keep = _truth(g, mask)
        while keep.rank < 4:
            keep = _unsqueeze(g, keep, -3)
    if causal:
        keep = _and(g, keep, _causal(g, logits, -2, logits, -1))
    if keep is not None:
        logits = g.op("Where", keep.name, logits, g.const(np.float32(DPA_NEGATIVE)))
    return g.op("Einsum", g.op("Softmax", logits, axis=-1), v, equation="bnts,bsnh->btnh")
