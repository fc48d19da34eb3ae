"""The attention layers in `export --to onnx` and `--to pytorch`: every rule of the engine's, outputs and masks.

The samples `*_att_*` run in test_export_onnx and test_export_torch against Keras's outputs. Here, what they
do not reach: one layer call at a time on made-up tensors and masks (padded queries, fully masked rows,
causal masks, scores returned, masks and tensors by keyword, attention_axes, gate and sliding window), for
the rules of each Keras generation and Keras 3 release, run by the engine, by onnxruntime and by torch and
compared, output masks included (the engine's rules are checked against Keras in test_attention); the
samples re-read as written by earlier releases (mask clearing, unexpanded value masks, no implicit masks);
and a Keras 3 model with a keyword-only call and keras.ops.convert_to_tensor, against Keras itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, Tensor
from lstm_inspect.export import export
from lstm_inspect.model.architecture import Call, LayerNode
from lstm_inspect.model.cells.base import keras_major_minor

from conftest import SAMPLES

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")
pytest.importorskip("safetensors", reason="safetensors is not installed: pip install 'lstm-inspect[pytorch]'")

from lstm_inspect.export.onnx.graph import Graph, value_info  # noqa: E402
from lstm_inspect.export.onnx.graph import Sym as OnnxSym  # noqa: E402
from lstm_inspect.export.onnx.registry import LAYERS as ONNX_LAYERS  # noqa: E402
from lstm_inspect.export.onnx.registry import OnnxCall  # noqa: E402
from lstm_inspect.export.torch.code import LayerEmit, Writer  # noqa: E402
from lstm_inspect.export.torch.code import Sym as TorchSym  # noqa: E402
from lstm_inspect.export.torch.registry import LAYERS as TORCH_LAYERS  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- one layer call, three ways


@dataclass(frozen=True)
class Ref:
    """A tensor of the case, by name, in a call's arguments."""

    name: str


@dataclass
class Case:
    kind: str
    config: dict[str, Any]
    version: str
    args: list[Any]  # Refs (nested in a list for Attention's [query, value])
    kwargs: dict[str, Any] = field(default_factory=dict)  # Refs, lists of Refs, or plain values
    masked: tuple[str, ...] = ()  # the tensors that carry an implicit Keras mask


RNG = np.random.default_rng(11)
B, TQ, TV, F = 3, 4, 6, 5


def _tensors() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Made-up tensors and their Keras masks: padded queries (one step of row 2 fully masked once the value
    mask applies), left and right padded values, a key apart from the value, rank-4 grids."""
    q_mask = np.ones((B, TQ), bool)
    q_mask[1, 3:], q_mask[2, 2:] = False, False
    v_mask = np.ones((B, TV), bool)
    v_mask[0, 4:], v_mask[2, :2] = False, False  # row 2: query step 0 sees nothing under a causal mask
    square = np.ones((TQ, TQ), bool)  # Keras 3.0-3.11's unexpanded value mask needs batch == Tq
    square[1, 3:], square[3, :2] = False, False
    floats = lambda m: m.astype(np.float32)  # noqa: E731
    attention_mask = RNG.random((B, TQ, TV)) > 0.3
    attention_mask[1, 0] = False  # a query step that may attend to nothing
    # as numbers, some between 0 and 1: truth (nonzero), > 0.5 (robust masking) and 1 - mask (added) differ
    fractions = np.where(attention_mask, RNG.choice([1.0, 0.7], size=attention_mask.shape),
                         RNG.choice([0.0, 0.3], size=attention_mask.shape)).astype(np.float32)
    fractions[1, 0] = 0.0
    return {
        "q": (RNG.normal(size=(B, TQ, F)).astype(np.float32), q_mask),
        "v": (RNG.normal(size=(B, TV, F)).astype(np.float32), v_mask),
        "k": (RNG.normal(size=(B, TV, F)).astype(np.float32), None),
        "qq": (RNG.normal(size=(TQ, TQ, F)).astype(np.float32), square),
        "qm": (floats(q_mask) * RNG.choice([1.0, 0.7], size=q_mask.shape).astype(np.float32), None),
        "vm": (floats(v_mask), None), "vmb": (v_mask, None),
        "am": (fractions, None), "amb": (attention_mask, None),
        "grid": (RNG.normal(size=(2, 3, 4, F)).astype(np.float32), None),
    }


TENSORS = _tensors()


def _weights(case: Case) -> list[np.ndarray]:
    cfg = case.config
    rng = np.random.default_rng(5)
    shapes: list[tuple[int, ...]] = []
    if case.kind == "Attention":
        shapes = [()] * (bool(cfg.get("use_scale")) + (cfg.get("score_mode") == "concat"))
    elif case.kind == "AdditiveAttention":
        shapes = [(F,)] if cfg.get("use_scale", True) else []
    else:
        heads, key_dim = cfg["num_heads"], cfg["key_dim"]
        value_dim = cfg.get("value_dim") or key_dim
        out = cfg.get("output_shape") or [F]
        bias = cfg.get("use_bias", True)
        for dim in [key_dim, key_dim] + ([value_dim] if cfg.get("use_gate") else []) + [value_dim]:
            shapes += [(F, heads, dim)] + ([(heads, dim)] if bias else [])
        shapes += [(heads, value_dim, *out)] + ([tuple(out)] if bias else [])
    return [rng.uniform(-0.8, 0.8, s).astype(np.float32) for s in shapes]


def _map(obj: Any, fn: Any) -> Any:
    if isinstance(obj, Ref):
        return fn(obj.name)
    if isinstance(obj, list):
        return [_map(v, fn) for v in obj]
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, list):
        return [t for v in obj for t in _flat(v)]
    return [obj] if obj is not None and not isinstance(obj, (bool, int, float, str)) else []


def _used(case: Case) -> list[str]:
    names: list[str] = []
    _map([case.args, case.kwargs], lambda n: names.append(n) if n not in names else None)
    return names


def _node(case: Case) -> LayerNode:
    return LayerNode(name="att", path="att", class_name=case.kind, config=dict(case.config), entry={})


def _context(case: Case) -> Context:
    return Context(np.float32, case.version, keras_major_minor(case.version)[0] or 2)


def _engine(case: Case) -> list[tuple[np.ndarray, np.ndarray | None]]:
    tensors = {n: Tensor(a, m if n in case.masked else None) for n, (a, m) in TENSORS.items()}
    args, kwargs = _map(case.args, tensors.get), _map(case.kwargs, tensors.get)
    call = LayerCall(_node(case), _flat(args), _weights(case), _context(case), kwargs)
    return [(t.value, t.mask) for t in LAYERS[case.kind].run(call)]


def _onnx(case: Case) -> list[tuple[np.ndarray, np.ndarray | None]]:
    from onnx import helper

    from lstm_inspect.export.onnx.build import max_ir_version

    g = Graph(17)
    syms, feeds, infos = {}, {}, []
    for n in _used(case):
        a, m = TENSORS[n]
        kind = "bool" if a.dtype == bool else "float"
        name = g.names.fresh(n)
        infos.append(value_info(name, kind, a.ndim))
        feeds[name] = a
        mask = None
        if m is not None and n in case.masked:
            mask = g.names.fresh(f"{n}_mask")
            infos.append(value_info(mask, "bool", m.ndim))
            feeds[mask] = m
        syms[n] = OnnxSym(name, a.ndim, kind, mask, a.shape[-1])
    args, kwargs = _map(case.args, syms.get), _map(case.kwargs, syms.get)
    outs = ONNX_LAYERS[case.kind](OnnxCall(g, _node(case), _flat(args), _weights(case), _context(case), kwargs))
    results = []
    for k, s in enumerate(outs):
        for what, name, kind, rank in (("y", s.name, "float", s.rank), ("mask", s.mask, "bool", 2)):
            if name is not None:
                g.nodes.append(helper.make_node("Identity", [name], [f"{what}{k}"]))
                results.append(value_info(f"{what}{k}", kind, rank))
    graph = helper.make_graph(g.nodes, "case", infos, results, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, max_ir_version(17))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([r.name for r in results], session.run(None, feeds)))
    return [(got[f"y{k}"], got.get(f"mask{k}")) for k in range(len(outs))]


class _Weights:
    """What LayerEmit reads from a checkpoint: this case's arrays."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays

    def read_layer(self, path: str) -> list[np.ndarray]:
        return self.arrays


def _torch(case: Case) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], str]:
    """The outputs of the forward() the emitter writes, and its source."""
    major = keras_major_minor(case.version)[0] or 2
    w = Writer("case", "keras3" if major >= 3 else "keras2")
    syms, params, feeds = {}, [], []
    for n in _used(case):
        a, m = TENSORS[n]
        p = w.name(n)
        params.append(p)
        feeds.append(torch.as_tensor(a))
        mask = None
        if m is not None and n in case.masked:
            mask = w.name(f"{n}_mask")
            params.append(mask)
            feeds.append(torch.as_tensor(m))
        syms[n] = TorchSym(p, "bool" if a.dtype == bool else "float", mask, tuple(a.shape))
    args, kwargs = _map(case.args, syms.get), _map(case.kwargs, syms.get)
    e = LayerEmit(_node(case), _flat(args), Call(args, kwargs), w, _Weights(_weights(case)), major, case.version,
                  case.kind, "att")
    outs = TORCH_LAYERS[case.kind](e)
    imports, helpers = w.helper_code()
    returned = ", ".join(f"{o.name}, {o.mask or 'None'}" for o in outs)
    source = "\n".join(["import torch", "import torch.nn.functional as F", "from torch import nn", *imports,
                        *helpers, "class Case(nn.Module):", "    def __init__(self):", "        super().__init__()",
                        *(f"        {line}" for line in w.init), f"    def forward(self, {', '.join(params)}):",
                        *(f"        {line}" for line in w.body), f"        return [{returned}]"])
    namespace: dict[str, Any] = {}
    exec(compile(source, "<case>", "exec"), namespace)
    module = namespace["Case"]()
    module.load_state_dict({k: torch.as_tensor(v) for k, v in w.weights.items()})
    with torch.no_grad():
        got = module(*feeds)
    pairs = [(got[2 * k].numpy(), None if got[2 * k + 1] is None else got[2 * k + 1].numpy())
             for k in range(len(outs))]
    return pairs, source


def _agree(got: list[tuple[np.ndarray, np.ndarray | None]], want: list[tuple[np.ndarray, np.ndarray | None]],
           what: str) -> float:
    assert len(got) == len(want), what
    worst = 0.0
    for k, ((y, m), (y0, m0)) in enumerate(zip(got, want)):
        assert y.shape == y0.shape, f"{what}: output {k} has shape {y.shape}, the engine's {y0.shape}"
        worst = max(worst, float(np.max(np.abs(y - y0) / np.maximum(1.0, np.abs(y0)))))
        assert (m is None) == (m0 is None), f"{what}: output {k}'s mask"
        if m0 is not None:
            assert np.array_equal(m, m0), f"{what}: output {k}'s mask differs"
    assert worst <= TOLERANCE, f"{what}: {worst:.2e}"
    return worst


Q, V, K = Ref("q"), Ref("v"), Ref("k")
K3, OLD_K3, TFK = "3.15.1", "3.14.0", "2.15.0"
SCORES = {"return_attention_scores": True}
MHA = {"num_heads": 2, "key_dim": 3}
CASES = {
    # Attention: implicit masks of query and value (the padded query steps zeroed: a where from 3.15, a product
    # before), the value mask expanded from 3.12, unexpanded before (batch == Tq), tf_keras's rules
    "attention_k3": Case("Attention", {"use_scale": True}, K3, [[Q, V]], masked=("q", "v")),
    "attention_k3_14": Case("Attention", {"use_scale": True}, OLD_K3, [[Q, V]], masked=("q", "v")),
    "attention_k3_11_unexpanded": Case("Attention", {}, "3.11.0", [[Ref("qq"), Ref("qq")]], masked=("qq",)),
    "attention_concat_causal_scores": Case("Attention", {"use_scale": True, "score_mode": "concat"}, K3, [[Q, V, K]],
                                           {"use_causal_mask": True, **SCORES}, ("q", "v")),
    "attention_tfk_causal_scores": Case("Attention", {"use_scale": True}, TFK, [[Q, V]],
                                        {"use_causal_mask": True, **SCORES}, ("q", "v")),
    "attention_tfk_causal_config_key": Case("Attention", {"causal": True}, "2.8.0", [[Q, V, K]], {}, ("q", "v")),
    "attention_mask_argument_k3": Case("Attention", {}, K3, [[Q, V]], {"mask": [Ref("qm"), Ref("vmb")], **SCORES}),
    "attention_mask_argument_tfk": Case("Attention", {}, TFK, [[Q, V]], {"mask": [Ref("qm"), Ref("vm")]}),
    "additive_k3_causal_scores": Case("AdditiveAttention", {}, K3, [[Q, V, K]], {"use_causal_mask": True, **SCORES},
                                      ("q", "v")),
    "additive_tfk_no_scale": Case("AdditiveAttention", {"use_scale": False}, TFK, [[Q, V]], SCORES, ("q", "v")),
    # MultiHeadAttention: dot_product_attention (3.7+, 3-D, no dropout, no scores) with masks, causal only
    # (is_causal from 3.15), causal with masks
    "mha_dpa_masks": Case("MultiHeadAttention", MHA, K3, [Q, V], masked=("q", "v")),
    "mha_dpa_causal_only": Case("MultiHeadAttention", MHA, K3, [Q, V], {"use_causal_mask": True}),
    "mha_dpa_causal_only_3_14": Case("MultiHeadAttention", MHA, OLD_K3, [Q, V], {"use_causal_mask": True}),
    "mha_dpa_causal_masks": Case("MultiHeadAttention", MHA, K3, [Q, V], {"use_causal_mask": True}, ("q", "v")),
    # the Softmax layer: set -1e9 from 3.13, add before; masked weights zeroed from 3.10 (fully masked rows)
    "mha_softmax_3_15": Case("MultiHeadAttention", MHA, K3, [Q, V], SCORES, ("q", "v")),
    "mha_softmax_3_12": Case("MultiHeadAttention", MHA, "3.12.0", [Q, V], SCORES, ("q", "v")),
    "mha_softmax_3_9": Case("MultiHeadAttention", MHA, "3.9.0", [Q, V], SCORES, ("q", "v")),
    "mha_dropout_path": Case("MultiHeadAttention", {**MHA, "dropout": 0.2}, K3, [Q, V], {"use_causal_mask": True},
                             ("q", "v")),
    # query_mask honoured before 3.8 only; an explicit attention_mask kept as given before 3.7 without masks
    "mha_query_mask_3_7": Case("MultiHeadAttention", MHA, "3.7.0", [Q, V], {"query_mask": Ref("qm")}, ("v",)),
    "mha_query_mask_ignored": Case("MultiHeadAttention", MHA, K3, [Q, V], {"query_mask": Ref("qm")}, ("v",)),
    "mha_float_attention_mask_3_6": Case("MultiHeadAttention", MHA, "3.6.0", [Q, V], {"attention_mask": Ref("am")}),
    "mha_keyword_masks": Case("MultiHeadAttention", {**MHA, "value_dim": 4, "output_shape": [2, 3]}, K3, [Q],
                              {"value": V, "key": K, "value_mask": Ref("vmb"), "key_mask": Ref("vm"),
                               "attention_mask": Ref("amb")}, ("q",)),
    "mha_keyword_only": Case("MultiHeadAttention", MHA, K3, [], {"query": Q, "value": V, **SCORES}, ("q", "v")),
    "mha_gate_window_no_bias": Case("MultiHeadAttention", {**MHA, "use_gate": True, "sliding_window": 2,
                                                           "use_bias": False}, K3, [Q, V], {}, ("q",)),
    "mha_two_attention_axes": Case("MultiHeadAttention", {**MHA, "attention_axes": [1, 2]}, K3,
                                   [Ref("grid"), Ref("grid")], SCORES),
    # tf_keras: masks from 2.10 (none before), added -1e9 (set with softmax_robust_masking), a float mask as given
    "mha_tfk_masks_causal": Case("MultiHeadAttention", MHA, TFK, [Q], {"value": V, "use_causal_mask": True,
                                                                      "attention_mask": Ref("am"), **SCORES},
                                 ("q", "v")),
    "mha_tfk_robust": Case("MultiHeadAttention", {**MHA, "softmax_robust_masking": True}, TFK, [Q, V, K],
                           {"attention_mask": Ref("am")}),
    "mha_tfk_float_mask": Case("MultiHeadAttention", MHA, TFK, [Q, V], {"attention_mask": Ref("am"), **SCORES}),
    "mha_tfk_2_9_no_implicit_masks": Case("MultiHeadAttention", MHA, "2.9.0", [Q], {"value": V}, ("q", "v")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_call_matches_the_engine(name: str) -> None:
    case = CASES[name]
    want = _engine(case)
    _agree(_onnx(case), want, f"{name} (onnx)")
    _agree(_torch(case)[0], want, f"{name} (pytorch)")


def test_the_cases_reach_the_rules() -> None:
    """The cases above do what their names say: fully masked query rows exist, and each release's rule changes
    the answer where it should."""
    zeroed = _engine(CASES["mha_softmax_3_12"])[1][0]
    uniform = _engine(CASES["mha_softmax_3_9"])[1][0]
    assert np.all(zeroed[2, :, 2:] == 0.0)  # row 2's padded query steps: zero weights from 3.10
    assert np.allclose(uniform[2, :, 3], 1.0 / TV)  # and uniform before
    ignored, honoured = _engine(CASES["mha_query_mask_ignored"]), _engine(CASES["mha_query_mask_3_7"])
    assert np.max(np.abs(ignored[0][0] - honoured[0][0])) > 1e-3
    causal = _engine(CASES["attention_tfk_causal_scores"])[1][0]
    assert np.allclose(causal[2, 0], 1.0 / TV)  # a row with no step to attend to: uniform, as Keras


def test_generated_lines_read_as_keras_rules() -> None:
    _, source = _torch(CASES["mha_softmax_3_12"])
    assert "(1.0 - " in source and "torch.zeros_like" in source  # added -1e9, masked weights zeroed
    _, source = _torch(CASES["mha_softmax_3_15"])
    assert "-1e9)" in source
    _, source = _torch(CASES["mha_dpa_causal_only"])
    assert 'torch.einsum("btnh,bsnh->bnts"' in source and "causal_mask(" in source


@pytest.mark.parametrize("kind,config,kwargs,problem", [
    ("Attention", {"score_mode": "cosine"}, {}, "score_mode"),
    ("Attention", {"dropout": 0.5}, {"training": True}, "training=True"),
    ("MultiHeadAttention", MHA, {"use_causal_mask": Ref("qm")}, "use_causal_mask is a tensor"),
    ("MultiHeadAttention", {**MHA, "output_shape": [0, 2]}, {}, "output_shape"),
])
def test_refused_in_one_line_naming_the_layer(kind: str, config: dict[str, Any], kwargs: dict[str, Any],
                                              problem: str) -> None:
    case = Case(kind, config, K3, [[Q, V]] if kind == "Attention" else [Q, V], kwargs)
    for run, where in ((_onnx, "cannot be exported to ONNX"), (_torch, "(" + kind + ")")):
        with pytest.raises(InspectError, match=problem) as err:
            run(case)
        message = str(err.value)
        assert "\n" not in message and "layer att" in message and where in message


# ---------------------------------------------------------------- samples as written by earlier releases


def _as_written_by(name: str, version: str) -> lstm_inspect.Checkpoint:
    ckpt = lstm_inspect.load(SAMPLES / name)
    ckpt.keras_version = version
    return ckpt


def _inputs(stem: str) -> list[np.ndarray]:
    with np.load(SAMPLES / f"{stem}.io.npz") as d:
        return [d[k] for k in sorted(d.files) if k.startswith("x")]


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
@pytest.mark.parametrize("name,version", [
    ("k3_att_mha_padded_query.keras", "3.7.0"),  # nothing cleared: the second layer masked, add -1e9, uniform rows
    ("k3_att_mha_padded_query.keras", "3.6.0"),  # no dot_product_attention: the Softmax layer for both
    ("k3_att_mha_padded_query.keras", "3.10.0"),  # masks cleared, the first layer's fully masked rows zeroed
    ("k3_att_seq2seq_mha.keras", "3.14.0"),  # a causal mask as a mask (is_causal only from 3.15)
    ("k3_att_additive_causal.keras", "3.14.0"),  # padded query steps zeroed by a product
    ("tfk_att_mha_padded_query.h5", "2.9.0"),  # tf.keras before 2.10: no implicit masks
    ("tfk_att_seq2seq_mha.h5", "2.9.0"),
])
def test_earlier_release_rules_match_the_engine(name: str, version: str, target: str, tmp_path: Path) -> None:
    report = export(_as_written_by(name, version), target, tmp_path / "out", xs=_inputs(name.split(".")[0]))
    assert report.not_verified is None, report.not_verified
    assert report.ok and report.max_abs <= TOLERANCE, report.summary()


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_keras3_11_value_mask_broadcast_unexpanded(target: str, tmp_path: Path) -> None:
    """Keras 3.0-3.11's Attention runs only on a batch of 1 or of the query's steps (then batch row i's value mask
    masks query step i): both exported as the engine computes them, which test_attention checks against Keras."""
    ckpt = _as_written_by("k3_att_bilstm_text.keras", "3.11.0")
    x = _inputs("k3_att_bilstm_text")[0]
    nine = np.concatenate([x, x[:4]])  # 9 rows for 9 steps
    for xs in (x[1:2], nine):
        report = export(ckpt, target, tmp_path / f"out{len(xs)}", xs=[xs], force=True)
        assert report.ok and report.max_abs <= TOLERANCE, report.summary()
    with pytest.raises(InspectError, match=r"fixed in Keras 3\.12"):
        export(ckpt, target, tmp_path / "out", xs=[x], force=True)  # batch 5: Keras 3.11 fails too


def test_masks_cleared_from_3_8_in_both_exports(tmp_path: Path) -> None:
    """From 3.8 the first MultiHeadAttention clears the mask of the tensor it read, so the second's scores have
    no zeros; written by 3.7, the second is masked."""
    x = _inputs("k3_att_mha_padded_query")[0]
    for version, cleared in (("3.15.1", True), ("3.7.0", False)):
        for target in ("onnx", "pytorch"):
            from lstm_inspect.export import TARGETS

            out = tmp_path / f"{version}.{target}"
            export(_as_written_by("k3_att_mha_padded_query.keras", version), target, out, xs=[x])
            scores = TARGETS[target].run(out, [x])[1]
            assert bool(np.all(scores > 0)) == cleared, (version, target)


# ---------------------------------------------------------------- a Keras 3 model against Keras itself


@pytest.fixture(scope="module")
def keras3_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """MultiHeadAttention called by keyword only, with a gate, a sliding window and a causal mask, over two
    attention axes; keras.ops.convert_to_tensor on a mask (a cast) and on a tensor (the identity)."""
    from lstm_inspect.check.keras_ref import import_keras

    try:
        keras = import_keras("keras3")
    except InspectError as exc:
        pytest.skip(str(exc))
    layers = keras.layers
    ids = keras.Input((6,), dtype="int32", name="tokens")
    h = layers.LSTM(4, return_sequences=True, name="lstm")(layers.Embedding(12, 4, mask_zero=True, name="emb")(ids))
    a = layers.MultiHeadAttention(2, 3, name="by_keyword")(query=h, value=h)
    b = layers.MultiHeadAttention(2, 2, use_gate=True, sliding_window=2, use_bias=False, name="gated")(
        a, a, use_causal_mask=True)
    grid = layers.Reshape((2, 3, 4), name="grid")(keras.ops.convert_to_tensor(b))
    c = layers.MultiHeadAttention(2, 3, attention_axes=(1, 2), name="axes")(grid, grid)
    mask = keras.ops.convert_to_tensor(keras.ops.not_equal(ids, 0), dtype="float32")
    model = keras.Model(ids, [layers.Flatten(name="flat")(c), mask])
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()])
    x = np.array([[1, 2, 3, 4, 5, 6], [3, 4, 5, 0, 0, 0], [7, 8, 0, 0, 0, 0]], dtype="int32")
    path = tmp_path_factory.mktemp("keras3") / "keyword_gate_axes.keras"
    model.save(path)
    with warnings.catch_warnings():  # Reshape drops the mask it is given, as intended here
        warnings.simplefilter("ignore", UserWarning)
        ys = model.predict(x, verbose=0)
    return path, [x], [np.asarray(y) for y in ys]


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_keras3_model_matches_keras(keras3_model: tuple[Path, list[np.ndarray], list[np.ndarray]], target: str,
                                    tmp_path: Path) -> None:
    from lstm_inspect.export import TARGETS

    path, xs, ys = keras3_model
    ckpt = lstm_inspect.load(path)
    assert any(n.class_name == "ConvertToTensor" for n in ckpt.graph.walk())
    by_keyword = next(n for n in ckpt.graph.walk() if n.name == "by_keyword")
    assert by_keyword.inbound[0].args == [] and set(by_keyword.inbound[0].kwargs) == {"query", "value"}
    out = tmp_path / "out"
    report = export(ckpt, target, out, xs=xs)
    assert report.ok, report.summary()
    got = TARGETS[target].run(out, xs)
    assert len(got) == len(ys)
    for g, y in zip(got, ys):
        assert g.shape == y.shape and float(np.max(np.abs(g - y))) <= TOLERANCE
