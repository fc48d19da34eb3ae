"""The conv, pool, padding, activation-layer, Dot, Permute, identity and Maximum/Minimum emitters of both exports
against Keras.

The samples (`*_cnn_*`, `*_pool_*`, `*_act_*`) check the exports against Keras through test_export_onnx and
test_export_torch; this file checks what they do not hold: the cases of tests/cases/layers.py that name `export`
generations (the table tests/test_layers.py reads too: every option combination it checks the engine on, and
more: strides with dilation, extra leading axes, asymmetric "same" padding, all-masked rows, masks given
as ints or floats, TimeDistributed of each kind, the identities at inference, Maximum and Minimum), one layer
call at a time on made-up weights, run by onnxruntime (opsets 14, 17, 18 and the installed onnx's newest) and
by the generated PyTorch code. The reference is Keras: each case's layer built by Keras 3 and by tf_keras
(one process per generation per test run, `keras_ref`, through tests/helpers/keras.py's `keras_once`), given
the same weights and inputs. The engine is the reference only where no Keras runs the case (NO_KERAS) and for
the mask a TimeDistributed passes on where Keras refuses the mask (see KERAS_SCRIPT).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, Tensor
from lstm_inspect.model.architecture import Call, LayerNode

from cases.layers import CL, KNOWN_BUGS, LayerCase, export_cases
from helpers.keras import keras_once, known_bug

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
torch = pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime)")

from lstm_inspect.export.onnx import graph as onnx_graph  # noqa: E402
from lstm_inspect.export.onnx.registry import LAYERS as ONNX_LAYERS  # noqa: E402
from lstm_inspect.export.onnx.registry import OnnxCall  # noqa: E402
from lstm_inspect.export.torch import code as torch_code  # noqa: E402
from lstm_inspect.export.torch.registry import LAYERS as TORCH_LAYERS  # noqa: E402

GENS = {"keras3": 3, "tf_keras": 2}


# ---------------------------------------------------------------- inputs, masks and cases


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)

    def seq(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    x = {"x1": seq(3, 9, 4), "x2": seq(2, 7, 6, 4), "xa": seq(3, 5, 4) * 3, "xd": seq(3, 5, 4), "yd": seq(3, 6, 4),
         "yd_t": seq(3, 4, 6), "yd_5": seq(3, 5, 2), "v1": seq(3, 4), "v2": seq(3, 4), "x1_4d": seq(2, 3, 9, 4),
         "xt1": seq(2, 3, 9, 4), "xt2": seq(2, 2, 7, 6, 4), "x4d": seq(3, 2, 3, 4), "y3d": seq(3, 4, 5),
         "xs": seq(3, 6) * 3, "x2_odd": seq(2, 9, 7, 3)}
    x["x1f"] = np.ascontiguousarray(np.swapaxes(x["x1"], 1, 2))
    x["x2f"] = np.ascontiguousarray(np.moveaxis(x["x2"], 3, 1))
    x["xa3"] = x["xa"] * 3
    x["xd0"] = x["xd"].copy()
    x["xd0"][0] = 0.0
    xm = seq(4, 6, 3)
    for b in range(4):
        xm[b, 6 - b:] = 0.0
    xm[1, 1] = 0.0
    x["xm"] = xm
    x["xm0"] = xm.copy()
    x["xm0"][2] = 0.0  # a row masked whole: GlobalAveragePooling1D gives 0/0 there, as Keras
    x["xmf"] = np.ascontiguousarray(np.swapaxes(xm, 1, 2))
    sm = rng.random((3, 5, 4)) > 0.3
    sm[0, 0] = False
    x["sm_mask"] = sm
    x["sm_mask_b"] = sm[:1, :, :1]
    x["sm_mask_f"] = sm.astype(np.float32)
    x["sm_mask_i"] = sm.astype(np.int64) * rng.integers(1, 3, size=sm.shape)  # 0, 1 or 2
    x["sm_mask_soft"] = np.round(rng.random((3, 5, 4)), 2).astype(np.float32)  # 0.3 is False, yet adds -0.7e9
    x["xs_mask"] = np.arange(6)[None, :] < np.array([[6], [3], [0]])
    more = np.random.default_rng(12)  # inputs added later, drawn apart so that the ones above stay
    x.update({k: more.normal(size=shape).astype(np.float32)
              for k, shape in (("x3", (2, 3, 4, 5, 2)), ("xb1", (3, 1, 4)), ("xq", (3, 3, 4)))})
    x["x3f"] = np.ascontiguousarray(np.moveaxis(x["x3"], 4, 1))
    x["xt1f"] = np.ascontiguousarray(np.swapaxes(x["xt1"], 2, 3))
    x["xm2"] = more.normal(size=xm.shape).astype(np.float32)
    return x


X = _inputs()
MASK_OF = {"xm": "masking", "xm0": "masking", "xs": "xs_mask"}  # the Keras mask arriving with these inputs


def _case(case: LayerCase) -> dict[str, Any]:
    """A case of tests/cases/layers.py as KERAS_SCRIPT and the tests read it (the generations: `export`)."""
    assert case.masks is None, case.id
    return {"id": case.id, "cls": case.cls, "config": case.config, "x": list(case.x), "gens": case.export,
            "mask": case.mask, "implicit": case.implicit}


CASES = [_case(c) for c in export_cases()]
# An engine bug (tests/cases/layers.py's KNOWN_BUGS) that both exports mirror is caught here by Keras too: xfail.
PARAMS = [pytest.param(case, gen, id=f"{gen}-{case['id']}", marks=known_bug(gen, case["id"])) for case in CASES
          for gen in case["gens"]]


def _kind(case: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The layer whose weights the case needs (TimeDistributed's wrapped one) and its config."""
    if case["cls"] == "TimeDistributed":
        return case["config"]["layer"]["class_name"], case["config"]["layer"]["config"]
    return case["cls"], case["config"]


def _weights(case: dict[str, Any]) -> list[np.ndarray]:
    """Made-up weights of the shapes Keras gives the layer, drawn from the case's id."""
    cls, cfg = _kind(case)
    x = X[case["x"][0]]
    if case["cls"] == "TimeDistributed":
        x = x.reshape(-1, *x.shape[2:])
    rng = np.random.default_rng(sum(map(ord, case["id"])))
    rank = 2 if cls.endswith(("2D", "2DTranspose")) else 1
    bias = cfg.get("use_bias", True)
    fmt = cfg.get("data_format", CL)
    cin = x.shape[-1] if fmt == CL else x.shape[-1 - rank]
    k = cfg.get("kernel_size", 1)
    kernel = tuple(k) if isinstance(k, list) else (k,) * rank
    if cls in ("Conv1D", "Conv2D"):
        f = cfg["filters"]
        shapes = [(*kernel, cin // cfg.get("groups", 1), f)] + ([(f,)] if bias else [])
    elif cls in ("Conv1DTranspose", "Conv2DTranspose"):
        f = cfg["filters"]
        shapes = [(*kernel, f, cin)] + ([(f,)] if bias else [])
    elif cls.startswith("Depthwise"):
        m = cfg.get("depth_multiplier", 1)
        shapes = [(*kernel, cin, m)] + ([(cin * m,)] if bias else [])
    elif cls.startswith("Separable"):
        m, f = cfg.get("depth_multiplier", 1), cfg["filters"]
        shapes = [(*kernel, cin, m), (*(1,) * rank, cin * m, f)] + ([(f,)] if bias else [])
    elif cls == "PReLU":
        shape = list(x.shape[1:])
        for a in cfg.get("shared_axes") or []:
            shape[a - 1] = 1
        shapes = [tuple(shape)]
    else:
        shapes = []
    return [rng.uniform(-1.2 if cls == "PReLU" else -0.6, 0.6, s).astype(np.float32) for s in shapes]


def _masks(case: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the Keras mask arriving with the first input, the mask given as mask=)."""
    implicit = case["implicit"]
    x = X[case["x"][0]]
    if implicit == "masking":
        keras_mask = np.any(x != 0, axis=-1)
    elif implicit == "masking_f":
        keras_mask = np.any(x != 0, axis=1)
    elif implicit == "steps":
        keras_mask = np.arange(x.shape[1])[None, :] < np.arange(x.shape[1], x.shape[1] - x.shape[0], -1)[:, None]
    elif implicit is not None:
        keras_mask = X[implicit]
    else:
        keras_mask = None
    return keras_mask, (X[case["mask"]] if case["mask"] else None)


def _node(case: dict[str, Any]) -> LayerNode:
    return LayerNode(name="probe", path="probe", class_name=case["cls"], config=case["config"], entry={})


def _engine(case: dict[str, Any], major: int) -> tuple[np.ndarray, np.ndarray | None]:
    keras_mask, given = _masks(case)
    inputs = [Tensor(X[name], keras_mask if k == 0 else None) for k, name in enumerate(case["x"])]
    kwargs = {"mask": Tensor(given)} if given is not None else {}
    (y,) = LAYERS[case["cls"]].run(LayerCall(_node(case), inputs, _weights(case), Context(np.float32, None, major),
                                             kwargs))[:1]
    return np.asarray(y.value), y.mask


def _close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    """max |got - want| / max(1, |want|), NaN where the reference has NaN (an all-masked mean) and only there."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, the reference's {want.shape}"
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), what
    if nan.all():
        return 0.0
    error = float(np.max(np.abs(got[~nan] - want[~nan]) / np.maximum(1.0, np.abs(want[~nan]))))
    assert error <= 1e-5, f"{what}: max relative error {error:.2e}"
    return error


def _kind_of(a: np.ndarray) -> str:
    return {"b": "bool", "i": "int", "u": "int"}.get(a.dtype.kind, "float")


# ---------------------------------------------------------------- Keras, the reference

# Each case's layer built by Keras from the case's config, given the case's weights, and called on the case's
# inputs: the Keras mask arriving with the first input set on it as Keras sets it (`_keras_mask`), a given mask as
# mask=. Where Keras refuses the arriving mask (TimeDistributed hands it to a wrapped layer that cannot take it, in
# both generations; tf_keras's TimeDistributed of a convolution or pool raises), the layer is called again without
# it: its values are Keras's and the mask passed on is compared with the engine's. Where Keras cannot build or run
# the case at all (NO_KERAS), the engine is the reference.
KERAS_SCRIPT = r'''
import json, os, sys, warnings
warnings.simplefilter("ignore")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import tensorflow as tf
gen, folder = sys.argv[1:3]
if gen == "keras3":
    from keras import layers
else:
    from tf_keras import layers
cases = json.loads(open(os.path.join(folder, "cases.json")).read())
data = np.load(os.path.join(folder, "arrays.npz"))
out, errors, refused = {}, {}, {}


def call(case, with_mask):
    if case["cls"] == "TimeDistributed":
        inner = case["config"]["layer"]
        layer = layers.TimeDistributed(getattr(layers, inner["class_name"])(**inner["config"]))
    else:
        layer = getattr(layers, case["cls"])(**case["config"])
    xs = [tf.constant(data[f"in:{n}"]) for n in case["x"]]
    arg = xs if len(xs) > 1 else xs[0]
    layer(arg)
    if case["weights"]:
        layer.set_weights([data[f"{case['id']}:w{j}"] for j in range(case["weights"])])
    xs = [tf.constant(data[f"in:{n}"]) for n in case["x"]]
    if with_mask:
        xs[0]._keras_mask = tf.constant(data[f"{case['id']}:keras_mask"])
    kwargs = {"mask": tf.constant(data[f"in:{case['mask']}"])} if case["mask"] else {}
    return layer(xs if len(xs) > 1 else xs[0], **kwargs)


def why(exc):
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


for case in cases:
    if gen not in case["gens"]:
        continue
    try:
        y = call(case, case["keras_mask"])
    except Exception as exc:
        if not case["keras_mask"]:
            errors[case["id"]] = why(exc)
            continue
        refused[case["id"]] = why(exc)
        try:
            y = call(case, False)
        except Exception as again:
            errors[case["id"]] = why(again)
            continue
    out[f"{case['id']}:y"] = np.asarray(y)
    mask = getattr(y, "_keras_mask", None)
    if mask is not None and case["id"] not in refused:
        out[f"{case['id']}:mask"] = np.asarray(mask)
out["meta"] = np.array(json.dumps({"errors": errors, "refused": refused}))
np.savez(os.path.join(folder, f"{gen}.part.npz"), **out)
os.replace(os.path.join(folder, f"{gen}.part.npz"), os.path.join(folder, f"{gen}.npz"))
'''


@pytest.fixture(scope="module")
def keras_ref(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{generation: {"arrays": Keras's outputs and masks, "errors": why Keras could not run a case, "refused": why
    it refused a case's arriving mask}}, from one Keras process per generation per test run."""
    import io
    import json

    arrays = {f"in:{k}": v for k, v in X.items()}
    spec = []
    for case in CASES:
        keras_mask, _ = _masks(case)
        weights = _weights(case)
        arrays.update({f"{case['id']}:w{j}": w for j, w in enumerate(weights)})
        if keras_mask is not None:
            arrays[f"{case['id']}:keras_mask"] = keras_mask
        spec.append({"id": case["id"], "cls": case["cls"], "config": case["config"], "x": case["x"],
                     "gens": list(case["gens"]), "mask": case["mask"], "keras_mask": keras_mask is not None,
                     "weights": len(weights)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    outs = keras_once(tmp_path_factory, "export-layers", KERAS_SCRIPT,
                      {"cases.json": json.dumps(spec).encode(), "arrays.npz": buffer.getvalue()})
    result = {}
    for gen, path in outs.items():
        with np.load(path) as data:
            got = {k: data[k] for k in data.files}
        result[gen] = {"arrays": got, **json.loads(str(got.pop("meta")))}
    return result


def _reference(case: dict[str, Any], gen: str, keras_ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None,
                                                                                 str]:
    """(output, mask passed on, "keras" | "keras, engine's mask" | "engine"): what the exports must compute.

    Keras passes on a mask given to Softmax as it was given (ints, floats); the exports pass on booleans, read as the
    Softmax reads that mask (a float above 0.5, any other number not 0), and so is Keras's mask read here."""
    ref = keras_ref[gen]
    y = ref["arrays"].get(f"{case['id']}:y")
    if y is None:
        return (*_engine(case, GENS[gen]), "engine")
    if case["id"] in ref["refused"]:
        return y, _engine(case, GENS[gen])[1], "keras, engine's mask"
    mask = ref["arrays"].get(f"{case['id']}:mask")
    if mask is not None and mask.dtype.kind != "b":
        mask = mask > 0.5 if mask.dtype.kind == "f" else mask != 0
    return y, mask, "keras"


# ---------------------------------------------------------------- ONNX


def _onnx(cases: list[tuple[dict[str, Any], int]], opset: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every (case, Keras major) emitted into one graph at `opset` and run once by onnxruntime: per case, its
    output and its output mask (None when the emitter gives none)."""
    from onnx import helper

    g = onnx_graph.Graph(opset)
    inputs, feeds, outputs, layout = [], {}, [], []

    def graph_input(a: np.ndarray) -> str:
        name = g.names.fresh("input")
        kind = _kind_of(a)
        inputs.append(onnx_graph.value_info(name, kind, a.ndim, [None] * a.ndim))  # no size known before run time
        feeds[name] = a.astype({"bool": np.bool_, "int": np.int64, "float": np.float32}[kind])
        return name

    for case, major in cases:
        keras_mask, given = _masks(case)
        syms = [onnx_graph.Sym(graph_input(X[n]), X[n].ndim) for n in case["x"]]
        if keras_mask is not None:
            syms[0].mask = graph_input(keras_mask)
        kwargs = {}
        if given is not None:
            kwargs["mask"] = onnx_graph.Sym(graph_input(given), given.ndim, kind=_kind_of(given))
        ctx = Context(np.float32, None, major)
        (y,) = ONNX_LAYERS[case["cls"]](OnnxCall(g, _node(case), syms, _weights(case), ctx, kwargs))[:1]
        want, want_mask = _engine(case, major)
        assert y.rank == want.ndim
        names = [(y.name, "float", y.rank)] + ([(y.mask, "bool", np.ndim(want_mask))] if y.mask is not None else [])
        for name, kind, rank in names:
            final = g.names.fresh("output")
            g.nodes.append(helper.make_node("Identity", [name], [final]))
            outputs.append(onnx_graph.value_info(final, kind, rank))
        layout.append(len(names))
    graph = helper.make_graph(g.nodes, "layers", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    from lstm_inspect.export.onnx.build import max_ir_version

    model.ir_version = min(model.ir_version, max_ir_version(opset))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = iter(session.run(None, feeds))
    return [(next(got), next(got) if n == 2 else None) for n in layout]


# ---------------------------------------------------------------- PyTorch


class _Weights:
    """The checkpoint's one method the emitters read."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays

    def read_layer(self, path: str) -> list[np.ndarray]:
        return self.arrays


def _torch(case: dict[str, Any], major: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The case's layer written as model.py would hold it, run by torch: (output, output mask, the code)."""
    w = torch_code.Writer("probe.keras", "keras3" if major >= 3 else "keras2")
    keras_mask, given = _masks(case)
    params, args = [], []

    def param(hint: str, a: np.ndarray) -> str:
        params.append(w.name(hint))
        args.append(torch.as_tensor(a))
        return params[-1]

    syms = [torch_code.Sym(param("x", X[n]), _kind_of(X[n]), None, X[n].shape) for n in case["x"]]
    if keras_mask is not None:
        syms[0].mask = param("mask", keras_mask)
    kwargs = {}
    if given is not None:
        kwargs["mask"] = torch_code.Sym(param("given_mask", given), _kind_of(given), None, given.shape)
    e = torch_code.LayerEmit(_node(case), syms, Call(list(syms), kwargs), w, _Weights(_weights(case)), major, None,
                             case["cls"], "probe")
    (y,) = TORCH_LAYERS[case["cls"]](e)[:1]
    imports, helpers = w.helper_code()
    returns = f"{y.name}, {y.mask}" if y.mask is not None else f"{y.name}, None"
    code = "\n".join(["import torch", "import torch.nn.functional as F", "from torch import nn", *imports, "",
                      *helpers, "", "class Model(nn.Module):", "    def __init__(self):", "        super().__init__()",
                      *(f"        {line}" for line in w.init), f"    def forward(self, {', '.join(params)}):",
                      *(f"        {line}" for line in w.body), f"        return {returns}", ""])
    namespace: dict[str, Any] = {}
    exec(compile(code, "model.py", "exec"), namespace)
    model = namespace["Model"]()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in w.weights.items()})
    with torch.no_grad():
        out, mask = model.eval()(*args)
    return out.numpy(), (None if mask is None else mask.numpy()), code


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("case,gen", PARAMS)
def test_both_exports_compute_what_keras_computes(case: dict[str, Any], gen: str, keras_ref: dict[str, Any]) -> None:
    major = GENS[gen]
    want, want_mask, source = _reference(case, gen, keras_ref)
    (got, got_mask), = _onnx([(case, major)], onnx_graph.DEFAULT_OPSET)
    _close(got, want, f"onnx against {source}")
    t_got, t_mask, _ = _torch(case, major)
    _close(t_got, want, f"pytorch against {source}")
    for mask in (got_mask, t_mask):  # the mask passed on: exactly where the reference passes one
        assert (mask is None) == (want_mask is None), source
        if mask is not None:
            assert np.array_equal(mask, np.broadcast_to(want_mask, mask.shape)), source


NEWEST = onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("opset", sorted({14, 17, 18, NEWEST}))
def test_every_case_at_each_opset(opset: int, keras_ref: dict[str, Any]) -> None:
    """All cases in one graph per opset (reductions take axes as an input from 18, Pad and pools changed forms)."""
    pairs = [(case, gen) for case in CASES for gen in case["gens"] if (gen, case["id"]) not in KNOWN_BUGS]
    for (case, gen), (got, _) in zip(pairs, _onnx([(case, GENS[gen]) for case, gen in pairs], opset)):
        want, _, source = _reference(case, gen, keras_ref)
        _close(got, want, f"opset {opset} {gen} {case['id']} against {source}")


# Where Keras cannot run a case, by generation: the engine is its reference there (test_layers.py checks the engine
# against Keras on every setting Keras has). Causal padding: Keras 3's separable and depthwise 1D convolutions
# accept only "valid" and "same"; tf_keras's DepthwiseConv1D refuses it ("only supported for Conv1D and
# SeparableConv1D"). The engine runs these anyway, as Conv1D's causal padding followed by a valid convolution.
CAUSAL_DW = {"DepthwiseConv1D-causal-dm2-channels_last", "DepthwiseConv1D-causal-dm2-channels_first"}
NO_KERAS: dict[str, set[str]] = {
    "keras3": CAUSAL_DW | {"SeparableConv1D-causal-dm2-channels_last", "SeparableConv1D-causal-dm2-channels_first",
                           "TimeDistributed-SeparableConv1D-causal"},
    "tf_keras": CAUSAL_DW}


def test_keras_is_the_reference_wherever_it_runs(keras_ref: dict[str, Any]) -> None:
    """The cases Keras could not run are exactly the ones listed, each for the reason Keras gave; every other case
    (all but those) is compared with Keras's own output."""
    for gen in GENS:
        errors = keras_ref[gen]["errors"]
        assert set(errors) == NO_KERAS[gen], {k: v for k, v in errors.items() if k not in NO_KERAS[gen]}
        ran = [c for c in CASES if gen in c["gens"] and c["id"] not in errors]
        assert all(f"{c['id']}:y" in keras_ref[gen]["arrays"] for c in ran)
    assert sum(gen in c["gens"] and c["id"] not in NO_KERAS[gen] for c in CASES for gen in GENS) > 500


def test_every_kind_the_engine_runs_has_both_forms() -> None:
    assert set(LAYERS) <= set(ONNX_LAYERS), sorted(set(LAYERS) - set(ONNX_LAYERS))
    assert set(LAYERS) <= set(TORCH_LAYERS), sorted(set(LAYERS) - set(TORCH_LAYERS))
    tested = {_kind(case)[0] for case in CASES}
    new = {k for k, v in LAYERS.items() if v.run.__module__.split(".")[-1] in ("conv", "pooling", "activations")}
    new |= {"Dot", "Permute", "AlphaDropout", "ActivityRegularization", "SpatialDropout2D", "SpatialDropout3D",
            "Maximum", "Minimum"}
    assert new <= tested, sorted(new - tested)
    wrapped = {_kind(c)[0] for c in CASES if c["cls"] == "TimeDistributed"}
    assert wrapped >= {"Conv1D", "SeparableConv1D", "DepthwiseConv1D", "MaxPooling1D", "AveragePooling1D"}


def test_generated_code_reads_like_pytorch() -> None:
    """nn.Conv modules with the Keras kernel in PyTorch's layout, padding in the module when symmetric, F.pad when
    not, TensorFlow's same padding computed in forward() when it depends on the length."""
    def code(cid: str) -> str:
        return _torch(next(c for c in CASES if c["id"] == cid), 3)[2]

    assert "nn.Conv1d(4, 6, 3, padding=1)" in code("Conv1D-same-s1-d1-channels_last")
    assert "F.pad(" in code("Conv1D-causal-s1-d2-channels_first") and ".movedim(" not in \
        code("Conv1D-causal-s1-d2-channels_first")
    assert "same_pad(" in code("Conv1D-same-s2-d1-channels_last")
    separable = code("SeparableConv2D-same-cf")
    assert "nn.Conv2d(4, 4, (3, 3), padding=(1, 1), groups=4, bias=False)" in separable
    assert "nn.Conv2d(4, 2, 1)" in separable and "movedim" not in separable
    assert "nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False)" in code(
        "AveragePooling1D-p3-s1-same-channels_last")
    assert "avg_pool_same(" in code("AveragePooling1D-p2-s3-same-channels_last")
    assert 'F.pad(x, (0, 1, 0, 1), value=float("-inf"))' in code("MaxPooling2D-p22-s(1, 1)-same-channels_first")
    assert "F.pad(x, (0, 0, 3, 1, 0, 2))" in code("ZeroPadding2D-pairs")
    assert "x[:, :, 1:-1, 1:-1]" in code("Cropping2D-int-cf")


def test_weights_are_stored_in_pytorchs_layout() -> None:
    case = next(c for c in CASES if c["id"] == "DepthwiseConv1D-valid-dm2-channels_last")
    w = torch_code.Writer("probe.keras", "keras3")
    e = torch_code.LayerEmit(_node(case), [torch_code.Sym("x", shape=X["x1"].shape)], Call(), w,
                             _Weights(_weights(case)), 3, None, case["cls"], "probe")
    TORCH_LAYERS[case["cls"]](e)
    kernel = _weights(case)[0]  # (k, C, M)
    stored = w.weights[f"{w.attrs['probe']}.weight"]  # (C·M, 1, k): output c·M + m
    assert stored.shape == (8, 1, 3)
    np.testing.assert_array_equal(stored[1 * 2 + 1, 0], kernel[:, 1, 1])


@pytest.mark.parametrize("cls,config,problem", [
    ("Conv1D", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, "strides"),
    ("Conv2D", {"filters": 2, "kernel_size": 1, "padding": "causal"}, "padding"),
    ("MaxPooling1D", {"pool_length": 3, "stride": None, "border_mode": "valid"}, "Keras 1"),
    ("Permute", {"dims": [1, 1]}, "dims"),
])
def test_refusals_name_the_layer_in_one_line(cls: str, config: dict[str, Any], problem: str) -> None:
    node = LayerNode(name="probe", path="probe", class_name=cls, config=config, entry={})
    x = X["x2"] if cls == "Conv2D" else X["x1"]
    weights = [np.ones((1, 1, 4, 2), np.float32)] if cls == "Conv2D" else [np.ones((3, 4, 2), np.float32)] * (
        cls == "Conv1D")
    g = onnx_graph.Graph(17)
    with pytest.raises(InspectError) as err:
        ONNX_LAYERS[cls](OnnxCall(g, node, [onnx_graph.Sym("x", x.ndim)], weights, Context(np.float32, None, 3)))
    assert problem in str(err.value) and f"({cls})" in str(err.value) and "\n" not in str(err.value)
    w = torch_code.Writer("probe.keras", "keras3")
    e = torch_code.LayerEmit(node, [torch_code.Sym("x", shape=x.shape)], Call(), w, _Weights(weights), 3, None, cls,
                             "probe")
    with pytest.raises(InspectError) as err:
        TORCH_LAYERS[cls](e)
    assert problem in str(err.value) and f"({cls})" in str(err.value) and "\n" not in str(err.value)
