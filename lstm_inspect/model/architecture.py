"""A model's architecture, read from the JSON config Keras stores beside the weights.

Keras has written four dialects of the same idea, and all of them are read here into one
`ModelGraph`:

- Keras 1 and Keras 2.0-2.2: a Sequential config is a bare list of layers; Keras 1 says
  `output_dim` and `inner_activation` where later versions say `units`, `recurrent_activation`;
- tf.keras / tf_keras: `{"name", "layers": [...]}`; functional `inbound_nodes` are lists of
  `[layer_name, node_index, tensor_index, kwargs]`;
- Keras 3: every object carries `module`; `inbound_nodes` are `{"args", "kwargs"}` holding
  `__keras_tensor__` objects with a `keras_history`.

Nothing here reads weights; it is all JSON, and the JSON comes from the user's file: every value
is checked for its type before it is used, and what does not fit raises `ConfigError` (the readers
turn it into one line naming the file). The graph is ordered once, by a topological sort over its
calls (linear in layers and edges), whatever order the file lists them in.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from lstm_inspect.model.cells.base import (
    Cell,
    CellSettings,
    config_int,
    dropout_rates,
    is_multi_backend_keras2,
    keras_major_minor,
    recurrent_class,
)
from lstm_inspect.model.cells.conv_lstm import RANKS as CONV_RANKS

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
# Recurrent layers lstm-inspect recognises but does not model: named as such instead of silently skipped.
UNSUPPORTED_RECURRENT = frozenset({"PeepholeLSTMCell", "ConvLSTM2DCell"})
MAX_DEPTH = 64  # nested models and nested call arguments deeper than this are refused
MAX_INDEX = 1 << 20  # node and tensor indices in a config
# Lists and objects inside one another in a config: Keras's own stay far below (a layer's call arguments are
# about ten levels down, and each nested model adds three), and every reader of a config recurses; deeper
# configs are refused before anything reads them (`json_depth`).
MAX_JSON_DEPTH = 200


def json_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep lists and objects nest in parsed JSON (a bare value is 0), counted without recursion and
    only up to limit + 1."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


class ConfigError(ValueError):
    """The model config is not one Keras could have written (the reader adds the file's name)."""


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
    positional = list(flatten(call.args, is_tensor))
    states = positional[1:] + list(flatten(call.kwargs.get("initial_state"), is_tensor))
    mask = call.kwargs.get("mask")
    return (positional[0] if positional else None), states, (mask if is_tensor(mask) else None)


def flatten(obj: Any, is_tensor: Callable[[Any], bool]) -> Iterator[Any]:
    if is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from flatten(value, is_tensor)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from flatten(value, is_tensor)


def _refs_in(obj: Any) -> Iterator[TensorRef]:
    return flatten(obj, lambda o: isinstance(o, TensorRef))


@dataclass(kw_only=True)
class LayerNode:
    name: str
    path: str  # unique: nested models' names joined with '/'
    class_name: str
    parts: tuple[str, ...] = ()  # the names that make up `path` (nested models' names, then this one)
    config: dict[str, Any]
    inbound: list[Call] = field(default_factory=list)  # one per call of the layer
    children: ModelGraph | None = None  # for a nested Sequential / Functional model
    entry: dict[str, Any] = field(default_factory=dict)  # the raw config entry

    @property
    def is_op(self) -> bool:
        """A raw operation in a functional graph rather than a layer with weights: a Keras 3 op
        (keras.src.ops.*, e.g. the ops computing a mask) or a TensorFlow op layer of tf.keras."""
        return (str(self.entry.get("module", "")).startswith("keras.src.ops")
                or self.class_name in TF_OP_LAYERS)


# tf.keras's wrappers of raw TensorFlow ops used on Keras tensors (see `lstm_inspect.engine.ops`).
TF_OP_LAYERS = frozenset({"TensorFlowOpLayer", "TFOpLambda", "SlicingOpLambda"})


@dataclass
class ModelGraph:
    class_name: str  # "Sequential" or "Functional"
    name: str
    layers: list[LayerNode]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    # A Sequential's `build_input_shape`, as the file writes it (unchecked): Keras 2.2.3-2.3.1 and tf.keras write it
    # for a Sequential built by fit/predict/build (Model._set_inputs), whose layers declare no shape and whose
    # config lists no InputLayer; `declared_input_shape` reads it.
    build_input_shape: Any = None
    _order: list[tuple[LayerNode, int]] | None = field(default=None, repr=False)

    def walk(self) -> Iterator[LayerNode]:
        """Every layer in model order, descending into nested models (which are listed too)."""
        for node in self.layers:
            yield node
            if node.children is not None:
                yield from node.children.walk()

    def calls(self) -> list[tuple[LayerNode, int]]:
        """Every (layer, call index) in an order where each call comes after what it consumes.

        A Sequential in its listed order; a Functional sorted topologically (Kahn's algorithm,
        linear in calls and edges), its InputLayers first. Raises ConfigError for a reference
        to a layer or call that does not exist, or for a cycle.
        """
        if self._order is not None:
            return self._order
        if self.class_name == "Sequential":
            self._order = [(node, 0) for node in self.layers]
            return self._order
        by_name = {n.name: n for n in self.layers}
        inputs = [n for n in self.layers if n.class_name == "InputLayer"]
        pending = [(n, k) for n in self.layers if n.class_name != "InputLayer" for k in range(max(1, len(n.inbound)))]
        index = {(n.name, k): i for i, (n, k) in enumerate(pending)}
        consumers: list[list[int]] = [[] for _ in pending]
        waiting = [0] * len(pending)
        for i, (node, k) in enumerate(pending):
            call = node.inbound[k] if k < len(node.inbound) else Call()
            for ref in call.tensors():
                producer = self.producer_of(ref, by_name)
                if producer is None:
                    continue  # an InputLayer
                j = index[producer]
                consumers[j].append(i)
                waiting[i] += 1
        ready = deque(i for i, w in enumerate(waiting) if w == 0)
        order = [(n, 0) for n in inputs]
        while ready:
            i = ready.popleft()
            order.append(pending[i])
            for j in consumers[i]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
        if len(order) != len(inputs) + len(pending):
            stuck = sorted({pending[i][0].name for i, w in enumerate(waiting) if w > 0})
            raise ConfigError(f"the model graph has a cycle (at: {', '.join(stuck[:5])})")
        self._order = order
        return order

    def producer_of(self, ref: TensorRef, by_name: dict[str, LayerNode] | None = None) -> tuple[str, int] | None:
        """The (layer, call) that produces `ref`; None for an InputLayer. ConfigError if none does.

        A nested model is referred to by node index 1 in Keras 2 configs although it has one call:
        a layer with a single call is that call, whatever index the reference gives.
        """
        by_name = by_name if by_name is not None else {n.name: n for n in self.layers}
        node = by_name.get(ref.layer)
        if node is None:
            raise ConfigError(f"a layer's input refers to {ref.layer!r}, which is not in the model")
        if node.class_name == "InputLayer":
            return None
        calls = max(1, len(node.inbound))
        if ref.node < calls:
            return node.name, ref.node
        if calls == 1:
            return node.name, 0
        raise ConfigError(f"a layer's input refers to call {ref.node} of {ref.layer!r}, which has {calls}")


# ---------------------------------------------------------------- parsing


def parse_model_config(cfg: Any, prefix: tuple[str, ...] = (), depth: int = 0) -> ModelGraph:
    """Read a `{"class_name", "config"}` model config of any Keras generation."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"models are nested more than {MAX_DEPTH} deep")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("class_name"), str):
        raise ConfigError("the model config is not a {class_name, config} object")
    class_name = cfg["class_name"]
    body = cfg.get("config")
    if class_name == "Sequential":
        if isinstance(body, list):
            entries, name = body, "sequential"
        elif isinstance(body, dict):
            entries, name = body.get("layers", []), str(body.get("name", "sequential"))
        else:
            raise ConfigError("the Sequential model's config is neither a list nor an object")
        if not isinstance(entries, list):
            raise ConfigError("the Sequential model's layers are not a list")
        graph = _graph("Sequential", name, [_layer(e, prefix, depth) for e in entries], [], [])
        graph.build_input_shape = body.get("build_input_shape") if isinstance(body, dict) else None
        return graph
    if class_name in MODEL_CLASSES or (isinstance(body, dict) and "input_layers" in body):
        if not isinstance(body, dict):
            raise ConfigError(f"the {class_name} model's config is not an object")
        entries = body.get("layers", [])
        if not isinstance(entries, list):
            raise ConfigError(f"the {class_name} model's layers are not a list")
        layers = [_layer(e, prefix, depth) for e in entries]
        return _graph("Functional", str(body.get("name", "model")), layers,
                      _endpoint_refs(body.get("input_layers", [])), _endpoint_refs(body.get("output_layers", [])))
    raise ConfigError(f"the top-level object is a {class_name}, not a Sequential or Functional model")


def _graph(class_name: str, name: str, layers: list[LayerNode], inputs: list[TensorRef],
           outputs: list[TensorRef]) -> ModelGraph:
    seen: set[str] = set()
    for node in layers:
        if node.name in seen:
            raise ConfigError(f"two layers of model {name} are named {node.name!r}")
        seen.add(node.name)
    for ref in inputs + outputs:
        if ref.layer not in seen:
            raise ConfigError(f"model {name} lists {ref.layer!r} as an input or output, but has no such layer")
    return ModelGraph(class_name, name, layers, inputs, outputs)


def _layer(entry: Any, prefix: tuple[str, ...], depth: int) -> LayerNode:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ConfigError("a layer entry in the model config has no class_name")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        config = {}
    name = str(entry.get("name") or config.get("name") or entry["class_name"].lower())
    inbound = entry.get("inbound_nodes", []) or []
    if not isinstance(inbound, list):
        raise ConfigError(f"layer {name}: inbound_nodes is not a list")
    node = LayerNode(
        name=name,
        path="/".join((*prefix, name)),
        parts=(*prefix, name),
        class_name=str(entry["class_name"]),
        config=config,
        inbound=[_call_refs(n, name, str(entry["class_name"]) in ("TFOpLambda", "SlicingOpLambda"))
                 for n in inbound],
        entry=entry,
    )
    if node.class_name in MODEL_CLASSES:
        node.children = parse_model_config({"class_name": node.class_name, "config": config}, node.parts,
                                           depth + 1)
    return node


def _index(value: Any, what: str) -> int:
    """A node or tensor index: a whole number in [0, MAX_INDEX)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} is {value!r}, not an index")
    if isinstance(value, float) and not (value == value and abs(value) < MAX_INDEX and value.is_integer()):
        raise ConfigError(f"{what} is {value!r}, not an index")
    if not 0 <= value < MAX_INDEX:
        raise ConfigError(f"{what} is {value}, out of range")
    return int(value)


def _ref(name: Any, node: Any, tensor: Any, where: str) -> TensorRef:
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a tensor reference names {name!r}, not a layer")
    return TensorRef(name, _index(node, f"{where}: a node index"), _index(tensor, f"{where}: a tensor index"))


CONSTANT = "_CONSTANT_VALUE"  # tf.keras: [CONSTANT, -1, value, kwargs] stands for a constant input


def _is_input_data(item: Any) -> bool:
    return isinstance(item, list) and len(item) in (3, 4) and isinstance(item[0], str)


def _call_refs(call: Any, layer: str, preserve_structure: bool = False) -> Call:
    """One call: Keras 3 `{"args", "kwargs"}` or Keras 1/2 `[[name, node, tensor, kwargs], ...]`.

    tf.keras op layers (TFOpLambda) keep the structure of their first argument: a node that is one
    `[name, node, tensor, kwargs]` is called on that tensor, a list of them on the list
    (`tf_keras/src/engine/functional.py`, `process_node`).
    """
    if isinstance(call, dict):
        args, kwargs = _decode(call.get("args", []), layer), _decode(call.get("kwargs", {}), layer)
        return Call(list(args) if isinstance(args, list) else [args], kwargs if isinstance(kwargs, dict) else {})
    if not isinstance(call, list):
        raise ConfigError(f"layer {layer}: an inbound node is neither a list nor an object")
    single = _is_input_data(call)
    values: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in [call] if single else call:
        if not _is_input_data(item):
            continue
        if item[0] == CONSTANT:
            values.append(item[2])
        else:
            values.append(_ref(item[0], item[1], item[2], f"layer {layer}"))
        if len(item) > 3 and isinstance(item[3], dict):
            decoded = _decode(item[3], layer)
            if isinstance(decoded, dict):
                kwargs.update(decoded)
    if preserve_structure and not single:
        return Call([values], kwargs)
    return Call(values, kwargs)


def _decode(obj: Any, layer: str, depth: int = 0) -> Any:
    """Replace serialized tensors by TensorRefs, keeping every other argument as it is."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"layer {layer}: call arguments nested more than {MAX_DEPTH} deep")
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = (obj.get("config") or {}).get("keras_history") if isinstance(obj.get("config"), dict) else None
            if not isinstance(hist, list) or len(hist) < 3:
                raise ConfigError(f"layer {layer}: a tensor argument has no keras_history")
            return _ref(hist[0], hist[1], hist[2], f"layer {layer}")
        return {str(k): _decode(v, layer, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        # tf.keras records tensors in kwargs (initial_state, an op's other operand) as [name, node, tensor]
        if (len(obj) in (3, 4) and isinstance(obj[0], str) and isinstance(obj[1], int)
                and isinstance(obj[2], int) and not isinstance(obj[1], bool)):
            if obj[0] == CONSTANT:
                return obj[2]
            return _ref(obj[0], obj[1], obj[2], f"layer {layer}")
        return [_decode(v, layer, depth + 1) for v in obj]
    return obj


def _endpoint_refs(spec: Any) -> list[TensorRef]:
    if isinstance(spec, list) and len(spec) >= 3 and isinstance(spec[0], str):
        return [_ref(spec[0], spec[1], spec[2], "the model's inputs or outputs")]
    if not isinstance(spec, list):
        raise ConfigError("the model's input_layers or output_layers are not a list")
    return [_ref(s[0], s[1], s[2], "the model's inputs or outputs") for s in spec
            if isinstance(s, list) and len(s) >= 3]


class ConfigValueError(ConfigError):
    """A config value no Keras builds a model from (the reader puts the file's name and the config's before it)."""


def _recurrent_configs(node: LayerNode) -> list[dict[str, Any]]:
    """The configs that hold a recurrent direction's units: the layer's, a cell's, a Bidirectional's halves'."""
    out: list[dict[str, Any]] = []
    found = recurrent_class(node.class_name, node.config)
    if found:
        cell = node.config.get("cell")
        is_rnn = found[1].startswith("RNN(") and isinstance(cell, dict) and isinstance(cell.get("config"), dict)
        out.append(cell["config"] if is_rnn else node.config)
    elif node.class_name == "Bidirectional":
        for key in ("layer", "backward_layer"):
            inner = node.config.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                out += _recurrent_configs(LayerNode(name=node.name, path=node.path, class_name=str(
                    inner.get("class_name")), config=inner["config"]))
    return out


def _shape_text(value: Any) -> str:
    """A config value as the file writes it (JSON: null, Infinity, NaN)."""
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


def declared_shape(node: LayerNode) -> list[Any] | None:
    """The batch shape a layer declares (InputLayer, or a Sequential's first layer): checked, or None."""
    for key in ("batch_shape", "batch_input_shape"):
        if key not in node.config or node.config[key] is None:
            continue
        shape = node.config[key]
        if not isinstance(shape, list):
            raise ConfigValueError(f"declares the input {node.path} of shape {_shape_text(shape)}, not a list of "
                                   "sizes")
        for n in shape:
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
                raise ConfigValueError(f"declares the input {node.path} of shape {_shape_text(shape)}, which holds "
                                       f"{_shape_text(n)}, not a positive size")
        return shape
    return None


def declared_input_shape(graph: ModelGraph, node: LayerNode) -> Any:
    """The batch shape the model input `node` of `graph` declares, as the file writes it (unchecked; None when none):
    what the engine's made-up inputs and both exports' graph inputs are built from (`Network.input_specs`).

    An InputLayer's (or a Sequential's first layer's) own `batch_shape` (Keras 3) or `batch_input_shape` (Keras 1-2,
    tf.keras): the layer given `input_shape=`, a TimeDistributed wrapper included, never the layer it wraps
    (Keras 2.3.1 `Sequential.add` reads the first layer alone; a shape written on the wrapped layer is ignored).
    Failing that, for a Sequential's first layer, the model's `build_input_shape`: what a Sequential built by
    fit/predict/build writes instead (Keras 2.2.3-2.3.1 `Model._set_inputs` -> `Sequential.build`, tf.keras the
    same, Keras 3 beside its InputLayer) and what `Sequential.from_config` builds the model from. (Keras 2.2.0-2.2.2's
    `Sequential.build` wrote the shape on the first layer itself.)
    """
    shape = node.config.get("batch_shape") or node.config.get("batch_input_shape")
    if shape is None and first_of_sequential(graph, node):
        shape = graph.build_input_shape
    return shape


def first_of_sequential(graph: ModelGraph, node: LayerNode) -> bool:
    """Whether `node` is the first layer of the Sequential `graph` (the one that declares the model's input)."""
    return graph.class_name == "Sequential" and bool(graph.layers) and graph.layers[0] is node


def check_values(graph: ModelGraph) -> None:
    """Refuse the values no Keras builds a model from, whatever the command (show included).

    A recurrent layer's units (Keras 1: output_dim) that is not a positive whole number (Infinity,
    NaN, a string: the weights would otherwise silently decide the size); a declared input shape
    that is not a list of positive sizes or null; a recurrent layer fed straight from an input
    declared with other than 3 axes (batch, steps, features). Raises ConfigValueError.
    """
    _check_graph_values(graph, 0)


def _check_graph_values(graph: ModelGraph, depth: int) -> None:
    if depth > MAX_DEPTH:
        return  # parse_model_config refused it already
    by_name = {n.name: n for n in graph.layers}
    shapes: dict[str, list[Any] | None] = {}
    for k, node in enumerate(graph.layers):
        if node.class_name == "InputLayer" or (graph.class_name == "Sequential" and k == 0):
            shapes[node.name] = declared_shape(node)
        _check_units(node)
        if node.children is not None:
            _check_graph_values(node.children, depth + 1)
    for k, node in enumerate(graph.layers):
        if not _recurrent_configs(node):
            continue
        want = input_axes(node)
        for source in _input_feeders(graph, by_name, k, node):
            shape = shapes.get(source.name)
            if shape is not None and len(shape) != want:
                what = "a recurrent layer takes 3 (batch, steps, features)" if want == 3 else \
                    f"{node.class_name} takes {want} (batch, steps, *spatial, channels)"
                raise ConfigValueError(f"feeds layer {node.path} from the input {source.path} of shape "
                                       f"{_shape_text(shape)}: {len(shape)} axes, where {what}")


def input_axes(node: LayerNode) -> int:
    """The axes a recurrent layer's input has: 3 (batch, steps, features), or 3 + rank for a ConvLSTM (its feature
    maps), a Bidirectional's from the layer it wraps."""
    name = node.class_name
    if name == "Bidirectional" and isinstance(node.config.get("layer"), dict):
        name = str(node.config["layer"].get("class_name"))
    return 3 + CONV_RANKS.get(name, 0)


def _check_units(node: LayerNode) -> None:
    """A recurrent layer's units (Keras 1: output_dim) must be a positive whole number."""
    for cfg in _recurrent_configs(node):
        for key in ("units", "output_dim"):
            if key in cfg and config_int(cfg[key]) is None:
                raise ConfigValueError(f"sets {key} of layer {node.path} to {_shape_text(cfg[key])}, not a "
                                       "positive whole number")


def _input_feeders(graph: ModelGraph, by_name: dict[str, LayerNode], k: int, node: LayerNode) -> list[LayerNode]:
    """The layers that declare the input the k-th layer `node` is fed straight from (a Sequential's first layer
    declares its own)."""
    feeders: list[LayerNode] = []
    if graph.class_name == "Sequential":
        if k == 0:
            feeders = [node]
        elif k == 1 and graph.layers[0].class_name == "InputLayer":
            feeders = [graph.layers[0]]
    else:
        for call in node.inbound:
            x, _, _ = split_rnn_call(call, lambda o: isinstance(o, TensorRef))
            source = by_name.get(x.layer) if isinstance(x, TensorRef) else None
            if source is not None and source.class_name == "InputLayer":
                feeders.append(source)
    return feeders


# ---------------------------------------------------------------- recurrent layers in a config


@dataclass(frozen=True, kw_only=True)
class RecurrentSpec:
    """One recurrent direction as the config describes it (weights are located by the format reader)."""

    name: str  # unique path, e.g. "bidirectional/forward_lstm"
    parts: tuple[str, ...]  # the names that make up `name`
    layer: LayerNode  # the top-level layer node (the Bidirectional for both its halves)
    cell: Cell
    kind: str  # "LSTM", "CuDNNLSTM", "RNN(LSTMCell)", "GRU", ...
    direction: str  # "forward" or "backward"
    half: str | None  # "forward_layer" / "backward_layer" inside a Bidirectional, else None
    settings: CellSettings
    merge_mode: str | None
    build_input_dim: int | None  # from a Keras 3 build_config, when present
    # one cell of an RNN over StackedRNNCells: its index and (first, count) of its arrays in the layer's flat list
    # (HDF5 files list the cells' arrays in order)
    stack_index: int | None = None
    stack_arrays: tuple[int, int] | None = None


def unsupported_recurrent(class_name: str, config: dict[str, Any]) -> str | None:
    """The name of a recurrent layer we recognise but do not model, else None."""
    if class_name in UNSUPPORTED_RECURRENT:
        return class_name
    inner = config.get("layer") if class_name in ("Bidirectional", "TimeDistributed") else None
    if isinstance(inner, dict):
        inner_cls, inner_cfg = str(inner.get("class_name")), inner.get("config") or {}
        if not isinstance(inner_cfg, dict):
            inner_cfg = {}
        found = recurrent_class(inner_cls, inner_cfg)
        if class_name == "TimeDistributed" and found:
            return f"TimeDistributed({found[1]})"
        if inner_cls == "RNN" and stacked_cells(inner_cfg) is not None:  # modelled only as a layer of its own
            return f"{class_name}(RNN(StackedRNNCells))"
        return unsupported_recurrent(inner_cls, inner_cfg)
    if class_name == "RNN":
        cell = config.get("cell")
        if isinstance(cell, dict) and cell.get("class_name") in UNSUPPORTED_RECURRENT:
            return f"RNN({cell.get('class_name')})"
        cells = stacked_cells(config)
        if cells is not None:
            kinds = [recurrent_class("RNN", {"cell": c}) for c in cells]
            if not cells or not all(kinds):
                names = ", ".join(str(c.get("class_name")) if isinstance(c, dict) else "?" for c in cells)
                return f"RNN(StackedRNNCells([{names}]))"
            return None
        if isinstance(cell, dict) and not recurrent_class(class_name, config):
            return f"RNN({cell.get('class_name')})"
    return None


def stacked_cells(config: dict[str, Any]) -> list[Any] | None:
    """An RNN's cells when its cell is a StackedRNNCells (or a list of cells, which Keras wraps in one), else None."""
    cell = config.get("cell")
    if isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells":
        inner = cell.get("config")
        cells = inner.get("cells") if isinstance(inner, dict) else None
        return cells if isinstance(cells, list) else []
    return cell if isinstance(cell, list) else None


def _stacked_specs(node: LayerNode, cells: list[Any], keras_version: str | None) -> list[RecurrentSpec]:
    """One direction per cell of an RNN over StackedRNNCells, named <layer>/cell_<k>. Keras runs the cells within
    one step of one loop (cell k reads cell k-1's output of the same step; a masked step holds every cell's states;
    go_backwards reverses the whole stack's steps), which is the same as running each cell as its own layer over the
    previous one's whole output sequence, in the previous one's processing order: every direction but the last
    returns sequences; all take the layer's mask and go_backwards (`engine.network.stacked_input`)."""
    specs: list[RecurrentSpec] = []
    first = 0
    for k, cell_entry in enumerate(cells):
        found = recurrent_class("RNN", {"cell": cell_entry})
        if not found or not isinstance(cell_entry, dict):
            return []
        config = dict(node.config, cell=cell_entry)
        if k < len(cells) - 1:
            config["return_sequences"] = True
        cell_cfg = cell_entry.get("config") if isinstance(cell_entry.get("config"), dict) else {}
        count = 3 if cell_cfg.get("use_bias", True) else 2
        spec = _spec((*node.parts, f"cell_{k}"), node, found, config, None, None, keras_version,
                     node.entry if k == 0 else {})
        specs.append(replace(spec, stack_index=k, stack_arrays=(first, count)))
        first += count
    return specs


def recurrent_specs(node: LayerNode, keras_version: str | None) -> list[RecurrentSpec]:
    """The recurrent directions a layer contributes, in the order Keras applies them."""
    found = recurrent_class(node.class_name, node.config)
    if found:
        return [_spec(node.parts, node, found, node.config, None, None, keras_version, node.entry)]
    cells = stacked_cells(node.config) if node.class_name == "RNN" else None
    if cells:
        return _stacked_specs(node, cells, keras_version)
    if node.class_name != "Bidirectional":
        return []
    inner = node.config.get("layer")
    if not isinstance(inner, dict):
        return []
    inner_cfg = inner.get("config") or {}
    if not isinstance(inner_cfg, dict):
        return []
    found = recurrent_class(str(inner.get("class_name")), inner_cfg)
    if not found:
        return []
    merge_mode = node.config.get("merge_mode", "concat")
    base = str(inner_cfg.get("name", found[0].kind.lower()))
    base = base[len("forward_"):] if base.startswith("forward_") else base
    fw = _spec((*node.parts, f"forward_{base}"), node, found, inner_cfg, "forward_layer", merge_mode, keras_version,
               inner)
    back = node.config.get("backward_layer")
    if isinstance(back, dict) and isinstance(back.get("config"), dict):
        # Keras 3 (and a custom backward layer in tf.keras) store it
        back_cfg = back["config"]
        back_found = recurrent_class(str(back.get("class_name")), back_cfg) or found
        back_name = str(back_cfg.get("name", f"backward_{base}"))
        bw = _spec((*node.parts, back_name), node, back_found, back_cfg, "backward_layer", merge_mode,
                   keras_version, back)
    else:  # tf.keras: the same config with go_backwards flipped
        flipped = dict(inner_cfg, go_backwards=not inner_cfg.get("go_backwards", False))
        bw = _spec((*node.parts, f"backward_{base}"), node, found, flipped, "backward_layer", merge_mode,
                   keras_version, inner)
    return [fw, bw]


def _spec(parts: tuple[str, ...], node: LayerNode, found: tuple[Cell, str], config: dict[str, Any], half: str | None,
          merge_mode: str | None, keras_version: str | None, entry: dict[str, Any]) -> RecurrentSpec:
    cell, kind = found
    cell_cfg, cell_class = config, kind
    if kind.startswith("RNN("):
        cell_cfg = (config.get("cell") or {}).get("config") or {}
        cell_class = cell.kind
    settings = replace(cell.settings(cell_cfg, config, cell_class, keras_version), **dropout_rates(cell_cfg))
    if half is not None and _bidirectional_zeroes_masked_outputs(keras_version):
        settings = replace(settings, zero_output_for_mask=settings.return_sequences)
    build = (entry.get("build_config") or {}).get("input_shape") if isinstance(entry.get("build_config"), dict) \
        else None
    build_dim = config_int(build[-1]) if isinstance(build, list) and build else None
    direction = "backward" if settings.go_backwards else "forward"
    return RecurrentSpec(name="/".join(parts), parts=parts, layer=node, cell=cell, kind=kind, direction=direction,
                         half=half,
                         settings=settings, merge_mode=merge_mode, build_input_dim=build_dim)


def _bidirectional_zeroes_masked_outputs(keras_version: str | None) -> bool:
    """tf.keras and Keras 3 Bidirectional force zero_output_for_mask = return_sequences on both halves;
    multi-backend Keras 1.x-2.3.x had no such flag and repeated the previous output."""
    major, _ = keras_major_minor(keras_version)
    if major is None:
        return True
    return not is_multi_backend_keras2(keras_version, (2, 4))


def bidirectional_dims(config: dict[str, Any], units: int | None) -> list[int | None]:
    """Feature sizes of a Bidirectional's outputs: the merged output, then each half's states."""
    merge = config.get("merge_mode", "concat")
    merged = units * 2 if isinstance(units, int) and merge == "concat" else units
    return [units, units, *([units] * 8)] if merge is None else [merged, *([units] * 8)]


def state_names(graph: ModelGraph, refs: list[TensorRef]) -> list[str]:
    """Readable sources of initial states: 'encoder h', 'encoder c (backward)', 'dense output'."""
    by_name = {n.name: n for n in graph.walk()}
    names = []
    for r in refs:
        node = by_name.get(r.layer)
        label = f"output {r.tensor}"
        if node is not None and node.class_name == "Bidirectional":
            inner = node.config.get("layer") or {}
            found = recurrent_class(str(inner.get("class_name")), inner.get("config") or {}) \
                if isinstance(inner, dict) else None
            states = found[0].states if found else ("h", "c")
            labels = [f"{s} ({half})" for half in ("forward", "backward") for s in states]
            if 1 <= r.tensor <= len(labels):
                label = labels[r.tensor - 1]
        elif (node is not None and (found := recurrent_class(node.class_name, node.config))
              and 1 <= r.tensor <= len(found[0].states)):
            label = found[0].states[r.tensor - 1]
        names.append(f"{r.layer} {label}")
    return names
