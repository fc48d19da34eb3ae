"""`export --to onnx`: the whole model (or one recurrent direction) as one ONNX graph, and running it.

The graph is walked exactly as the NumPy engine walks it (`network.walk_graph`): every layer call
becomes the ONNX nodes of its emitter (`registry.LAYERS`, `cells`, `ops`), every tensor
carries its Keras mask. Inputs keep the model's input names (token ids as int64, the rest float32),
batch and free time axes are symbolic; outputs are output_0, output_1... in the model's order, every axis
fixed or named (`batch`, an input's `steps_k`, else a name of its own). There is no `If`, and each weight
is one initializer, so onnxruntime's tools (quantize_dynamic, its pre-processing) take the graph as is.
The model passes `onnx.checker.check_model` (full check, shapes inferred) before it is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base import __version__
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.core import wrapped_layer
from lstm_inspect.engine.layers.registry import LAYERS as ENGINE_LAYERS
from lstm_inspect.engine.layers.registry import Context
from lstm_inspect.engine.network import walk_graph
from lstm_inspect.export.onnx.cells import emit_direction, emit_recurrent
from lstm_inspect.export.onnx.graph import DEFAULT_OPSET, MIN_OPSET, Graph, Sym, value_info
from lstm_inspect.export.onnx.ops import emit_op, onnx_op_problem
from lstm_inspect.export.onnx.registry import LAYERS, OnnxCall
from lstm_inspect.export.plan import Plan, RuntimeBroken, RuntimeFailed
from lstm_inspect.io.arrays import printable
from lstm_inspect.model.architecture import Call, LayerNode, ModelGraph
from lstm_inspect.model.cells.base import keras_major_minor


def _opset(plan: Plan) -> int:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    opset = plan.opset if plan.opset is not None else min(DEFAULT_OPSET, newest)
    if not MIN_OPSET <= opset <= newest:
        raise InspectError(f"--opset must lie in {MIN_OPSET}..{newest} (the installed onnx's newest), not {opset}")
    return opset


class _Emitter:
    """Walks the model graph, emitting each call (the engine's `Network._apply` in ONNX)."""

    def __init__(self, plan: Plan, g: Graph) -> None:
        assert plan.net is not None
        self.plan, self.net, self.g = plan, plan.net, g
        self.file = str(plan.ckpt.file)

    def check(self, graph: ModelGraph) -> None:
        """Refuse, before anything is built, a layer or op that has no ONNX form."""
        for node in graph.walk():
            if node.children is not None or node.path in self.net.directions:
                continue
            if node.is_op:
                problem = onnx_op_problem(node)
                if problem:
                    raise InspectError(f"{self.file}: graph op {node.name}: {problem}")
            elif node.class_name not in LAYERS:
                raise InspectError(f"{self.file}: layer {node.path} ({node.class_name}) has no ONNX form in "
                                   "lstm-inspect yet; export its recurrent layers alone with --layer")
            elif node.class_name == "TimeDistributed":
                inner = wrapped_layer(node).class_name
                if inner not in LAYERS or inner not in ENGINE_LAYERS:
                    raise InspectError(f"{self.file}: layer {node.path} (TimeDistributed({inner})) has no ONNX form "
                                       "in lstm-inspect yet")

    def run(self, graph: ModelGraph, inputs: list[Sym]) -> list[Sym]:
        return walk_graph(graph, inputs, self.apply, self.file, lambda o: isinstance(o, Sym))

    def apply(self, node: LayerNode, args: Call, k: int) -> list[Sym]:
        inputs = _syms(args.args)
        if node.children is not None:
            return self.run(node.children, inputs)
        if node.path in self.net.directions:
            return emit_recurrent(self.g, node, self.net.directions[node.path], args, self.net.ctx,
                                  self.net._weights_of)
        if node.is_op:
            return [emit_op(self.g, node, args, self.net.ctx)]
        if not inputs and not _syms(args.kwargs):
            raise InspectError(f"{self.file}: layer {node.path} ({node.class_name}) is called on no tensor")
        weights = self.plan.ckpt.read_layer(node.path) if ENGINE_LAYERS[node.class_name].has_weights(node) else []
        return LAYERS[node.class_name](OnnxCall(self.g, node, inputs, weights, self.net.ctx, dict(args.kwargs)))


def _syms(obj: Any) -> list[Sym]:
    if isinstance(obj, Sym):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _syms(v)]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _syms(v)]
    return []


def _model_io(plan: Plan, g: Graph) -> tuple[list[Any], list[Sym]]:
    """The graph inputs (value infos) and their symbols, named after the model's inputs."""
    assert plan.net is not None
    infos, syms = [], []
    for k, (name, shape, kind) in enumerate(plan.net.input_specs()):
        onnx_name = g.names.fresh(name or f"input_{k}")
        dims: list[Any] = list(shape) if shape is not None else [None, None, None]
        dims = ["batch" if j == 0 else f"steps_{k}" if j == 1 and d is None else f"{onnx_name}_dim{j}" if d is None
                else int(d) for j, d in enumerate(dims)]
        elem = "int" if kind == "ids" else "float"
        infos.append(value_info(onnx_name, elem, None, dims))
        last = dims[-1] if isinstance(dims[-1], int) and len(dims) > 2 else None
        syms.append(Sym(onnx_name, len(dims), kind=elem, dim=last))
    return infos, syms


def build_model(plan: Plan) -> Any:
    """The ONNX ModelProto of the plan (checked)."""
    import onnx
    from onnx import helper

    g = Graph(_opset(plan))
    ckpt = plan.ckpt
    if plan.direction is not None:
        d = plan.direction
        x = g.names.fresh("x")
        inputs = [value_info(x, "float", None, ["batch", "steps", d.input_dim])]
        ctx = Context(np.float32, ckpt.keras_version, keras_major_minor(ckpt.keras_version)[0] or 2)
        x_tm = g.op("Transpose", x, perm=[1, 0, 2])
        res = emit_direction(g, d, d.weights(), x_tm, None, None, ctx)
        results = [g.op("Transpose", res.seq, perm=[1, 0, 2]), *res.states]
        names = ["y", *d.cell.states]
        ranks = [3] + [2] * len(res.states)
        dims: list[list[Any] | None] = [["batch", "steps", d.units]] + [["batch", d.units]] * len(res.states)
    else:
        emitter = _Emitter(plan, g)
        assert ckpt.graph is not None
        emitter.check(ckpt.graph)
        inputs, syms = _model_io(plan, g)
        outs = emitter.run(ckpt.graph, syms)
        results = [s.name if s.kind == "float" else g.cast(s.name, "float") for s in outs]
        names = [f"output_{k}" for k in range(len(outs))]
        ranks = [s.rank for s in outs]
        dims = [None] * len(outs)
    outputs = []
    for name, result, rank, shape in zip(names, results, ranks, dims):
        final = g.names.fresh(name)
        g.nodes.append(helper.make_node("Identity", [result], [final], name=g.names.fresh(f"{name}_node")))
        outputs.append(value_info(final, "float", rank, shape))
    doc = (f"exported by lstm-inspect {__version__} from {printable(ckpt.file.name)}; verified in float32 (quantizing, "
           "e.g. onnxruntime.quantization.quantize_dynamic, changes the outputs: measure it)")
    graph = helper.make_graph(g.nodes, "keras_model", inputs, outputs, initializer=g.initializers, doc_string=doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)], producer_name="lstm-inspect",
                              producer_version=__version__)
    model.ir_version = min(model.ir_version, max_ir_version(g.opset))
    if plan.direction is None:
        _name_output_dims(model)
    helper.set_model_props(model, {"source": printable(ckpt.file.name), "keras_version": str(ckpt.keras_version),
                                   "exported": plan.what})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RuntimeError(f"lstm-inspect wrote an ONNX graph onnx.checker rejects: {str(exc)[:300]}") from exc
    return model


def _name_output_dims(model: Any) -> None:
    """Every output axis fixed or named: the size or input axis name (batch, steps_k) onnx's shape inference
    carries there, else "batch" on axis 0 (Keras's outputs are batch-first: predict concatenates them on it)
    and a name of the output's own on the rest (output_0_dim1), so that runtimes and tools that read shapes
    (onnxruntime's quantizer, its symbolic shape inference) see no unnamed dimension."""
    import onnx

    known = {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph.output
    except onnx.shape_inference.InferenceError:
        inferred = model.graph.output
    for out, found in zip(model.graph.output, inferred):
        got = list(found.type.tensor_type.shape.dim) if found.type.tensor_type.HasField("shape") else []
        for j, dim in enumerate(out.type.tensor_type.shape.dim):
            seen = got[j] if len(got) == len(out.type.tensor_type.shape.dim) else None
            if seen is not None and seen.HasField("dim_value"):
                dim.dim_value = seen.dim_value
            elif seen is not None and seen.dim_param in known:
                dim.dim_param = seen.dim_param
            else:
                dim.dim_param = "batch" if j == 0 else f"{out.name}_dim{j}"


def max_ir_version(opset: int) -> int:
    """The IR version runtimes expect with this opset (onnx.helper.VERSION_TABLE), not newer."""
    from onnx import helper

    for _release, ir, op, *_ in helper.VERSION_TABLE:
        if op == opset:
            return int(ir)
    return 10


def build(plan: Plan) -> bytes:
    return build_model(plan).SerializeToString()


def run(path: Path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The written file run by onnxruntime on xs (each cast to the dtype its input declares); raises RuntimeBroken
    when onnxruntime is installed but fails to import."""
    try:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except (ImportError, OSError) as exc:  # a broken install (a missing shared library, an ABI mismatch)
        raise RuntimeBroken("onnxruntime", exc) from exc

    errors = tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph", "NotImplemented",
                                                "RuntimeException", "InvalidProtobuf") if hasattr(state, n))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {}
        for spec, x in zip(session.get_inputs(), xs):
            dtype = np.int64 if spec.type == "tensor(int64)" else np.float32
            feeds[spec.name] = np.asarray(x).astype(dtype)
        return [np.asarray(y) for y in session.run(None, feeds)]
    except errors as exc:
        raise RuntimeFailed(str(exc).splitlines()[0][:300]) from exc
