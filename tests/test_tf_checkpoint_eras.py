"""TF-format files of the shapes that broke the readers (issue 21): a tf.keras 2.0/2.1 weights checkpoint, whose
GRU variables are named `gru/kernel` (no cell scope before TF 2.2) under `layer_with_weights-N/cell/...`, in two
data shards with Adam's slots and a `checkpoint` file; a Keras 3 `.h5` saved before it was built (no weights)
exported to ONNX. Each is written here by TensorFlow or Keras themselves and read back against what they read and
computed. And TF-format folders whose files are symbolic links leading out of the folder named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lstm_inspect
from lstm_inspect.cli import app

from conftest import SAMPLES, run_cli

TF215 = SAMPLES / "tf215"

# tf.keras 2.0/2.1's `model.save_weights("cp.ckpt")` of Sequential Embedding → GRU(256) → Dense after training
# with Adam: the model's layers under `layer_with_weights-N`, the GRU's variables under its `cell` edge but named in
# the layer's scope (`gru/kernel`), the optimizer's slots, two data shards. The object graph is made with
# TensorFlow's own tf.train.Checkpoint over objects with those edge names; TensorFlow's reader reads it back, and
# tf_keras runs the same weights as the model.
WRITE_TF21_CHECKPOINT = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import tf_keras as keras
out = sys.argv[1]
V, E, U, D, T = 40, 12, 256, 5, 7
rng = np.random.default_rng(21)
values = [rng.normal(0, 0.3, (V, E)), rng.normal(0, 0.2, (E, 3 * U)), rng.normal(0, 0.05, (U, 3 * U)),
          rng.normal(0, 0.1, (2, 3 * U)), rng.normal(0, 0.1, (U, D)), rng.normal(0, 0.1, (D,))]
names = ["embedding/embeddings", "gru/kernel", "gru/recurrent_kernel", "gru/bias", "dense/kernel", "dense/bias"]
variables = [tf.Variable(v.astype("float32"), name=name) for name, v in zip(names, values)]
embedding, gru, dense, cell = tf.Module(), tf.Module(), tf.Module(), tf.Module()
embedding.embeddings = variables[0]
cell.kernel, cell.recurrent_kernel, cell.bias = variables[1:4]
gru.cell = cell
dense.kernel, dense.bias = variables[4:]
optimizer = keras.optimizers.legacy.Adam()
optimizer.apply_gradients([(tf.constant(rng.normal(size=v.shape).astype("float32")), v) for v in variables])
root = tf.train.Checkpoint(**{"layer_with_weights-0": embedding, "layer_with_weights-1": gru,
                              "layer_with_weights-2": dense, "optimizer": optimizer})
class TwoShards(tf.train.experimental.ShardingCallback):  # whole tensors: the slots in one shard, the rest in the other
    description = "optimizer slots apart"
    def __call__(self, tensors):
        shards = [{}, {}]
        for t in tensors:
            shards[".OPTIMIZER_SLOT" in t.checkpoint_key].setdefault(t.checkpoint_key, {})[t.slice_spec] = t.tensor
        return shards
prefix = root.write(os.path.join(out, "cp.ckpt"), options=tf.train.CheckpointOptions(
    experimental_sharding_callback=TwoShards()))
tf.compat.v1.train.update_checkpoint_state(out, prefix)
reader = tf.train.load_checkpoint(prefix)
keys = sorted(reader.get_variable_to_shape_map())
np.savez(os.path.join(out, "tf_reads.npz"), *[reader.get_tensor(k) for k in keys])
json.dump(keys, open(os.path.join(out, "tf_keys.json"), "w"))
m = keras.Sequential([keras.Input((T,), dtype="int32"), keras.layers.Embedding(V, E), keras.layers.GRU(U),
                      keras.layers.Dense(D)])
m.set_weights([v.numpy() for v in variables])
open(os.path.join(out, "model.json"), "w").write(m.to_json())
x = rng.integers(0, V, (3, T)).astype("int32")
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "y.npy"), m.predict(x, verbose=0))
np.save(os.path.join(out, "embedded.npy"), m.layers[0](x).numpy())
np.save(os.path.join(out, "gru.npy"), keras.Model(m.inputs, m.layers[1].output)(x).numpy())
"""


def _written_by(script: str, out: Path) -> Path:
    """out, after TensorFlow (in a child process, as a user's script) wrote into it what `script` writes."""
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def tf21_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = _written_by(WRITE_TF21_CHECKPOINT, tmp_path_factory.mktemp("tf21_gru"))
    assert sorted(p.name for p in out.glob("cp.ckpt.*")) == ["cp.ckpt.data-00000-of-00002",
                                                             "cp.ckpt.data-00001-of-00002", "cp.ckpt.index"]
    return out


def _tf_reads(folder: Path) -> dict[str, np.ndarray]:
    keys = json.loads((folder / "tf_keys.json").read_text())
    with np.load(folder / "tf_reads.npz") as d:
        return {k: d[f"arr_{n}"] for n, k in enumerate(keys)}


def test_tf21_checkpoint_reads_what_tensorflow_reads(tf21_checkpoint: Path) -> None:
    import lstm_inspect.io.tf_bundle as tb

    tf_reads = _tf_reads(tf21_checkpoint)
    assert any(".OPTIMIZER_SLOT" in k for k in tf_reads)  # Adam's m and v are in it
    bundle = tb.TensorBundle(tb.resolve_prefix(tf21_checkpoint))
    tf_reads.pop("_CHECKPOINTABLE_OBJECT_GRAPH")  # the object graph's proto, a string tensor
    for key, want in tf_reads.items():
        assert np.array_equal(bundle.read(key), want), key


def test_tf21_checkpoint_show_and_weights_only_forward(tf21_checkpoint: Path) -> None:
    r = run_cli("show", str(tf21_checkpoint), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(d["name"], d["kind"], d["input_dim"], d["units"]) for d in doc["layers"]] == [("gru", "GRU", 12, 256)]
    assert [m["class_name"] for m in doc["model_layers"]] == ["arrays 40×12", "GRU", "arrays 256×5, 5"]
    # the GRU alone, with tf.keras 2's defaults (reset_after from the (2, 768) bias), as Keras ran it
    gru = lstm_inspect.load(tf21_checkpoint).directions[0]
    got = gru.forward(np.load(tf21_checkpoint / "embedded.npy"))
    assert np.max(np.abs(got - np.load(tf21_checkpoint / "gru.npy"))) <= 1e-5


def test_tf21_checkpoint_every_command(tf21_checkpoint: Path, tmp_path: Path) -> None:
    folder, config = tf21_checkpoint, str(tf21_checkpoint / "model.json")
    r = run_cli("forward", str(folder), "--config", config, "-i", str(folder / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - np.load(folder / "y.npy"))) <= 1e-5
    for args in (["stats", str(folder)], ["stats", str(folder), "--config", config], ["show", str(folder)],
                 ["verify", str(folder), "--config", config], ["verify", str(folder), "--layer", "gru"]):
        r = run_cli(*args)
        assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
    r = run_cli("dump", str(folder), "--out", str(tmp_path / "d"), "--format", "npz")
    assert r.returncode == 0, r.stderr
    kernel = _tf_reads(folder)["layer_with_weights-1/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    with np.load(tmp_path / "d" / "gru.npz") as z:  # W_z acts on [x; h]: its x columns are kernel's z block
        assert np.array_equal(z["W_z"][:, :12], kernel[:, :256].T)
        assert np.array_equal(z["W_h"][:, :12], kernel[:, 512:].T)


# ---------------------------------------------------------------- a model saved before it was built


WRITE_UNBUILT_H5 = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import h5py, keras
keras.Sequential([keras.layers.Embedding(100, 50), keras.layers.LSTM(16), keras.layers.Dense(100)]).save(sys.argv[1])
with h5py.File(sys.argv[1]) as f:
    f["model_weights"].visititems(lambda name, obj: sys.exit(f"{name} holds weights") if len(obj.attrs.get(
        "weight_names", [])) else None)
"""


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_export_of_a_file_without_weights_is_one_line(tmp_path: Path, target: str) -> None:
    pytest.importorskip("onnx" if target == "onnx" else "torch")
    path = tmp_path / "unbuilt.h5"
    done = subprocess.run([sys.executable, "-c", WRITE_UNBUILT_H5, str(path)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert done.returncode == 0, done.stderr[-2000:]
    r = run_cli("export", str(path), "--to", target, "-o", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"lstm-inspect: {path}: layer embedding (Embedding): the file stores no weights for it"]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- symbolic links out of the folder named


def _linked_out(tmp_path: Path, form: str, what: str) -> Path:
    """A copy of a TF 2.15 sample whose file or subfolder `what` is a symbolic link to an identical copy outside
    the folder (so, read through the link, it would give a valid model)."""
    source = TF215 / ("single_savedmodel" if form == "savedmodel" else "single_ckpt")
    folder, outside = tmp_path / "handed_over", tmp_path / "elsewhere"
    shutil.copytree(source, folder)
    shutil.copytree(source, outside)
    if what == "saved_model.pb":  # read when there is no keras_metadata.pb (TF 2.0-2.4); the copy stays valid
        (folder / "keras_metadata.pb").unlink()
    target = folder / what
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(outside / what, target_is_directory=(outside / what).is_dir())
    return folder


LINKED_OUT = [("savedmodel", "variables/variables.data-00000-of-00001"), ("savedmodel", "variables/variables.index"),
              ("savedmodel", "keras_metadata.pb"), ("savedmodel", "saved_model.pb"), ("savedmodel", "variables"),
              ("ckpt", "checkpoint"), ("ckpt", "cp.ckpt.index"), ("ckpt", "cp.ckpt.data-00000-of-00001")]


@pytest.mark.parametrize("form,what", LINKED_OUT, ids=[f"{f}:{w}" for f, w in LINKED_OUT])
def test_a_link_leaving_the_folder_named_is_refused(tmp_path: Path, form: str, what: str) -> None:
    folder = _linked_out(tmp_path, form, what)
    args = ["--config", str(TF215 / "single.json")] if form == "ckpt" else []
    for command in (["show", str(folder)], ["dump", str(folder), "-o", str(tmp_path / "d")]):
        result = CliRunner().invoke(app, [*command, *args])
        assert result.exit_code == 2, (command, result.exit_code, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "symbolic link" in lines[0] and "outside" in lines[0], lines
    assert not (tmp_path / "d").exists()


def test_links_that_stay_inside_the_folder_are_read(tmp_path: Path) -> None:
    """Decided: a link inside the folder named to a file inside it (a deduplicated shard) reads nothing the user
    did not hand over, and is read; so is a folder named through a link."""
    folder = tmp_path / "sm"
    shutil.copytree(TF215 / "single_savedmodel", folder)
    data = folder / "variables" / "variables.data-00000-of-00001"
    (folder / "store").mkdir()
    data.rename(folder / "store" / "blob")
    data.symlink_to(Path("..") / "store" / "blob")
    (tmp_path / "alias").symlink_to(folder, target_is_directory=True)
    with np.load(TF215 / "single.io.npz") as d:
        for path in (folder, tmp_path / "alias"):
            assert np.max(np.abs(lstm_inspect.load(path).forward(d["x"]) - d["y"])) <= 1e-5


# ---------------------------------------------------------------- a SavedModel with a custom layer


# tf_keras Functional LSTM → SeqSelfAttention (a registered custom layer with weights, the shape of
# keras-self-attention's) → LSTM → Dense, saved as a SavedModel; Keras's outputs of each layer beside it.
WRITE_CUSTOM_SAVEDMODEL = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import tf_keras as keras
out = sys.argv[1]


@keras.utils.register_keras_serializable(package="i21")
class SeqSelfAttention(keras.layers.Layer):
    # a small additive self-attention with weights

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.Wt = self.add_weight(name="Wt", shape=(d, self.units), initializer="glorot_uniform")
        self.Wx = self.add_weight(name="Wx", shape=(d, self.units), initializer="glorot_uniform")
        self.Wa = self.add_weight(name="Wa", shape=(self.units, 1), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, x):
        q = tf.expand_dims(tf.matmul(x, self.Wt), 2)
        k = tf.expand_dims(tf.matmul(x, self.Wx), 1)
        e = tf.squeeze(tf.matmul(tf.tanh(q + k), self.Wa), -1)
        return tf.matmul(tf.nn.softmax(e, axis=-1), x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


keras.utils.set_random_seed(21)
inp = keras.Input((6, 3))
h = keras.layers.LSTM(5, return_sequences=True, name="lstm")(inp)
h = SeqSelfAttention(name="seq_self_attention")(h)
h = keras.layers.LSTM(4, name="lstm_1")(h)
y = keras.layers.Dense(2, name="dense")(h)
m = keras.Model(inp, y)
m.save(os.path.join(out, "custom_savedmodel"), save_format="tf")
open(os.path.join(out, "model.json"), "w").write(m.to_json())
x = np.random.default_rng(3).normal(size=(2, 6, 3)).astype("float32")
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "y.npy"), m.predict(x, verbose=0))
np.save(os.path.join(out, "lstm.npy"), keras.Model(inp, m.get_layer("lstm").output)(x).numpy())
att = m.get_layer("seq_self_attention").output
np.save(os.path.join(out, "att.npy"), keras.Model(inp, att)(x).numpy())
np.save(os.path.join(out, "lstm_1.npy"), keras.Model(inp, m.get_layer("lstm_1").output)(x).numpy())
"""


@pytest.fixture(scope="module")
def custom_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _written_by(WRITE_CUSTOM_SAVEDMODEL, tmp_path_factory.mktemp("custom_layer"))


def test_a_savedmodel_with_a_custom_layer_names_it(custom_savedmodel: Path, tmp_path: Path) -> None:
    folder = custom_savedmodel / "custom_savedmodel"
    r = run_cli("show", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(m["name"], m["class_name"]) for m in doc["model_layers"]] == [
        ("input_1", "InputLayer"), ("lstm", "LSTM"), ("seq_self_attention", "i21>SeqSelfAttention"),
        ("lstm_1", "LSTM"), ("dense", "Dense")]
    # the whole model cannot run: one line naming the class, as for a .h5
    r = run_cli("forward", str(folder), "-i", str(custom_savedmodel / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "seq_self_attention (i21>SeqSelfAttention)" in r.stderr and "--layer" in r.stderr
    # its recurrent layers alone, as Keras computed them (lstm_1 on the custom layer's output)
    for layer, given, want in (("lstm", "x", "lstm"), ("lstm_1", "att", "lstm_1")):
        out = tmp_path / f"{layer}.npy"
        r = run_cli("forward", str(folder), "--layer", layer, "-i", str(custom_savedmodel / f"{given}.npy"), "-o",
                    str(out))
        assert r.returncode == 0, r.stderr
        assert np.max(np.abs(np.load(out) - np.load(custom_savedmodel / f"{want}.npy"))) <= 1e-5
    r = run_cli("verify", str(folder), "--layer", "lstm_1")
    assert r.returncode == 0 and "match" in r.stdout, r.stdout + r.stderr


def test_a_checkpoint_with_a_custom_layer_and_its_config_names_the_class(custom_savedmodel: Path) -> None:
    """Without keras_metadata.pb, a custom layer's weights cannot be numbered: refused, naming the class."""
    r = run_cli("show", str(custom_savedmodel / "custom_savedmodel" / "variables"), "--config",
                str(custom_savedmodel / "model.json"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "seq_self_attention (SeqSelfAttention)" in r.stderr  # to_json's class_name (registered_name apart)
