"""Keras's attention layers (Attention, AdditiveAttention, MultiHeadAttention) in the NumPy engine.

Recurrent models often put an attention layer over their LSTM's sequences (a BiLSTM text classifier
with Attention, an encoder-decoder whose decoder attends over the encoder's outputs); without these
the whole model cannot run. Each rule below is the one of the Keras generation that wrote the file,
and, where Keras 3 changed its arithmetic between releases, of that release (the keras-team/keras
history):

- Attention, AdditiveAttention: `keras/src/layers/attention/attention.py`, `additive_attention.py`;
  `tf_keras/src/layers/attention/base_dense_attention.py`, `attention.py`, `additive_attention.py`.
  Masked scores get 1e9 subtracted (so a whole masked row is uniform, not NaN); the output is zeroed
  where the query is masked; the output mask is the query's. Keras 3.0-3.11 subtracted a non-causal
  value mask of shape (batch, Tv) from scores (batch, Tq, Tv) without expanding it (fixed in 3.12,
  keras #21595): it broadcasts the mask of batch row i onto query step i, and fails unless batch is
  1 or Tq. AdditiveAttention's `scale` is sized by the query in Keras 3 and by the value in tf_keras.
- MultiHeadAttention: `keras/src/layers/attention/multi_head_attention.py`,
  `keras/src/layers/activations/softmax.py`, `keras/src/backend/tensorflow/nn.py`
  (`dot_product_attention`); `tf_keras/src/layers/attention/multi_head_attention.py`,
  `tf_keras/src/layers/activation/softmax.py`. Scores are (query / sqrt(key_dim)) . key, softmaxed over
  the attention axes; the implicit masks of query, value and key are folded in from tf.keras 2.10
  (before, only `attention_mask`), and in Keras 3 also from `value_mask` / `key_mask` arguments (a
  `query_mask` argument only before 3.8, which reads the query's own mask). From 3.8 Keras 3 also
  clears the Keras masks of the tensors it was given, so a later layer reading them (a second
  MultiHeadAttention on the same tensor) sees none. Masked scores: tf_keras adds -1e9 (or, with
  softmax_robust_masking, sets -1e9), so a fully masked row (a padded query step) is uniform. Keras 3
  from 3.7 takes `ops.dot_product_attention` when the inputs are 3-D, dropout is 0 and no scores are
  returned (masked logits set to -0.7 * 3.38953e38: a fully masked row is uniform; 3.15 passes a
  causal-only mask as is_causal); otherwise its Softmax layer (adding -1e9 before 3.13, setting it
  from 3.13), which from 3.10 zeroes a fully masked row. Keras 3.14 adds `use_gate`, 3.15
  `sliding_window`. The output mask is the query's, in both generations.

Every -1e9 Keras adds is added in float32 as Keras does, in float64 runs too: that rounding is what
makes a fully masked row uniform, which is Keras's answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lstm_inspect.cells import config_int, keras_major_minor
from lstm_inspect.layers import LayerCall, Tensor, layer

LARGE = 1.0e9  # what Keras's dense attention and Softmax layers take from masked scores (float32)
DPA_NEGATIVE = -0.7 * 3.38953e38  # keras/src/backend/tensorflow/nn.py _get_large_negative (float32)


def _version(c: LayerCall) -> tuple[int, int]:
    """(major, minor) of the writing Keras; an unknown minor counts as the newest."""
    major, minor = keras_major_minor(c.ctx.keras_version)
    return (major if major is not None else c.ctx.keras_major), (minor if minor is not None else 999)


def _array(c: LayerCall, t: Any, what: str) -> np.ndarray:
    if not isinstance(t, Tensor):
        raise c.fail(f"its {what} is {type(t).__name__}, not a tensor")
    return np.asarray(t.value, dtype=c.ctx.dtype)


def _mask(c: LayerCall, m: Any, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """A mask as given (bool or numbers), checked against the steps it masks."""
    if m is None:
        return None
    arr = np.asarray(m.value if isinstance(m, Tensor) else m)
    if arr.dtype.kind not in "biuf":
        raise c.fail(f"the {what} holds {arr.dtype}, not booleans")
    if arr.shape != shape:
        raise c.fail(f"the {what} has shape {arr.shape}, expected {shape}")
    return arr


def _truth(m: np.ndarray) -> np.ndarray:
    return m.astype(bool) if m.dtype != bool else m


def _minus_large(s: np.ndarray) -> np.ndarray:
    """s - 1e9 in float32, as Keras computes it: a row of masked scores becomes one value, so uniform."""
    return (s.astype(np.float32) - np.float32(LARGE)).astype(s.dtype)


def _softmax(x: np.ndarray, axes: tuple[int, ...] = (-1,)) -> np.ndarray:
    m = np.max(x, axis=axes, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axes, keepdims=True)


def _training(c: LayerCall, dropout: Any) -> None:
    if c.kwargs.get("training") is True and isinstance(dropout, (int, float)) and dropout > 0:
        raise c.fail("it is called with training=True, so Keras applies its random dropout at inference")


def _flag(c: LayerCall, key: str) -> bool:
    value = c.kwargs.get(key, False)
    if isinstance(value, Tensor):
        raise c.fail(f"{key} is a tensor; the NumPy engine needs it fixed in the call")
    return bool(value)


def _check_weights(c: LayerCall, shapes: list[tuple[Any, ...]]) -> list[np.ndarray]:
    if shapes:
        c.expect(shapes)
    elif c.weights:
        raise c.fail(f"the file stores {len(c.weights)} weight arrays for it, its config implies none")
    return [np.asarray(w, dtype=c.ctx.dtype) for w in c.weights]


def _causal(tq: int, tv: int) -> np.ndarray:
    """Keras's lower-triangular causal mask (1, Tq, Tv): step i attends to steps j <= i."""
    return (np.arange(tq)[:, None] >= np.arange(tv)[None, :])[None]


# ---------------------------------------------------------------- Attention, AdditiveAttention


def _dense_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    return [in_dims[1] if len(in_dims) > 1 else None, None]


def _attention_weighted(node: Any) -> bool:
    return bool(node.config.get("use_scale", False)) or node.config.get("score_mode", "dot") == "concat"


@layer("Attention", dims=_dense_dims, weighted=_attention_weighted)
def attention(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    mode = cfg.get("score_mode", "dot")
    if mode not in ("dot", "concat"):
        raise c.fail(f"score_mode {mode!r} is not one Keras has (dot, concat)")
    use_scale = bool(cfg.get("use_scale", False))
    q, v, k = _dense_inputs(c)
    w = _check_weights(c, [()] * (use_scale + (mode == "concat")))
    scale = w[0] if use_scale else None
    if mode == "dot":
        if q.shape[-1] != k.shape[-1]:
            raise c.fail(f"the query has {q.shape[-1]} features and the key {k.shape[-1]}: no dot product")
        scores = q @ np.swapaxes(k, -1, -2)
        if scale is not None:
            scores = scores * scale
    else:
        summed = _broadcast_sum(c, q, k, scale)
        scores = w[-1] * np.sum(np.tanh(summed), axis=-1)
    return _apply_scores(c, scores, v)


def _broadcast_sum(c: LayerCall, q: np.ndarray, k: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    if q.shape[-1] != k.shape[-1]:
        raise c.fail(f"the query has {q.shape[-1]} features and the key {k.shape[-1]}: they cannot be added")
    summed = q[..., :, None, :] + k[..., None, :, :]
    return summed if scale is None else scale * summed


@layer("AdditiveAttention", dims=_dense_dims, weighted=lambda n: bool(n.config.get("use_scale", True)))
def additive_attention(c: LayerCall) -> list[Tensor]:
    use_scale = bool(c.config.get("use_scale", True))
    q, v, k = _dense_inputs(c)
    # Keras 3 sizes scale by the query (build: input_shape[0]), tf_keras by the value (input_shape[1]);
    # tf_keras can only have run when that size broadcasts against the query's.
    dim = q.shape[-1] if c.ctx.keras_major >= 3 else v.shape[-1]
    w = _check_weights(c, [(dim,)] if use_scale else [])
    summed = _broadcast_sum(c, q, k, None)
    if use_scale and w[0].shape[-1] not in (1, summed.shape[-1]):
        raise c.fail(f"its scale has {w[0].shape[-1]} entries and the query {summed.shape[-1]} features")
    scores = np.sum((w[0] if use_scale else 1.0) * np.tanh(summed), axis=-1)
    return _apply_scores(c, scores, v)


def _dense_inputs(c: LayerCall) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[query, value] or [query, value, key] (key defaults to value)."""
    if not 2 <= len(c.inputs) <= 3:
        raise c.fail(f"it takes [query, value] or [query, value, key], it was given {len(c.inputs)} tensor(s)")
    q, v = _array(c, c.inputs[0], "query"), _array(c, c.inputs[1], "value")
    k = _array(c, c.inputs[2], "key") if len(c.inputs) > 2 else v
    for name, a in (("query", q), ("value", v), ("key", k)):
        if a.ndim < 3:
            raise c.fail(f"its {name} has shape {a.shape}; it needs (batch, steps, features)")
    if q.shape[:-2] != v.shape[:-2] or k.shape[:-1] != v.shape[:-1]:
        raise c.fail(f"query {q.shape}, value {v.shape} and key {k.shape} do not go together "
                     "(same batch, and the key as many steps as the value)")
    _training(c, c.config.get("dropout", 0.0))
    return q, v, k


def _dense_masks(c: LayerCall, q_steps: tuple[int, ...], v_steps: tuple[int, ...]
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(query mask, value mask): the `mask=[...]` argument, or the inputs' implicit Keras masks."""
    if "mask" in c.kwargs and c.kwargs["mask"] is not None:
        given = c.kwargs["mask"]
        if not isinstance(given, list) or not 2 <= len(given) <= 3:
            raise c.fail("its mask argument must be a list [query_mask, value_mask]")
        masks = list(given)
    else:
        masks = [t.mask for t in c.inputs]
    return _mask(c, masks[0], q_steps, "query mask"), _mask(c, masks[1], v_steps, "value mask")


def _apply_scores(c: LayerCall, scores: np.ndarray, v: np.ndarray) -> list[Tensor]:
    """Mask, softmax and weighted sum of the values (`_apply_scores` and `call` of both generations)."""
    q_mask, v_mask = _dense_masks(c, scores.shape[:-1], v.shape[:-1])
    causal = _flag(c, "use_causal_mask") or bool(c.config.get("causal", False))
    major, minor = _version(c)
    tq, tv = scores.shape[-2], scores.shape[-1]
    keep: np.ndarray | None = None
    if major >= 3:
        if causal:
            keep = _causal(tq, tv) if v_mask is None else _truth(v_mask)[..., None, :] & _causal(tq, tv)
        elif v_mask is not None:
            keep = _truth(v_mask)
            if keep.ndim == 2 and (major, minor) >= (3, 12):
                keep = keep[:, None, :]
            else:  # 3.0-3.11 (and any mask of more axes): broadcast against the scores as it stands
                try:
                    keep = np.broadcast_to(keep, scores.shape)
                except ValueError:
                    raise c.fail(f"Keras {major}.{minor}'s Attention broadcasts the value mask {keep.shape} "
                                 f"against the scores {scores.shape} without expanding it, which fails unless "
                                 "the batch is 1 or equals the query's steps (fixed in Keras 3.12)") from None
    else:
        keep = None if v_mask is None else _truth(v_mask)[..., None, :]
        if causal:
            lower = _causal(tq, tv).reshape((1,) * (scores.ndim - 2) + (tq, tv))
            keep = lower if keep is None else keep & lower
    if keep is not None:
        scores = np.where(keep, scores, _minus_large(scores))
    weights = _softmax(scores)
    out = weights @ v
    if q_mask is not None:
        if (major, minor) >= (3, 15):
            out = np.where(_truth(q_mask)[..., None], out, 0.0)
        else:
            out = out * q_mask[..., None].astype(out.dtype)
    out_mask = None if q_mask is None else _truth(q_mask)
    dtype = c.ctx.dtype
    result = [Tensor(out.astype(dtype), out_mask)]
    if _flag(c, "return_attention_scores"):
        result.append(Tensor(weights.astype(dtype)))
    return result


# ---------------------------------------------------------------- MultiHeadAttention

KERAS3_ARGS = ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask")
TF_KERAS_ARGS = ("query", "value", "key", "attention_mask")


def _mha_output_shape(cfg: dict[str, Any]) -> list[int] | None:
    shape = cfg.get("output_shape")
    if shape is None or shape == [] or shape == 0:
        return None
    shape = [shape] if isinstance(shape, int) else shape
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                              for n in shape):
        return []
    return shape


def _mha_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    shape = _mha_output_shape(node.config)
    if shape:
        return [shape[-1], None]
    return [in_dims[0] if in_dims else None, None]


def _proj_equation(free_dims: int, bound_dims: int, output_dims: int) -> tuple[str, str]:
    """EinsumDense's equation and bias axes for a projection (`_build_proj_equation` of both generations)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    free = letters[:free_dims]
    bound = letters[free_dims:free_dims + bound_dims]
    out = letters[free_dims + bound_dims:free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _attention_equation(rank: int, axes: tuple[int, ...]) -> tuple[str, str, int]:
    """(dot product, combination, scores rank) as `_build_attention_equation` of both generations builds them."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    target = letters[:rank]
    batch_dims = tuple(int(i) for i in np.delete(range(rank), (*axes, rank - 1)))
    offset = rank
    source = ""
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += letters[offset]
            offset += 1
    product = "".join([target[i] for i in batch_dims] + [target[i] for i in axes] + [source[i] for i in axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


class _Dense:
    """One EinsumDense of the layer: its kernel and bias (None with use_bias=False)."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None) -> None:
        self.kernel, self.bias = kernel, bias

    def __call__(self, x: np.ndarray, equation: str) -> np.ndarray:
        y = np.einsum(equation, x, self.kernel)
        return y if self.bias is None else y + self.bias


def _mha_arguments(c: LayerCall) -> dict[str, Any]:
    names = KERAS3_ARGS if c.ctx.keras_major >= 3 else TF_KERAS_ARGS
    if len(c.inputs) > len(names):
        raise c.fail(f"it was given {len(c.inputs)} positional tensors; it takes at most {len(names)} "
                     f"({', '.join(names)})")
    bound: dict[str, Any] = dict(zip(names, c.inputs))
    for key, value in c.kwargs.items():
        bound[key] = value
    if not isinstance(bound.get("query"), Tensor) or not isinstance(bound.get("value"), Tensor):
        raise c.fail("it needs a query and a value tensor")
    if bound.get("key") is not None and not isinstance(bound["key"], Tensor):
        raise c.fail("its key is not a tensor")
    return bound


@layer("MultiHeadAttention", dims=_mha_dims, weighted=True)
def multi_head_attention(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    major, minor = _version(c)
    dtype = c.ctx.dtype
    heads, key_dim = config_int(cfg.get("num_heads")), config_int(cfg.get("key_dim"))
    value_dim = config_int(cfg.get("value_dim")) or key_dim
    if not heads or not key_dim or heads < 1 or key_dim < 1:
        raise c.fail(f"num_heads {cfg.get('num_heads')!r} and key_dim {cfg.get('key_dim')!r} must be positive")
    use_bias, use_gate = bool(cfg.get("use_bias", True)), bool(cfg.get("use_gate", False))
    window = cfg.get("sliding_window")
    dropout = cfg.get("dropout", 0.0)
    _training(c, dropout)
    args = _mha_arguments(c)
    query_t, value_t = args["query"], args["value"]
    key_t = args["key"] if args.get("key") is not None else value_t
    query, value, key = (_array(c, t, name) for t, name in ((query_t, "query"), (value_t, "value"),
                                                             (key_t, "key")))
    if query.ndim < 3 or value.ndim != query.ndim or key.ndim != query.ndim:
        raise c.fail(f"query {query.shape}, value {value.shape} and key {key.shape} must be (batch, steps, "
                     "features) or more, all of one rank")
    if value.shape[:-1] != key.shape[:-1] or value.shape[0] != query.shape[0]:
        raise c.fail(f"value {value.shape} and key {key.shape} must match but in their last axis, and the query "
                     f"{query.shape} have their batch")
    out_shape = _mha_output_shape(cfg)
    if out_shape == []:
        raise c.fail(f"output_shape {cfg.get('output_shape')!r} is not a list of positive sizes")
    out_shape = out_shape or [query.shape[-1]]

    # the weights, in layer.weights order: query, key, (gate), value, output; kernel then bias
    shapes: list[tuple[Any, ...]] = []
    roles = [("query", query.shape[-1], key_dim), ("key", key.shape[-1], key_dim)]
    roles += [("gate", query.shape[-1], value_dim)] if use_gate else []
    roles += [("value", value.shape[-1], value_dim)]
    for _, dim_in, dim_out in roles:
        shapes += [(dim_in, heads, dim_out)] + ([(heads, dim_out)] if use_bias else [])
    shapes += [(heads, value_dim, *out_shape)] + ([tuple(out_shape)] if use_bias else [])
    w = _check_weights(c, shapes)
    per = 2 if use_bias else 1
    dense = {role: _Dense(w[per * k], w[per * k + 1] if use_bias else None) for k, (role, _, _) in enumerate(roles)}
    dense["output"] = _Dense(w[-per], w[-1] if use_bias else None)

    rank = query.ndim + 1  # of the projections: (batch, steps..., heads, dim)
    proj, _ = _proj_equation(query.ndim - 1, 1, 2)
    q, k, v = dense["query"](query, proj), dense["key"](key, proj), dense["value"](value, proj)

    return_scores = _flag(c, "return_attention_scores")
    causal = _flag(c, "use_causal_mask")
    out_mask = query_t.mask
    mask, causal_only = _mha_mask(c, args, query, value, key_t, causal, window, major, minor)
    if (major, minor) >= (3, 8):
        # Keras 3.8+ clears the Keras masks of the tensors it was given (set_keras_mask(query, None), ...):
        # a layer reading them later in the run sees none, as another MultiHeadAttention on the same tensor
        for t in (query_t, value_t, key_t):
            t.mask = None
    dpa = ((major, minor) >= (3, 7) and not (isinstance(dropout, (int, float)) and dropout > 0)
           and not return_scores and rank == 4)
    scores = None
    if dpa:
        out = _dot_product_attention(q, k, v, mask, causal_only, key_dim)
    else:
        if causal_only:
            mask = _causal(query.shape[1], value.shape[1])
        axes = _attention_axes(c, cfg.get("attention_axes"), rank, major)
        dot, combine, scores_rank = _attention_equation(rank, axes)
        scores = np.einsum(dot, k, q * dtype(1.0 / math.sqrt(float(key_dim))))
        norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
        if mask is not None:
            for _ in range(scores.ndim - mask.ndim):
                mask = np.expand_dims(mask, axis=-len(axes) * 2 - 1)
            try:
                np.broadcast_shapes(mask.shape, scores.shape)
            except ValueError:
                raise c.fail(f"its attention mask {mask.shape} does not fit the scores {scores.shape}") from None
        scores = _masked_softmax(c, scores, mask, norm_axes, major, minor)
        out = np.einsum(combine, scores, v)
    if use_gate:
        gate = dense["gate"](query, proj)
        out = out * (1.0 / (1.0 + np.exp(-gate)))
    out_proj, _ = _proj_equation(query.ndim - 1, 2, len(out_shape))
    y = dense["output"](out, out_proj)
    result = [Tensor(y.astype(dtype), out_mask)]
    if return_scores and scores is not None:
        result.append(Tensor(scores.astype(dtype)))
    return result


def _attention_axes(c: LayerCall, given: Any, rank: int, major: int) -> tuple[int, ...]:
    if given is None:
        return tuple(range(1, rank - 2))
    axes = [given] if isinstance(given, int) else given
    if not isinstance(axes, list) or not axes or not all(isinstance(a, int) and not isinstance(a, bool)
                                                          for a in axes):
        raise c.fail(f"attention_axes {given!r} is not a list of axes")
    if major >= 3:  # Keras 3 counts a negative axis from the projection's last; tf_keras indexes with it as is
        axes = [a if a >= 0 else (rank - 1) + a for a in axes]
    if not all(-rank <= a < rank and 1 <= a % rank <= rank - 3 for a in axes):
        raise c.fail(f"attention_axes {given!r} do not fit inputs of rank {rank - 1} (their steps axes)")
    return tuple(axes)


def _mha_mask(c: LayerCall, args: dict[str, Any], query: np.ndarray, value: np.ndarray, key_t: Tensor,
              causal: bool, window: Any, major: int, minor: int) -> tuple[np.ndarray | None, bool]:
    """The attention mask `_compute_attention_mask` builds (bool, or as given), and whether Keras 3.15's
    causal-only path applies (no mask at all but the causal one)."""
    steps_q, steps_v = query.shape[:-1], value.shape[:-1]
    explicit = args.get("attention_mask")
    if explicit is not None and not isinstance(explicit, Tensor):
        raise c.fail(f"its attention_mask is {type(explicit).__name__}, not a tensor")
    attention_mask = None if explicit is None else np.asarray(explicit.value)
    if attention_mask is not None and attention_mask.dtype.kind not in "biuf":
        raise c.fail(f"its attention_mask holds {attention_mask.dtype}, not booleans")
    if major >= 3:
        q_mask = args["query"].mask
        if (major, minor) < (3, 8) and isinstance(args.get("query_mask"), Tensor):
            q_mask = args["query_mask"].value  # ignored from 3.8, which reads the query's own mask
        v_mask = args["value_mask"].value if isinstance(args.get("value_mask"), Tensor) else args["value"].mask
        k_mask = args["key_mask"].value if isinstance(args.get("key_mask"), Tensor) else (
            args["key"].mask if isinstance(args.get("key"), Tensor) else None)
    elif (major, minor) >= (2, 10):
        q_mask, v_mask, k_mask = args["query"].mask, args["value"].mask, key_t.mask
    else:  # tf.keras before 2.10 read no implicit masks
        q_mask = v_mask = k_mask = None
    q_mask = _mask(c, q_mask, steps_q, "query mask")
    v_mask = _mask(c, v_mask, steps_v, "value mask")
    k_mask = _mask(c, k_mask, steps_v, "key mask")
    sliding = isinstance(window, int) and not isinstance(window, bool) and major >= 3
    if (causal and (major, minor) >= (3, 15) and q_mask is None and v_mask is None and k_mask is None
            and attention_mask is None and not sliding):
        return None, True
    auto = None
    if q_mask is not None:
        auto = _truth(q_mask)[..., None]
    for m in (v_mask, k_mask):
        if m is not None:
            part = _truth(m)[..., None, :]
            auto = part if auto is None else auto & part
    tq, tv = query.shape[1], value.shape[1]
    if causal:
        auto = _causal(tq, tv) if auto is None else auto & _causal(tq, tv)
    if sliding:
        near = (np.abs(np.arange(tq)[:, None] - np.arange(tv)[None, :]) < window)[None]
        auto = near if auto is None else auto & near
    if attention_mask is not None and ((major, minor) >= (3, 7) or auto is not None):
        attention_mask = _truth(attention_mask)
    if auto is not None:
        if attention_mask is not None:
            try:
                auto = attention_mask & auto
            except ValueError:
                raise c.fail(f"its attention_mask {attention_mask.shape} does not fit the steps "
                             f"({tq}, {tv})") from None
        return auto, False
    return attention_mask, False


def _masked_softmax(c: LayerCall, scores: np.ndarray, mask: np.ndarray | None, axes: tuple[int, ...],
                    major: int, minor: int) -> np.ndarray:
    """Keras's Softmax layer with a mask, as the writing release computes it."""
    if mask is None:
        return _softmax(scores, axes)
    robust = bool(c.config.get("softmax_robust_masking", False))
    if (major, minor) >= (3, 13) or (major < 3 and robust):
        mask = mask if mask.dtype == bool else mask > 0.5
        scores = np.where(mask, scores, scores.dtype.type(-LARGE))
    else:
        # inputs += (1 - mask) * -1e9, in float32: an unmasked score stays, a masked one loses 1e9
        adder = (1.0 - mask.astype(np.float32)) * np.float32(-LARGE)
        scores = np.where(adder == 0, scores, (scores.astype(np.float32) + adder).astype(scores.dtype))
    out = _softmax(scores, axes)
    if (major, minor) >= (3, 10):  # a fully masked row comes out zero, not uniform
        out = np.where(mask, out, 0.0) if mask.dtype == bool else out * mask.astype(out.dtype)
    return out


def _dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
                           causal: bool, key_dim: int) -> np.ndarray:
    """keras.ops.dot_product_attention on TensorFlow (`_dot_product_attention_xla`), (B, T, N, H) inputs."""
    logits = np.einsum("btnh,bsnh->bnts", q, k) * q.dtype.type(1.0 / math.sqrt(float(key_dim)))
    keep = None
    if mask is not None:
        keep = _truth(mask)
        while keep.ndim < 4:
            keep = np.expand_dims(keep, axis=-3)
    if causal:
        lower = np.tril(np.ones(logits.shape[-2:], dtype=bool))[None, None]
        keep = lower if keep is None else keep & lower
    if keep is not None:
        logits = np.where(keep, logits, logits.dtype.type(DPA_NEGATIVE))
    return np.einsum("bnts,bsnh->btnh", _softmax(logits), v)
