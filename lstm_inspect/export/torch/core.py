"""The PyTorch export's core layers: one emitter per Keras layer kind of `lstm_inspect/engine/layers/core.py`.

Why: `lstm-inspect export --to pytorch` writes forward() call by call; each emitter writes what the
engine's function for that kind computes, masks included (Embedding mask_zero, Masking, the merges'
`merged_mask`: Keras 3's Concatenate ORs the masks, Keras 2's ANDs them), and gives the layer its
attribute when it has weights (nn.Linear, nn.Embedding, nn.BatchNorm1d, nn.LayerNorm, ...) or a
natural torch.nn module (nn.Dropout, nn.Flatten); the other layers are a line of forward().
The Keras rules themselves are documented beside the engine's functions. The other families are
`activations.py`, `pooling.py`, `conv.py`, `attention.py` (same names as the engine's), the TF op layers
`ops.py`, the recurrent layers `cells/`.

Adding a kind is one function in its family's module:

    @layer("Conv1D")
    def conv1d(e: LayerEmit) -> list[Sym]:
        ...  # e.x, e.config, e.read(shapes), e.w.module(...), e.w.let(...)

A kind without an emitter is refused before anything is written: "layer X (Conv1D) has no PyTorch
form in lstm-inspect yet".
"""

from __future__ import annotations

import numpy as np

from lstm_inspect.engine.layers.core import merge_mask_rule, merge_masks_keras34, wrapped_layer
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, integer, snippet
from lstm_inspect.export.torch.registry import LAYERS, layer
from lstm_inspect.model.cells.base import config_int

IDENTITY = ("InputLayer", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
            "GaussianDropout", "AlphaDropout", "ActivityRegularization")


@layer(*IDENTITY)
def identity(e: LayerEmit) -> list[Sym]:
    return [e.x]


@layer("Dropout")
def dropout(e: LayerEmit) -> list[Sym]:
    """The identity at inference (eval mode), as nn.Dropout is."""
    rate = e.config.get("rate", e.config.get("p"))
    valid = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 <= rate <= 1.0
    attr = e.w.module(e.key, e.hint, f"nn.Dropout({float(rate)!r})" if valid else "nn.Identity()", {})
    return [e.w.let(e.hint, f"self.{attr}({e.x.name})", mask=e.x.mask)]


@layer("Dense")
def dense(e: LayerEmit) -> list[Sym]:
    cfg = e.config
    use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
    units = config_int(cfg.get("units", cfg.get("output_dim")))
    n_in = e.x.shape[-1] if e.x.shape else None
    weights = e.read([(n_in, units)] + ([(units,)] if use_bias else []))
    kernel = weights[0]
    arrays = {"weight": kernel.T} | ({"bias": weights[1]} if use_bias else {})
    ctor = f"nn.Linear({kernel.shape[0]}, {kernel.shape[1]}{'' if use_bias else ', bias=False'})"
    attr = e.w.module(e.key, e.hint, ctor, arrays)
    act = e.w.act(e.activation(), f"self.{attr}({e.x.name})", f"layer {e.node.path}")
    return [e.w.let(e.hint, act, mask=e.x.mask)]


@layer("TimeDistributed")
def time_distributed(e: LayerEmit) -> list[Sym]:
    """The wrapped layer on (batch·steps, ...), reshaped back (the engine's time_distributed)."""
    inner = wrapped_layer(e.node)
    fn = LAYERS.get(inner.class_name)
    if fn is None or inner.class_name == "TimeDistributed":
        raise e.unsupported("the wrapped layer kind")
    x = e.x
    if x.rank is not None and x.rank < 3:
        raise e.fail("TimeDistributed needs (batch, steps, ...)")
    flat = e.w.let(f"{e.hint}_steps", f"{x.name}.reshape([-1] + list({x.name}.shape[2:]))", x.kind)
    if x.shape is not None:
        flat.shape = (x.shape[0] * x.shape[1], *x.shape[2:])
    sub = LayerEmit(inner, [flat], e.args, e.w, e.ckpt, e.keras_major, e.keras_version, inner.class_name, e.key)
    (y,) = fn(sub)[:1]
    return [e.w.let(e.hint, f"{y.name}.reshape([{x.name}.shape[0], {x.name}.shape[1]] + list({y.name}.shape[1:]))",
                    mask=x.mask)]


@layer("Activation")
def activation(e: LayerEmit) -> list[Sym]:
    return [e.w.let(e.hint, e.w.act(e.activation(), e.x.name, f"layer {e.node.path}"), mask=e.x.mask)]


@layer("Embedding")
def embedding(e: LayerEmit) -> list[Sym]:
    (table,) = e.read([(config_int(e.config.get("input_dim")), config_int(e.config.get("output_dim")))])
    attr = e.w.module(e.key, e.hint, f"nn.Embedding({table.shape[0]}, {table.shape[1]})", {"weight": table})
    ids = e.x.name if e.x.kind == "int" else f"{e.x.name}.long()"
    mask = e.w.let(f"{e.hint}_mask", f"{e.x.name} != 0", "bool").name if e.config.get("mask_zero") else None
    return [e.w.let(e.hint, f"self.{attr}({ids})", mask=mask)]


@layer("Masking")
def masking(e: LayerEmit) -> list[Sym]:
    value = e.number("mask_value", 0.0)
    mask = e.w.let(f"{e.hint}_mask", f"({e.x.name} != {value}).any(dim=-1)", "bool").name
    return [e.w.let(e.hint, f"{e.x.name} * {mask}[..., None]", mask=mask)]


@layer("Flatten")
def flatten(e: LayerEmit) -> list[Sym]:
    attr = e.w.module(e.key, e.hint, "nn.Flatten()", {})
    return [e.w.let(e.hint, f"self.{attr}({e.x.name})", e.x.kind)]


@layer("RepeatVector")
def repeat_vector(e: LayerEmit) -> list[Sym]:
    n = config_int(e.config.get("n"))
    if n is None:
        raise e.fail("its n is not a positive integer")
    return [e.w.let(e.hint, f"{e.x.name}[:, None, :].repeat(1, {n}, 1)", e.x.kind)]


@layer("Reshape")
def reshape(e: LayerEmit) -> list[Sym]:
    target = e.config.get("target_shape")
    if (not isinstance(target, list) or not target
            or not all(isinstance(n, int) and not isinstance(n, bool) and (n > 0 or n == -1) for n in target)):
        raise e.fail("its target_shape is not a list of sizes")
    sizes = ", ".join(integer(n, "target_shape") for n in target)
    return [e.w.let(e.hint, f"{e.x.name}.reshape({e.x.name}.shape[0], {sizes})", e.x.kind)]


@layer("Permute")
def permute(e: LayerEmit) -> list[Sym]:
    dims = e.config.get("dims")
    if (not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
            or sorted(dims) != list(range(1, len(dims) + 1))):
        raise e.fail("its dims are not a permutation of 1..n")
    return [e.w.let(e.hint, f"{e.x.name}.permute(0, {', '.join(str(int(d)) for d in dims)})", e.x.kind)]


def _axis(e: LayerEmit, axis: object) -> int:
    """A config's axis, made non-negative with the input's rank (from the engine's run)."""
    rank = e.x.rank
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise e.fail(f"its axis {axis!r} is not an integer")
    if rank is None:
        if axis >= 0:
            return axis
        raise e.fail("the rank of its input is unknown (the model could not run on a made-up input)")
    if not -rank <= axis < rank:
        raise e.fail(f"its axis {axis} does not fit an input of rank {rank}")
    return axis % rank


BATCH_NORMS = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d", 5: "nn.BatchNorm3d"}


@layer("BatchNormalization")
def batch_normalization(e: LayerEmit) -> list[Sym]:
    cfg = e.config
    axis = cfg.get("axis", -1)
    axis = _axis(e, axis[0] if isinstance(axis, list) and len(axis) == 1 else axis)
    rank = e.x.rank
    if rank not in BATCH_NORMS:
        raise e.unsupported(f"an input of rank {rank}")
    scale, center = bool(cfg.get("scale", True)), bool(cfg.get("center", True))
    n = e.x.shape[axis] if e.x.shape else None
    weights = e.read([(n,)] * (2 + scale + center))
    arrays = list(weights)
    gamma = arrays.pop(0) if scale else None
    beta = arrays.pop(0) if center else None
    mean, var = arrays
    size = mean.shape[0]
    eps = e.number("epsilon", 1e-3)
    state: dict[str, np.ndarray] = {"running_mean": mean, "running_var": var,
                                    "num_batches_tracked": np.array(0, dtype=np.int64)}
    if scale or center:
        state["weight"] = gamma if gamma is not None else np.ones(size, np.float32)
        state["bias"] = beta if beta is not None else np.zeros(size, np.float32)
    affine = "" if scale or center else ", affine=False"
    attr = e.w.module(e.key, e.hint, f"{BATCH_NORMS[rank]}({size}, eps={eps}{affine})", state)
    if axis == 1:
        expr = f"self.{attr}({e.x.name})"
    else:
        expr = f"self.{attr}({e.x.name}.movedim({axis}, 1)).movedim(1, {axis})"  # torch.nn's channels: axis 1
    return [e.w.let(e.hint, expr, mask=e.x.mask)]


@layer("LayerNormalization")
def layer_normalization(e: LayerEmit) -> list[Sym]:
    cfg = e.config
    axis = cfg.get("axis", -1)
    axes = sorted({_axis(e, a) for a in (axis if isinstance(axis, list) else [axis])})
    if e.x.rank is None or axes != [e.x.rank - 1]:
        raise e.unsupported("a normalization over other axes than the last")
    scale, center, rms = bool(cfg.get("scale", True)), bool(cfg.get("center", True)), bool(cfg.get("rms_scaling"))
    n = e.x.shape[-1] if e.x.shape else None
    arrays = list(e.read([(n,)] * (scale + (center and not rms))) if (scale or (center and not rms)) else [])
    eps = e.number("epsilon", 1e-3)
    gamma = arrays.pop(0) if scale else None
    if rms:
        if gamma is None:
            return [e.w.let(e.hint, f"{e.x.name} * torch.rsqrt({e.x.name}.square().mean(dim=-1, keepdim=True) + "
                            f"{eps})", mask=e.x.mask)]
        attr = e.w.module(e.key, e.hint, f"nn.RMSNorm({gamma.shape[0]}, eps={eps})", {"weight": gamma})
        return [e.w.let(e.hint, f"self.{attr}({e.x.name})", mask=e.x.mask)]
    beta = arrays.pop(0) if center else None
    size = (gamma if gamma is not None else beta).shape[0] if (gamma is not None or beta is not None) else n
    if size is None:
        raise e.fail("the size of its input's last axis is unknown")
    state: dict[str, np.ndarray] = {}
    options = ""
    if gamma is None and beta is None:
        options = ", elementwise_affine=False"
    else:
        state["weight"] = gamma if gamma is not None else np.ones(size, np.float32)
        if beta is not None:
            state["bias"] = beta
        else:
            options = ", bias=False"
    attr = e.w.module(e.key, e.hint, f"nn.LayerNorm({size}, eps={eps}{options})", state)
    return [e.w.let(e.hint, f"self.{attr}({e.x.name})", mask=e.x.mask)]


MERGES = ("Concatenate", "Add", "Multiply", "Average", "Subtract", "Maximum", "Minimum")


@layer(*MERGES)
def merge(e: LayerEmit) -> list[Sym]:
    xs = [s.name for s in e.inputs]
    kind = e.kind
    if len(xs) < (2 if kind == "Subtract" else 1):
        raise e.fail(f"{kind} needs at least two inputs")
    if kind == "Concatenate":
        axis = e.config.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise e.fail("its axis is not an integer")
        expr = f"torch.cat([{', '.join(xs)}], dim={int(axis)})"
    else:
        # a lower-rank input expanded at axis 1 until every input has the highest rank (Merge.call); it loses its
        # Keras mask for the values (a new tensor)
        ranks = [s.rank for s in e.inputs]
        top = max(r for r in ranks if r is not None) if any(r is not None for r in ranks) else None
        grown = [top is not None and r is not None and r < top for r in ranks]
        xs = [x + ".unsqueeze(1)" * (top - r) if g else x for x, r, g in zip(xs, ranks, grown)]
        kept = [None if g else s.mask for s, g in zip(e.inputs, grown)]
        if merge_masks_keras34(e.ctx) and kind in ("Maximum", "Minimum", "Multiply") and any(kept):
            e.w.need("keras_masked_merge")
            masks = ", ".join(m or "None" for m in kept)
            y = e.w.name(e.hint)
            own = e.w.name(f"{e.hint}_mask")
            e.w.line(f'{y}, {own} = keras_masked_merge("{kind}", [{", ".join(xs)}], [{masks}])')
            if all(kept):  # the layer sets its own output mask
                return [Sym(y, mask=own)]
            return [Sym(y, mask=_merged_mask(e))]
        if kind == "Subtract":
            expr = f"{xs[0]} - {xs[1]}"
        elif kind == "Add":
            expr = " + ".join(xs)
        elif kind == "Multiply":
            expr = " * ".join(xs)
        elif kind == "Average":
            expr = f"({' + '.join(xs)}) / {len(xs)}"
        else:
            fn = "torch.maximum" if kind == "Maximum" else "torch.minimum"
            expr = xs[0]
            for other in xs[1:]:
                expr = f"{fn}({expr}, {other})"
    return [e.w.let(e.hint, expr, mask=_merged_mask(e))]


def _merged_mask(e: LayerEmit) -> str | None:
    """Keras's compute_mask of merge layers, by the engine's rule (`layers.core.merge_mask_rule`)."""
    rule = merge_mask_rule(e.kind, [s.mask is not None for s in e.inputs], e.ctx)
    if rule is None:
        return None
    how, fill = rule
    masks = [s.mask if s.mask is not None else f"torch.ones({s.name}.shape[:2], dtype=torch.bool)"
             for s in e.inputs if s.mask is not None or fill]
    if len(masks) == 1:
        return masks[0]
    return e.w.let(f"{e.hint}_mask", (" | " if how == "or" else " & ").join(masks), "bool").name


snippet("keras_masked_merge", '''
def keras_masked_merge(kind: str, xs: List[Tensor], masks: List[Optional[Tensor]]) -> Tuple[Tensor, Optional[Tensor]]:
    """Keras 3.4+'s Maximum and Minimum (each input's masked entries left out) and Multiply (a masked entry counts
    as 1; the entries masked in every input zeroed when every input has a mask): the output and, when every input
    has a mask, the mask the layer sets (their OR), else None."""
    wide: List[Optional[Tensor]] = []
    every = True
    for k in range(len(xs)):
        m = masks[k]
        if m is None:
            wide.append(None)
            every = False
        else:
            wide.append(m.reshape(list(m.shape) + [1] * (xs[k].dim() - m.dim())).expand_as(xs[k]))
    out = xs[0]
    out_mask: Optional[Tensor] = None
    if kind == "Multiply":
        for k in range(len(xs)):
            x, m = xs[k], wide[k]
            if m is not None:
                x = torch.where(m, x, torch.ones_like(x))
                if every:
                    if out_mask is None:
                        out_mask = m
                    else:
                        out_mask = out_mask | m
            out = x if k == 0 else out * x
        if out_mask is None:
            return out, None
        return torch.where(out_mask, out, torch.zeros_like(out)), out_mask.any(dim=-1)
    out_mask = wide[0]
    for k in range(1, len(xs)):
        x, m = xs[k], wide[k]
        if m is not None:
            x = torch.where(m, x, out)
        if out_mask is not None:
            out = torch.where(out_mask, out, x)
        if m is not None and out_mask is not None:
            out_mask = out_mask | m
        else:
            out_mask = None
        out = torch.maximum(out, x) if kind == "Maximum" else torch.minimum(out, x)
    if out_mask is None:
        return out, None
    return out, out_mask.any(dim=-1)
''', imports=TYPING)


snippet("keras_dot", '''
def keras_dot(x: Tensor, y: Tensor, x_axis: int, y_axis: int, normalize: str = "") -> Tensor:
    """Keras's Dot layer: batch_dot over one axis of each input; normalize (by generation) L2-normalizes first."""
    if normalize == "keras3":  # ops.normalize: 1/norm capped at 1/1e-7
        x = x * torch.clamp(torch.rsqrt(x.square().sum(dim=x_axis, keepdim=True)), max=1e7)
        y = y * torch.clamp(torch.rsqrt(y.square().sum(dim=y_axis, keepdim=True)), max=1e7)
    elif normalize == "keras2":  # tf.linalg.l2_normalize: the squared norm floored at 1e-12
        x = x * torch.rsqrt(torch.clamp(x.square().sum(dim=x_axis, keepdim=True), min=1e-12))
        y = y * torch.rsqrt(torch.clamp(y.square().sum(dim=y_axis, keepdim=True), min=1e-12))
    x, y = x.movedim(x_axis, -1), y.movedim(y_axis, 1)
    batch, n = x.shape[0], x.shape[-1]
    out = torch.matmul(x.reshape(batch, -1, n), y.reshape(batch, n, -1))
    out = out.reshape([batch] + list(x.shape[1:-1]) + list(y.shape[2:]))
    return out.reshape(batch, 1) if out.dim() == 1 else out
''', imports=TYPING)


@layer("Dot")
def dot(e: LayerEmit) -> list[Sym]:
    if len(e.inputs) != 2:
        raise e.fail("Dot needs exactly two inputs")
    x, y = e.inputs
    axes = e.config.get("axes", -1)
    pair = [axes, axes] if isinstance(axes, int) and not isinstance(axes, bool) else axes
    if (not isinstance(pair, list) or len(pair) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in pair)):
        raise e.fail("its axes are not an integer or two")
    if x.rank is None or y.rank is None:
        raise e.fail("the ranks of its inputs are unknown (the model could not run on a made-up input)")
    a0, a1 = pair[0] % x.rank, pair[1] % y.rank
    normalize = f', normalize="{e.hard_sigmoid}"' if e.config.get("normalize") else ""
    e.w.need("keras_dot")
    return [e.w.let(e.hint, f"keras_dot({x.name}, {y.name}, {a0}, {a1}{normalize})")]
