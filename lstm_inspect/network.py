"""A whole Keras model run in NumPy: the layers around the LSTMs, and the graph that joins them.

Each supported layer is a small function from its input tensors (value and Keras mask) and its
stored weights to its output tensors, written as Keras computes it at inference (dropout and
noise layers are the identity). Sequential models run as a chain; Functional models follow their
`inbound_nodes`, several inputs and outputs included; nested models run as sub-graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lstm_inspect.architecture import Call, LayerNode, ModelGraph, TensorRef, keras_major_minor, split_rnn_call
from lstm_inspect.engine import LSTMResult, LSTMTrace, activation_fn, lstm_forward, merge_bidirectional
from lstm_inspect.errors import InspectError
from lstm_inspect.gates import LSTMWeights
from lstm_inspect.model import Checkpoint, LSTMDirection


@dataclass
class Tensor:
    value: np.ndarray
    mask: np.ndarray | None = None  # (batch, steps) booleans, Keras's propagated mask


@dataclass
class RunRecord:
    """What a run leaves behind besides the outputs: every layer's output, every LSTM's trace."""

    layer_outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    traces: dict[str, LSTMTrace] = field(default_factory=dict)
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)  # mask each LSTM direction saw


IDENTITY_LAYERS = frozenset({
    "InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization",
})
MERGE_LAYERS = frozenset({"Concatenate", "Add", "Multiply", "Average", "Subtract", "Maximum", "Minimum"})


@dataclass(frozen=True)
class Variant:
    """A deliberate departure from Keras: how a port might compute instead (see `diagnose`).

    Activation names may carry the hard_sigmoid generation, e.g. "hard_sigmoid:keras3".
    """

    weights: Callable[[LSTMDirection, LSTMWeights], LSTMWeights] | None = None
    activation: str | None = None
    recurrent_activation: str | None = None
    cell_activation: str | None = None
    ignore_mask: bool = False
    zero_output_for_mask: bool | None = None
    ignore_go_backwards: bool = False  # the backward direction run on the input in its own order
    backward_output_not_flipped: bool = False  # Bidirectional: the backward sequence left in processing order
    dtype: type | None = None


def _activation_of(name: str, hard_sigmoid: str) -> Any:
    base, _, generation = name.partition(":")
    return activation_fn(base, generation or hard_sigmoid)


def run_direction(
    d: LSTMDirection, x: np.ndarray, mask: np.ndarray | None = None,
    initial_state: tuple[np.ndarray, np.ndarray] | None = None, dtype: type = np.float32, trace: bool = False,
    sequences: bool = True, weights: LSTMWeights | None = None, variant: Variant | None = None,
) -> LSTMResult:
    """One LSTM direction on its own input, with the activations the writing Keras defined.

    `sequences=False` keeps only the last output (what return_sequences=False returns), so a
    long sequence needs no (batch, steps, units) buffer.
    """
    s = d.settings
    v = variant or Variant()
    w = weights if weights is not None else d.weights()
    if v.weights is not None:
        w = v.weights(d, w)
    act = v.activation or s.activation
    return lstm_forward(
        x, w,
        activation=_activation_of(act, d.hard_sigmoid),
        recurrent_activation=_activation_of(v.recurrent_activation or s.recurrent_activation, d.hard_sigmoid),
        cell_activation=_activation_of(v.cell_activation or act, d.hard_sigmoid),
        mask=None if v.ignore_mask else mask, go_backwards=s.go_backwards and not v.ignore_go_backwards,
        zero_output_for_mask=s.zero_output_for_mask if v.zero_output_for_mask is None else v.zero_output_for_mask,
        initial_state=initial_state, dtype=v.dtype or dtype, trace=trace, return_sequences=sequences,
    )


class Network:
    """Runs a checkpoint's model graph in NumPy."""

    def __init__(self, ckpt: Checkpoint, dtype: type = np.float32, trace: bool = False,
                 cache_weights: bool = False, variant: Variant | None = None) -> None:
        if ckpt.graph is None:
            raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so the whole model cannot run; "
                               "run one LSTM direction with --layer")
        self.ckpt, self.dtype, self.trace, self.variant = ckpt, dtype, trace, variant
        # Kept across runs when asked (repeated forward calls); otherwise each direction's weights
        # are read when it runs and dropped after, so memory stays at one layer's weights.
        self._weights: dict[str, LSTMWeights] | None = {} if cache_weights else None
        self.keras_major = keras_major_minor(ckpt.keras_version)[0] or 2
        self.directions: dict[str, list[LSTMDirection]] = {}
        for d in ckpt.layers:
            self.directions.setdefault(d.layer_path, []).append(d)
        self._check_supported(ckpt.graph)

    # ---------------------------------------------------------------- inputs

    def input_nodes(self) -> list[LayerNode]:
        graph = self.ckpt.graph
        assert graph is not None
        if graph.class_name == "Sequential":
            return [graph.layers[0]] if graph.layers else []
        by_name = {n.name: n for n in graph.layers}
        return [by_name[r.layer] for r in graph.inputs if r.layer in by_name]

    def input_specs(self) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
        """(name, declared shape with None for free axes, 'ids' or 'float') per model input."""
        specs = []
        for node in self.input_nodes():
            shape = node.config.get("batch_shape") or node.config.get("batch_input_shape")
            if shape is None and isinstance(node.config.get("input_dim"), int) and node.class_name != "Embedding":
                shape = [None, None, node.config["input_dim"]]
            first = self._first_consumer(node)
            kind = "ids" if first is not None and first.class_name == "Embedding" else "float"
            specs.append((node.name, tuple(shape) if isinstance(shape, list) else None, kind))
        return specs

    def vocabulary(self, input_name: str) -> int | None:
        """input_dim of the Embedding an input feeds (None if it feeds none)."""
        node = next((n for n in self.input_nodes() if n.name == input_name), None)
        first = self._first_consumer(node) if node is not None else None
        if first is None or first.class_name != "Embedding":
            return None
        vocab = first.config.get("input_dim")
        return int(vocab) if isinstance(vocab, int) else None

    def _first_consumer(self, node: LayerNode) -> LayerNode | None:
        graph = self.ckpt.graph
        assert graph is not None
        if node.class_name != "InputLayer":
            return node
        if graph.class_name == "Sequential":
            rest = graph.layers[1:]
            return rest[0] if rest else None
        for other in graph.layers:
            if any(r.layer == node.name for call in other.inbound for r in call.tensors()):
                return other
        return None

    def check_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        specs = self.input_specs()
        if len(xs) != len(specs):
            names = ", ".join(name for name, _, _ in specs)
            raise InspectError(f"{self.ckpt.file}: the model takes {len(specs)} input(s) ({names}), "
                               f"{len(xs)} were given")
        out = []
        for x, (name, shape, kind) in zip(xs, specs):
            x = np.asarray(x)
            if shape is not None:
                want = "(" + ", ".join("batch" if k == 0 else ("any" if n is None else str(n))
                                       for k, n in enumerate(shape)) + ")"
                if x.ndim != len(shape):
                    raise InspectError(f"input {name}: has shape {x.shape} but the model expects {want}")
                if shape[-1] is not None and x.shape[-1] != shape[-1] and len(shape) > 2:
                    raise InspectError(f"input {name}: has {x.shape[-1]} features per step but the model expects "
                                       f"{shape[-1]}, shape {want}")
            if kind == "ids":
                if x.dtype.kind not in "fiu" or (x.dtype.kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x)))):
                    raise InspectError(f"input {name}: feeds an Embedding, so it must hold integer token ids")
                x = x.astype(np.int64)
                vocab = self.vocabulary(name)
                if x.size and vocab is not None and (x.min() < 0 or x.max() >= vocab):
                    raise InspectError(f"input {name}: token ids must lie in [0, {vocab - 1}] (the Embedding's "
                                       f"input_dim), found {x.min()}..{x.max()}")
            elif x.dtype.kind not in "fiub":
                raise InspectError(f"input {name}: has dtype {x.dtype}, not numbers")
            elif not np.all(np.isfinite(x)):
                raise InspectError(f"input {name}: contains NaN or Inf")
            out.append(x)
        return out

    # ---------------------------------------------------------------- running

    def run(self, xs: list[np.ndarray], record: RunRecord | None = None) -> list[np.ndarray]:
        """The model's outputs, in the model's output order (what model.predict returns, as a list)."""
        graph = self.ckpt.graph
        assert graph is not None
        xs = self.check_inputs(xs)
        rec = record if record is not None else RunRecord()
        outs = self._run_graph(graph, [Tensor(x) for x in xs], rec)
        return [t.value for t in outs]

    def _run_graph(self, graph: ModelGraph, inputs: list[Tensor], rec: RunRecord) -> list[Tensor]:
        if graph.class_name == "Sequential":
            current = inputs
            for node in graph.layers:
                current = self._apply(node, Call(list(current)), rec, call=0)
            return current
        produced: dict[tuple[str, int], list[Tensor]] = {}
        input_names = [r.layer for r in graph.inputs]
        for node in graph.layers:
            if node.class_name == "InputLayer":
                if node.name not in input_names:
                    raise InspectError(f"{self.ckpt.file}: input layer {node.name} is not a model input")
                produced[(node.name, 0)] = [inputs[input_names.index(node.name)]]
        pending = [(node, k) for node in graph.layers if node.class_name != "InputLayer"
                   for k in range(max(1, len(node.inbound)))]
        while pending:
            progressed = False
            for node, k in list(pending):
                call = node.inbound[k] if k < len(node.inbound) else Call()
                resolved = self._resolve(call, produced)
                if resolved is None:
                    continue
                produced[(node.name, k)] = self._apply(node, resolved, rec, call=k)
                pending.remove((node, k))
                progressed = True
            if not progressed:
                names = ", ".join(n.name for n, _ in pending)
                raise InspectError(f"{self.ckpt.file}: the model graph cannot be resolved (stuck at: {names})")
        results = []
        for r in graph.outputs:
            found = self._lookup(produced, r)
            if found is None:
                raise InspectError(f"{self.ckpt.file}: model output {r.layer} is never computed")
            results.append(found)
        return results

    def _resolve(self, call: Call, produced: dict[tuple[str, int], list[Tensor]]) -> Call | None:
        """The call with each TensorRef replaced by its computed Tensor; None while one is missing."""
        missing = False

        def sub(obj: Any) -> Any:
            nonlocal missing
            if isinstance(obj, TensorRef):
                found = self._lookup(produced, obj)
                missing = missing or found is None
                return found
            if isinstance(obj, dict):
                return {k: sub(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [sub(v) for v in obj]
            return obj

        resolved = Call(sub(call.args), sub(call.kwargs))
        return None if missing else resolved

    @staticmethod
    def _lookup(produced: dict[tuple[str, int], list[Tensor]], ref: TensorRef) -> Tensor | None:
        outs = produced.get((ref.layer, ref.node))
        if outs is None:
            # A nested model is referred to by node index 1 in Keras 2 configs: its only call.
            calls = [v for (name, _), v in produced.items() if name == ref.layer]
            outs = calls[0] if len(calls) == 1 else None
        if outs is None or ref.tensor >= len(outs):
            return None
        return outs[ref.tensor]

    def _apply(self, node: LayerNode, args: Call, rec: RunRecord, call: int = 0) -> list[Tensor]:
        inputs = list(_tensors_in(args.args))
        if node.children is not None:
            outs = self._run_graph(node.children, inputs, rec)
        elif node.path in self.directions:
            outs = self._lstm_layer(node, args, rec)
        elif node.is_op:
            outs = [run_op(node, args)]
        else:
            fn = LAYERS.get(node.class_name)
            if fn is None:
                raise InspectError(f"{self.ckpt.file}: layer {node.path} ({node.class_name}) is not one the NumPy engine "
                                   "runs; run its LSTM layers alone with --layer")
            weights = self.ckpt.read_layer(node.path)
            try:
                outs = fn(node, inputs, weights, self)
            except (ValueError, IndexError, TypeError) as exc:
                shapes = ", ".join(str(w.shape) for w in weights) or "none"
                raise InspectError(f"{self.ckpt.file}: layer {node.path} ({node.class_name}) cannot run on its input "
                                   f"of shape {inputs[0].value.shape if inputs else '?'} with its stored weights "
                                   f"({shapes}): {str(exc).splitlines()[0][:160]}") from None
        if call == 0:
            rec.layer_outputs[node.path] = [t.value for t in outs]
        return outs

    def _lstm_layer(self, node: LayerNode, args: Call, rec: RunRecord) -> list[Tensor]:
        x, state_tensors, explicit = split_rnn_call(args, lambda o: isinstance(o, Tensor))
        states = [t.value for t in state_tensors]
        if explicit is not None:
            mask = explicit.value.astype(bool)
        elif self.keras_major >= 3 and len(_tensors_in(args.args)) + len(_tensors_in(args.kwargs)) > 1:
            # Keras 3 fills in the implicit mask only for a call with a single tensor argument;
            # an RNN given initial_state tensors runs unmasked (keras/src/layers/layer.py).
            mask = None
        else:
            mask = x.mask
        directions = self.directions[node.path]
        results = []
        s = directions[0].settings
        for k, d in enumerate(directions):
            init = tuple(states[2 * k : 2 * k + 2]) if len(states) >= 2 * (k + 1) else None
            res = run_direction(d, x.value, mask, init, self.dtype, self.trace,  # type: ignore[arg-type]
                                sequences=s.return_sequences or self.trace, weights=self._weights_of(d),
                                variant=self.variant)
            rec.masks[d.name] = mask
            if res.trace is not None:
                rec.traces[d.name] = res.trace
            results.append(res)
        out_mask = mask if s.return_sequences else None
        if len(directions) == 1:
            res = results[0]
            out = res.outputs if s.return_sequences else res.last_output
            tensors = [Tensor(out, out_mask)]
            if s.return_state:
                tensors += [Tensor(res.h), Tensor(res.c)]
            return tensors
        fw, bw = results
        if s.return_sequences:
            y, y_rev = fw.outputs, bw.outputs[:, ::-1]  # the backward half back in input time order
            if self.variant is not None and self.variant.backward_output_not_flipped:
                y_rev = bw.outputs
        else:
            y, y_rev = fw.last_output, bw.last_output
        merged = merge_bidirectional(y, y_rev, directions[0].merge_mode)
        tensors = [Tensor(m, out_mask) for m in merged] if isinstance(merged, list) else [Tensor(merged, out_mask)]
        if s.return_state:
            tensors += [Tensor(fw.h), Tensor(fw.c), Tensor(bw.h), Tensor(bw.c)]
        return tensors


    def _weights_of(self, d: LSTMDirection) -> LSTMWeights:
        if self._weights is None:
            return d.weights()
        if d.name not in self._weights:
            self._weights[d.name] = d.weights()
        return self._weights[d.name]

    def _check_supported(self, graph: ModelGraph) -> None:
        for node in graph.walk():
            known = OPS if node.is_op else LAYERS
            if node.children is None and node.path not in self.directions and node.class_name not in known:
                raise InspectError(f"{self.ckpt.file}: layer {node.path} ({node.class_name}) is not one the NumPy "
                                   "engine runs; run its LSTM layers alone with --layer")


# ---------------------------------------------------------------- the layers around LSTMs

LayerFn = Callable[[LayerNode, list[Tensor], list[np.ndarray], Network], list[Tensor]]


def _cast(net: Network, *arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=net.dtype) for a in arrays]


def _activation(node: LayerNode, net: Network) -> Callable[[np.ndarray], np.ndarray]:
    from lstm_inspect.architecture import activation_name

    hard = "keras3" if net.keras_major >= 3 else "keras2"
    return activation_fn(activation_name(node.config.get("activation"), "linear"), hard)


def _identity(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    return [args[0]]


def _dense(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    cfg = node.config
    if node.class_name == "TimeDistributed":
        cfg = (cfg.get("layer") or {}).get("config") or {}
        inner = (node.config.get("layer") or {}).get("class_name")
        if inner != "Dense":
            raise InspectError(f"layer {node.path}: TimeDistributed({inner}) is not one the NumPy engine runs")
        node = LayerNode(node.name, node.path, "Dense", cfg)
    use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
    units = cfg.get("units", cfg.get("output_dim"))
    (x,) = _cast(net, args[0].value)
    _expect(node, w, [(x.shape[-1], units)] + ([(units,)] if use_bias else []))
    y = x @ w[0].astype(net.dtype)
    if use_bias:
        y = y + w[1].astype(net.dtype)
    return [Tensor(_activation(node, net)(y), args[0].mask)]


def _expect(node: LayerNode, w: list[np.ndarray], shapes: list[tuple[Any, ...]]) -> None:
    """The stored arrays of a layer have the count and shapes its config and input imply (None: any)."""
    if not w:
        raise InspectError(f"layer {node.path} ({node.class_name}): the file stores no weights for it")
    if len(w) != len(shapes):
        raise InspectError(f"layer {node.path} ({node.class_name}): expected {len(shapes)} weight arrays, "
                           f"found {len(w)}")
    for k, (a, want) in enumerate(zip(w, shapes)):
        if a.ndim != len(want) or any(n is not None and int(n) != m for n, m in zip(want, a.shape)):
            expected = "(" + ", ".join("?" if n is None else str(n) for n in want) + ")"
            raise InspectError(f"layer {node.path} ({node.class_name}): weight {k} should have shape {expected}, "
                               f"found {a.shape}")
        if a.dtype.kind != "f":
            raise InspectError(f"layer {node.path} ({node.class_name}): weight {k} holds {a.dtype}, not numbers")


def _activation_layer(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    return [Tensor(_activation(node, net)(args[0].value.astype(net.dtype)), args[0].mask)]


def _embedding(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    _expect(node, w, [(node.config.get("input_dim"), node.config.get("output_dim"))])
    ids = np.asarray(args[0].value).astype(np.int64)
    table = w[0].astype(net.dtype)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise InspectError(f"layer {node.path}: token ids must lie in [0, {table.shape[0] - 1}], "
                           f"found {ids.min()}..{ids.max()}")
    mask = ids != 0 if node.config.get("mask_zero") else None
    return [Tensor(table[ids], mask)]


def _masking(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    (x,) = _cast(net, args[0].value)
    mask = np.any(x != node.config.get("mask_value", 0.0), axis=-1)
    return [Tensor(x * mask[..., None].astype(net.dtype), mask)]


def _flatten(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    x = args[0].value
    return [Tensor(x.reshape(x.shape[0], -1))]


def _repeat_vector(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    n = int(node.config["n"])
    return [Tensor(np.repeat(args[0].value[:, None, :], n, axis=1))]


def _reshape(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    x = args[0].value
    return [Tensor(x.reshape((x.shape[0], *node.config["target_shape"])))]


def _batch_norm(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    cfg = node.config
    arrays = list(w)
    gamma = arrays.pop(0) if cfg.get("scale", True) else None
    beta = arrays.pop(0) if cfg.get("center", True) else None
    mean, var = arrays[0], arrays[1]
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) else axis
    x = args[0].value.astype(net.dtype)
    shape = [1] * x.ndim
    shape[axis] = -1
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + cfg.get("epsilon", 1e-3))
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return [Tensor(y.astype(net.dtype), args[0].mask)]


def _layer_norm(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    cfg = node.config
    arrays = list(w)
    gamma = arrays.pop(0) if cfg.get("scale", True) else None
    beta = arrays.pop(0) if cfg.get("center", True) and not cfg.get("rms_scaling") else None
    axis = cfg.get("axis", -1)
    axes = tuple(axis) if isinstance(axis, list) else (axis,)
    x = args[0].value.astype(net.dtype)
    eps = cfg.get("epsilon", 1e-3)
    if cfg.get("rms_scaling"):
        y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    else:
        mean = x.mean(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return [Tensor(y.astype(net.dtype), args[0].mask)]


def _merge(node: LayerNode, args: list[Tensor], w: list[np.ndarray], net: Network) -> list[Tensor]:
    values = [a.value.astype(net.dtype) for a in args]
    cls = node.class_name
    if cls == "Concatenate":
        y = np.concatenate(values, axis=node.config.get("axis", -1))
    elif cls == "Add":
        y = np.sum(values, axis=0)
    elif cls == "Subtract":
        y = values[0] - values[1]
    elif cls == "Multiply":
        y = np.prod(values, axis=0)
    elif cls == "Average":
        y = np.mean(values, axis=0)
    elif cls == "Maximum":
        y = np.max(values, axis=0)
    else:
        y = np.min(values, axis=0)
    return [Tensor(y.astype(net.dtype), _merged_mask(cls, args, net))]


def _merged_mask(cls: str, args: list[Tensor], net: Network) -> np.ndarray | None:
    """Keras's compute_mask of merge layers: AND of the masks; Keras 3 Concatenate takes OR."""
    if all(a.mask is None for a in args):
        return None
    if cls == "Concatenate":
        # an unmasked input counts as all-valid
        masks = [a.mask if a.mask is not None else np.ones(a.value.shape[:2], dtype=bool) for a in args]
        return np.logical_or.reduce(masks) if net.keras_major >= 3 else np.logical_and.reduce(masks)
    return np.logical_and.reduce([a.mask for a in args if a.mask is not None])


LAYERS: dict[str, LayerFn] = {
    **{name: _identity for name in IDENTITY_LAYERS},
    "Dense": _dense,
    "TimeDistributed": _dense,
    "Activation": _activation_layer,
    "Embedding": _embedding,
    "Masking": _masking,
    "Flatten": _flatten,
    "RepeatVector": _repeat_vector,
    "Reshape": _reshape,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    **{name: _merge for name in MERGE_LAYERS},
}


# ---------------------------------------------------------------- raw ops in Keras 3 functional graphs
# Keras 3 records the ops that compute masks (and any `a + b` a user wrote) as graph nodes.

def _value(obj: Any) -> Any:
    return obj.value if isinstance(obj, Tensor) else [_value(v) for v in obj] if isinstance(obj, list) else obj


OPS: dict[str, Callable[..., np.ndarray]] = {
    "NotEqual": np.not_equal, "Equal": np.equal, "Greater": np.greater, "Less": np.less,
    "LogicalOr": np.logical_or, "LogicalAnd": np.logical_and, "LogicalNot": np.logical_not,
    "Any": lambda x, axis=None, keepdims=False: np.any(x, axis=axis, keepdims=keepdims),
    "All": lambda x, axis=None, keepdims=False: np.all(x, axis=axis, keepdims=keepdims),
    "ExpandDims": lambda x, axis: np.expand_dims(x, axis),
    "Squeeze": lambda x, axis=None: np.squeeze(x, axis=axis),
    "ZerosLike": lambda x, dtype=None: np.zeros_like(x, dtype=dtype),
    "OnesLike": lambda x, dtype=None: np.ones_like(x, dtype=dtype),
    "Concatenate": lambda xs, axis=0: np.concatenate(xs, axis=axis),
    "Cast": lambda x, dtype: np.asarray(x).astype(dtype),
    "Add": np.add, "Subtract": np.subtract, "Multiply": np.multiply, "Divide": np.divide, "Negative": np.negative,
    "Tanh": np.tanh, "Exp": np.exp, "Abs": np.abs, "Sqrt": np.sqrt, "Square": np.square,
}


def run_op(node: LayerNode, args: Call) -> Tensor:
    fn = OPS.get(node.class_name)
    if fn is None:
        raise InspectError(f"graph op {node.name} ({node.class_name}) is not one the NumPy engine runs")
    options = {k: v for k, v in node.config.items() if k not in ("name", "trainable", "dtype")}
    if "dtype" in node.config and node.class_name in ("ZerosLike", "OnesLike", "Cast"):
        options["dtype"] = node.config["dtype"]
    options.update({k: _value(v) for k, v in args.kwargs.items()})
    return Tensor(np.asarray(fn(*[_value(a) for a in args.args], **options)))


def _tensors_in(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    return []


def default_inputs(net: Network, seed: int = 0, batch: int = 4, steps: int = 10) -> list[np.ndarray]:
    """A seeded input of the model's input shape: token ids (some padded with the masked id 0) for Embedding."""
    rng = np.random.default_rng(seed)
    xs = []
    for name, shape, kind in net.input_specs():
        dims = list(shape) if shape is not None else [None, None, None]
        dims[0] = batch
        dims = [steps if d is None else int(d) for d in dims]
        if kind == "ids":
            vocab = net.vocabulary(name) or 2
            x = rng.integers(1, max(vocab, 2), size=dims)
            if x.ndim == 2:
                for b in range(x.shape[0]):
                    x[b, x.shape[1] - b % 3:] = 0  # right padding of varying length
            xs.append(x.astype(np.int32))
        else:
            xs.append(rng.normal(size=dims).astype(np.float32))
    return xs


def trace_run(ckpt: Checkpoint, xs: list[np.ndarray] | None = None, seed: int = 0) -> tuple[RunRecord, str]:
    """Every LSTM direction's trace: from the whole model on xs (a seeded random input when None),
    or, when the model cannot run whole and no input was given, from each direction alone on a
    seeded random input. Returns the record and a description of the input."""
    rec = RunRecord()
    try:
        net = Network(ckpt, trace=True)
        net.run(xs if xs is not None else default_inputs(net, seed), rec)
        return rec, "the given input" if xs is not None else f"a seeded random input (seed {seed})"
    except InspectError:
        if xs is not None:
            raise
    rng = np.random.default_rng(seed)
    for d in ckpt.layers:
        res = run_direction(d, rng.normal(size=(4, 20, d.input_dim or 1)).astype(np.float32), trace=True)
        if res.trace is not None:
            rec.traces[d.name] = res.trace
        rec.masks[d.name] = None
    return rec, f"a seeded random input (seed {seed}) to each direction alone"


def as_inputs(x: Any) -> list[np.ndarray]:
    """One array, or a list of arrays in the model's input order."""
    if isinstance(x, (list, tuple)):
        return [np.asarray(a) for a in x]
    return [np.asarray(x)]
