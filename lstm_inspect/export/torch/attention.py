"""Keras's attention layers (Attention, AdditiveAttention, MultiHeadAttention) in the PyTorch export.

Why: recurrent models put attention over their LSTM's sequences, and `export --to pytorch` must write the
whole model. Each emitter writes, as lines of forward(), what the engine's function computes
(`lstm_inspect/engine/layers/attention.py`, where every rule is documented against its Keras source:
`keras/src/layers/attention/attention.py`, `additive_attention.py`, `multi_head_attention.py`,
`keras/src/layers/activations/softmax.py`, `keras/src/backend/tensorflow/nn.py` `dot_product_attention`;
`tf_keras/src/layers/attention/*.py`, `tf_keras/src/layers/activation/softmax.py`), per Keras generation
and Keras 3 release: masked scores lose 1e9 (in float32, so a fully masked row is uniform), Keras 3.0-3.11
broadcast the value mask unexpanded, 3.15 zeroes padded query steps with a where; MultiHeadAttention folds
in the implicit masks (tf.keras from 2.10), takes `dot_product_attention` from 3.7 on 3-D inputs (masked
logits set to -0.7·float32 max), otherwise its Softmax (adding -1e9 before 3.13, setting it from 3.13,
zeroing masked weights from 3.10), and from 3.8 clears the Keras masks of the tensors it read. Which rule
applies is decided from the writing Keras by the engine module (`score_settings`, `mha_settings`,
`mha_mask_plan`, ...); the masks themselves are computed in forward().

MultiHeadAttention's EinsumDense projections are nn.Linear modules on the flattened kernels (an
nn.ModuleDict per layer: query, key, gate, value, output); Attention's and AdditiveAttention's scalars an
nn.ParameterDict.
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
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, identifier, integer, snippet
from lstm_inspect.export.torch.registry import layer

snippet("causal_mask", '''
def causal_mask(query_steps: int, value_steps: int, device: Optional[torch.device] = None) -> Tensor:
    """Keras's causal mask (query_steps, value_steps): query step i attends to the steps j <= i."""
    i = torch.arange(query_steps, device=device)[:, None]
    return i >= torch.arange(value_steps, device=device)[None, :]
''', imports=TYPING)
snippet("window_mask", '''
def window_mask(query_steps: int, value_steps: int, window: int, device: Optional[torch.device] = None) -> Tensor:
    """Keras 3.15's sliding window (query_steps, value_steps): query step i attends to the steps |i - j| < window."""
    i = torch.arange(query_steps, device=device)[:, None]
    return (i - torch.arange(value_steps, device=device)[None, :]).abs() < window
''', imports=TYPING)
snippet("softmax_over", '''
def softmax_over(x: Tensor, dims: List[int]) -> Tensor:
    """Softmax over several axes at once (MultiHeadAttention with more than one attention axis)."""
    e = torch.exp(x - torch.amax(x, dim=dims, keepdim=True))
    return e / e.sum(dim=dims, keepdim=True)
''', imports=TYPING)


BIG = f"{LARGE:.0e}".replace("e+0", "e")  # "1e9": what Keras takes from masked scores, as a literal


@dataclass
class Mask:
    """A mask in forward(): a local (or an indexing of one), its rank (None: unknown) and kind as given."""

    name: str
    rank: int | None
    kind: str = "bool"


def _flag(e: LayerEmit, key: str) -> bool:
    return call_flag(e, key, Sym)


def _weights(e: LayerEmit, shapes: list[tuple[Any, ...]]) -> list[np.ndarray]:
    """The stored arrays, checked as the engine checks them (None: any size)."""
    if shapes:
        return e.read(shapes)
    if e.ckpt.read_layer(e.node.path):
        raise e.fail("the file stores weight arrays for it, its config implies none")
    return []


def _float(s: Sym) -> str:
    return s.name if s.kind == "float" else f"{s.name}.float()"


def _dim(s: Sym) -> int | None:
    return s.shape[-1] if s.shape else None


def _sizes(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(integer(int(n), "a size") for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _truth(e: LayerEmit, m: Mask, hint: str) -> Mask:
    """The mask as booleans (nonzero is True, as numpy's astype(bool))."""
    if m.kind == "bool":
        return m
    return Mask(e.w.let(hint, f"{m.name} != 0", "bool").name, m.rank)


def _as_float(m: Mask, like: str) -> str:
    return m.name if m.kind == "float" else f"{m.name}.to({like}.dtype)"


def _unsqueeze(m: Mask, axis: int) -> Mask:
    index = {-1: "[..., None]", -2: "[..., None, :]"}.get(axis, f".unsqueeze({axis})")
    base = f"({m.name})" if " " in m.name else m.name  # an expression (a & b) indexed as a whole
    return Mask(f"{base}{index}", None if m.rank is None else m.rank + 1, m.kind)


def _and(a: Mask | None, b: Mask) -> Mask:
    if a is None:
        return b
    rank = None if a.rank is None or b.rank is None else max(a.rank, b.rank)
    return Mask(f"{a.name} & {b.name}", rank)


def _rank(e: LayerEmit, s: Sym) -> int:
    if s.rank is None:
        raise e.fail("the rank of its input is unknown (the model could not run on a made-up input)")
    return s.rank


# ---------------------------------------------------------------- Attention, AdditiveAttention


def _dense_inputs(e: LayerEmit) -> tuple[Sym, Sym, Sym]:
    if not 2 <= len(e.inputs) <= 3:
        raise e.fail(f"it takes [query, value] or [query, value, key], it was given {len(e.inputs)} tensor(s)")
    q, v = e.inputs[0], e.inputs[1]
    k = e.inputs[2] if len(e.inputs) > 2 else v
    for name, s in (("query", q), ("value", v), ("key", k)):
        if s.rank is not None and s.rank < 3:
            raise e.fail(f"its {name} has rank {s.rank}; it needs (batch, steps, features)")
    refuse_training(e, e.config.get("dropout", 0.0))
    return q, v, k


def _features(e: LayerEmit, q: Sym, k: Sym, what: str) -> None:
    if _dim(q) is not None and _dim(k) is not None and _dim(q) != _dim(k):
        raise e.fail(f"the query has {_dim(q)} features and the key {_dim(k)}: {what}")


def _parameters(e: LayerEmit, arrays: dict[str, np.ndarray]) -> str:
    """An nn.ParameterDict attribute holding the layer's scalars or vectors (names from this module)."""
    items = ", ".join(f'"{name}": nn.Parameter(torch.zeros({_sizes(a.shape) if a.ndim else "()"}))'
                      for name, a in arrays.items())
    return e.w.module(e.key, e.hint, f"nn.ParameterDict({{{items}}})", arrays)


@layer("Attention")
def attention(e: LayerEmit) -> list[Sym]:
    settings = score_settings(e)
    mode, use_scale = settings.mode, settings.use_scale
    q, v, k = _dense_inputs(e)
    w = _weights(e, settings.scalar_weights())
    arrays = ({"scale": w[0]} if use_scale else {}) | ({"concat_score_weight": w[-1]} if mode == "concat" else {})
    attr = _parameters(e, arrays) if arrays else None
    qf, kf = _float(q), _float(k)
    e.w.comment(f"{identifier(e.hint)}: {e.kind} ({mode} scores{', scaled' if use_scale else ''})")
    if mode == "dot":
        _features(e, q, k, "no dot product")
        expr = f"torch.matmul({qf}, {kf}.transpose(-1, -2))"
        if use_scale:
            expr += f' * self.{attr}["scale"]'
    else:
        _features(e, q, k, "they cannot be added")
        summed = f"{qf}[..., :, None, :] + {kf}[..., None, :, :]"
        if use_scale:
            summed = f'self.{attr}["scale"] * ({summed})'
        expr = f'self.{attr}["concat_score_weight"] * torch.tanh({summed}).sum(dim=-1)'
    scores = e.w.let(f"{e.hint}_scores", expr)
    return _apply_scores(e, scores.name, q, v)


@layer("AdditiveAttention")
def additive_attention(e: LayerEmit) -> list[Sym]:
    use_scale = score_settings(e).use_scale
    q, v, k = _dense_inputs(e)
    dim = additive_scale_size(e.keras_major, _dim(q), _dim(v))
    w = _weights(e, [(dim,)] if use_scale else [])
    _features(e, q, k, "they cannot be added")
    if use_scale and _dim(q) is not None and w[0].shape[-1] not in (1, _dim(q)):
        raise e.fail(f"its scale has {w[0].shape[-1]} entries and the query {_dim(q)} features")
    e.w.comment(f"{identifier(e.hint)}: {e.kind} (additive scores{', scaled' if use_scale else ''})")
    tanh = f"torch.tanh({_float(q)}[..., :, None, :] + {_float(k)}[..., None, :, :])"
    if use_scale:
        tanh = f'self.{_parameters(e, {"scale": w[0]})}["scale"] * {tanh}'
    scores = e.w.let(f"{e.hint}_scores", f"({tanh}).sum(dim=-1)")
    return _apply_scores(e, scores.name, q, v)


def _given_mask(e: LayerEmit, m: Any, what: str) -> Mask | None:
    if m is None:
        return None
    if not isinstance(m, Sym):
        raise e.fail(f"its {what} is not a tensor")
    return Mask(m.name, m.rank, m.kind)


def _implicit(s: Sym) -> Mask | None:
    """A tensor's Keras mask: booleans over all its axes but the last."""
    return None if s.mask is None else Mask(s.mask, None if s.rank is None else s.rank - 1)


def _dense_masks(e: LayerEmit) -> tuple[Mask | None, Mask | None]:
    """(query mask, value mask): the `mask=[...]` argument, or the inputs' implicit Keras masks."""
    given = dense_mask_arguments(e)
    if given is not None:
        return _given_mask(e, given[0], "query mask"), _given_mask(e, given[1], "value mask")
    return _implicit(e.inputs[0]), _implicit(e.inputs[1])


def _apply_scores(e: LayerEmit, scores: str, q: Sym, v: Sym) -> list[Sym]:
    """Mask, softmax and weighted sum of the values (the engine's `_apply_scores`)."""
    w, hint = e.w, e.hint
    q_mask, v_mask = _dense_masks(e)
    causal = dense_causal(e, Sym)
    release = keras_release(e.ctx)
    major, minor = release
    keep: Mask | None = None
    if causal:
        w.need("causal_mask")
        keep = Mask(f"causal_mask({scores}.shape[-2], {scores}.shape[-1], {scores}.device)", 2)
    if v_mask is not None:
        vm = _truth(e, v_mask, f"{hint}_value_mask")
        per_query = value_mask_per_query(release, causal, vm.rank)
        if not per_query and vm.rank is None and release >= (3, 12):
            raise e.fail("the rank of its value mask is unknown (the model could not run on a made-up input)")
        if per_query:
            vm = _unsqueeze(vm, -2)
        elif release < (3, 12):
            w.comment(f"Keras {major}.{minor} broadcasts the (batch, steps) value mask against the scores "
                      "unexpanded: it runs only with a batch of 1 or of the query's steps")
        keep = _and(vm, keep) if keep is not None else vm
    if keep is not None:
        keep_name = w.let(f"{hint}_keep", keep.name, "bool").name
        scores = w.let(f"{hint}_scores", f"torch.where({keep_name}, {scores}, {scores} - {BIG})",
                       comment="masked scores lose 1e9 (in float32)").name
    weights = w.let(f"{hint}_weights", f"torch.softmax({scores}, dim=-1)").name
    out = w.let(hint, f"torch.matmul({weights}, {_float(v)})").name
    out_mask = None
    if q_mask is not None:
        truth = _truth(e, q_mask, f"{hint}_mask")
        if query_mask_by_where(release):
            out = w.let(hint, f"torch.where({truth.name}[..., None], {out}, torch.zeros_like({out}))",
                        comment="padded query steps give zeros").name
        else:
            out = w.let(hint, f"{out} * {_as_float(q_mask, out)}[..., None]",
                        comment="padded query steps give zeros").name
        out_mask = truth.name
    result = [Sym(out, mask=out_mask)]
    if _flag(e, "return_attention_scores"):
        result.append(Sym(weights))
    return result


# ---------------------------------------------------------------- MultiHeadAttention


@layer("MultiHeadAttention")
def multi_head_attention(e: LayerEmit) -> list[Sym]:
    cfg, w, hint = e.config, e.w, e.hint
    s = mha_settings(e)
    major, heads, key_dim, value_dim, use_bias = s.release[0], s.heads, s.key_dim, s.value_dim, s.use_bias
    args = mha_arguments(e, Sym)
    query, value = args["query"], args["value"]
    key = args["key"] if args.get("key") is not None else value
    ranks = [_rank(e, t) for t in (query, value, key)]
    if ranks[0] < 3 or ranks[1] != ranks[0] or ranks[2] != ranks[0]:
        raise e.fail(f"its query, value and key have ranks {', '.join(map(str, ranks))}; they must be (batch, "
                     "steps, features) or more, all of one rank")
    out_shape = mha_output_shape(e, _dim(query))

    roles, shapes = s.weight_layout(_dim(query), _dim(key), _dim(value), out_shape)
    arrays = _weights(e, shapes)
    per = 2 if use_bias else 1
    out_shape = [int(n) for n in arrays[-per].shape[2:]]
    state: dict[str, np.ndarray] = {}
    ctors = []
    for k, role in enumerate([r for r, _, _ in roles] + ["output"]):
        kernel = arrays[per * k]
        size = int(np.prod(kernel.shape[2 if role == "output" else 1:]))
        flat = kernel.reshape(-1, size)
        state[f"{role}.weight"] = flat.T
        if use_bias:
            state[f"{role}.bias"] = arrays[per * k + 1].reshape(size)
        ctors.append(f'"{role}": nn.Linear({flat.shape[0]}, {size}{"" if use_bias else ", bias=False"})')
    attr = w.module(e.key, hint, f"nn.ModuleDict({{{', '.join(ctors)}}})", state)

    rank = ranks[0] + 1  # of the projections: (batch, steps..., heads, dim)
    causal, return_scores = _flag(e, "use_causal_mask"), _flag(e, "return_attention_scores")
    dpa = s.dot_product_attention(return_scores, rank)
    how = "as Keras 3's dot_product_attention" if dpa else "Keras's softmax over the attention axes"
    w.comment(f"{identifier(hint)}: {e.kind}, {heads} head{'s' if heads > 1 else ''} (key_dim {key_dim}, value_dim "
              f"{value_dim}), {how}")

    def project(role: str, x: Sym, dim: int) -> str:
        return w.let(f"{hint}_{role}", f'self.{attr}["{role}"]({_float(x)}).unflatten(-1, ({heads}, {dim}))').name

    q = project("query", query, key_dim)
    k = project("key", key, key_dim)
    v = project("value", value, value_dim)

    out_mask = query.mask
    mask, causal_only = _mha_mask(e, mha_mask_plan(e, s, args, causal, Sym), query, value)
    if s.clears_masks:
        for t in (query, value, key):
            t.mask = None
    scale = repr(float(np.float32(1.0 / math.sqrt(float(key_dim)))))
    scores = None
    if dpa:
        out = _dot_product_attention(e, q, k, v, mask, causal_only, scale)
    else:
        if causal_only:
            w.need("causal_mask")
            mask = Mask(f"causal_mask({q}.shape[1], {v}.shape[1], {q}.device)[None]", 3)
        axes = mha_attention_axes(e, cfg.get("attention_axes"), rank, major)
        dot, combine, scores_rank = mha_attention_equation(rank, axes)
        scores = w.let(f"{hint}_scores", f'torch.einsum("{dot}", {k}, {q} * {scale})').name
        norm_axes = tuple(range(-len(axes), 0))  # the attention axes: the scores' last ones
        if mask is not None:
            while mask.rank is not None and mask.rank < scores_rank:
                mask = _unsqueeze(mask, -len(axes) * 2 - 1)
        scores = _masked_softmax(e, s, scores, mask, norm_axes)
        out = w.let(hint, f'torch.einsum("{combine}", {scores}, {v})').name
    if s.use_gate:
        gate = f'torch.sigmoid(self.{attr}["gate"]({_float(query)}).unflatten(-1, ({heads}, {value_dim})))'
        out = w.let(hint, f"{out} * {gate}").name
    y = f'self.{attr}["output"]({out}.flatten(-2))'
    if len(out_shape) > 1:
        y += f".unflatten(-1, {_sizes(tuple(out_shape))})"
    result = [w.let(hint, y, mask=out_mask)]
    if return_scores and scores is not None:
        result.append(Sym(scores))
    return result


def _mha_mask(e: LayerEmit, plan: MhaMaskPlan, query: Sym, value: Sym) -> tuple[Mask | None, bool]:
    """The attention mask the engine's `_mha_mask` builds, and whether Keras 3.15's causal-only path applies."""
    w, hint = e.w, e.hint
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
        auto = _unsqueeze(_truth(e, q_mask, f"{hint}_query_mask"), -1)
    for m, what in ((mask(plan.value), "value"), (mask(plan.key), "key")):
        if m is not None:
            auto = _and(auto, _unsqueeze(_truth(e, m, f"{hint}_{what}_mask"), -2))
    steps = f"{query.name}.shape[1], {value.name}.shape[1], {query.name}.device"
    if plan.causal:
        w.need("causal_mask")
        auto = _and(auto, Mask(f"causal_mask({steps})[None]", 3))
    if plan.window is not None:
        w.need("window_mask")
        auto = _and(auto, Mask(f"window_mask({query.name}.shape[1], {value.name}.shape[1], "
                               f"{integer(plan.window, 'sliding_window')}, {query.name}.device)[None]", 3))
    if attention_mask is not None and plan.explicit_as_bool:
        attention_mask = _truth(e, attention_mask, f"{hint}_attention_mask")
    if auto is not None:
        mask = auto if attention_mask is None else _and(attention_mask, auto)
        return Mask(w.let(f"{hint}_mask", mask.name, "bool").name, mask.rank), False
    return attention_mask, False


def _masked_softmax(e: LayerEmit, s: MhaSettings, scores: str, mask: Mask | None, axes: tuple[int, ...]) -> str:
    """Keras's Softmax layer with a mask, as the writing release computes it (the engine's `_masked_softmax`)."""
    w, hint = e.w, e.hint

    def softmax(x: str) -> str:
        if len(axes) == 1:
            return f"torch.softmax({x}, dim={axes[0]})"
        w.need("softmax_over")
        return f"softmax_over({x}, {list(axes)})"

    if mask is None:
        return w.let(f"{hint}_scores", softmax(scores)).name
    if s.softmax_sets_masked:
        if mask.kind != "bool":
            mask = Mask(w.let(f"{hint}_mask", f"{mask.name} > 0.5", "bool").name, mask.rank)
        scores = w.let(f"{hint}_scores", f"torch.where({mask.name}, {scores}, -{BIG})",
                       comment="masked scores set to -1e9").name
    else:
        adder = w.let(f"{hint}_adder", f"(1.0 - {_as_float(mask, scores)}) * -{BIG}",
                      comment="scores += (1 - mask) * -1e9, in float32").name
        scores = w.let(f"{hint}_scores", f"torch.where({adder} == 0, {scores}, {scores} + {adder})").name
    out = w.let(f"{hint}_scores", softmax(scores)).name
    if s.softmax_zeroes_masked:  # a fully masked row comes out zero, not uniform
        if mask.kind == "bool":
            out = w.let(f"{hint}_scores", f"torch.where({mask.name}, {out}, torch.zeros_like({out}))",
                        comment="Keras 3.10+ zeroes masked weights").name
        else:
            out = w.let(f"{hint}_scores", f"{out} * {_as_float(mask, out)}").name
    return out


def _dot_product_attention(e: LayerEmit, q: str, k: str, v: str, mask: Mask | None, causal: bool,
                           scale: str) -> str:
    """keras.ops.dot_product_attention on TensorFlow, (B, T, N, H) inputs (the engine's `_dot_product_attention`)."""
    w, hint = e.w, e.hint
    logits = w.let(f"{hint}_logits", f'torch.einsum("btnh,bsnh->bnts", {q}, {k}) * {scale}').name
    keep: Mask | None = None
    if mask is not None:
        keep = _truth(e, mask, f"{hint}_mask")
        if keep.rank is None:
            raise e.fail("the rank of its attention mask is unknown (the model could not run on a made-up input)")
        while keep.rank is not None and keep.rank < 4:
            keep = _unsqueeze(keep, -3)
    if causal:
        w.need("causal_mask")
        keep = _and(keep, Mask(f"causal_mask({logits}.shape[-2], {logits}.shape[-1], {logits}.device)", 2))
    if keep is not None:
        logits = w.let(f"{hint}_logits", f"torch.where({keep.name}, {logits}, {float(np.float32(DPA_NEGATIVE))!r})",
                       comment="masked logits set to -0.7 * float32 max").name
    return w.let(hint, f'torch.einsum("bnts,bsnh->btnh", torch.softmax({logits}, dim=-1), {v})').name
