"""Write the Keras 2.3.1 TimeDistributed(Conv2D) → GRU samples (k231_cnn_td_conv2d*.h5) with tf_keras.

    python sample_models/legacy_k231.py      # needs the keras extra (tf_keras); rewrites only k231_* files

Multi-backend Keras 2.3.1 (the last one, 2019) runs on no Python and TensorFlow installed here, so the
models are built and run with tf_keras and their `.h5` is then written here, attribute by attribute, the
way Keras 2.3.1's `save_model` writes it (keras-team/keras at tag 2.3.1, f295e8ee39d4):

- `keras/engine/saving.py _serialize_model`: root attrs `keras_version` = b"2.3.1", `backend` =
  b"tensorflow", `model_config` = the JSON of {"class_name": ..., "config": model.get_config()} as bytes;
  `model_weights` attrs `layer_names`, `backend`, `keras_version`; one group per layer with `weight_names`
  and one dataset per weight at `<layer>/<weight name>`.
- `keras/engine/sequential.py get_config`: {"name", "layers": [...]} (the bare list is Keras <= 2.2.2);
  `Sequential.layers` leaves out the InputLayer that `add` made from the first layer's `input_shape`, and
  `build_input_shape` is written only for a model built by `build(shape)`, not by `add`: so nothing but the
  first layer's config says the input's shape.
- `keras/engine/base_layer.py Layer.__init__/get_config`: `input_shape=` becomes `batch_input_shape`
  ([null, *input_shape]) on the layer it was given to, here the TimeDistributed wrapper; every layer has
  `name`, `trainable`, `dtype` ("float32").
- `keras/layers/wrappers.py Wrapper.get_config`: the wrapper's own config plus
  `layer`: {"class_name", "config"}; the inner Conv2D's config has no `batch_input_shape`, no `build_config`
  (tf_keras writes the inner input shape there; Keras 2.3.1 never does), no `groups`, no `module`.
- `keras/layers/convolutional.py _Conv.get_config` (Conv2D pops `rank`), `normalization.py BatchNormalization`
  (weights gamma, beta, moving_mean, moving_variance), `pooling.py _Pooling2D`,
  `core.py Flatten` and `Dense`, `recurrent.py GRU` (`reset_after` False and `recurrent_activation`
  "sigmoid" by default in 2.3; no `time_major`), `initializers.py` (glorot_uniform is VarianceScaling).
- Weight names: `Layer.__call__` builds under `K.name_scope(self.name)` and TimeDistributed.build calls the
  inner layer's build directly, so the Conv2D's weights are `time_distributed_1/kernel:0`; a GRU's are
  `gru_1/kernel:0` (RNN.build calls cell.build directly). Layer names count from 1 (`conv2d_1`).
- `keras/engine/network.py get_config` for the functional form: {"name", "layers": [{"name", "class_name",
  "config", "inbound_nodes": [[[name, 0, 0, {}]]]}], "input_layers", "output_layers"};
  `keras/engine/input_layer.py`: InputLayer {"batch_input_shape", "dtype", "sparse", "name"}; there the
  wrapper carries no shape and the rank-5 InputLayer does.

Three forms of one model, TimeDistributed(Conv2D) → TimeDistributed(BatchNormalization) →
TimeDistributed(MaxPooling2D) → TimeDistributed(Conv2D) → TimeDistributed(Flatten) → GRU(reset_after=False) →
Dense(softmax), frames of FRAMES:

- `k231_cnn_td_conv2d.h5`: Sequential, `input_shape=` given to the first wrapper (its `batch_input_shape`);
- `k231_cnn_td_conv2d_deferred.h5`: Sequential whose first wrapper declares nothing (the user gave
  `input_shape=(8, 8, 1)` to the wrapped Conv2D, where Keras ignores it), built by fit/predict: only the model's
  `build_input_shape` says the input is (batch, 5, 8, 8, 1);
- `k231_cnn_td_conv2d_functional.h5`: Model(Input((5, 8, 8, 1)), ...), the shape on the InputLayer.

Before anything is written, tf_keras itself loads each written file (`load_model`, its Keras 2.x legacy path)
and must give the outputs of the model it was made from; those outputs are stored:

- `NAME.io.npz`: `x` (batch 3 of 5 frames of 8x8x1) and `y` (softmax of 3, from the loaded file);
- `NAME.ref.npz`: the GRU's kernel, recurrent_kernel and bias keyed `gru_1:<role>` (generate.py's keying).

Nothing here is imported by the package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 231
FRAMES = (5, 8, 8, 1)  # time steps, height, width, channels

GLOROT = {"class_name": "VarianceScaling",
          "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
ORTHOGONAL = {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}
ONES = {"class_name": "Ones", "config": {}}


def _base(name: str, batch_input_shape: list | None = None) -> dict[str, Any]:
    """base_layer.py Layer.get_config: name, trainable, [batch_input_shape], dtype (in this order)."""
    config: dict[str, Any] = {"name": name, "trainable": True}
    if batch_input_shape is not None:
        config["batch_input_shape"] = batch_input_shape
    config["dtype"] = "float32"
    return config


def _conv2d(name: str, layer: Any, batch_input_shape: list | None = None) -> dict[str, Any]:
    """convolutional.py _Conv.get_config without `rank` (Conv2D.get_config)."""
    return {**_base(name, batch_input_shape), "filters": layer.filters, "kernel_size": list(layer.kernel_size),
            "strides": list(layer.strides), "padding": layer.padding, "data_format": "channels_last",
            "dilation_rate": list(layer.dilation_rate), "activation": layer.activation.__name__,
            "use_bias": layer.use_bias, "kernel_initializer": GLOROT, "bias_initializer": ZEROS,
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def _max_pool2d(name: str, layer: Any) -> dict[str, Any]:
    """pooling.py _Pooling2D.get_config."""
    return {**_base(name), "pool_size": list(layer.pool_size), "padding": layer.padding,
            "strides": list(layer.strides), "data_format": "channels_last"}


def _batch_norm(name: str, layer: Any) -> dict[str, Any]:
    """normalization.py BatchNormalization.get_config (axis as given: the default -1)."""
    return {**_base(name), "axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
            "beta_initializer": ZEROS, "gamma_initializer": ONES, "moving_mean_initializer": ZEROS,
            "moving_variance_initializer": ONES, "beta_regularizer": None, "gamma_regularizer": None,
            "beta_constraint": None, "gamma_constraint": None}


def _flatten(name: str, layer: Any) -> dict[str, Any]:
    """core.py Flatten.get_config."""
    return {**_base(name), "data_format": "channels_last"}


def _gru(name: str, layer: Any) -> dict[str, Any]:
    """recurrent.py RNN.get_config (without `cell`) + GRU.get_config."""
    return {**_base(name), "return_sequences": False, "return_state": False, "go_backwards": False,
            "stateful": False, "unroll": False, "units": layer.units, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True, "kernel_initializer": GLOROT,
            "recurrent_initializer": ORTHOGONAL, "bias_initializer": ZEROS, "kernel_regularizer": None,
            "recurrent_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
            "recurrent_dropout": 0.0, "implementation": 2, "reset_after": False}


def _dense(name: str, layer: Any) -> dict[str, Any]:
    """core.py Dense.get_config."""
    return {**_base(name), "units": layer.units, "activation": layer.activation.__name__, "use_bias": True,
            "kernel_initializer": GLOROT, "bias_initializer": ZEROS, "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}


INNER = {"Conv2D": ("conv2d", _conv2d), "MaxPooling2D": ("max_pooling2d", _max_pool2d),
         "BatchNormalization": ("batch_normalization", _batch_norm), "Flatten": ("flatten", _flatten)}
# the weights' names, in get_weights order (add_weight's `name`s)
ROLES = {"Conv2D": ("kernel", "bias"), "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
         "GRU": ("kernel", "recurrent_kernel", "bias"), "Dense": ("kernel", "bias")}
OUTER = {"GRU": ("gru", _gru), "Dense": ("dense", _dense)}


def _layer_configs(model: Any, shape_on_first: bool, inner_shape: bool = False
                   ) -> list[tuple[str, dict[str, Any], Any]]:
    """(class_name, config, tf_keras layer) per layer, named as a fresh Keras 2.3.1 session names them.

    shape_on_first: `TimeDistributed(Conv2D(...), input_shape=FRAMES)`, the wrapper declares the batch shape;
    inner_shape: `TimeDistributed(Conv2D(..., input_shape=FRAMES[1:]))`, the inner layer declares one frame's
    (Keras ignores it: Sequential.add looks at the wrapper only)."""
    counts: dict[str, int] = {}

    def fresh(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}_{counts[prefix]}"

    out = []
    for k, layer in enumerate(la for la in model.layers if type(la).__name__ != "InputLayer"):
        kind = type(layer).__name__
        if kind == "TimeDistributed":
            inner_kind = type(layer.layer).__name__
            prefix, write = INNER[inner_kind]
            inner_cfg = write(fresh(prefix), layer.layer)
            if inner_shape and k == 0:
                inner_cfg = _conv2d(inner_cfg["name"], layer.layer, [None, *FRAMES[1:]])
            inner = {"class_name": inner_kind, "config": inner_cfg}
            batch = [None, *FRAMES] if shape_on_first and k == 0 else None
            # wrappers.py Wrapper.get_config: the base config's items, then `layer`
            out.append(("TimeDistributed", {**_base(fresh("time_distributed"), batch), "layer": inner}, layer))
        else:
            prefix, write = OUTER[kind]
            out.append((kind, write(fresh(prefix), layer), layer))
    return out


def sequential_config(model: Any, deferred: bool = False) -> tuple[dict[str, Any], list]:
    """sequential.py get_config. deferred: a Sequential whose first layer declares no shape, built by fit or
    predict (training.py Model._set_inputs calls build((None,) + x.shape[1:])), so `build_input_shape` holds the
    batch shape and no layer does."""
    layers = _layer_configs(model, shape_on_first=not deferred, inner_shape=deferred)
    body: dict[str, Any] = {"name": "sequential_1",
                            "layers": [{"class_name": c, "config": cfg} for c, cfg, _ in layers]}
    if deferred:
        body["build_input_shape"] = [None, *FRAMES]
    return {"class_name": "Sequential", "config": body}, layers


def functional_config(model: Any) -> tuple[dict[str, Any], list]:
    layers = _layer_configs(model, shape_on_first=False)
    entries: list[dict[str, Any]] = [{
        "name": "input_1", "class_name": "InputLayer",
        "config": {"batch_input_shape": [None, *FRAMES], "dtype": "float32", "sparse": False, "name": "input_1"},
        "inbound_nodes": []}]
    previous = "input_1"
    for kind, cfg, _ in layers:
        entries.append({"name": cfg["name"], "class_name": kind, "config": cfg,
                        "inbound_nodes": [[[previous, 0, 0, {}]]]})
        previous = cfg["name"]
    config = {"class_name": "Model",
              "config": {"name": "model_1", "layers": entries, "input_layers": [["input_1", 0, 0]],
                         "output_layers": [[previous, 0, 0]]}}
    return config, [("InputLayer", entries[0]["config"], None), *layers]


def write_h5(path: Path, config: dict[str, Any], layers: list[tuple[str, dict[str, Any], Any]]) -> None:
    """The file saving.py _serialize_model (through io_utils.H5Dict) writes, without a training_config."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.3.1"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([cfg["name"].encode("utf8") for _, cfg, _ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.3.1"
        for kind, cfg, layer in layers:
            name = cfg["name"]
            sub = group.create_group(name)
            values = layer.get_weights() if layer is not None else []
            inner = type(layer.layer).__name__ if kind == "TimeDistributed" else kind
            names = [f"{name}/{role}:0".encode() for role in ROLES.get(inner, ())]
            # io_utils.H5Dict.__setitem__ sets the list itself (`self.data.attrs[attr] = val`), which the h5py 2 of
            # its day stored as fixed-length strings (|S) and, empty, as an empty float64 array: so do real Keras 2.x
            # files (h5py 3 would store a list of bytes as variable-length strings, hence np.array here)
            sub.attrs["weight_names"] = np.array(names) if names else []
            for wname, value in zip(names, values, strict=True):
                sub.create_dataset(wname.decode(), data=value, track_times=False)  # byte-identical reruns


def build(keras: Any, layers: Any, functional: bool) -> Any:
    td = layers.TimeDistributed
    stack = [td(layers.Conv2D(4, (3, 3), padding="same", activation="relu")), td(layers.BatchNormalization()),
             td(layers.MaxPooling2D((2, 2))),
             td(layers.Conv2D(3, (2, 2), activation="relu")), td(layers.Flatten()),
             layers.GRU(6, reset_after=False), layers.Dense(3, activation="softmax")]
    inp = keras.Input(FRAMES)
    x = inp
    for layer in stack:
        x = layer(x)
    return keras.Model(inp, x) if functional else keras.Sequential([keras.Input(FRAMES), *stack])


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras
    from tf_keras import layers

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(3, *FRAMES)).astype("float32")
    for name, form in (("k231_cnn_td_conv2d", "sequential"), ("k231_cnn_td_conv2d_deferred", "deferred"),
                       ("k231_cnn_td_conv2d_functional", "functional")):
        functional = form == "functional"
        keras.utils.set_random_seed(SEED)
        model = build(keras, layers, functional)
        for layer in model.layers:
            if layer.weights:
                new = [rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in layer.get_weights()]
                if type(getattr(layer, "layer", None)).__name__ == "BatchNormalization":
                    new[-1] = np.abs(new[-1]) + 0.5  # a moving variance is positive
                layer.set_weights(new)
        config, entries = functional_config(model) if functional else sequential_config(model, form == "deferred")
        path = HERE / f"{name}.h5"
        write_h5(path, config, entries)
        loaded = keras.models.load_model(path, compile=False)
        y = loaded.predict(x, verbose=0)
        gap = float(np.max(np.abs(y - model.predict(x, verbose=0))))
        assert gap < 1e-6, f"{name}: the Keras 2.3.1 form computes something else ({gap:.2e})"
        gru = next(layer for layer in loaded.layers if type(layer).__name__ == "GRU")
        np.savez(HERE / f"{name}.ref.npz",
                 **{f"gru_1:{role}": w for role, w in zip(("kernel", "recurrent_kernel", "bias"), gru.get_weights())})
        np.savez(HERE / f"{name}.io.npz", x=x, y=y)
        print(f"wrote {path.name} ({path.stat().st_size} bytes); tf_keras reloads it, |Δ| {gap:.1e}")


if __name__ == "__main__":
    main()
