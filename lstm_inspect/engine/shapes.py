"""What Keras knows of each layer's output before running it: the feature size of every layer's input (to check a
recurrent kernel against what feeds it) and which layers hold weights (Keras numbers them `layer_with_weights-M`,
and `load_weights` pairs a weights-only .h5's groups with them, in order).

Both walk the parsed graph (`lstm_inspect.model.architecture`) with the layer registry (`lstm_inspect.engine.layers`),
which is why readers of files ask the engine: a layer's family says its output size and whether it has weights.
"""

from __future__ import annotations

from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.model.architecture import Call, LayerNode, ModelGraph, TensorRef, bidirectional_dims
from lstm_inspect.model.cells.base import config_int, recurrent_class


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


def output_dims(node: LayerNode, in_dims: list[int | None], found: dict[str, int | None]) -> list[int | None]:
    """Feature size of each output of one call of a layer (None when not known)."""
    if node.children is not None:
        return _propagate(node.children, in_dims[0] if in_dims else None, found)
    rec = recurrent_class(node.class_name, node.config)
    if rec:
        cell_cfg = node.config
        if rec[1].startswith("RNN("):
            cell_cfg = (node.config.get("cell") or {}).get("config") or {}
        units = config_int(cell_cfg.get("units", cell_cfg.get("output_dim")))
        return [units] * (1 + len(rec[0].states))
    if node.class_name == "Bidirectional":
        inner = node.config.get("layer") or {}
        inner_cfg = inner.get("config") or {} if isinstance(inner, dict) else {}
        found_inner = recurrent_class(str(inner.get("class_name")), inner_cfg) if isinstance(inner, dict) else None
        if found_inner and found_inner[1].startswith("RNN("):
            inner_cfg = (inner_cfg.get("cell") or {}).get("config") or {}
        units = config_int(inner_cfg.get("units", inner_cfg.get("output_dim"))) if isinstance(inner_cfg, dict) \
            else None
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
    if recurrent_class(node.class_name, node.config) or node.class_name == "Bidirectional":
        return True
    kind = LAYERS.get(node.class_name)
    return kind is not None and not node.is_op and kind.has_weights(node)
