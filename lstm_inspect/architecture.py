"""A model's architecture, read from the JSON config Keras stores beside the weights.

Keras has written four dialects of the same idea, and all of them are read here into one
`ModelGraph`:

- Keras 1 and Keras 2.0-2.2: a Sequential config is a bare list of layers; Keras 1 says
  `output_dim` and `inner_activation` where later versions say `units`, `recurrent_activation`;
- tf.keras / tf_keras: `{"name", "layers": [...]}`; functional `inbound_nodes` are lists of
  `[layer_name, node_index, tensor_index, kwargs]`;
- Keras 3: every object carries `module`; `inbound_nodes` are `{"args", "kwargs"}` holding
  `__keras_tensor__` objects with a `keras_history`.

Nothing here reads weights; it is all JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
# LSTM-like layers lstm-inspect does not model: named as such instead of silently skipped.
UNSUPPORTED_LSTM_LIKE = frozenset(
    {"ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "PeepholeLSTMCell", "StackedRNNCells"}
)
# Layers that leave the feature dimension as it is.
SHAPE_PRESERVING = frozenset(
    {
        "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "Masking", "Activation", "BatchNormalization", "LayerNormalization",
        "ActivityRegularization", "InputLayer",
    }
)


@dataclass(frozen=True)
class TensorRef:
    """The `tensor`-th output of the `node`-th call of layer `layer`."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class Call:
    """One call of a layer in a functional graph: its arguments as passed, tensors as TensorRefs.

    Keras 3 records args and kwargs (initial_state, an explicit mask) separately; Keras 1/2 list
    the input tensors, then an RNN's initial states, in one list.
    """

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[TensorRef]:
        return list(_refs_in(self.args)) + list(_refs_in(self.kwargs))


def split_rnn_call(call: Call, is_tensor: Callable[[Any], bool]) -> tuple[Any, list[Any], Any]:
    """(input, initial states, explicit mask) of one RNN call, in either graph form.

    Keras 1/2 list the initial states after the input; Keras 3 passes them as kwargs.
    `is_tensor` tells a tensor (TensorRef in a config, a computed tensor in the runner).
    """
    positional = list(_flatten(call.args, is_tensor))
    states = positional[1:] + list(_flatten(call.kwargs.get("initial_state"), is_tensor))
    mask = call.kwargs.get("mask")
    return (positional[0] if positional else None), states, (mask if is_tensor(mask) else None)


def _flatten(obj: Any, is_tensor: Callable[[Any], bool]) -> Iterator[Any]:
    if is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _flatten(value, is_tensor)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _flatten(value, is_tensor)


def _refs_in(obj: Any) -> Iterator[TensorRef]:
    return _flatten(obj, lambda o: isinstance(o, TensorRef))


@dataclass
class LayerNode:
    name: str
    path: str  # unique: nested models' names joined with '/'
    class_name: str
    config: dict[str, Any]
    inbound: list[Call] = field(default_factory=list)  # one per call of the layer
    children: ModelGraph | None = None  # for a nested Sequential / Functional model
    entry: dict[str, Any] = field(default_factory=dict)  # the raw config entry

    @property
    def is_op(self) -> bool:
        """A raw operation in a Keras 3 functional graph (keras.src.ops.*), e.g. the ops computing a mask."""
        return str(self.entry.get("module", "")).startswith("keras.src.ops")


@dataclass
class ModelGraph:
    class_name: str  # "Sequential" or "Functional"
    name: str
    layers: list[LayerNode]
    inputs: list[TensorRef]
    outputs: list[TensorRef]

    def walk(self) -> Iterator[LayerNode]:
        """Every layer in model order, descending into nested models (which are listed too)."""
        for node in self.layers:
            yield node
            if node.children is not None:
                yield from node.children.walk()


# ---------------------------------------------------------------- parsing


def parse_model_config(cfg: Any, prefix: str = "") -> ModelGraph:
    """Read a `{"class_name", "config"}` model config of any Keras generation."""
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise ValueError("the model config is not a {class_name, config} object")
    class_name = cfg["class_name"]
    body = cfg.get("config")
    if class_name == "Sequential":
        entries = body if isinstance(body, list) else (body or {}).get("layers", [])
        name = "sequential" if isinstance(body, list) else str((body or {}).get("name", "sequential"))
        layers = [_layer(e, prefix) for e in entries]
        return ModelGraph("Sequential", name, layers, [], [])
    if class_name in ("Functional", "Model") or (isinstance(body, dict) and "input_layers" in body):
        body = body or {}
        layers = [_layer(e, prefix) for e in body.get("layers", [])]
        return ModelGraph(
            "Functional",
            str(body.get("name", "model")),
            layers,
            _endpoint_refs(body.get("input_layers", [])),
            _endpoint_refs(body.get("output_layers", [])),
        )
    raise ValueError(f"the top-level object is a {class_name}, not a Sequential or Functional model")


def _layer(entry: dict[str, Any], prefix: str) -> LayerNode:
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError("a layer entry in the model config has no class_name")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        config = {}
    name = str(entry.get("name") or config.get("name") or entry["class_name"].lower())
    node = LayerNode(
        name=name,
        path=f"{prefix}{name}",
        class_name=str(entry["class_name"]),
        config=config,
        inbound=[_call_refs(n) for n in entry.get("inbound_nodes", []) or []],
        entry=entry,
    )
    if node.class_name in MODEL_CLASSES:
        node.children = parse_model_config({"class_name": node.class_name, "config": config}, f"{node.path}/")
    return node


def _call_refs(call: Any) -> Call:
    """One call: Keras 3 `{"args", "kwargs"}` or Keras 1/2 `[[name, node, tensor, kwargs], ...]`."""
    if isinstance(call, dict):
        return Call(list(_decode(call.get("args", []))), dict(_decode(call.get("kwargs", {}))))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in call or []:
        if isinstance(item, (list, tuple)) and len(item) >= 3 and isinstance(item[0], str):
            args.append(TensorRef(item[0], int(item[1]), int(item[2])))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(_decode(item[3]))
    return Call(args, kwargs)


def _decode(obj: Any) -> Any:
    """Replace serialized tensors by TensorRefs, keeping every other argument as it is."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = (obj.get("config") or {}).get("keras_history") or []
            return TensorRef(str(hist[0]), int(hist[1]), int(hist[2])) if len(hist) >= 3 else None
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        # tf.keras records initial_state tensors in kwargs as [name, node, tensor] triples
        if len(obj) in (3, 4) and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
            return TensorRef(obj[0], obj[1], obj[2])
        return [_decode(v) for v in obj]
    return obj


def _endpoint_refs(spec: Any) -> list[TensorRef]:
    if isinstance(spec, list) and len(spec) >= 3 and isinstance(spec[0], str):
        return [TensorRef(spec[0], int(spec[1]), int(spec[2]))]
    return [TensorRef(s[0], int(s[1]), int(s[2])) for s in spec or [] if isinstance(s, list) and len(s) >= 3]


# ---------------------------------------------------------------- LSTM layers in a config


@dataclass(frozen=True)
class LSTMSettings:
    """What a config says about one LSTM direction; the math depends on all of it."""

    units: int | None
    activation: str
    recurrent_activation: str
    use_bias: bool
    return_sequences: bool
    return_state: bool
    go_backwards: bool
    stateful: bool
    unit_forget_bias: bool
    zero_output_for_mask: bool
    time_major: bool


def default_recurrent_activation(keras_version: str | None, kind: str = "LSTM") -> str:
    """Keras's default recurrent_activation for the version that wrote a file.

    hard_sigmoid through Keras 2.2.x (and Keras 1's inner_activation); sigmoid from Keras 2.3
    and in every tf.keras v2 LSTM and Keras 3. CuDNNLSTM is sigmoid by construction.
    """
    if kind == "CuDNNLSTM":
        return "sigmoid"
    major, minor = keras_major_minor(keras_version)
    if major is None:
        return "sigmoid"
    if major < 2 or (major == 2 and minor is not None and minor < 3 and "tf" not in (keras_version or "")):
        return "hard_sigmoid"
    return "sigmoid"


def keras_major_minor(keras_version: str | None) -> tuple[int | None, int | None]:
    if not keras_version:
        return None, None
    parts = keras_version.split("-")[0].split(".")
    try:
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
    except ValueError:
        return None, None


def activation_name(value: Any, default: str) -> str:
    """A config's activation: a string, or a Keras 3 serialized function object."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        return str(value.get("class_name", default)).lower()
    return str(value)


def lstm_settings(config: dict[str, Any], rnn_config: dict[str, Any], kind: str, keras_version: str | None) -> LSTMSettings:
    """Read settings from a cell-level config (LSTM or LSTMCell) and the sequence-level one.

    For a plain LSTM both are the same dict; for RNN(LSTMCell) the cell holds units and
    activations while the RNN holds return_sequences, go_backwards and friends.
    """
    units = config.get("units", config.get("output_dim"))
    if kind == "CuDNNLSTM":
        activation, recurrent_activation = "tanh", "sigmoid"
    else:
        activation = activation_name(config.get("activation"), "tanh")
        recurrent_activation = activation_name(
            config.get("recurrent_activation", config.get("inner_activation")),
            default_recurrent_activation(keras_version, kind),
        )
    unit_forget_bias = config.get("unit_forget_bias")
    if unit_forget_bias is None:
        unit_forget_bias = config.get("forget_bias_init") == "one" or kind == "CuDNNLSTM"
    return LSTMSettings(
        units=int(units) if isinstance(units, (int, float)) else None,
        activation=activation,
        recurrent_activation=recurrent_activation,
        use_bias=bool(config.get("use_bias", True)),
        return_sequences=bool(rnn_config.get("return_sequences", False)),
        return_state=bool(rnn_config.get("return_state", False)),
        go_backwards=bool(rnn_config.get("go_backwards", False)),
        stateful=bool(rnn_config.get("stateful", False)),
        unit_forget_bias=bool(unit_forget_bias),
        zero_output_for_mask=bool(rnn_config.get("zero_output_for_mask", False)),
        time_major=bool(rnn_config.get("time_major", False)),
    )


def lstm_kind(class_name: str, config: dict[str, Any]) -> str | None:
    """'LSTM', 'CuDNNLSTM' or 'RNN(LSTMCell)' for a layer we model; None for anything else."""
    if class_name in ("LSTM", "CuDNNLSTM"):
        return class_name
    if class_name == "RNN":
        cell = config.get("cell")
        if isinstance(cell, dict) and cell.get("class_name") == "LSTMCell":
            return "RNN(LSTMCell)"
    return None


def unsupported_lstm_like(class_name: str, config: dict[str, Any]) -> str | None:
    """The name of an LSTM-like layer we recognise but do not model, else None."""
    if class_name in UNSUPPORTED_LSTM_LIKE:
        return class_name
    inner = config.get("layer") if class_name in ("Bidirectional", "TimeDistributed") else None
    if isinstance(inner, dict):
        inner_kind = lstm_kind(str(inner.get("class_name")), inner.get("config") or {})
        if class_name == "TimeDistributed" and inner_kind:
            return f"TimeDistributed({inner_kind})"
        return unsupported_lstm_like(str(inner.get("class_name")), inner.get("config") or {})
    if class_name == "RNN":
        cell = config.get("cell")
        if isinstance(cell, dict) and cell.get("class_name") in UNSUPPORTED_LSTM_LIKE:
            return f"RNN({cell.get('class_name')})"
        if isinstance(cell, list) or (isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells"):
            return "RNN(StackedRNNCells)"
    return None


@dataclass(frozen=True)
class LSTMSpec:
    """One LSTM direction as the config describes it (weights are located by the format reader)."""

    name: str  # unique path, e.g. "bidirectional/forward_lstm"
    layer: LayerNode  # the top-level layer node (the Bidirectional for both its halves)
    kind: str  # "LSTM", "CuDNNLSTM", "RNN(LSTMCell)"
    direction: str  # "forward" or "backward"
    half: str | None  # "forward_layer" / "backward_layer" inside a Bidirectional, else None
    settings: LSTMSettings
    merge_mode: str | None
    build_input_dim: int | None  # from a Keras 3 build_config, when present


def lstm_specs(node: LayerNode, keras_version: str | None) -> list[LSTMSpec]:
    """The LSTM directions a layer contributes, in the order Keras applies them."""
    kind = lstm_kind(node.class_name, node.config)
    if kind:
        return [_spec(node.path, node, kind, node.config, None, None, keras_version, node.entry)]
    if node.class_name != "Bidirectional":
        return []
    inner = node.config.get("layer")
    if not isinstance(inner, dict):
        return []
    inner_cfg = inner.get("config") or {}
    kind = lstm_kind(str(inner.get("class_name")), inner_cfg)
    if not kind:
        return []
    merge_mode = node.config.get("merge_mode", "concat")
    base = str(inner_cfg.get("name", "lstm"))
    base = base[len("forward_") :] if base.startswith("forward_") else base
    fw = _spec(f"{node.path}/forward_{base}", node, kind, inner_cfg, "forward_layer", merge_mode, keras_version, inner)
    back = node.config.get("backward_layer")
    if isinstance(back, dict):  # Keras 3 (and a custom backward layer in tf.keras) store it
        back_cfg = back.get("config") or {}
        back_kind = lstm_kind(str(back.get("class_name")), back_cfg) or kind
        back_name = str(back_cfg.get("name", f"backward_{base}"))
        bw = _spec(f"{node.path}/{back_name}", node, back_kind, back_cfg, "backward_layer", merge_mode,
                   keras_version, back)
    else:  # tf.keras: the same config with go_backwards flipped
        flipped = dict(inner_cfg, go_backwards=not inner_cfg.get("go_backwards", False))
        bw = _spec(f"{node.path}/backward_{base}", node, kind, flipped, "backward_layer", merge_mode,
                   keras_version, inner)
    return [fw, bw]


def _spec(
    name: str, node: LayerNode, kind: str, config: dict[str, Any], half: str | None,
    merge_mode: str | None, keras_version: str | None, entry: dict[str, Any],
) -> LSTMSpec:
    cell_cfg = config
    if kind == "RNN(LSTMCell)":
        cell_cfg = (config.get("cell") or {}).get("config") or {}
    settings = lstm_settings(cell_cfg, config, "CuDNNLSTM" if kind == "CuDNNLSTM" else "LSTM", keras_version)
    if half is not None and _bidirectional_zeroes_masked_outputs(keras_version):
        settings = replace(settings, zero_output_for_mask=settings.return_sequences)
    build = (entry.get("build_config") or {}).get("input_shape")
    build_dim = build[-1] if isinstance(build, list) and build and isinstance(build[-1], int) else None
    direction = "backward" if settings.go_backwards else "forward"
    return LSTMSpec(name, node, kind, direction, half, settings, merge_mode, build_dim)


def _bidirectional_zeroes_masked_outputs(keras_version: str | None) -> bool:
    """tf.keras and Keras 3 Bidirectional force zero_output_for_mask = return_sequences on both halves;
    multi-backend Keras 1.x-2.3.x had no such flag and repeated the previous output."""
    major, minor = keras_major_minor(keras_version)
    if major is None or "tf" in (keras_version or ""):
        return True
    return not (major < 2 or (major == 2 and minor is not None and minor <= 3))


# ---------------------------------------------------------------- feature dimensions


def input_feature_dims(graph: ModelGraph) -> dict[str, int | None]:
    """The last-axis size of each layer's first input, where the config lets us know it.

    Used to check each LSTM's kernel against what feeds it. Unknown layers give None and
    the check is skipped downstream rather than guessed.
    """
    found: dict[str, int | None] = {}
    _propagate(graph, None, found)
    return found


def _propagate(graph: ModelGraph, incoming: int | None, found: dict[str, int | None]) -> list[int | None]:
    """Walk a graph, recording input dims; return the dims of its outputs."""
    if graph.class_name == "Sequential":
        dim = incoming
        for node in graph.layers:
            declared = _declared_input_dim(node)
            dim = declared if declared is not None else dim
            found[node.path] = dim
            dim = _output_dims(node, [dim], found)[0]
        return [dim]
    outputs: dict[tuple[str, int], list[int | None]] = {}
    for node in graph.layers:
        if node.class_name == "InputLayer":
            dim = _declared_input_dim(node)
            if dim is None and incoming is not None:
                dim = incoming
            found[node.path] = dim
            outputs[(node.name, 0)] = [dim]
            continue
        for k, call in enumerate(node.inbound or [Call()]):
            dims = [outputs.get((r.layer, r.node), [None] * (r.tensor + 1))[r.tensor:r.tensor + 1] or [None]
                    for r in call.tensors()]
            in_dims = [d[0] for d in dims] or [None]
            if k == 0:
                found[node.path] = in_dims[0]
            outputs[(node.name, k)] = _output_dims(node, in_dims, found)
    return [outputs.get((r.layer, r.node), [None] * (r.tensor + 1))[r.tensor] for r in graph.outputs] or [None]


def _declared_input_dim(node: LayerNode) -> int | None:
    cfg = node.config
    for key in ("batch_shape", "batch_input_shape"):
        shape = cfg.get(key)
        if isinstance(shape, list) and shape:
            return shape[-1] if isinstance(shape[-1], int) and node.class_name != "Embedding" else None
    if isinstance(cfg.get("input_dim"), int) and node.class_name not in ("Embedding",):
        return int(cfg["input_dim"])
    return None


def _output_dims(node: LayerNode, in_dims: list[int | None], found: dict[str, int | None]) -> list[int | None]:
    """Feature size of each output of one call of a layer (None when not known)."""
    cls, cfg = node.class_name, node.config
    dim = in_dims[0] if in_dims else None
    if node.children is not None:
        return _propagate(node.children, dim, found)
    if cls in SHAPE_PRESERVING or cls in ("RepeatVector",):
        return [dim]
    if cls == "Embedding":
        return [cfg.get("output_dim")]
    if cls in ("Dense",):
        return [cfg.get("units", cfg.get("output_dim"))]
    if cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        if inner.get("class_name") == "Dense":
            inner_cfg = inner.get("config") or {}
            return [inner_cfg.get("units", inner_cfg.get("output_dim"))]
        return [None]
    if cls in ("Concatenate",) and cfg.get("axis", -1) in (-1, 2):
        return [sum(in_dims) if in_dims and all(isinstance(d, int) for d in in_dims) else None]
    if cls in ("Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract"):
        return [dim]
    units = None
    kind = lstm_kind(cls, cfg)
    if kind or cls in ("GRU", "SimpleRNN", "CuDNNGRU"):
        units = cfg.get("units", cfg.get("output_dim"))
        if kind == "RNN(LSTMCell)":
            units = ((cfg.get("cell") or {}).get("config") or {}).get("units")
        return [units, units, units]
    if cls == "Bidirectional":
        inner = cfg.get("layer") or {}
        inner_cfg = inner.get("config") or {}
        units = inner_cfg.get("units", inner_cfg.get("output_dim"))
        if lstm_kind(str(inner.get("class_name")), inner_cfg) == "RNN(LSTMCell)":
            units = ((inner_cfg.get("cell") or {}).get("config") or {}).get("units")
        merged = units * 2 if isinstance(units, int) and cfg.get("merge_mode", "concat") == "concat" else units
        if cfg.get("merge_mode", "concat") is None:
            return [units, units, units, units, units, units]
        return [merged, units, units, units, units]
    return [None]


def state_names(graph: ModelGraph, refs: list[TensorRef]) -> list[str]:
    """Readable sources of initial states: 'encoder h', 'encoder c (backward)', 'dense output'."""
    by_name = {n.name: n for n in graph.walk()}
    names = []
    for r in refs:
        node = by_name.get(r.layer)
        label = f"output {r.tensor}"
        if node is not None and node.class_name == "Bidirectional" and 1 <= r.tensor <= 4:
            label = ["h (forward)", "c (forward)", "h (backward)", "c (backward)"][r.tensor - 1]
        elif node is not None and lstm_kind(node.class_name, node.config) and r.tensor in (1, 2):
            label = "h" if r.tensor == 1 else "c"
        names.append(f"{r.layer} {label}")
    return names
