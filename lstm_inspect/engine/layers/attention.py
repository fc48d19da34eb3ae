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

The decisions the exporters (`export/onnx/attention.py`, `export/torch/attention.py`) share with the engine
are made here once: the writing release (`keras_release`), the call's flags and the training=True refusal,
the scores' settings (`score_settings`), which Keras release treats the value and query masks how
(`value_mask_per_query`, `query_mask_by_where`), MultiHeadAttention's config and release rules (`mha_settings`,
a `MhaSettings`: weight layout, dot_product_attention, Softmax masking, clearing masks), its arguments
(`mha_arguments`) and its mask plan (`mha_mask_plan`: which masks apply, the 3.15 causal-only path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.engine.layers.registry import Context, LayerCall, Site, Tensor, layer
from lstm_inspect.model.cells.base import config_int, keras_major_minor

LARGE = 1.0e9  # what Keras's dense attention and Softmax layers take from masked scores (float32)
DPA_NEGATIVE = -0.7 * 3.38953e38  # keras/src/backend/tensorflow/nn.py _get_large_negative (float32)


# ---------------------------------------------------------------- decisions shared with the exporters (each family's
# own ones begin its section)


def keras_release(ctx: Context) -> tuple[int, int]:
    """(major, minor) of the writing Keras; an unknown minor counts as the newest."""
    major, minor = keras_major_minor(ctx.keras_version)
    return (major if major is not None else ctx.keras_major), (minor if minor is not None else 999)


def call_flag(c: Site, key: str, tensor: type, who: str = "lstm-inspect") -> bool:
    """A boolean argument of the call (use_causal_mask, return_attention_scores), which must not be a tensor."""
    value = c.kwargs.get(key, False)
    if isinstance(value, tensor):
        raise c.fail(f"{key} is a tensor; {who} needs it fixed in the call")
    return bool(value)


def refuse_training(c: Site, dropout: Any) -> None:
    if c.kwargs.get("training") is True and isinstance(dropout, (int, float)) and dropout > 0:
        raise c.fail("it is called with training=True, so Keras applies its random dropout at inference")


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


def _flag(c: LayerCall, key: str) -> bool:
    return call_flag(c, key, Tensor, "the NumPy engine")


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


@dataclass(frozen=True)
class ScoreSettings:
    """Attention's or AdditiveAttention's scores: "dot", "concat" (Attention's score_mode) or "additive", and whether
    a learned scale multiplies them."""

    mode: str
    use_scale: bool

    def scalar_weights(self) -> list[tuple[()]]:
        """Attention's stored scalars: the scale (use_scale), then concat_score_weight (score_mode "concat")."""
        return [()] * (self.use_scale + (self.mode == "concat"))


def score_settings(c: Site) -> ScoreSettings:
    """Attention's score_mode (dot or concat) and use_scale (False by default); AdditiveAttention's use_scale (True
    by default)."""
    if c.node.class_name == "AdditiveAttention":
        return ScoreSettings("additive", bool(c.config.get("use_scale", True)))
    mode = c.config.get("score_mode", "dot")
    if mode not in ("dot", "concat"):
        raise c.refuse(f"score_mode {mode!r} is not one Keras has (dot, concat)",
                       None if isinstance(mode, str) else "its score_mode is not one Keras has (dot, concat)")
    return ScoreSettings(str(mode), bool(c.config.get("use_scale", False)))


def additive_scale_size(keras_major: int, query_dim: Any, value_dim: Any) -> Any:
    """AdditiveAttention's scale is sized by the query in Keras 3 (build: input_shape[0]), by the value in tf_keras
    (input_shape[1]); tf_keras can only have run when that size broadcasts against the query's."""
    return query_dim if keras_major >= 3 else value_dim


def dense_mask_arguments(c: Site) -> list[Any] | None:
    """Attention's `mask=[query_mask, value_mask(, key_mask)]` argument, checked; None: the inputs' Keras masks."""
    given = c.kwargs.get("mask")
    if given is None:
        return None
    if not isinstance(given, list) or not 2 <= len(given) <= 3:
        raise c.fail("its mask argument must be a list [query_mask, value_mask]")
    return list(given)


def dense_causal(c: Site, tensor: type, who: str = "lstm-inspect") -> bool:
    """Attention's causal mask: the use_causal_mask argument, or tf_keras's `causal` config."""
    return call_flag(c, "use_causal_mask", tensor, who) or bool(c.config.get("causal", False))


def value_mask_per_query(release: tuple[int, int], causal: bool, mask_rank: int | None) -> bool:
    """Whether Attention's value mask gets a query axis (mask[..., None, :]) before it meets the scores: always in
    tf_keras and with a causal mask; otherwise from Keras 3.12 for a (batch, steps) mask. Keras 3.0-3.11 broadcast
    it against the scores as it stands (which fails unless the batch is 1 or the query's steps)."""
    return release[0] < 3 or causal or (mask_rank == 2 and release >= (3, 12))


def query_mask_by_where(release: tuple[int, int]) -> bool:
    """Attention zeroes padded query steps with a where from Keras 3.15 (before, it multiplies by the mask)."""
    return release >= (3, 15)


def _dense_dims(node: Any, in_dims: list[int | None]) -> list[int | None]:
    return [in_dims[1] if len(in_dims) > 1 else None, None]


def _attention_weighted(node: Any) -> bool:
    return bool(node.config.get("use_scale", False)) or node.config.get("score_mode", "dot") == "concat"


@layer("Attention", dims=_dense_dims, weighted=_attention_weighted)
def attention(c: LayerCall) -> list[Tensor]:
    settings = score_settings(c)
    mode, use_scale = settings.mode, settings.use_scale
    q, v, k = _dense_inputs(c)
    w = _check_weights(c, settings.scalar_weights())
    scale = w[0] if use_scale else None
    _need_scores(c, q, k, mode != "dot")
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
    use_scale = score_settings(c).use_scale
    q, v, k = _dense_inputs(c)
    dim = additive_scale_size(c.ctx.keras_major, q.shape[-1], v.shape[-1])
    w = _check_weights(c, [(dim,)] if use_scale else [])
    _need_scores(c, q, k, True)
    summed = _broadcast_sum(c, q, k, None)
    if use_scale and w[0].shape[-1] not in (1, summed.shape[-1]):
        raise c.fail(f"its scale has {w[0].shape[-1]} entries and the query {summed.shape[-1]} features")
    scores = np.sum((w[0] if use_scale else 1.0) * np.tanh(summed), axis=-1)
    return _apply_scores(c, scores, v)


def _need_scores(c: LayerCall, q: np.ndarray, k: np.ndarray, additive: bool) -> None:
    """The scores (batch, Tq, Tv), their masked copy and softmax, or for additive scores the (batch, Tq, Tv,
    features) sum and its tanh, against the memory budget before they are computed."""
    scores = (*q.shape[:-1], k.shape[-2])
    if additive:
        c.need((*scores, q.shape[-1]), (*scores, q.shape[-1]), scores, what="its additive attention scores")
    else:
        c.need(scores, scores, scores, what="its attention scores (query steps × value steps)")


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
    refuse_training(c, c.config.get("dropout", 0.0))
    return q, v, k


def _dense_masks(c: LayerCall, q_steps: tuple[int, ...], v_steps: tuple[int, ...]
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(query mask, value mask): the `mask=[...]` argument, or the inputs' implicit Keras masks."""
    masks = dense_mask_arguments(c)
    if masks is None:
        masks = [t.mask for t in c.inputs]
    return _mask(c, masks[0], q_steps, "query mask"), _mask(c, masks[1], v_steps, "value mask")


def _apply_scores(c: LayerCall, scores: np.ndarray, v: np.ndarray) -> list[Tensor]:
    """Mask, softmax and weighted sum of the values (`_apply_scores` and `call` of both generations)."""
    q_mask, v_mask = _dense_masks(c, scores.shape[:-1], v.shape[:-1])
    causal = dense_causal(c, Tensor, "the NumPy engine")
    release = keras_release(c.ctx)
    tq, tv = scores.shape[-2], scores.shape[-1]
    keep: np.ndarray | None = None
    if v_mask is not None:
        keep = _truth(v_mask)
        if value_mask_per_query(release, causal, keep.ndim):
            keep = keep[..., None, :]
        else:  # 3.0-3.11 (and any mask of more axes): broadcast against the scores as it stands
            try:
                keep = np.broadcast_to(keep, scores.shape)
            except ValueError:
                raise c.fail(f"Keras {release[0]}.{release[1]}'s Attention broadcasts the value mask {keep.shape} "
                             f"against the scores {scores.shape} without expanding it, which fails unless "
                             "the batch is 1 or equals the query's steps (fixed in Keras 3.12)") from None
    if causal:
        lower = _causal(tq, tv).reshape((1,) * (scores.ndim - 2) + (tq, tv))
        keep = lower if keep is None else keep & lower
    if keep is not None:
        scores = np.where(keep, scores, _minus_large(scores))
    weights = _softmax(scores)
    out = weights @ v
    if q_mask is not None:
        if query_mask_by_where(release):
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


@dataclass(frozen=True)
class MhaSettings:
    """MultiHeadAttention's config and the writing Keras release, read once (`mha_settings`) for the engine and both
    exporters."""

    release: tuple[int, int]
    heads: int
    key_dim: int
    value_dim: int
    use_bias: bool
    use_gate: bool  # Keras 3.14+
    window: int | None  # sliding_window (Keras 3.15+) where it applies: an integer, in Keras 3
    dropout: Any
    robust: bool  # tf_keras's softmax_robust_masking

    @property
    def softmax_sets_masked(self) -> bool:
        """Its Softmax sets masked scores to -1e9 (Keras 3.13+, tf_keras with softmax_robust_masking); otherwise it
        adds (1 - mask)·(-1e9)."""
        return self.release >= (3, 13) or (self.release[0] < 3 and self.robust)

    @property
    def softmax_zeroes_masked(self) -> bool:
        """Keras 3.10+ zeroes the masked weights after the softmax: a fully masked row comes out zero, not uniform."""
        return self.release >= (3, 10)

    @property
    def clears_masks(self) -> bool:
        """Keras 3.8+ clears the Keras masks of the tensors it was given (set_keras_mask(query, None), ...): a layer
        reading them later in the run sees none, as another MultiHeadAttention on the same tensor."""
        return self.release >= (3, 8)

    def dot_product_attention(self, return_scores: bool, rank: int) -> bool:
        """Whether Keras takes ops.dot_product_attention (3.7+, 3-D inputs: projections of rank 4, no dropout, no
        scores returned) rather than its Softmax layer."""
        return (self.release >= (3, 7) and not (isinstance(self.dropout, (int, float)) and self.dropout > 0)
                and not return_scores and rank == 4)

    def weight_layout(self, query_dim: Any, key_dim: Any, value_dim: Any, out_shape: list[Any]
                      ) -> tuple[list[tuple[str, Any, int]], list[tuple[Any, ...]]]:
        """(the projections as (role, input features, output size) in layer.weights order: query, key, (gate),
        value; the shapes of every stored array: each projection's kernel then bias, then the output's)."""
        roles = [("query", query_dim, self.key_dim), ("key", key_dim, self.key_dim)]
        roles += [("gate", query_dim, self.value_dim)] if self.use_gate else []
        roles += [("value", value_dim, self.value_dim)]
        shapes: list[tuple[Any, ...]] = []
        for _, dim_in, dim_out in roles:
            shapes += [(dim_in, self.heads, dim_out)] + ([(self.heads, dim_out)] if self.use_bias else [])
        shapes += [(self.heads, self.value_dim, *out_shape)] + ([tuple(out_shape)] if self.use_bias else [])
        return roles, shapes


def mha_settings(c: Site) -> MhaSettings:
    """num_heads, key_dim and value_dim (key_dim by default) checked, then a training=True call with dropout
    refused."""
    cfg = c.config
    release = keras_release(c.ctx)
    heads, key_dim = config_int(cfg.get("num_heads")), config_int(cfg.get("key_dim"))
    value_dim = config_int(cfg.get("value_dim")) or key_dim
    if not heads or not key_dim or heads < 1 or key_dim < 1:
        raise c.refuse(f"num_heads {cfg.get('num_heads')!r} and key_dim {cfg.get('key_dim')!r} must be positive",
                       "its num_heads and key_dim must be positive integers")
    use_bias, use_gate = bool(cfg.get("use_bias", True)), bool(cfg.get("use_gate", False))
    window = cfg.get("sliding_window")
    window = window if isinstance(window, int) and not isinstance(window, bool) and release[0] >= 3 else None
    dropout = cfg.get("dropout", 0.0)
    refuse_training(c, dropout)
    robust = bool(cfg.get("softmax_robust_masking", False))
    return MhaSettings(release, heads, key_dim, value_dim, use_bias, use_gate, window, dropout, robust)


def mha_output_shape(c: Site, features: Any) -> list[Any]:
    """The output's trailing shape: output_shape, or the query's features."""
    shape = _mha_output_shape(c.config)
    if shape == []:
        raise c.refuse(f"output_shape {c.config.get('output_shape')!r} is not a list of positive sizes",
                       "its output_shape is not a list of positive sizes")
    return shape or [features]


def mha_arguments(c: Site, tensor: type) -> dict[str, Any]:
    """The call's tensors by name: the positional ones in Keras's order (Keras 3 takes query_mask, value_mask and
    key_mask too), then the keyword ones."""
    names = KERAS3_ARGS if c.ctx.keras_major >= 3 else TF_KERAS_ARGS
    if len(c.inputs) > len(names):
        raise c.fail(f"it was given {len(c.inputs)} positional tensors; it takes at most {len(names)} "
                     f"({', '.join(names)})")
    bound: dict[str, Any] = dict(zip(names, c.inputs))
    bound.update(c.kwargs)
    if not isinstance(bound.get("query"), tensor) or not isinstance(bound.get("value"), tensor):
        raise c.fail("it needs a query and a value tensor")
    if bound.get("key") is not None and not isinstance(bound["key"], tensor):
        raise c.fail("its key is not a tensor")
    return bound


@dataclass(frozen=True)
class MaskSource:
    """Where one of MultiHeadAttention's masks comes from: a tensor given as the mask (a query_mask, value_mask or
    key_mask argument), or the Keras mask a tensor carries (`tensor.mask`, not None)."""

    tensor: Any  # the engine's Tensor or an exporter's Sym
    given: bool


@dataclass(frozen=True)
class MhaMaskPlan:
    """Which masks `_compute_attention_mask` folds into MultiHeadAttention's attention mask, in the writing release:
    query[..., None] & value[..., None, :] & key[..., None, :] & causal & window, then & the explicit attention_mask
    (when any of those is `composed`), else the explicit mask alone."""

    release: tuple[int, int]
    query: MaskSource | None
    value: MaskSource | None
    key: MaskSource | None
    explicit: Any  # the attention_mask tensor, or None
    causal: bool
    window: int | None
    causal_only: bool  # Keras 3.15's path: no mask at all but the causal one, passed as is_causal

    @property
    def composed(self) -> bool:
        return (self.query is not None or self.value is not None or self.key is not None or self.causal
                or self.window is not None)

    @property
    def explicit_as_bool(self) -> bool:
        """The explicit mask is read as booleans from Keras 3.7, and whenever it is combined; before, as given."""
        return self.explicit is not None and (self.release >= (3, 7) or self.composed)


def mha_mask_plan(c: Site, s: MhaSettings, args: dict[str, Any], causal: bool, tensor: type) -> MhaMaskPlan:
    """The implicit masks of query, value and key are folded in from tf.keras 2.10 (before, only attention_mask);
    Keras 3 takes value_mask / key_mask arguments over them, and a query_mask argument only before 3.8."""
    explicit = args.get("attention_mask")
    if explicit is not None and not isinstance(explicit, tensor):
        raise c.refuse(f"its attention_mask is {type(explicit).__name__}, not a tensor",
                       "its attention_mask is not a tensor")

    def carried(t: Any) -> MaskSource | None:
        return None if t.mask is None else MaskSource(t, False)

    def given(name: str) -> MaskSource:
        return MaskSource(args[name], True)

    release = s.release
    query = value = key = None
    if release[0] >= 3:
        query = carried(args["query"])
        if release < (3, 8) and isinstance(args.get("query_mask"), tensor):
            query = given("query_mask")  # ignored from 3.8, which reads the query's own mask
        value = given("value_mask") if isinstance(args.get("value_mask"), tensor) else carried(args["value"])
        key = (given("key_mask") if isinstance(args.get("key_mask"), tensor)
               else carried(args["key"]) if isinstance(args.get("key"), tensor) else None)
    elif release >= (2, 10):
        key_t = args["key"] if isinstance(args.get("key"), tensor) else args["value"]
        query, value, key = carried(args["query"]), carried(args["value"]), carried(key_t)
    causal_only = (causal and release >= (3, 15) and query is None and value is None and key is None
                   and explicit is None and s.window is None)
    return MhaMaskPlan(release, query, value, key, explicit, causal, s.window, causal_only)


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


def mha_attention_equation(rank: int, axes: tuple[int, ...]) -> tuple[str, str, int]:
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


@layer("MultiHeadAttention", dims=_mha_dims, weighted=True)
def multi_head_attention(c: LayerCall) -> list[Tensor]:
    cfg = c.config
    s = mha_settings(c)
    major = s.release[0]
    dtype = c.ctx.dtype
    key_dim, use_bias = s.key_dim, s.use_bias
    args = mha_arguments(c, Tensor)
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
    out_shape = mha_output_shape(c, query.shape[-1])

    # the weights, in layer.weights order: query, key, (gate), value, output; kernel then bias
    roles, shapes = s.weight_layout(query.shape[-1], key.shape[-1], value.shape[-1], out_shape)
    w = _check_weights(c, shapes)
    per = 2 if use_bias else 1
    dense = {role: _Dense(w[per * k], w[per * k + 1] if use_bias else None) for k, (role, _, _) in enumerate(roles)}
    dense["output"] = _Dense(w[-per], w[-1] if use_bias else None)

    rank = query.ndim + 1  # of the projections: (batch, steps..., heads, dim)
    proj, _ = _proj_equation(query.ndim - 1, 1, 2)
    q, k, v = dense["query"](query, proj), dense["key"](key, proj), dense["value"](value, proj)
    scores_shape = (query.shape[0], q.shape[-2], *query.shape[1:-1], *key.shape[1:-1])
    c.need(scores_shape, scores_shape, scores_shape, what="its attention scores (heads × query × key positions)")

    return_scores = _flag(c, "return_attention_scores")
    causal = _flag(c, "use_causal_mask")
    out_mask = query_t.mask
    mask, causal_only = _mha_mask(c, mha_mask_plan(c, s, args, causal, Tensor), query, value)
    if s.clears_masks:
        for t in (query_t, value_t, key_t):
            t.mask = None
    scores = None
    if s.dot_product_attention(return_scores, rank):
        out = _dot_product_attention(q, k, v, mask, causal_only, key_dim)
    else:
        if causal_only:
            mask = _causal(query.shape[1], value.shape[1])
        axes = mha_attention_axes(c, cfg.get("attention_axes"), rank, major)
        dot, combine, scores_rank = mha_attention_equation(rank, axes)
        scores = np.einsum(dot, k, q * dtype(1.0 / math.sqrt(float(key_dim))))
        norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
        if mask is not None:
            for _ in range(scores.ndim - mask.ndim):
                mask = np.expand_dims(mask, axis=-len(axes) * 2 - 1)
            try:
                np.broadcast_shapes(mask.shape, scores.shape)
            except ValueError:
                raise c.fail(f"its attention mask {mask.shape} does not fit the scores {scores.shape}") from None
        scores = _masked_softmax(s, scores, mask, norm_axes)
        out = np.einsum(combine, scores, v)
    if s.use_gate:
        gate = dense["gate"](query, proj)
        out = out * (1.0 / (1.0 + np.exp(-gate)))
    out_proj, _ = _proj_equation(query.ndim - 1, 2, len(out_shape))
    y = dense["output"](out, out_proj)
    result = [Tensor(y.astype(dtype), out_mask)]
    if return_scores and scores is not None:
        result.append(Tensor(scores.astype(dtype)))
    return result


def mha_attention_axes(c: LayerCall, given: Any, rank: int, major: int) -> tuple[int, ...]:
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


def _mha_mask(c: LayerCall, plan: MhaMaskPlan, query: np.ndarray, value: np.ndarray
              ) -> tuple[np.ndarray | None, bool]:
    """The attention mask `_compute_attention_mask` builds (bool, or as given), and whether Keras 3.15's
    causal-only path applies (no mask at all but the causal one)."""
    steps_q, steps_v = query.shape[:-1], value.shape[:-1]
    attention_mask = None if plan.explicit is None else np.asarray(plan.explicit.value)
    if attention_mask is not None and attention_mask.dtype.kind not in "biuf":
        raise c.fail(f"its attention_mask holds {attention_mask.dtype}, not booleans")

    def array(source: MaskSource | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
        m = None if source is None else source.tensor.value if source.given else source.tensor.mask
        return _mask(c, m, shape, what)

    q_mask = array(plan.query, steps_q, "query mask")
    v_mask = array(plan.value, steps_v, "value mask")
    k_mask = array(plan.key, steps_v, "key mask")
    if plan.causal_only:
        return None, True
    auto = None
    if q_mask is not None:
        auto = _truth(q_mask)[..., None]
    for m in (v_mask, k_mask):
        if m is not None:
            part = _truth(m)[..., None, :]
            auto = part if auto is None else auto & part
    tq, tv = query.shape[1], value.shape[1]
    if plan.causal:
        auto = _causal(tq, tv) if auto is None else auto & _causal(tq, tv)
    if plan.window is not None:
        near = (np.abs(np.arange(tq)[:, None] - np.arange(tv)[None, :]) < plan.window)[None]
        auto = near if auto is None else auto & near
    if attention_mask is not None and plan.explicit_as_bool:
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


def _masked_softmax(s: MhaSettings, scores: np.ndarray, mask: np.ndarray | None, axes: tuple[int, ...]
                    ) -> np.ndarray:
    """Keras's Softmax layer with a mask, as the writing release computes it."""
    if mask is None:
        return _softmax(scores, axes)
    if s.softmax_sets_masked:
        mask = mask if mask.dtype == bool else mask > 0.5
        scores = np.where(mask, scores, scores.dtype.type(-LARGE))
    else:
        # inputs += (1 - mask) * -1e9, in float32: an unmasked score stays, a masked one loses 1e9
        adder = (1.0 - mask.astype(np.float32)) * np.float32(-LARGE)
        scores = np.where(adder == 0, scores, (scores.astype(np.float32) + adder).astype(scores.dtype))
    out = _softmax(scores, axes)
    if s.softmax_zeroes_masked:  # a fully masked row comes out zero, not uniform
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
