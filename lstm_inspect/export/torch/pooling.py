"""Pooling for the PyTorch export (`lstm_inspect/engine/layers/pooling.py`): the plain pools and the global ones.

Why: the engine runs the pools of CNN-LSTM models, so `export --to pytorch` writes them too: plain pools as
nn.MaxPool/nn.AvgPool attributes (channels first, "same" padding as TensorFlow pads it: see `conv.py`, whose
layout helpers they share), global pools as a line of forward() (GlobalAveragePooling1D averages the unmasked
steps only). The Keras rules are documented beside the engine's functions (`pool_settings`).
"""

from __future__ import annotations

from lstm_inspect.engine.layers.conv import spatial_axes
from lstm_inspect.engine.layers.pooling import POOLS, pool_settings
from lstm_inspect.export.torch.code import TYPING, LayerEmit, Sym, snippet
from lstm_inspect.export.torch.conv import channels_back, channels_first, f_pad, input_rank, tuple_text
from lstm_inspect.export.torch.registry import layer

snippet("avg_pool_same", '''
def avg_pool_same(x: Tensor, kernel: List[int], strides: List[int]) -> Tensor:
    """Average pooling with TensorFlow's "same" padding: each window's mean over its real positions only."""
    ones = torch.ones_like(x[:1, :1])
    if len(kernel) == 1:
        return F.avg_pool1d(same_pad(x, kernel, strides), kernel, strides) / F.avg_pool1d(
            same_pad(ones, kernel, strides), kernel, strides)
    if len(kernel) == 2:
        return F.avg_pool2d(same_pad(x, kernel, strides), kernel, strides) / F.avg_pool2d(
            same_pad(ones, kernel, strides), kernel, strides)
    return F.avg_pool3d(same_pad(x, kernel, strides), kernel, strides) / F.avg_pool3d(
        same_pad(ones, kernel, strides), kernel, strides)
''', needs=("same_pad",), imports=TYPING)

@layer(*POOLS)
def pool(e: LayerEmit) -> list[Sym]:
    rank, _ = POOLS[e.kind]
    s = pool_settings(e, input_rank(e, rank))
    mode, size, strides, fmt = s.mode, s.size, s.strides, s.data_format
    pads = s.fixed_pads()
    symmetric = pads is not None and all(a == b for a, b in pads)
    options = "" if strides == size else f", stride={tuple_text(strides)}"
    if symmetric and pads and max(a for a, _ in pads) > 0:
        options += f", padding={tuple_text(tuple(a for a, _ in pads))}"
    module = f"nn.MaxPool{rank}d" if mode == "max" else f"nn.AvgPool{rank}d"
    if mode == "avg" and "padding" in options:
        options += ", count_include_pad=False"  # the mean of each window's real positions
    # a 1-D max pooling runs as a 2-D one over a unit axis: torch.export (torch 2.13) pins a free length through
    # max_pool1d to the example's, not through max_pool2d
    flat = mode == "max" and rank == 1
    ctor = f"{module}({tuple_text(size)}{options})"
    if flat:
        ctor = f"nn.MaxPool2d((1, {size[0]})" + ("" if strides == size else f", stride=(1, {strides[0]})") + (
            f", padding=(0, {pads[0][0]})" if symmetric and pads and pads[0][0] > 0 else "") + ")"
    attr = e.w.module(e.key, e.hint, ctor, {})

    def call(arg: str) -> str:
        return f"self.{attr}({arg}.unsqueeze(-2)).squeeze(-2)" if flat else f"self.{attr}({arg})"

    x = channels_first(e.x.name, fmt)
    if symmetric:
        h = call(x)
    elif mode == "max" and pads is not None:  # -inf is never a window's maximum: every window holds a real position
        h = call(f"F.pad({x}, {f_pad(pads)}, value=float(\"-inf\"))")
    elif mode == "max":
        e.w.need("same_pad")
        h = call(f"same_pad({x}, {list(size)}, {list(strides)}, value=float(\"-inf\"))")
    else:
        e.w.need("avg_pool_same")
        h = f"avg_pool_same({x}, {list(size)}, {list(strides)})"
    return [e.w.let(e.hint, channels_back(h, fmt), comment="" if symmetric else "TensorFlow's same padding")]


# ---------------------------------------------------------------- global pooling

GLOBAL_POOLS = {"GlobalMaxPooling1D": (1, "max"), "GlobalMaxPooling2D": (2, "max"),
                "GlobalAveragePooling1D": (1, "avg"), "GlobalAveragePooling2D": (2, "avg")}


@layer(*GLOBAL_POOLS)
def global_pool(e: LayerEmit) -> list[Sym]:
    """Max or mean over the steps (spatial axes); GlobalAveragePooling1D averages the unmasked steps only (an
    all-masked row gives 0/0, as in Keras). No output mask."""
    rank, mode = GLOBAL_POOLS[e.kind]
    fmt = e.config.get("data_format") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        raise e.fail("its data_format is not channels_last or channels_first")
    axes = spatial_axes(fmt, rank)
    keep = ", keepdim=True" if e.config.get("keepdims") else ""
    x = e.x.name
    if mode == "max":
        return [e.w.let(e.hint, f"torch.amax({x}, dim={axes}{keep})")]
    if e.x.mask is None or rank != 1:
        return [e.w.let(e.hint, f"torch.mean({x}, dim={axes}{keep})")]
    m = e.w.let(f"{e.hint}_weights", f"{e.x.mask}.unsqueeze({2 if fmt == 'channels_last' else 1})", "bool").name
    kept = f"torch.where({m}, {x}, torch.zeros_like({x}))"
    return [e.w.let(e.hint, f"{kept}.sum(dim={axes}{keep}) / {m}.to({x}.dtype).sum(dim={axes}{keep})")]
