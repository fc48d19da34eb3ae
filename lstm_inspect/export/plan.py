"""The scope of one export: the whole model, one recurrent direction, or one Bidirectional layer; the engine's outputs
it must match, and the error a runtime's failure becomes. Shared by every target (`lstm_inspect.export.onnx`,
`lstm_inspect.export.torch`).

A Bidirectional exported alone (`--layer` with its Keras name) is a model of its own: one InputLayer x (batch, steps,
N_i) feeding that layer (`layer_model`), walked by the whole-model path of each target, so it computes what
`forward --layer` computes: both directions from zero states, unmasked, merged as Keras's Bidirectional merges them
(keras/src/layers/rnn/bidirectional.py, `call`), its final states after the output when it returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import DEFAULT_BATCH, DEFAULT_STEPS, Network, default_inputs, run_direction
from lstm_inspect.engine.user_layers import engine_runs, user_layer
from lstm_inspect.model.architecture import Call, LayerNode, ModelGraph, TensorRef
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection


@dataclass
class Plan:
    """What one export holds: the whole model (`net`), one recurrent direction alone (`direction`), or one
    Bidirectional layer alone (`layer` its Keras name; `net` runs the model `layer_model` makes of it).

    A direction alone takes x (batch, steps, N_i) and gives its output sequence in processing order
    (reversed for go_backwards, as `forward --layer` writes it) and its final states, unmasked,
    from zero states.
    """

    ckpt: Checkpoint
    net: Network | None = None
    direction: RecurrentDirection | None = None
    opset: int | None = None
    layer: str | None = None

    @property
    def what(self) -> str:
        if self.layer is not None:
            return f"layer {self.layer}"
        return f"layer {self.direction.name}" if self.direction is not None else "the whole model"

    def reference(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """The engine's outputs for the export's inputs: what the export must compute."""
        if self.direction is not None:
            res = run_direction(self.direction, xs[0], sequences=True)
            return [res.outputs, *res.states]
        assert self.net is not None
        return self.net.run(xs)

    def default_inputs(self, seed: int = 0) -> list[np.ndarray]:
        if self.direction is not None:
            rng = np.random.default_rng(seed)
            shape = (DEFAULT_BATCH, DEFAULT_STEPS, self.direction.input_dim or 1)
            return [rng.normal(size=shape).astype(np.float32)]
        assert self.net is not None
        return default_inputs(self.net, seed)

    def check_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        if self.direction is not None:
            d = self.direction
            if len(xs) != 1:
                raise InspectError(f"layer {d.name}: takes one input, {len(xs)} were given")
            x = np.asarray(xs[0])
            if x.ndim != 3 or x.shape[-1] != d.input_dim:
                raise InspectError(f"layer {d.name}: input has shape {x.shape} but the layer expects "
                                   f"(batch, steps, {d.input_dim})")
            return [x]
        assert self.net is not None
        return self.net.check_inputs(xs)


def plan_export(ckpt: Checkpoint, layer: str | None = None, opset: int | None = None) -> Plan:
    """The export's scope, or one line saying why the file cannot be exported whole."""
    if layer is not None:
        directions = ckpt.directions_of(layer)
        d = directions[0]
        if d.settings.time_major:
            raise InspectError(f"{ckpt.file}: layer {d.name if len(directions) == 1 else layer} is time_major, and a "
                               "layer exported alone takes (batch, steps, N_i); export the whole model, which takes "
                               "the input as this layer does")
        if len(directions) > 1:  # a Bidirectional or stacked cells: a model of that layer alone, as a whole model
            alone = layer_model(ckpt, directions)
            return Plan(alone, net=Network(alone, cache_weights=True), opset=opset, layer=layer)
        return Plan(ckpt, direction=d, opset=opset)
    if ckpt.graph is None:
        raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so there is no model to export; "
                           "export one recurrent direction with --layer NAME, or give the architecture with --config")
    refuse_user_layers(ckpt)
    return Plan(ckpt, net=Network(ckpt, cache_weights=True), opset=opset)


def refuse_user_layers(ckpt: Checkpoint) -> None:
    """The user's own layers (a custom class, a Lambda, or a class the user gave a NumPy form of with --layers) have
    no ONNX or PyTorch form: refused in one line, before anything is built."""
    assert ckpt.graph is not None
    recurrent = {d.layer_path for d in ckpt.directions}
    for node in ckpt.graph.walk():
        if node.children is not None or node.is_op or node.path in recurrent or node.class_name == "InputLayer":
            continue
        if user_layer(node) is not None or not engine_runs(node):
            raise InspectError(f"{ckpt.file}: layer {node.path} ({node.class_name}) is not a Keras layer "
                               "lstm-inspect exports (your own layer, or a Lambda: a NumPy form given with --layers "
                               "has no ONNX or PyTorch form); export its recurrent layers alone with --layer")


def layer_model(ckpt: Checkpoint, directions: list[RecurrentDirection]) -> Checkpoint:
    """The checkpoint as a model of one recurrent layer (a Bidirectional's two directions, or stacked cells): an
    InputLayer x
    (batch, free steps, N_i) called into that layer, the graph's outputs every output the layer gives (one merged
    output, two for merge_mode None, then each direction's final states when it returns them). The layer's node is
    the file's own (its path kept, so a layer inside a nested model is found the same), or for a file without an
    architecture one made from the directions (settings as the directions have them). Nothing of `ckpt` changes."""
    d0 = directions[0]
    path = d0.layer_path or d0.name
    node = next((n for n in ckpt.graph.walk() if n.path == path), None) if ckpt.graph is not None else None
    if node is None:
        node = LayerNode(name=path, path=path, parts=(path,), class_name="Bidirectional",
                         config={"name": path, "merge_mode": d0.merge_mode})
    x = "x" if node.name != "x" else "input"
    source = LayerNode(name=x, path=x, parts=(x,), class_name="InputLayer",
                       config={"name": x, "batch_input_shape": [None, None, d0.input_dim]})
    recurrent = replace(node, inbound=[Call([TensorRef(x)])], children=None)
    stacked = d0.stack_index is not None  # a StackedRNNCells: one output, then every cell's states
    n_out = (2 if d0.merge_mode is None and not stacked else 1) + (
        sum(len(d.cell.states) for d in directions) if directions[-1].settings.return_state else 0)
    graph = ModelGraph("Functional", node.name, [source, recurrent], [TensorRef(x)],
                       [TensorRef(node.name, 0, k) for k in range(n_out)])
    return replace(ckpt, graph=graph, directions=list(directions), layers=[], _engines={}, _layer_warnings=[])


class RuntimeFailed(Exception):
    """The runtime refused or failed to run a written export (its own error, in one line)."""


class RuntimeBroken(Exception):
    """The runtime is installed but fails to import (ImportError, or OSError from a shared library it loads): the
    export is then not verified, as when the runtime is missing, not an error of lstm-inspect's."""

    def __init__(self, runtime: str, exc: BaseException):
        lines = str(exc).strip().splitlines()
        super().__init__(f"{runtime} failed to import ({type(exc).__name__}: {lines[0][:200] if lines else ''})")


def output_names(plan: Plan, n: int) -> list[str]:
    """The export's output names: output_0... for a model; y, h (and c) for one direction."""
    if plan.direction is not None:
        return ["y", *plan.direction.cell.states][:n]
    return [f"output_{k}" for k in range(n)]
