"""What Keras knows of each layer's output before running it: the feature size of every layer's input (to check a
recurrent kernel against what feeds it) and which layers hold weights (Keras numbers them `layer_with_weights-M`,
and `load_weights` pairs a weights-only .h5's groups with them, in order).

Both walk the parsed graph (`lstm_inspect.model.architecture`) with the layer registry (`lstm_inspect.engine.layers`),
which is why readers of files ask the engine: a layer's family says its output size and whether it has weights.

`show`'s model summary is here too (`summarize`): what Keras's model.summary() gives at a glance, from the config
and the stored arrays' shapes alone (no weight data, no TensorFlow): each input's shape, each layer's output shapes
(`model_shapes`, walking the graph with the engine's own walker, each layer's rule as Keras's compute_output_shape
has it: keras/src/layers/*/…, tf_keras/src/layers/…), its parameters (Keras's count_params) and what feeds it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lstm_inspect.base.display import brief, html_table
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.conv import CONV_KINDS
from lstm_inspect.engine.layers.pooling import GLOBAL_POOLS, POOLS
from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.engine.network import walk_graph
from lstm_inspect.model.architecture import (
    Call,
    ConfigError,
    LayerNode,
    ModelGraph,
    TensorRef,
    bidirectional_dims,
    declared_shape,
    first_of_sequential,
    flatten,
    input_axes,
    stacked_cells,
)
from lstm_inspect.model.cells.base import config_int, recurrent_class
from lstm_inspect.model.checkpoint import Checkpoint


def input_feature_dims(graph: ModelGraph) -> dict[str, int | None]:
    """The last-axis size of each layer's first input, where the config lets us know it.

    Used to check each recurrent layer's kernel against what feeds it. What feeds a layer comes
    from the graph; a declared input shape only starts it. Unknown layers give None and the check
    is skipped downstream rather than guessed.
    """
    found: dict[str, int | None] = {}
    _propagate(graph, None, found)
    return found


def _propagate(graph: ModelGraph, incoming: int | None, found: dict[str, int | None]) -> list[int | None]:
    """Walk a graph, recording input dims; return the dims of its outputs."""
    if graph.class_name == "Sequential":
        dim = incoming
        for k, node in enumerate(graph.layers):
            # Keras ignores batch_input_shape on every layer but the first (Sequential.add builds the
            # InputLayer from the first layer alone), however often users write it on the others.
            declared = declared_input_dim(node, graph) if k == 0 and dim is None else None
            dim = declared if declared is not None else dim
            found[node.path] = dim
            dim = output_dims(node, [dim], found)[0]
        return [dim]
    outputs: dict[tuple[str, int], list[int | None]] = {}
    by_name = {n.name: n for n in graph.layers}

    def dim_of(ref: TensorRef) -> int | None:
        producer = graph.producer_of(ref, by_name)
        dims = outputs.get(producer if producer is not None else (ref.layer, 0), [])
        return dims[ref.tensor] if ref.tensor < len(dims) else None

    for node, k in graph.calls():
        if node.class_name == "InputLayer":
            dim = declared_input_dim(node, graph)
            dim = incoming if dim is None else dim
            found[node.path] = dim
            outputs[(node.name, 0)] = [dim]
            continue
        call = node.inbound[k] if k < len(node.inbound) else Call()
        in_dims = [dim_of(r) for r in call.tensors()] or [None]
        if k == 0:
            found[node.path] = in_dims[0]
        outputs[(node.name, k)] = output_dims(node, in_dims, found)
    return [dim_of(r) for r in graph.outputs] or [None]


def declared_input_dim(node: LayerNode, graph: ModelGraph | None = None) -> int | None:
    """The last axis of the shape `node` declares, or Keras 1's `input_dim`; None for an Embedding (its input is token
    ids). With its graph given, a Sequential's first layer that declares none takes the model's `build_input_shape`
    (the rule of `lstm_inspect.model.architecture.declared_input_shape`)."""
    if node.class_name == "Embedding":
        return None
    cfg = node.config
    shapes = [cfg.get("batch_shape"), cfg.get("batch_input_shape")]
    if graph is not None and graph.class_name == "Sequential" and graph.layers and graph.layers[0] is node:
        shapes.append(graph.build_input_shape)
    for shape in shapes:
        if isinstance(shape, list) and shape:
            return config_int(shape[-1])
    return config_int(cfg.get("input_dim"))


def stacked_dims(node: LayerNode) -> list[tuple[int | None, int]] | None:
    """An RNN over StackedRNNCells: (units, number of states) of each cell; None for any other layer."""
    cells = stacked_cells(node.config) if node.class_name == "RNN" else None
    if not cells:
        return None
    out = []
    for entry in cells:
        found = recurrent_class("RNN", {"cell": entry})
        cfg = entry.get("config") if isinstance(entry, dict) and isinstance(entry.get("config"), dict) else {}
        out.append((config_int(cfg.get("units")), len(found[0].states) if found else 1))
    return out


def output_dims(node: LayerNode, in_dims: list[int | None], found: dict[str, int | None]) -> list[int | None]:
    """Feature size of each output of one call of a layer (None when not known)."""
    if node.children is not None:
        return _propagate(node.children, in_dims[0] if in_dims else None, found)
    stack = stacked_dims(node)
    if stack is not None:  # the last cell's output, then every cell's states in turn
        return [stack[-1][0]] + [units for units, n in stack for _ in range(n)]
    rec = recurrent_class(node.class_name, node.config)
    if rec:
        cell_cfg = node.config
        if rec[1].startswith("RNN("):
            cell_cfg = (node.config.get("cell") or {}).get("config") or {}
        units = config_int(cell_cfg.get("units", cell_cfg.get("output_dim", _filters_last(cell_cfg))))
        return [units] * (1 + len(rec[0].states))
    if node.class_name == "Bidirectional":
        inner = node.config.get("layer") or {}
        inner_cfg = inner.get("config") or {} if isinstance(inner, dict) else {}
        found_inner = recurrent_class(str(inner.get("class_name")), inner_cfg) if isinstance(inner, dict) else None
        if found_inner and found_inner[1].startswith("RNN("):
            inner_cfg = (inner_cfg.get("cell") or {}).get("config") or {}
        units = config_int(inner_cfg.get("units", inner_cfg.get("output_dim", _filters_last(inner_cfg)))) \
            if isinstance(inner_cfg, dict) else None
        return bidirectional_dims(node.config, units)
    kind = LAYERS.get(node.class_name)
    if kind is None or kind.dims is None:
        return [None]
    return kind.dims(node, in_dims)


def has_weights(node: LayerNode) -> bool:
    """Whether Keras gives this layer weights: the layers a checkpoint numbers `layer_with_weights-M`,
    and the ones `load_weights` pairs with the groups of a weights-only .h5, in order."""
    if node.children is not None:
        return any(has_weights(n) for n in node.children.layers)
    if recurrent_class(node.class_name, node.config) or node.class_name == "Bidirectional" or stacked_dims(node):
        return True
    kind = LAYERS.get(node.class_name)
    return kind is not None and not node.is_op and kind.has_weights(node)


# ---------------------------------------------------------------- whole shapes, for show's model summary

Shape = tuple[int | None, ...]  # a tensor's axes after the batch axis; None: an axis Keras leaves free
MERGE_LIKE = frozenset({"Add", "Multiply", "Average", "Subtract", "Maximum", "Minimum"})
# Layers whose output keeps the input's axes but the last, which their registered `dims` give.
LAST_AXIS_ONLY = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Dense", "Activation", "Masking", "BatchNormalization",
    "LayerNormalization", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Softmax", "Attention",
    "AdditiveAttention", *MERGE_LIKE})
ATTENTION = frozenset({"Attention", "AdditiveAttention", "MultiHeadAttention"})
UNKNOWN_OUTPUTS = 10  # what a layer of unknown shapes offers its consumers (a Bidirectional returns up to 9)


@dataclass(frozen=True)
class Sym:
    """A tensor in the shape walk: its `Shape`, or None where it cannot be told from the config."""

    shape: Shape | None


def model_shapes(graph: ModelGraph) -> tuple[dict[str, Shape | None], dict[str, list[Shape | None]]]:
    """What Keras's model.summary() shows, from the config alone: each model input's shape and each layer's output
    shapes (its first call; a nested model's too), batch axis left out, as Keras builds them.

    Walks the graph with the engine's own walker (`lstm_inspect.engine.network.walk_graph`). A shape the config does
    not decide (an op layer, a layer whose output rank lstm-inspect does not model) is None, and so are the shapes
    computed from it; nothing is guessed. Where the walk stops (a reference it cannot follow), the layers after are
    not known either.
    """
    inputs = {node.name: _declared(node, first=True, graph=graph) for node in _input_nodes(graph)}
    found: dict[str, list[Shape | None]] = {}
    with contextlib.suppress(InspectError):  # a reference the walk cannot follow: the layers before it are known
        _walk(graph, [Sym(s) for s in inputs.values()], found)
    return inputs, found


def _input_nodes(graph: ModelGraph) -> list[LayerNode]:
    if graph.class_name == "Sequential":
        return graph.layers[:1]
    by_name = {n.name: n for n in graph.layers}
    return [by_name[r.layer] for r in graph.inputs if r.layer in by_name]


def _declared(node: LayerNode, first: bool, graph: ModelGraph | None = None) -> Shape | None:
    """The shape a layer declares for its input (an InputLayer, a Sequential's first layer, else the Sequential's
    build_input_shape: `lstm_inspect.model.architecture.declared_input_shape`'s rule), batch axis left out."""
    try:
        shape = declared_shape(node)
    except ConfigError:
        return None
    build = graph.build_input_shape if graph is not None and first_of_sequential(graph, node) else None
    if shape is None and isinstance(build, list) and build and all(
            n is None or (isinstance(n, int) and not isinstance(n, bool) and n > 0) for n in build):
        shape = build
    if shape is not None:
        return tuple(shape[1:])
    if not first:
        return None
    length = node.config.get("input_length")
    steps = length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None
    if node.class_name == "Embedding":
        return (steps,)
    dim = config_int(node.config.get("input_dim"))
    return (steps, dim) if dim is not None else None


def _walk(graph: ModelGraph, inputs: list[Sym], found: dict[str, list[Shape | None]]) -> list[Sym]:
    from_inputs = dict(zip((n.name for n in _input_nodes(graph)), inputs))

    def apply(node: LayerNode, call: Call, k: int) -> list[Sym]:
        ins = list(flatten(call.args, _is_sym)) + list(flatten(call.kwargs, _is_sym))
        if node.children is not None:
            outs = _walk(node.children, ins, found)
        elif node.class_name == "InputLayer":
            declared = _declared(node, first=False)
            outs = [Sym(declared) if declared is not None else (ins[0] if ins else from_inputs.get(node.name))]
        else:
            outs = [Sym(s) for s in call_shapes(node, _first_tensor(call, ins), [s.shape for s in ins], call.kwargs)]
        if k == 0:
            found[node.path] = [s.shape for s in outs] if outs else [None]
        return outs if outs else [Sym(None)] * UNKNOWN_OUTPUTS

    if graph.class_name == "Functional":
        for node in _input_nodes(graph):
            found[node.path] = [from_inputs[node.name].shape]
    return walk_graph(graph, inputs, apply, f"model {graph.name}", _is_sym)


def _is_sym(obj: Any) -> bool:
    return isinstance(obj, Sym)


def _first_tensor(call: Call, ins: list[Sym]) -> Shape | None:
    """The input a layer's output shape follows: the first positional tensor, else the query (attention)."""
    positional = list(flatten(call.args, _is_sym))
    first = positional[0] if positional else call.kwargs.get("query", ins[0] if ins else None)
    return first.shape if isinstance(first, Sym) else None


def call_shapes(node: LayerNode, x: Shape | None, ins: list[Shape | None],
                kwargs: dict[str, Any] | None = None) -> list[Shape | None]:
    """The output shapes of one call of a layer (not a nested model) given its inputs' (`x` the one it follows)
    and its other arguments; an empty list when the layer is not one whose shapes lstm-inspect knows."""
    shapes = _call_shapes(node, x, ins)
    if (kwargs or {}).get("return_attention_scores") is True and shapes and node.class_name in ATTENTION:
        value = ins[1] if len(ins) > 1 else x
        steps = (x[0] if x else None, value[0] if value else None)
        heads = config_int(node.config.get("num_heads")) if node.class_name == "MultiHeadAttention" else None
        shapes.append((heads, *steps) if node.class_name == "MultiHeadAttention" else steps)
    return shapes


def _call_shapes(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> list[Shape | None]:
    if node.is_op:
        return []
    if recurrent_class(node.class_name, node.config) or node.class_name == "Bidirectional" or stacked_dims(node):
        return _recurrent_shapes(node, x)
    special = SHAPE_RULES.get(node.class_name)
    if special is not None:
        return [special(node, x, ins)]
    kind = LAYERS.get(node.class_name)
    if kind is None or node.class_name not in LAST_AXIS_ONLY or x is None or not x:
        return [None] if kind is not None else []
    others = [s for s in ins if s is not None and len(s) == len(x) and s != x]
    if node.class_name in MERGE_LIKE and others:  # broadcast: an axis that differs is not known here
        x = tuple(a if a == b else None for a, b in zip(x, others[0]))
    in_dims = [s[-1] if s else None for s in ins] or [x[-1]]
    dims = kind.dims(node, in_dims) if kind.dims is not None else [x[-1]]
    return [(*x[:-1], dims[0])]


def _filters_last(cfg: dict[str, Any]) -> Any:
    """A ConvLSTM's output channels when they are the last axis (channels_last), else None."""
    return cfg.get("filters") if cfg.get("data_format", "channels_last") in (None, "channels_last") else None


def _recurrent_shapes(node: LayerNode, x: Shape | None) -> list[Shape | None]:
    """A recurrent layer's outputs as Keras returns them: the output (the sequence with return_sequences), then
    with return_state each state; a Bidirectional's merged output (both halves' with merge_mode None)."""
    cfg = node.config
    if node.class_name == "Bidirectional":
        inner = cfg.get("layer") if isinstance(cfg.get("layer"), dict) else {}
        inner_cfg = inner.get("config") if isinstance(inner.get("config"), dict) else {}
        found = recurrent_class(str(inner.get("class_name")), inner_cfg)
        cfg = inner_cfg
    else:
        found = recurrent_class(node.class_name, cfg)
    states = len(found[0].states) if found else 1
    stack = stacked_dims(node)
    if stack is not None:
        states = sum(n for _, n in stack)
    if input_axes(node) != 3:  # a ConvLSTM's feature maps: their spatial sizes are not followed here
        n = 2 if node.class_name == "Bidirectional" and node.config.get("merge_mode", "concat") is None else 1
        return [None] * (n + (states * (2 if node.class_name == "Bidirectional" else 1)
                              if cfg.get("return_state") else 0))
    dims = output_dims(node, [x[-1] if x else None], {})
    merged = 2 if node.class_name == "Bidirectional" and node.config.get("merge_mode", "concat") is None else 1
    main = [(x[0], d) if x is not None and len(x) == 2 else None for d in dims[:merged]] \
        if cfg.get("return_sequences") else [(d,) for d in dims[:merged]]
    n_states = states * (2 if node.class_name == "Bidirectional" else 1) if cfg.get("return_state") else 0
    return [*main, *((d,) for d in dims[merged:merged + n_states])]


def _ints(value: Any, rank: int) -> tuple[int, ...] | None:
    """A config's size or sizes (an int, or a list of `rank`) as `rank` positive ints; None if it is neither."""
    values = [value] * rank if isinstance(value, int) else value
    if not isinstance(values, list | tuple) or len(values) != rank:
        return None
    out = tuple(config_int(v) for v in values)
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def _spatial(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    """A convolution's or pooling's output: each spatial axis as Keras computes it (valid, same, causal padding,
    strides, dilation), the channels by the layer's registered `dims`."""
    rank = 2 if node.class_name.endswith("2D") else 1
    if x is None or len(x) != rank + 1:
        return None
    cfg = node.config
    first = cfg.get("data_format") == "channels_first"
    spatial, channels = (x[1:], x[0]) if first else (x[:-1], x[-1])
    pooling = "Pooling" in node.class_name
    kernel = _ints(cfg.get("pool_size" if pooling else "kernel_size"), rank)
    strides = _ints(cfg.get("strides") if cfg.get("strides") is not None else (kernel if pooling else 1), rank)
    dilation = _ints(cfg.get("dilation_rate", 1), rank) if not pooling else (1,) * rank
    padding = cfg.get("padding", "valid")
    if kernel is None or strides is None or dilation is None or padding not in ("valid", "same", "causal"):
        return None
    sizes = tuple(None if n is None else -(-n // s) if padding != "valid" else (n - d * (k - 1) - 1) // s + 1
                  for n, k, s, d in zip(spatial, kernel, strides, dilation))
    return ((_channels(node, channels), *sizes) if first else (*sizes, _channels(node, channels)))


def _channels(node: LayerNode, channels: int | None) -> int | None:
    """A convolution's output channels (filters; depthwise: input channels x depth_multiplier), a pooling's input
    channels."""
    kind = CONV_KINDS.get(node.class_name, (1, "pool"))[1]
    if kind == "pool":
        return channels
    if kind == "depthwise":
        m = config_int(node.config.get("depth_multiplier", 1))
        return channels * m if channels is not None and m is not None else None
    return config_int(node.config.get("filters"))


def _global_pool(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    if x is None or not x:
        return None
    first = node.config.get("data_format") == "channels_first"
    channels = x[0] if first else x[-1]
    if not node.config.get("keepdims"):
        return (channels,)
    ones = (1,) * (len(x) - 1)
    return (channels, *ones) if first else (*ones, channels)


def _embedding(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    return None if x is None else (*x, config_int(node.config.get("output_dim")))


def _repeat(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    return None if x is None else (config_int(node.config.get("n")), *x)


def _flatten(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    if x is None:
        return None
    return (math.prod(x),) if all(n is not None for n in x) else (None,)  # type: ignore[arg-type]


def _reshape(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    target = node.config.get("target_shape")
    if not isinstance(target, list | tuple) or not all(isinstance(n, int) for n in target):
        return None
    if -1 not in target:
        return tuple(target)
    known = math.prod(n for n in target if n != -1)
    total = math.prod(x) if x is not None and all(n is not None for n in x) else None  # type: ignore[arg-type]
    return tuple((total // known if total is not None and known else None) if n == -1 else n for n in target)


def _permute(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    dims = node.config.get("dims")
    if (x is None or not isinstance(dims, list | tuple)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
            or sorted(dims) != list(range(1, len(x) + 1))):
        return None
    return tuple(x[d - 1] for d in dims)


def _concatenate(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    axis = node.config.get("axis", -1)
    if x is None or not isinstance(axis, int) or any(s is None or len(s) != len(x) for s in ins):
        return None
    at = axis - 1 if axis > 0 else len(x) + axis  # Keras's axis counts the batch axis
    if not 0 <= at < len(x):
        return None
    sizes = [s[at] for s in ins]  # type: ignore[index]
    total = sum(sizes) if all(n is not None for n in sizes) else None  # type: ignore[arg-type]
    return tuple(total if k == at else n for k, n in enumerate(x))


def _time_distributed(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    inner = node.config.get("layer")
    if x is None or len(x) < 2 or not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
        return None
    inner_node = LayerNode(name=node.name, path=node.path, class_name=str(inner.get("class_name")),
                           config=inner["config"])
    shapes = _call_shapes(inner_node, x[1:], [x[1:]])
    return (x[0], *shapes[0]) if shapes and shapes[0] is not None else None


def _multi_head(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    """The query's axes but its features, which are `output_shape` when set (an int or several axes)."""
    if x is None or not x:
        return None
    out = node.config.get("output_shape")
    if out is None or out == [] or out == 0:  # as the engine reads it (attention.py): the query's features
        return x
    axes = [out] if isinstance(out, int) else out if isinstance(out, list | tuple) else None
    if axes is None or not all(isinstance(n, int) and not isinstance(n, bool) for n in axes):
        return None
    return (*x[:-1], *axes)


def _resize(node: LayerNode, x: Shape | None, ins: list[Shape | None]) -> Shape | None:
    """ZeroPadding1D, Cropping1D, UpSampling1D (channels last): the steps axis grown or cut."""
    if x is None or len(x) != 2 or x[0] is None:
        return x if x is not None and len(x) == 2 else None
    name, cfg = node.class_name, node.config
    if name == "UpSampling1D":
        size = config_int(cfg.get("size", 2))
        return (x[0] * size, x[1]) if size is not None else None
    value = cfg.get("padding" if name == "ZeroPadding1D" else "cropping", 1)
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, list | tuple) else ()
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        return None
    return (x[0] + sum(pair) if name == "ZeroPadding1D" else x[0] - sum(pair), x[1])


SHAPE_RULES: dict[str, Callable[[LayerNode, Shape | None, list[Shape | None]], Shape | None]] = {
    "Embedding": _embedding, "RepeatVector": _repeat, "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute,
    "Concatenate": _concatenate, "TimeDistributed": _time_distributed, "MultiHeadAttention": _multi_head,
    "ZeroPadding1D": _resize, "Cropping1D": _resize, "UpSampling1D": _resize,
    **dict.fromkeys((*CONV_KINDS, *POOLS), _spatial), **dict.fromkeys(GLOBAL_POOLS, _global_pool),
}


# ---------------------------------------------------------------- the model summary


@dataclass(frozen=True)
class InputSummary:
    """One model input: its shape without the batch axis (None: unknown; an axis None: free) and what it takes."""

    name: str
    shape: Shape | None
    takes: str  # "features" or "token ids" (it feeds an Embedding)
    vocabulary: int | None = None  # the Embedding's input_dim, for token ids

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": shape_list(self.shape), "takes": self.takes,
                "vocabulary": self.vocabulary}


@dataclass(frozen=True)
class LayerSummary:
    """One layer of the model (a nested model is one layer), as a row of Keras's model.summary()."""

    name: str
    class_name: str
    output_shapes: list[Shape | None]  # one per output of its first call
    params: int | None  # weights stored for it (None: Keras gives it weights, the file stores none)
    trainable: int | None
    inbound: list[str]  # what its first call consumes: "layer" for output 0 of call 0, else "layer[call][output]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class_name": self.class_name,
                "output_shapes": [shape_list(s) for s in self.output_shapes], "params": self.params,
                "trainable_params": self.trainable, "inbound": self.inbound}


@dataclass(frozen=True)
class ModelSummary:
    """What Keras's model.summary() gives at a glance, read from the config and the stored arrays' shapes (no
    weight data): the inputs, each top-level layer's output shapes and parameters, what feeds what."""

    inputs: list[InputSummary]
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int
    is_chain: bool  # each layer consumes exactly the layer before it: the graph reads as a list
    params_complete: bool = True  # False when a layer that has weights in Keras has none stored
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{brief(i.name)} {shape_list(i.shape)}" for i in self.inputs) or "weights only"
        return f"<ModelSummary {len(self.layers)} layers, {self.total_params:,} params; inputs: {shapes}>"

    def _repr_html_(self) -> str:
        rows = [(m.name, m.class_name, "; ".join(str(shape_list(o)) for o in m.output_shapes),
                 "?" if m.params is None else f"{m.params:,}", ", ".join(m.inbound) or "-") for m in self.layers]
        title = f"{self.total_params:,} params (trainable {self.trainable_params:,})"
        return html_table(title, ("layer", "type", "output shape", "params", "fed by"), rows)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [i.to_dict() for i in self.inputs], "layers": [m.to_dict() for m in self.layers],
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.total_params - self.trainable_params, "is_chain": self.is_chain,
                "params_complete": self.params_complete}


def shape_list(shape: Shape | None) -> list[int | None] | None:
    """A shape with its batch axis, as Keras prints it ([None, 10, 64]); None when unknown."""
    return None if shape is None else [None, *shape]


def summarize(ckpt: Checkpoint) -> ModelSummary:
    """The model summary of a checkpoint: without an architecture (weights only), its parameters alone."""
    graph = ckpt.graph
    stored = {d.layer_path or d.name: 0 for d in ckpt.directions}
    for d in ckpt.directions:
        stored[d.layer_path or d.name] += d.param_count
    if graph is None:
        total = sum(stored.values()) + sum(_count(a) for arrays in ckpt.layer_arrays.values() for a in arrays)
        return ModelSummary([], [], total, total, True)
    inputs, shapes = model_shapes(graph)
    classes = {m.name: m.class_name for m in ckpt.layers}
    rows = []
    for k, node in enumerate(graph.layers):
        params, trainable = _params(ckpt, node, stored)
        rows.append(LayerSummary(node.name, classes.get(node.path, node.class_name), shapes.get(node.path, [None]),
                                 params, trainable, _inbound(graph, k, node)))
    return ModelSummary(
        [InputSummary(name, shape, *_takes(graph, name)) for name, shape in inputs.items()], rows,
        sum(r.params or 0 for r in rows), sum(r.trainable or 0 for r in rows), _is_chain(graph),
        all(r.params is not None for r in rows))


def _count(a: Any) -> int:
    return int(math.prod(a.shape))


def _params(ckpt: Checkpoint, node: LayerNode, stored: dict[str, int]) -> tuple[int | None, int | None]:
    """(all, trainable) parameters stored for a layer: Keras's count_params() of it. A BatchNormalization's moving
    mean and variance (its last two weights, a TimeDistributed one's too) are not trainable, nor is anything of a layer
    set trainable=False."""
    if node.children is not None:
        counts = [_params(ckpt, n, stored) for n in node.children.layers]
        if any(c[0] is None for c in counts):
            return None, None
        total, trainable = sum(c[0] or 0 for c in counts), sum(c[1] or 0 for c in counts)
        return total, trainable if node.config.get("trainable", True) is not False else 0
    arrays = ckpt.layer_arrays.get(node.path, [])
    total = stored.get(node.path, 0) + sum(_count(a) for a in arrays)
    if total == 0 and has_weights(node):
        return None, None
    inner = node.config.get("layer") if node.class_name == "TimeDistributed" else None
    kind = str(inner.get("class_name")) if isinstance(inner, dict) else node.class_name
    frozen = sum(_count(a) for a in arrays[-2:]) if kind == "BatchNormalization" and len(arrays) >= 2 else 0
    return total, 0 if node.config.get("trainable", True) is False else total - frozen


def _inbound(graph: ModelGraph, k: int, node: LayerNode) -> list[str]:
    if graph.class_name == "Sequential":
        return [graph.layers[k - 1].name] if k else []
    if not node.inbound:
        return []
    return [ref.layer if ref.node == 0 and ref.tensor == 0 else f"{ref.layer}[{ref.node}][{ref.tensor}]"
            for ref in node.inbound[0].tensors()]


def _is_chain(graph: ModelGraph) -> bool:
    if graph.class_name == "Sequential":
        return True
    previous = None
    for node in graph.layers:
        refs = [r.layer for call in node.inbound for r in call.tensors()]
        if (previous is None and refs) or (previous is not None and refs != [previous]):
            return False
        previous = node.name
    return len(graph.inputs) <= 1 and len(graph.outputs) <= 1


def _takes(graph: ModelGraph, name: str) -> tuple[str, int | None]:
    """What an input takes: token ids when the first layer it feeds is an Embedding (with its vocabulary)."""
    consumer = None
    if graph.class_name == "Sequential":
        layers = graph.layers
        consumer = layers[0] if layers and layers[0].class_name != "InputLayer" else (layers[1:2] or [None])[0]
    else:
        consumer = next((n for n in graph.layers if any(r.layer == name for call in n.inbound for r in call.tensors())),
                        None)
    if consumer is None or consumer.class_name != "Embedding":
        return "features", None
    return "token ids", config_int(consumer.config.get("input_dim"))
