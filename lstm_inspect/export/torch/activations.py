"""The PyTorch export's activation layers (`lstm_inspect/engine/layers/activations.py`): ReLU, LeakyReLU,
PReLU, ELU, ThresholdedReLU, Softmax.

Each emitter writes what the engine's function computes; the layers' settings are read by the engine's
readers (`relu_settings`, `softmax_axes`, ... in `activations.py`), where the Keras rules are documented.
"""

from __future__ import annotations

from lstm_inspect.engine.layers.activations import (
    elu_alpha,
    leaky_relu_slope,
    prelu_alpha_shape,
    relu_settings,
    softmax_axes,
    softmax_mask_rule,
    softmax_own_dtype,
    thresholded_relu_theta,
)
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, snippet
from lstm_inspect.export.torch.registry import layer

snippet("keras_relu", '''
def keras_relu(x: Tensor, negative_slope: float = 0.0, max_value: Optional[float] = None, threshold: float = 0.0
               ) -> Tensor:
    """Keras's relu with its three settings (keras.activations.relu, tf_keras backend.relu)."""
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return torch.where(x > 0, x, x * negative_slope)
    if threshold != 0:
        y = torch.where(x > threshold, x, torch.zeros_like(x))
    else:
        y = torch.clamp(x, min=0)
    if max_value is not None:
        y = torch.clamp(y, 0, max_value)
    if negative_slope != 0.0:
        y = y - negative_slope * torch.clamp(threshold - x, min=0)
    return y
''', imports=TYPING)


@layer("ReLU")
def relu_layer(e: LayerEmit) -> list[Sym]:
    s = relu_settings(e)
    max_value, slope, threshold = s.max_value, s.negative_slope, s.threshold
    if max_value is None and slope == 0.0 and threshold == 0.0:
        return [e.w.let(e.hint, f"torch.relu({e.x.name})", mask=e.x.mask)]
    e.w.need("keras_relu")
    top = None if max_value is None else float(max_value)  # floats, as keras_relu's annotations say
    return [e.w.let(e.hint, f"keras_relu({e.x.name}, {float(slope)!r}, {top!r}, {float(threshold)!r})",
                    mask=e.x.mask)]


@layer("LeakyReLU")
def leaky_relu(e: LayerEmit) -> list[Sym]:
    slope = leaky_relu_slope(e)
    return [e.w.let(e.hint, f"F.leaky_relu({e.x.name}, {slope!r})", mask=e.x.mask)]  # x > 0 ? x : slope·x


@layer("PReLU")
def prelu(e: LayerEmit) -> list[Sym]:
    if e.x.shape is None:
        raise e.fail("the shape of its input is unknown (the model could not run on a made-up input)")
    (alpha,) = e.read([prelu_alpha_shape(e, e.x.shape[1:])])
    ctor = f"nn.ParameterDict({{\"alpha\": nn.Parameter(torch.zeros({tuple(alpha.shape)}))}})"
    attr = e.w.module(e.key, e.hint, ctor, {"alpha": alpha})
    return [e.w.let(e.hint, f"torch.relu({e.x.name}) - self.{attr}[\"alpha\"] * torch.relu(-{e.x.name})",
                    mask=e.x.mask)]


@layer("ELU")
def elu(e: LayerEmit) -> list[Sym]:
    alpha = elu_alpha(e)
    return [e.w.let(e.hint, f"F.elu({e.x.name}, {alpha!r})", mask=e.x.mask)]


@layer("ThresholdedReLU")
def thresholded_relu(e: LayerEmit) -> list[Sym]:
    theta = thresholded_relu_theta(e)
    return [e.w.let(e.hint, f"{e.x.name} * ({e.x.name} > {theta!r})", mask=e.x.mask)]


snippet("keras_softmax", '''
def keras_softmax(x: Tensor, axes: List[int], mask: Optional[Tensor] = None, generation: str = "keras3",
                  robust: bool = False, compute_dtype: Optional[torch.dtype] = None) -> Tensor:
    """Keras's Softmax layer: over `axes`; with a mask, Keras 3 puts -1e9 where it is False and zeroes those
    outputs, tf_keras adds (1 - mask)·(-1e9), the mask cast to numbers as given (robust_masking: puts -1e9),
    and keeps the outputs. compute_dtype: the layer's own float type, which it computes in."""
    dtype = x.dtype
    if compute_dtype is not None:
        x = x.to(compute_dtype)
    if mask is not None:
        given = mask
        mask = mask > 0.5 if mask.is_floating_point() else mask.to(torch.bool)
        if generation == "keras3" or robust:
            x = torch.where(mask, x, torch.full_like(x, -1e9))
        else:
            x = x + (1 - given.to(x.dtype)) * -1e9
    e = torch.exp(x - torch.amax(x, dim=axes, keepdim=True))
    y = e / e.sum(dim=axes, keepdim=True)
    if mask is not None and generation == "keras3":
        y = torch.where(mask, y, torch.zeros_like(y))
    return y.to(dtype)
''', imports=TYPING)


@layer("Softmax")
def softmax_layer(e: LayerEmit) -> list[Sym]:
    x = e.x
    axes = tuple(int(a) for a in softmax_axes(e, None))  # their range not checked here
    explicit = e.args.kwargs.get("mask")
    mask = explicit.name if isinstance(explicit, Sym) else x.mask
    if explicit is not None and not isinstance(explicit, Sym):
        raise e.unsupported("a mask given as a constant")
    if mask is None and len(axes) == 1:
        return [e.w.let(e.hint, f"torch.softmax({x.name}, dim={axes[0]})")]
    e.w.need("keras_softmax")
    options = ""
    if mask is not None:
        rule = softmax_mask_rule(e)
        options = f", mask={mask}, generation=\"{'keras3' if rule == 'keras3' else 'keras2'}\""
        if rule == "robust":
            options += ", robust=True"
        own = softmax_own_dtype(e)
        if rule == "add" and own != "float32":
            options += f", compute_dtype=torch.{own}"
    out_mask = mask  # Keras passes on the mask it was given, as booleans
    if isinstance(explicit, Sym) and explicit.kind != "bool":
        truth = f"{mask} > 0.5" if explicit.kind == "float" else f"{mask}.bool()"
        out_mask = e.w.let(f"{e.hint}_mask", truth, "bool").name
    return [e.w.let(e.hint, f"keras_softmax({x.name}, {list(axes)}{options})", mask=out_mask)]
