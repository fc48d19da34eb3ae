"""The PyTorch target of `lstm-inspect export`: a folder with model.py, weights.safetensors and README.md.

Why: a PyTorch user porting a Keras recurrent model needs the model written for PyTorch, not a graph
to interpret: model.py is one self-contained `torch.nn.Module` (`Model`) written for this model, one
attribute per Keras layer that has weights (named after the layer, sanitized), forward() in the
model's order with Keras's masks computed as Keras computes them; weights.safetensors holds its
state_dict, written with `safetensors.numpy` so that writing needs no torch.

The walk is the engine's (`lstm_inspect.engine.network.walk_graph`, `recurrent_call`), each layer kind written
by its emitter (`registry.LAYERS` from the family modules, `ops`'s op tables, `registry.CELLS` from
`cells/<kind>.py`), each mirroring the engine's function for
that kind, which follows Keras's source (see those modules). What PyTorch cannot be given exactly is
refused before anything is written, with one line naming the layer.

To know every tensor's rank and dtype while writing, the NumPy engine runs the model once on a small
made-up input (`network.default_inputs`); the README's shapes come from two such runs (its example inputs,
torch.randint token ids below the Embedding's input_dim or torch.randn floats, from the first, so that its code
blocks run as written from the folder), and whether its time
axes may be torch.export Dims from a third one step longer (`_free_time`). The README also says what each of
PyTorch's deployment routes gives for model.py (`_deploy`: eager, torch.jit.script/trace, torch.export,
torch.onnx.export, torch.compile), as measured with torch 2.13 and checked by tests/test_export_torch_deploy.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base import __version__
from lstm_inspect.base.budget import BudgetError
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import RunRecord, default_inputs, walk_graph
from lstm_inspect.engine.ops import op_name
from lstm_inspect.export.plan import Plan, RuntimeBroken
from lstm_inspect.export.torch.cells import direction_alone, recurrent_layer
from lstm_inspect.export.torch.code import LayerEmit, Sym, Writer, is_sym, kind_of, quoted
from lstm_inspect.export.torch.ops import op_kind, op_layer
from lstm_inspect.export.torch.registry import LAYERS
from lstm_inspect.model.architecture import Call, LayerNode
from lstm_inspect.model.cells.base import keras_major_minor

_COUNTER = itertools.count()


def build(plan: Plan) -> dict[str, bytes]:
    """model.py, weights.safetensors and README.md for the plan; raises InspectError (nothing written) for
    what has no exact PyTorch form."""
    from safetensors.numpy import save

    ckpt = plan.ckpt
    where = str(ckpt.file)
    hard = "keras3" if _keras_major(ckpt.keras_version) >= 3 else "keras2"
    w = Writer(where, hard)
    if plan.direction is not None:
        d = plan.direction
        params = [w.name("x")]
        outputs = direction_alone(w, d, params[0])
        kinds = ["float"]
        inputs_doc = [(params[0], f"(batch, steps, {d.input_dim})", "float32")]
        examples = _example_lines(params, kinds, [(2, 5, d.input_dim or 1)], [None])
        order = "processing order, reversed in time (go_backwards)" if d.settings.go_backwards else "processing order"
        outputs_doc = [(f"y: the outputs, in {order}", f"(batch, steps, {d.units})", "float32"),
                       *((f"{q}: the final state {q}", f"(batch, {d.units})", "float32") for q in d.cell.states)]
        what = f"one {d.kind} direction alone, from zero states, unmasked"
    else:
        assert plan.net is not None
        params, outputs, kinds, inputs_doc, outputs_doc, examples = _model(plan, w)
        what = "the whole model" if plan.layer is None else f"layer {quoted(plan.layer)} alone, from zero states"
    model_py = _assemble(plan, w, params, outputs, kinds, what)
    free = plan.direction is not None or _free_time(plan)
    readme = _readme(plan, examples, params, inputs_doc, outputs_doc, len(outputs), what) + _deploy(params, free)
    weights = save(dict(sorted(w.weights.items())), metadata={"format": "pt"})
    return {"model.py": model_py.encode(), "weights.safetensors": weights, "README.md": readme.encode()}


def _keras_major(version: str | None) -> int:
    return keras_major_minor(version)[0] or 2


# ---------------------------------------------------------------- the whole model


def _model(plan: Plan, w: Writer) -> tuple[list[str], list[str], list[str], list[tuple[str, str, str]],
                                           list[tuple[str, str, str]], list[str]]:
    net = plan.net
    assert net is not None and plan.ckpt.graph is not None
    ckpt, graph = plan.ckpt, plan.ckpt.graph
    where = str(ckpt.file)
    _check_supported(plan)
    record, shapes = _examples(plan)
    specs = net.input_specs()
    params = [w.name(name if node.class_name == "InputLayer" else "x")
              for (name, _, _), node in zip(specs, net.input_nodes())]
    kinds = ["int" if kind == "ids" else "float" for _, _, kind in specs]
    inputs = [Sym(p, k, None, shapes[0][i] if shapes else None) for i, (p, k) in enumerate(zip(params, kinds))]
    seen: set[str] = set()

    def apply(node: LayerNode, call: Call, k: int) -> list[Sym]:
        tensors = [t for t in _flat(call.args) if is_sym(t)]
        e = LayerEmit(node, tensors, call, w, ckpt, net.keras_major, ckpt.keras_version, node.class_name, node.path)
        if node.children is not None:
            outs = walk_graph(node.children, tensors, apply, where, is_sym)
        elif node.path in net.directions:
            directions = net.directions[node.path]
            d0 = directions[0]
            e.kind = d0.kind if len(directions) == 1 else (
                "RNN(StackedRNNCells)" if d0.stack_index is not None else f"Bidirectional({d0.kind})")
            outs = recurrent_layer(e, directions)
        elif node.is_op:
            e.kind = op_kind(node) or "?"
            outs = op_layer(e)
        else:
            outs = LAYERS[node.class_name](e)
        example = record.layer_outputs.get(node.path) if record is not None else None
        if example is not None and len(example) == len(outs):
            for sym, value in zip(outs, example):
                a = np.asarray(value)
                if sym.shape is None or node.path not in seen:
                    sym.shape = tuple(a.shape)
                sym.kind = kind_of(a.dtype)
        seen.add(node.path)
        return outs

    outs = walk_graph(graph, inputs, apply, where, is_sym)
    out_shapes = _output_shapes(shapes, len(outs))
    inputs_doc = [(p, _shape_text(spec[1], None), "int64 token ids" if k == "int" else "float32")
                  for p, spec, k in zip(params, specs, kinds)]
    outputs_doc = [(f"output {i}" if len(outs) > 1 else "output", out_shapes[i], _dtype_text(o.kind))
                   for i, o in enumerate(outs)]
    example_shapes = [shapes[0][i] if shapes else _example_shape(spec[1]) for i, spec in enumerate(specs)]
    examples = _example_lines(params, kinds, example_shapes, [net.vocabulary(name) for name, _, _ in specs])
    return params, [o.name for o in outs], kinds, inputs_doc, outputs_doc, examples


def _check_supported(plan: Plan) -> None:
    """Every layer and op of the model has a PyTorch form, or one line naming the first that has not."""
    net = plan.net
    assert net is not None and plan.ckpt.graph is not None
    for node in plan.ckpt.graph.walk():
        if node.children is not None or node.path in net.directions:
            continue
        if node.is_op:
            if op_kind(node) is None:
                raise InspectError(f"{plan.ckpt.file}: graph op {node.path}: the op {_op_label(node)} has no PyTorch "
                                   "form in lstm-inspect yet")
        elif node.class_name not in LAYERS:
            raise InspectError(f"{plan.ckpt.file}: layer {node.path} ({node.class_name}) has no PyTorch form in "
                               "lstm-inspect yet")


def _op_label(node: LayerNode) -> str:
    return f"{op_name(node)} ({node.class_name})"


def _examples(plan: Plan) -> tuple[RunRecord | None, list[list[tuple[int, ...]]]]:
    """The engine's run on two small made-up inputs (different steps): every layer's outputs of the first,
    and the input and output shapes of both ([inputs..., outputs...] per run)."""
    net = plan.net
    assert net is not None
    record, shapes = None, []
    for steps in (5, 6):
        try:
            xs = default_inputs(net, seed=0, batch=2, steps=steps)
            rec = RunRecord(every_layer=True)
            outs = net.run(xs, rec)
        except BudgetError:
            raise  # past the budget on a small made-up input: the real run would be too
        except (InspectError, ValueError, IndexError, FloatingPointError):
            return record, []
        record = record or rec
        shapes.append([tuple(np.shape(x)) for x in xs] + [tuple(np.shape(o)) for o in outs])
    return record, shapes


def _output_shapes(shapes: list[list[tuple[int, ...]]], n: int) -> list[str]:
    if len(shapes) != 2:
        return ["see forward()"] * n
    a, b = shapes[0][-n:], shapes[1][-n:]
    out = []
    for sa, sb in zip(a, b):
        if len(sa) != len(sb):
            out.append("see forward()")
            continue
        dims = ["batch" if k == 0 else ("steps" if x != y else str(x)) for k, (x, y) in enumerate(zip(sa, sb))]
        out.append("(" + ", ".join(dims) + ")")
    return out


def _shape_text(shape: tuple[int | None, ...] | None, fallback: str | None) -> str:
    if shape is None:
        return fallback or "(batch, steps, features)"
    dims = ["batch" if k == 0 else ("steps" if (n is None and k == 1) else ("any" if n is None else str(int(n))))
            for k, n in enumerate(shape)]
    return "(" + ", ".join(dims) + ")"


def _example_shape(shape: tuple[int | None, ...] | None) -> tuple[int, ...]:
    """An example input's shape for the README when the engine's made-up run failed: batch 2, 5 on free axes."""
    dims = list(shape) if shape is not None else [None, None, None]
    return tuple(2 if k == 0 else (5 if n is None else int(n)) for k, n in enumerate(dims))


def _example_lines(params: list[str], kinds: list[str], shapes: list[tuple[int, ...]],
                   vocabs: list[int | None]) -> list[str]:
    """The README's lines defining an example input per argument, of the shape and dtype forward() takes: token
    ids drawn from the Embedding's vocabulary, floats from a normal distribution."""
    lines = ["torch.manual_seed(0)"]
    for p, kind, shape, vocab in zip(params, kinds, shapes, vocabs):
        size = "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"
        if kind == "int":
            lines.append(f"{p} = torch.randint(0, {max(vocab or 2, 2)}, {size})  # token ids (int64)")
        else:
            lines.append(f"{p} = torch.randn{size}")
    return lines


def _dtype_text(kind: str) -> str:
    return {"int": "int64", "bool": "bool", "complex": "complex64"}.get(kind, "float32")


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _flat(v)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _flat(v)]
    return [obj]


# ---------------------------------------------------------------- model.py and README.md


def _assemble(plan: Plan, w: Writer, params: list[str], outputs: list[str], kinds: list[str], what: str) -> str:
    ckpt = plan.ckpt
    imports, helpers = w.helper_code()
    version = f" (Keras {quoted(ckpt.keras_version)})" if ckpt.keras_version else ""
    dtypes = ", ".join(f'"{"int64" if k == "int" else "float32"}"' for k in kinds)
    lines = [
        f'"""A PyTorch port of {quoted(ckpt.file.name)}{version}: {what}.',
        "",
        f"Written by lstm-inspect {__version__} from the Keras file alone; it computes what Keras "
        "computes at",
        ("inference, masks included." if plan.net is not None and plan.layer is None else
         "inference for this layer alone.")
        + " Load weights.safetensors into Model (README.md); needs torch only.",
        '"""',
        "",
        "import torch",
        *(["import torch.nn.functional as F"] if any("F." in code for code in [*helpers, *w.body, *w.init]) else []),
        "from torch import nn",
        *imports,
        "",
        f"INPUT_DTYPES = ({dtypes}{',' if len(kinds) == 1 else ''})  # what forward() takes, in order",
    ]
    for code in helpers:
        lines += ["", "", code]
    lines += ["", "", "class Model(nn.Module):",
              f'    """{what[0].upper()}{what[1:]}, as forward() computes it."""', "",
              "    def __init__(self):", "        super().__init__()"]
    lines += [f"        {line}" for line in w.init]
    lines += ["", f"    def forward(self, {', '.join(params)}):"]
    lines += [f"        {line}" for line in w.body]
    result = outputs[0] if len(outputs) == 1 else ", ".join(outputs)
    lines.append(f"        return {result}")
    return "\n".join(lines) + "\n"


def _readme(plan: Plan, examples: list[str], params: list[str], inputs_doc: list[tuple[str, str, str]],
            outputs_doc: list[tuple[str, str, str]], n_outputs: int, what: str) -> str:
    ckpt = plan.ckpt
    call = f"model({', '.join(params)})"
    target = "y" if n_outputs == 1 else "outputs"
    keras = f"Keras {ckpt.keras_version}" if ckpt.keras_version and _plain(ckpt.keras_version) else "Keras"
    lines = [
        "# PyTorch port",
        "",
        f"Written by lstm-inspect {__version__} from a {keras} file ({what}); the file's name is in "
        "model.py's docstring.",
        "`model.py` holds one `torch.nn.Module`, `Model`; `weights.safetensors` its `state_dict()`.",
        "",
        "## Load and run",
        "",
        "From this folder (or with it on `sys.path`), with torch and safetensors installed; the example inputs "
        "have the shapes and dtypes of the Inputs table below:",
        "",
        "```python",
        "import torch",
        "from model import Model; from safetensors.torch import load_file",
        'model = Model().eval(); model.load_state_dict(load_file("weights.safetensors"))',
        *examples,
        f"{target} = {call}" + ("" if n_outputs == 1 else f"  # a tuple of {n_outputs}"),
        "```",
        "",
        "Call it under `torch.no_grad()` for inference." + (
            " Keras's masks (Embedding mask_zero, Masking) are computed inside, from the inputs, as Keras computes "
            "them." if plan.net is not None and plan.layer is None else ""),
        "",
        "## Inputs",
        "",
        "| argument | shape | dtype |",
        "|---|---|---|",
        *(f"| `{name}` | {shape} | {dtype} |" for name, shape, dtype in inputs_doc),
        "",
        "## Outputs",
        "",
        "| output | shape | dtype |",
        "|---|---|---|",
        *(f"| {name} | {shape} | {dtype} |" for name, shape, dtype in outputs_doc),
        "",
    ]
    return "\n".join(lines)


def _free_time(plan: Plan) -> bool:
    """The model runs on another length than the one it declares (the engine on a made-up input, then on it with
    every time axis one step longer): torch.export may then take each input's time axis as a Dim."""
    net = plan.net
    assert net is not None
    try:
        xs = default_inputs(net, seed=0, batch=2, steps=5)
        net.run([np.concatenate([x, x[:, -1:]], axis=1) if np.ndim(x) >= 2 else x for x in xs])
    except (InspectError, ValueError, IndexError, FloatingPointError, BudgetError):
        return False
    return True


def _deploy(params: list[str], free_time: bool) -> str:
    """The README's section on PyTorch's deployment routes: what each gives for model.py, the lines to run."""
    example = f"({', '.join(params)}{',' if len(params) == 1 else ''})"
    dims = ", ".join(f'"{p}": {{0: dynamic' + (", 1: dynamic}" if free_time else "}") for p in params)
    axes = ", ".join(f'"{p}": {{0: "batch"' + (f', 1: "{p}_steps"}}' if free_time else "}") for p in params)
    names = ", ".join(f'"{p}"' for p in params)
    time = ("each input's batch and time axes free" if free_time else
            "the batch axis free; the time axes stay as declared (the model does not run on another length)")
    lines = [
        "",
        "## Deploy",
        "",
        "model.py has no Python branch on tensor values (a mask is read as a tensor, whatever its padding: "
        "none, before, after, or holes), its helpers are typed for TorchScript, and under torch.jit.trace and "
        "torch.export its recurrences keep a free time axis. lstm-inspect's tests "
        "run each route below on models like this one and compare it with eager PyTorch on inputs of another "
        "batch and length than the example, with masks of every kind:",
        "",
        "| route | what it gives |",
        "|---|---|",
        "| eager | `model(...)` as above; a recurrent layer torch.nn computes exactly runs torch.nn's fused op "
        "(with a mask, on each row's valid steps packed to the front as a PackedSequence, Keras's outputs at "
        "masked steps put back), other layers Keras's step loop |",
        "| `torch.jit.script` | a ScriptModule of the whole model, every path kept, running as eager does; "
        "`.save()` it for C++ (libtorch) |",
        "| `torch.jit.trace` | every path kept: a masked layer runs Keras's step loop, a TorchScript loop inside "
        "the trace (`torch.jit.script_if_tracing`), so one example serves every batch, length and mask |",
        f"| `torch.export` | an ExportedProgram with {time}; the step loops are torch's `scan` "
        "(`torch._higher_order_ops.scan`, a prototype in torch 2.x): torch.nn's LSTM/GRU/RNN, like a Python "
        "loop, would be unrolled at the example's length |",
        "| `torch.onnx.export(..., dynamo=False)` | ONNX from the trace, the step loops as ONNX `Loop`; "
        "onnxruntime runs it on other batches, lengths and masks (ONNX Runtime may warn that the shapes it "
        "infers for the loop's outputs differ; the values are right). `lstm-inspect export --to onnx` writes "
        "an ONNX file without torch |",
        "| `torch.onnx.export(..., dynamo=True)` | goes through torch.export and needs onnxscript; measured with "
        "torch 2.13 and onnxscript 0.7.2 (not in lstm-inspect's tests): with static shapes it writes an ONNX "
        "file onnxruntime runs, masks with holes included, at the example's shape only; with a dynamic batch or "
        "time axis torch.onnx's decomposition of `scan` fails ('SymInt' object has no attribute 'unsqueeze'): "
        "use `dynamo=False` |",
        "| `torch.compile` | equal to eager (measured on a masked BiLSTM with holes: within 6e-8); masked layers "
        "run Keras's step loop, which TorchDynamo unrolls, so each new sequence length compiles again (1 to 3 "
        "minutes each with the default inductor backend on a busy 2-core machine) |",
        "",
        "After the lines above, in the same folder (the ONNX route writes model.onnx there, and needs the onnx "
        "package: pip install onnx); an example input "
        "needs batch 2 or more and 2 or more steps (torch.export specializes sizes 0 and 1):",
        "",
        "```python",
        "import torch",
        f"example = {example}",
        "scripted = torch.jit.script(model)",
        "traced = torch.jit.trace(model, example)",
        "dynamic = torch.export.Dim.DYNAMIC  # a free axis; torch.export infers its range, and refuses to pin it",
        f"exported = torch.export.export(model, example, dynamic_shapes={{{dims}}})",
        f'torch.onnx.export(model, example, "model.onnx", dynamo=False, input_names=[{names}], '
        f"dynamic_axes={{{axes}}})",
        "compiled = torch.compile(model)",
        "```",
        "",
        "`scripted(...)`, `traced(...)`, `exported.module()(...)` and `compiled(...)` take what `model(...)` "
        "takes.",
        "",
    ]
    return "\n".join(lines)


def _plain(text: str) -> bool:
    return all(c.isalnum() or c in ".-+_" for c in text) and len(text) < 40


# ---------------------------------------------------------------- running an export


def load(folder: Path) -> tuple[Any, Any]:
    """(the module model.py defines, its Model with the folder's weights loaded, in eval mode); needs torch."""
    from safetensors.torch import load_file

    folder = Path(folder)
    name = f"lstm_inspect_export_{uuid.uuid4().hex}_{next(_COUNTER)}"
    spec = importlib.util.spec_from_file_location(name, folder / "model.py")
    if spec is None or spec.loader is None:
        raise InspectError(f"{folder}: model.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # importable by its name, as torch.export's tracing of scan re-imports globals' modules
    spec.loader.exec_module(module)
    model = module.Model()
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    model.eval()
    return module, model


def run(folder: Path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Run an exported folder with torch on xs: the outputs as NumPy arrays, in the model's output order; raises
    RuntimeBroken when torch is installed but fails to import."""
    try:
        import torch
    except (ImportError, OSError) as exc:  # a broken install (a missing shared library, an ABI mismatch)
        raise RuntimeBroken("torch", exc) from exc

    module, model = load(folder)
    if len(xs) != len(module.INPUT_DTYPES):
        raise InspectError(f"{folder}: the export takes {len(module.INPUT_DTYPES)} input(s), {len(xs)} were given")
    dtypes = {"int64": torch.int64, "float32": torch.float32}
    args = [torch.as_tensor(np.asarray(x)).to(dtypes[d]) for x, d in zip(xs, module.INPUT_DTYPES)]
    # one thread for this check: torch's default threads on a small model beside a busy process can take
    # 100 times longer (measured), and the check is about values, not speed; the user's setting is restored
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = model(*args)
    finally:
        torch.set_num_threads(threads)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o.detach().cpu().numpy() for o in outs]
