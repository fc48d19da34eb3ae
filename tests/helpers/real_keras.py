"""Keras's outputs for the real weights-only files, which have none stored beside them: tf_keras rebuilds each
model (as tests/keras_reference.py does), loads its weights, and runs each recurrent direction alone
(REAL_KERAS_SCRIPT, once per test run). Both exports' `test_real_weights_only_files_export_layer_by_layer`
compare each direction exported alone (--layer) with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REALWORLD
from helpers.keras import keras_once

# (key in REAL_KERAS_SCRIPT's output, the file under REALWORLD, the direction exported alone)
REAL_LAYERS = [("textgenrnn", "textgenrnn_default_weights.hdf5", "rnn_1"),
               ("textgenrnn", "textgenrnn_default_weights.hdf5", "rnn_2"),
               ("tfckpt", "tf-formats/bilstm_tfckpt_two_shards", "bidirectional/forward_lstm"),
               ("tfckpt", "tf-formats/bilstm_tfckpt_two_shards", "bidirectional/backward_lstm")]

REAL_KERAS_SCRIPT = r'''
import json, os, sys, warnings
warnings.simplefilter("ignore")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import h5py
import numpy as np
import tf_keras as keras
from tf_keras import layers

gen, folder = sys.argv[1:3]
spec = json.loads(open(os.path.join(folder, "spec.json")).read())
rng = np.random.default_rng(5)
out = {}


def alone(src, x, prefix):
    """The direction as a layer of its own (its sequence, final h and c), with the loaded layer's weights."""
    layer = layers.LSTM(src.units, return_sequences=True, return_state=True, go_backwards=src.go_backwards)
    layer(x[:1])
    layer.set_weights(src.get_weights())
    y, h, c = layer(x)
    out[f"{prefix}:x"] = np.asarray(x)
    out[f"{prefix}:y"], out[f"{prefix}:h"], out[f"{prefix}:c"] = np.asarray(y), np.asarray(h), np.asarray(c)


# textgenrnn (Keras 2.1.5 CuDNNLSTM weights, no architecture) rebuilt as tests/keras_reference.py rebuilds it;
# tf_keras's loader converts the CuDNN weights. Inputs: Keras's embedding of random ids, then rnn_1's own sequence.
path = spec["textgenrnn"]
with h5py.File(path, "r") as f:
    vocab, dim = f["embedding/embedding/embeddings:0"].shape
model = keras.Sequential([keras.Input((None,)), layers.Embedding(vocab, dim, name="embedding"),
                          layers.LSTM(128, return_sequences=True, name="rnn_1"),
                          layers.LSTM(128, return_sequences=True, name="rnn_2")])
model.load_weights(path, by_name=True)
x = model.get_layer("embedding")(rng.integers(1, vocab, size=(3, 12)))
alone(model.get_layer("rnn_1"), x, "textgenrnn:rnn_1")
alone(model.get_layer("rnn_2"), model.get_layer("rnn_1")(x), "textgenrnn:rnn_2")

# the TF checkpoint (tf.keras ~2.1, weights only): the model its object graph describes (CATALOG.md), restored by
# TensorFlow, every object of the model matched
model = keras.Sequential([keras.Input((None,)), layers.Embedding(5000, 64), layers.Bidirectional(layers.LSTM(64)),
                          layers.Dense(64), layers.Dense(6)])
status = model.load_weights(spec["tfckpt"])
status.assert_existing_objects_matched()
status.expect_partial()  # the optimizer's slots
x = model.layers[0](rng.integers(1, 5000, size=(3, 10)))
alone(model.layers[1].forward_layer, x, "tfckpt:bidirectional/forward_lstm")
alone(model.layers[1].backward_layer, x, "tfckpt:bidirectional/backward_lstm")
np.savez(os.path.join(folder, f"{gen}.part.npz"), **out)
os.replace(os.path.join(folder, f"{gen}.part.npz"), os.path.join(folder, f"{gen}.npz"))
'''


def real_keras_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """'<file>:<layer>:x|y|h|c': each weights-only real direction's input and what tf_keras's LSTM gives on it
    (test_export_onnx.py and test_export_torch.py: one Keras run for both)."""
    if not REALWORLD.is_dir():
        pytest.skip("../shared/realworld is not beside this clone")
    spec = {"textgenrnn": str(REALWORLD / "textgenrnn_default_weights.hdf5"),
            "tfckpt": str(REALWORLD / "tf-formats" / "bilstm_tfckpt_two_shards" / "cp.ckpt")}
    outs = keras_once(tmp_path_factory, "real-layers", REAL_KERAS_SCRIPT, {"spec.json": json.dumps(spec).encode()},
                      gens=("tf_keras",))
    with np.load(outs["tf_keras"]) as data:
        return {k: data[k] for k in data.files}
