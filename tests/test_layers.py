"""Convolutions, pools, padding/cropping, activation layers, Dot, Permute, the identities at inference,
Maximum/Minimum and TimeDistributed around 1D convolutions and pools, against Keras itself.

Every case of tests/cases/layers.py that names `engine` generations (the table tests/test_export_layers.py
reads too) is a tiny layer built by each Keras generation (Keras 3 and tf_keras) in a subprocess (once per test
run, shared by pytest-xdist's workers: tests/helpers/keras.py's `keras_once`), given random weights, and called on
a seeded input; the engine's layer function must give Keras's output (float32 and float64, within 1e-5), the
mask Keras passes on where the case gives masks, and what its `dims` says about the last axis must hold.
cases/layers.py's KNOWN_BUGS lists the cases where the engine does not compute what Keras computes (strict
xfails). The
samples `*_cnn_*`, `*_pool_*`, `*_act_*` (sample_models/layer_samples.py) check the same layers inside
whole models through test_engine, test_verify, test_show, test_gates and test_interop.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.core import IDENTITY
from lstm_inspect.engine.layers.registry import LAYERS, Context, LayerCall, Tensor
from lstm_inspect.model.activations import activation_fn
from lstm_inspect.model.architecture import LayerNode

from cases.layers import GENS, LayerCase, engine_cases
from conftest import SAMPLES, run_cli
from helpers.keras import keras_once, known_bug


def _case(case: LayerCase) -> dict[str, Any]:
    """A case of tests/cases/layers.py as KERAS_SCRIPT and the tests read it: `mask` is "masking" (a Masking layer
    in front) or the name of a mask given as mask=; `masks` the Keras mask each input arrives with."""
    assert case.implicit in (None, "masking"), case.id
    return {"id": case.id, "cls": case.cls, "kwargs": case.config, "x": list(case.x), "gens": list(case.engine),
            "mask": "masking" if case.implicit == "masking" else case.mask,
            "masks": None if case.masks is None else list(case.masks)}


CASES = [_case(c) for c in engine_cases()]

# The Keras side: inputs, layers, outputs; and what each generation does with a mask and with LeakyReLU.
KERAS_SCRIPT = r'''
import json, os, sys, warnings
warnings.simplefilter("ignore")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
gen, folder = sys.argv[1:3]
if gen == "keras3":
    import keras
    from keras import layers
else:
    import tf_keras as keras
    from tf_keras import layers
cases = json.loads(open(os.path.join(folder, "cases.json")).read())
rng = np.random.default_rng(7)
def seq(*shape):
    return rng.normal(size=shape).astype("float32")
x = {"x1": seq(3, 9, 4), "x2": seq(2, 7, 6, 4), "xa": seq(3, 5, 4) * 3, "xd": seq(3, 5, 4), "yd": seq(3, 6, 4),
     "yd_t": seq(3, 4, 6), "yd_5": seq(3, 5, 2), "v1": seq(3, 4), "v2": seq(3, 4)}
x["x1f"] = np.ascontiguousarray(np.swapaxes(x["x1"], 1, 2))
x["x2f"] = np.ascontiguousarray(np.moveaxis(x["x2"], 3, 1))
x["xa3"] = x["xa"] * 3
x["xd0"] = x["xd"].copy()
x["xd0"][0] = 0.0
xm = seq(4, 6, 3)
for b in range(4):
    xm[b, 6 - b:] = 0.0
xm[1, 1] = 0.0
xm[3, :3, 1] = -1.0 - np.abs(xm[3, :3, 1])  # every real step negative: the max takes a masked step's 0
x["xm"] = xm
x["sm_mask"] = rng.random((3, 5, 4)) > 0.3
x["sm_mask"][0, 0] = False
x["sm_mask_b"] = x["sm_mask"][:1, :, :1]
x["sm_mask_f"] = x["sm_mask"].astype("float32")
more = np.random.default_rng(8)  # inputs added later: drawn apart, so the ones above (and the weights) stay
x.update({k: more.normal(size=shape).astype("float32")
          for k, shape in (("x3", (2, 3, 4, 5, 2)), ("xb1", (3, 1, 4)), ("xq", (3, 3, 4)), ("xt1", (2, 3, 9, 4)))})
x["x3f"] = np.ascontiguousarray(np.moveaxis(x["x3"], 4, 1))
x["xt1f"] = np.ascontiguousarray(np.swapaxes(x["xt1"], 2, 3))
x["mk1"], x["mk2"] = more.random((3, 5)) > 0.4, more.random((3, 5)) > 0.4
arrays = {f"in:{k}": v for k, v in x.items()}
configs = {}
for case in cases:
    if gen not in case["gens"]:
        continue
    if case["cls"] == "TimeDistributed":
        inner = case["kwargs"]["layer"]
        layer = layers.TimeDistributed(getattr(layers, inner["class_name"])(**inner["config"]))
    else:
        layer = getattr(layers, case["cls"])(**case["kwargs"])
    xs = [x[k] for k in case["x"]]
    if case["mask"] == "masking":
        inp = keras.Input(xs[0].shape[1:])
        model = keras.Model(inp, layer(layers.Masking(0.0)(inp)))
    else:
        inps = [keras.Input(a.shape[1:]) for a in xs]
        layer(inps if len(inps) > 1 else inps[0])
    ws = [rng.uniform(-1.2 if case["cls"] == "PReLU" else -0.6, 0.6, w.shape).astype("float32")
          for w in layer.get_weights()]
    layer.set_weights(ws)
    if case["masks"]:
        import tensorflow as tf
        tensors = [tf.constant(a) for a in xs]
        for t, name in zip(tensors, case["masks"]):
            if name is not None:
                t._keras_mask = tf.constant(x[name])
        y = layer(tensors if len(tensors) > 1 else tensors[0])
        if getattr(y, "_keras_mask", None) is not None:
            arrays[f"{case['id']}:mask"] = np.asarray(y._keras_mask)
    elif case["mask"] == "masking":
        y = model.predict(xs[0], verbose=0)
    elif case["mask"]:
        y = layer(xs[0], mask=x[case["mask"]])
    else:
        y = layer(xs if len(xs) > 1 else xs[0])
    arrays[f"{case['id']}:y"] = np.asarray(y)
    for j, w in enumerate(ws):
        arrays[f"{case['id']}:w{j}"] = w
    configs[case["id"]] = json.loads(json.dumps(layer.get_config(), default=lambda o: o.tolist()
                                                if hasattr(o, "tolist") else list(o)))
# which layers pass a Keras mask on (Masking in front)
passes = {}
for cls, kwargs in (("Conv1D", {"filters": 2, "kernel_size": 2}), ("SeparableConv1D", {"filters": 2, "kernel_size": 2}),
                    ("DepthwiseConv1D", {"kernel_size": 2}), ("ZeroPadding1D", {}), ("Cropping1D", {}),
                    ("UpSampling1D", {}), ("MaxPooling1D", {"pool_size": 2}), ("AveragePooling1D", {"pool_size": 2}),
                    ("GlobalMaxPooling1D", {}), ("GlobalAveragePooling1D", {}), ("ReLU", {}), ("LeakyReLU", {}),
                    ("PReLU", {}), ("ELU", {}), ("ThresholdedReLU", {}), ("Permute", {"dims": (2, 1)})):
    if not hasattr(layers, cls):
        continue
    y = getattr(layers, cls)(**kwargs)(layers.Masking(0.0)(keras.Input((5, 3))))
    passes[cls] = getattr(y, "_keras_mask", None) is not None
m = layers.Masking(0.0)(keras.Input((5, 3)))
passes["Dot"] = getattr(layers.Dot(axes=2)([m, m]), "_keras_mask", None) is not None
v = np.array([-2.0, -0.5, 1.0], dtype="float32")
leaky = layers.LeakyReLU()
facts = {"passes_mask": passes, "leaky_relu_layer_config": json.loads(json.dumps(leaky.get_config(),
                                                                                   default=lambda o: o.tolist())),
         "leaky_relu_layer": np.asarray(leaky(v)).tolist(),
         "leaky_relu_activation": np.asarray(keras.activations.get("leaky_relu")(v)).tolist(),
         "has_thresholded_relu": hasattr(layers, "ThresholdedReLU")}
arrays["meta"] = np.array(json.dumps({"configs": configs, "facts": facts}))
np.savez(os.path.join(folder, f"{gen}.part.npz"), **arrays)
os.replace(os.path.join(folder, f"{gen}.part.npz"), os.path.join(folder, f"{gen}.npz"))
'''




@pytest.fixture(scope="module")
def keras_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both generations at once, each in its own process: arrays, configs and facts by generation."""
    outs = keras_once(tmp_path_factory, "layers", KERAS_SCRIPT, {"cases.json": json.dumps(CASES).encode()})
    out = {}
    for gen, path in outs.items():
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        out[gen] = {"arrays": arrays, **meta}
    return out


def _call(cls: str, config: dict[str, Any], inputs: list[Tensor], weights: list[np.ndarray], dtype: type,
          keras_major: int, kwargs: dict[str, Any] | None = None) -> list[Tensor]:
    node = LayerNode(name="probe", path="probe", class_name=cls, config=config, entry={})
    return LAYERS[cls].run(LayerCall(node, inputs, weights, Context(dtype, None, keras_major), kwargs or {}))


PARAMS = [pytest.param(gen, case, id=f"{gen}-{case['id']}", marks=known_bug(gen, case["id"]))
          for case in CASES for gen in GENS if gen in case["gens"]]


@pytest.mark.parametrize("gen,case", PARAMS)
def test_layer_matches_keras(keras_outputs: dict[str, Any], gen: str, case: dict[str, Any]) -> None:
    ref = keras_outputs[gen]
    arrays, config = ref["arrays"], ref["configs"][case["id"]]
    xs = [arrays[f"in:{k}"] for k in case["x"]]
    weights = [arrays[k] for k in sorted(a for a in arrays if a.startswith(f"{case['id']}:w"))]
    want = arrays[f"{case['id']}:y"]
    kind = LAYERS[case["cls"]]
    assert kind.has_weights(LayerNode(name="p", path="p", class_name=case["cls"], config=config, entry={})) \
        == bool(weights)
    for dtype in (np.float32, np.float64):
        # the identities hand on what they get (in a model that is already the run's dtype), the others cast
        inputs = [Tensor(x.astype(dtype) if case["cls"] in IDENTITY else x) for x in xs]
        kwargs = {}
        if case["mask"] == "masking":
            inputs[0].mask = np.any(xs[0] != 0, axis=-1)
        elif case["mask"]:
            kwargs["mask"] = Tensor(arrays[f"in:{case['mask']}"])
        for t, name in zip(inputs, case["masks"] or []):
            t.mask = None if name is None else arrays[f"in:{name}"]
        (got,) = _call(case["cls"], config, inputs, weights, dtype, 3 if gen == "keras3" else 2, kwargs)
        y = got.value
        assert y.shape == want.shape and y.dtype == dtype
        assert np.array_equal(np.isnan(y), np.isnan(want))
        err = np.abs(np.nan_to_num(y) - np.nan_to_num(want)) / np.maximum(1.0, np.abs(np.nan_to_num(want)))
        assert float(err.max(initial=0.0)) <= 1e-5, f"{case['id']} in {dtype.__name__}"
        if case["masks"]:  # the mask passed on, as Keras passes it on
            want_mask = arrays.get(f"{case['id']}:mask")
            assert (got.mask is None) == (want_mask is None), f"{case['id']}: mask {got.mask} for {want_mask}"
            assert want_mask is None or np.array_equal(got.mask, want_mask)
    # what show's shape checks assume about the last axis
    dims = kind.dims(LayerNode(name="p", path="p", class_name=case["cls"], config=config, entry={}),
                     [x.shape[-1] for x in xs]) if kind.dims else [None]
    assert dims[0] is None or dims[0] == want.shape[-1]


def test_the_cases_reach_every_new_kind() -> None:
    kinds = {c["cls"] for c in CASES}
    assert kinds >= {"Conv1D", "Conv2D", "SeparableConv1D", "DepthwiseConv1D", "SeparableConv2D", "DepthwiseConv2D",
                     "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalMaxPooling1D",
                     "GlobalAveragePooling1D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
                     "UpSampling1D", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Dot",
                     "Permute", "AlphaDropout", "ActivityRegularization", "SpatialDropout2D", "SpatialDropout3D",
                     "Maximum", "Minimum", "TimeDistributed"}
    wrapped = {c["kwargs"]["layer"]["class_name"] for c in CASES if c["cls"] == "TimeDistributed"}
    assert wrapped >= {"Conv1D", "SeparableConv1D", "DepthwiseConv1D", "MaxPooling1D", "AveragePooling1D"}
    assert len(PARAMS) > 400


# ---------------------------------------------------------------- masks

def test_global_pools_and_masks(keras_outputs: dict[str, Any]) -> None:
    """GlobalAveragePooling1D averages the unmasked steps only; GlobalMaxPooling1D ignores the mask (its
    maximum takes the masked steps too); neither passes a mask on, in either generation."""
    for gen in GENS:
        arrays = keras_outputs[gen]["arrays"]
        x = arrays["in:xm"]
        mask = np.any(x != 0, axis=-1)
        mean = arrays["GlobalAveragePooling1D-masked-keepdimsFalse:y"]
        top = arrays["GlobalMaxPooling1D-masked-keepdimsFalse:y"]
        want_mean = np.stack([x[b][mask[b]].mean(axis=0) for b in range(len(x))])
        np.testing.assert_allclose(mean, want_mean, atol=1e-6)
        np.testing.assert_allclose(top, x.max(axis=1), atol=0)
        assert x[3][mask[3]][:, 1].max() < -1.0 and top[3, 1] == 0.0  # a masked step's 0 wins the max
        assert not np.allclose(mean, x.mean(axis=1))
        for cls, want in (("GlobalAveragePooling1D", want_mean), ("GlobalMaxPooling1D", x.max(axis=1))):
            (got,) = _call(cls, {}, [Tensor(x, mask)], [], np.float64, 3 if gen == "keras3" else 2)
            np.testing.assert_allclose(got.value, want, atol=1e-6)
            assert got.mask is None
        assert keras_outputs[gen]["facts"]["passes_mask"]["GlobalAveragePooling1D"] is False


def test_mask_passes_through_exactly_the_layers_keras_passes_it_through(keras_outputs: dict[str, Any]) -> None:
    """Activation layers keep the Keras mask; convolutions, pools, padding, Permute and Dot drop it."""
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    configs = {"Conv1D": {"filters": 2, "kernel_size": [2]}, "SeparableConv1D": {"filters": 2, "kernel_size": [2]},
               "DepthwiseConv1D": {"kernel_size": [2]}, "Permute": {"dims": [2, 1]}, "ZeroPadding1D": {"padding": 1},
               "Cropping1D": {"cropping": [1, 1]}, "UpSampling1D": {"size": 2}, "MaxPooling1D": {"pool_size": 2},
               "AveragePooling1D": {"pool_size": 2}}
    rng = np.random.default_rng(1)
    weights = {"Conv1D": [rng.normal(size=(2, 3, 2)), rng.normal(size=2)],
               "SeparableConv1D": [rng.normal(size=(2, 3, 1)), rng.normal(size=(1, 3, 2)), rng.normal(size=2)],
               "DepthwiseConv1D": [rng.normal(size=(2, 3, 1)), rng.normal(size=3)], "PReLU": [rng.normal(size=(5, 3))]}
    for gen in GENS:
        passes = keras_outputs[gen]["facts"]["passes_mask"]
        assert passes["ReLU"] and passes["PReLU"] and not passes["Conv1D"] and not passes["Dot"]
        for cls, keeps in passes.items():
            inputs = [Tensor(x, mask)] + ([Tensor(x, mask)] if cls == "Dot" else [])
            config = {"axes": 2} if cls == "Dot" else configs.get(cls, {})
            (got,) = _call(cls, config, inputs, weights.get(cls, []), np.float32, 3 if gen == "keras3" else 2)
            assert (got.mask is not None) is keeps, f"{gen} {cls}"
            if keeps:
                assert got.mask is mask


# ---------------------------------------------------------------- LeakyReLU and ThresholdedReLU per generation

def test_leaky_relu_default_slopes(keras_outputs: dict[str, Any]) -> None:
    """Both layers default to 0.3 (Keras 3 writes negative_slope, tf_keras alpha); the leaky_relu activation
    defaults to 0.2 in both."""
    v = np.array([-2.0, -0.5, 1.0], dtype=np.float32)
    k3, tfk = keras_outputs["keras3"]["facts"], keras_outputs["tf_keras"]["facts"]
    assert k3["leaky_relu_layer_config"]["negative_slope"] == pytest.approx(0.3)
    assert "alpha" not in k3["leaky_relu_layer_config"]
    assert tfk["leaky_relu_layer_config"]["alpha"] == pytest.approx(0.3)
    assert "negative_slope" not in tfk["leaky_relu_layer_config"]
    for facts, major in ((k3, 3), (tfk, 2)):
        np.testing.assert_allclose(facts["leaky_relu_layer"], [-0.6, -0.15, 1.0], rtol=1e-6)
        np.testing.assert_allclose(facts["leaky_relu_activation"], [-0.4, -0.1, 1.0], rtol=1e-6)
        np.testing.assert_allclose(activation_fn("leaky_relu")(v), facts["leaky_relu_activation"], rtol=1e-6)
        for config in ({}, facts["leaky_relu_layer_config"]):  # no key at all: the layer's own default
            (got,) = _call("LeakyReLU", config, [Tensor(v)], [], np.float32, major)
            np.testing.assert_allclose(got.value, facts["leaky_relu_layer"], rtol=1e-6)
    for config in ({"alpha": 0.1}, {"negative_slope": 0.1}):
        (got,) = _call("LeakyReLU", config, [Tensor(v)], [], np.float32, 3)
        np.testing.assert_allclose(got.value, [-0.2, -0.05, 1.0], rtol=1e-6)
    assert tfk["has_thresholded_relu"] and not k3["has_thresholded_relu"]


def test_softmax_mask_differs_by_generation(keras_outputs: dict[str, Any]) -> None:
    """A row masked whole: Keras 3 gives zeros there, tf_keras (adding -1e9) a softmax of what is left."""
    k3 = keras_outputs["keras3"]["arrays"]["Softmax-explicit-mask:y"]
    tfk = keras_outputs["tf_keras"]["arrays"]["Softmax-explicit-mask:y"]
    np.testing.assert_array_equal(k3[0, 0], 0.0)
    assert tfk[0, 0].sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(k3[1:], tfk[1:], atol=1e-6)


# ---------------------------------------------------------------- refusals: one line, exit 2

def _bad(cls: str, config: dict[str, Any], x: np.ndarray, weights: list[np.ndarray] | None = None) -> str:
    with pytest.raises(InspectError) as info:
        _call(cls, config, [Tensor(x)], weights or [], np.float32, 3)
    message = str(info.value)
    assert "\n" not in message and cls in message
    return message


def test_bad_configs_and_inputs_fail_in_one_line() -> None:
    x = np.ones((2, 6, 4), np.float32)
    k = np.ones((3, 4, 2), np.float32)
    assert "padding" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "padding": "full"}, x, [k])
    assert "kernel_size" in _bad("Conv1D", {"filters": 2, "kernel_size": "3"}, x, [k])
    assert "strides" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, x, [k])
    assert "weight 0" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "use_bias": False},
                              np.ones((2, 6, 5), np.float32), [k])
    assert "window" in _bad("Conv1D", {"filters": 2, "kernel_size": 9, "use_bias": False}, x,
                            [np.ones((9, 4, 2), np.float32)])
    assert "groups" in _bad("Conv1D", {"filters": 2, "kernel_size": 3, "groups": 3}, x, [k])
    assert "causal" in _bad("Conv2D", {"filters": 2, "kernel_size": 1, "padding": "causal"},
                            np.ones((1, 3, 3, 4), np.float32), [np.ones((1, 1, 4, 2), np.float32)])
    assert "rank" in _bad("MaxPooling2D", {"pool_size": 2}, x)
    assert "Keras 1" in _bad("MaxPooling1D", {"pool_length": 3, "stride": None, "border_mode": "valid"}, x)
    assert "cropping" in _bad("Cropping1D", {"cropping": [3, 3]}, x)
    assert "dims" in _bad("Permute", {"dims": [1, 1]}, x)
    with pytest.raises(InspectError, match="two inputs"):
        _call("Dot", {"axes": 2}, [Tensor(x)], [], np.float32, 3)
    with pytest.raises(InspectError, match="do not pair"):
        _call("Dot", {"axes": 1}, [Tensor(x), Tensor(np.ones((2, 5, 4), np.float32))], [], np.float32, 3)
    with pytest.raises(InspectError, match="broadcast"):
        _call("Softmax", {}, [Tensor(x)], [], np.float32, 3, {"mask": Tensor(np.ones((2, 6), bool))})
    with pytest.raises(InspectError, match="shared_axes"):
        _call("PReLU", {"shared_axes": [3]}, [Tensor(x)], [np.ones((6, 4), np.float32)], np.float32, 3)


def test_a_layer_outside_the_list_is_named_and_lstms_still_run_alone(tmp_path: Path) -> None:
    """k3_cnn_lstm with its Conv1D renamed to a class the engine does not run (LocallyConnected1D)."""
    source = SAMPLES / "k3_cnn_lstm.keras"
    copy = tmp_path / "renamed.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(copy, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"class_name": "Conv1D"', b'"class_name": "LocallyConnected1D"')
                assert b"LocallyConnected1D" in data
            zout.writestr(item, data)
    np.save(tmp_path / "x.npy", np.zeros((2, 10, 3), np.float32))
    r = run_cli("forward", str(copy), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "LocallyConnected1D" in lines[0] and "--layer" in lines[0]
    np.save(tmp_path / "h.npy", np.ones((2, 5, 4), np.float32))  # what the LSTM is fed: 4 filters, pooled by 2
    (lstm,) = lstm_inspect.load(copy).directions
    r = run_cli("forward", str(copy), "--layer", lstm.name, "-i", str(tmp_path / "h.npy"), "-o",
                str(tmp_path / "h.out.npy"))
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "h.out.npy").shape == (2, 5)
    # verify's Keras rebuild allows exactly the registry: the same class is refused before Keras is handed anything
    r = run_cli("verify", str(copy), "-i", str(tmp_path / "x.npy"))
    assert r.returncode == 2 and "LocallyConnected1D" in r.stderr and "match" not in r.stdout, r.stdout + r.stderr
