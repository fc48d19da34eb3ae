"""SavedModel folders, TF-format weights checkpoints and architecture + weights pairs (`--config`).

The samples in sample_models/tf215/ were written by TensorFlow 2.15's own Keras (generate_tf215.py):
each model as a SavedModel, a TF checkpoint, the 2.12-2.15 `.keras` and a `to_json()` file, with
Keras's outputs and `get_weights()` beside them. Every form must give Keras's own weights and outputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lstm_inspect
from lstm_inspect.cli import app

from conftest import REALWORLD, SAMPLES, keras_refs, run_cli

TF215 = SAMPLES / "tf215"
TF213 = SAMPLES / "tf213"  # TF 2.13's .keras: _layer_checkpoint_dependencies/ with double counters
NAMES = ["single", "bidir_stacked", "embedding_backwards", "seq2seq"]
FORMS = ["savedmodel", "ckpt+json", "keras", "keras-2.13"]


def _open(name: str, form: str) -> lstm_inspect.Checkpoint:
    if form == "savedmodel":
        return lstm_inspect.load(TF215 / f"{name}_savedmodel")
    if form == "keras":
        return lstm_inspect.load(TF215 / f"{name}.keras")
    if form == "keras-2.13":
        return lstm_inspect.load(TF213 / f"{name}.keras")
    return lstm_inspect.load(TF215 / f"{name}_ckpt", config=TF215 / f"{name}.json")


def _io(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(path) as d:
        keys = sorted(d.files)
        return [d[k] for k in keys if k.startswith("x")], [d[k] for k in keys if k.startswith("y")]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_gates_are_kerass_own_weights(name: str, form: str) -> None:
    ckpt = _open(name, form)
    refs = keras_refs((TF213 if form == "keras-2.13" else TF215) / f"{name}.ref.npz")
    assert [d.name for d in ckpt.directions] == list(refs)
    for d in ckpt.directions:
        for got, want in zip(d.weights().arrays(), (refs[d.name][r] for r in ("kernel", "recurrent_kernel", "bias")),
                             strict=True):
            assert np.array_equal(got, want)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_forward_equals_keras(name: str, form: str) -> None:
    xs, ys = _io((TF213 if form == "keras-2.13" else TF215) / f"{name}.io.npz")
    out = _open(name, form).forward(xs if len(xs) > 1 else xs[0])
    outs = out if isinstance(out, list) else [out]
    assert max(float(np.max(np.abs(o - y))) for o, y in zip(outs, ys, strict=True)) <= 1e-5


def test_real_savedmodel() -> None:
    path = REALWORLD / "tf-formats" / "lstm_savedmodel_tf215"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    ckpt = lstm_inspect.load(path)
    assert (ckpt.format, ckpt.keras_version) == ("savedmodel", "2.15.0")
    xs, ys = _io(REALWORLD / "tf-formats" / "lstm_savedmodel_tf215.io.npz")
    assert np.max(np.abs(ckpt.forward(xs[0]) - ys[0])) <= 1e-5


def test_real_two_shard_checkpoint(tmp_path: Path) -> None:
    """Embedding → Bidirectional(LSTM(64)) → Dense → Dense (tf.keras ~2.1), weights in two data shards."""
    path = REALWORLD / "tf-formats" / "bilstm_tfckpt_two_shards"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    doc = json.loads(run_cli("show", str(path), "--json").stdout)
    assert doc["format"] == "tf-checkpoint" and doc["settings_from"] == "defaults"
    assert [(d["name"], d["input_dim"], d["units"]) for d in doc["layers"]] == [
        ("bidirectional/forward_lstm", 64, 64), ("bidirectional/backward_lstm", 64, 64)]
    assert [m["class_name"] for m in doc["model_layers"]] == ["arrays 5000×64", "Bidirectional(LSTM)",
                                                               "arrays 128×64, 64", "arrays 64×6, 6"]
    r = run_cli("dump", str(path), "--out", str(tmp_path / "d"), "--format", "npz")
    assert r.returncode == 0, r.stderr
    # the same tensors TensorFlow reads (tests/test_tf_bundle.py compares every one): here, what dump wrote
    import lstm_inspect.io.tf_bundle as tb

    bundle = tb.TensorBundle(tb.resolve_prefix(path))
    key = next(k for k in bundle.entries if k.startswith("layer_with_weights-1/backward_layer/cell/kernel"))
    with np.load(tmp_path / "d" / "bidirectional" / "backward_lstm.npz") as z:
        assert np.array_equal(z["W_i"][:, :64], bundle.read(key)[:, :64].T)


def test_every_way_of_naming_a_checkpoint_reads_the_same(tmp_path: Path) -> None:
    folder = TF215 / "bidir_stacked_ckpt"
    data = next(folder.glob("cp.ckpt.data-*"))
    docs = []
    for path in (folder, folder / "cp.ckpt", folder / "cp.ckpt.index", data, folder / "checkpoint"):
        r = run_cli("show", str(path), "--json")
        assert r.returncode == 0, (path, r.stderr)
        doc = json.loads(r.stdout)
        doc.pop("file")
        docs.append(doc)
    assert all(doc == docs[0] for doc in docs)


@pytest.mark.parametrize("name", NAMES)
def test_verify_savedmodel_and_checkpoint_with_config(name: str) -> None:
    from lstm_inspect.check.verify import verify
    from lstm_inspect.engine.network import Network, default_inputs

    for form in ("savedmodel", "ckpt+json"):
        ckpt = _open(name, form)
        report = verify(ckpt, default_inputs(Network(ckpt), seed=2))
        assert report.ok and report.reference.startswith("tf_keras"), [c.to_dict() for c in report.comparisons]


# ---------------------------------------------------------------- --config with weights-only files


PAIRS = [("k3_stacked.weights.h5", "k3_stacked.json", "k3_stacked"),
         ("k3_single.weights.h5", "k3_single.json", "k3_single"),
         ("tfk_single.weights_only.h5", "tfk_single.json", "tfk_single"),
         ("tfk_stacked_hard_sigmoid.weights_only.h5", "tfk_stacked_hard_sigmoid.json", "tfk_stacked_hard_sigmoid"),
         ("tfk_cudnn.weights_only.h5", "tfk_cudnn.json", "tfk_cudnn")]


@pytest.mark.parametrize("weights,config,io", PAIRS, ids=[p[0] for p in PAIRS])
def test_architecture_and_weights_in_two_files(weights: str, config: str, io: str, tmp_path: Path) -> None:
    ckpt = lstm_inspect.load(SAMPLES / weights, config=SAMPLES / config)
    assert ckpt.settings_from == "config" and ckpt.graph is not None
    xs, ys = _io(SAMPLES / f"{io}.io.npz")
    assert np.max(np.abs(ckpt.forward(xs[0]) - ys[0])) <= 1e-5
    # the same through the command line, and verify rebuilds it with Keras
    np.save(tmp_path / "x.npy", xs[0])
    r = run_cli("forward", str(SAMPLES / weights), "--config", str(SAMPLES / config), "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    from lstm_inspect.check.verify import verify
    from lstm_inspect.engine.network import Network, default_inputs

    assert verify(ckpt, default_inputs(Network(ckpt), seed=3)).ok


def test_a_config_of_another_model_is_refused() -> None:
    r = run_cli("show", str(SAMPLES / "tfk_stacked_hard_sigmoid.weights_only.h5"), "--config",
                str(SAMPLES / "tfk_single.json"))
    assert r.returncode == 2 and "layers with weights" in r.stderr
    r = run_cli("show", str(TF215 / "single_ckpt"), "--config", str(TF215 / "bidir_stacked.json"))
    assert r.returncode == 2 and "not the same model" in r.stderr
    r = run_cli("show", str(SAMPLES / "k3_single.keras"), "--config", str(SAMPLES / "k3_single.json"))
    assert r.returncode == 2 and "holds its own architecture" in r.stderr


def test_show_suggests_a_config_lying_beside_the_weights(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "tfk_single.weights_only.h5", tmp_path / "model.h5")
    shutil.copy(SAMPLES / "tfk_single.json", tmp_path / "model.json")
    r = run_cli("show", str(tmp_path / "model.h5"))
    assert r.returncode == 0 and "--config" in r.stdout and "model.json" in r.stdout
    doc = json.loads(run_cli("show", str(tmp_path / "model.h5"), "--json").stdout)
    assert doc["settings_from"] == "defaults"  # suggested, never loaded silently


# ---------------------------------------------------------------- without TensorFlow, without reading data


def test_tensorflow_is_never_imported() -> None:
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from lstm_inspect.cli import app\n"
            "r = CliRunner()\n"
            "codes = {r.invoke(app, ['show', f]).exit_code for f in sys.argv[1:]}\n"
            "import lstm_inspect, numpy as np\n"
            "m = lstm_inspect.load(sys.argv[1])\n"
            "m.forward(np.zeros((2, 7, 3), np.float32))\n"
            "print(sorted(codes), [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules])\n")
    files = [str(TF215 / "single_savedmodel"), str(TF215 / "single_ckpt"), str(TF215 / "bidir_stacked_ckpt"),
             str(TF215 / "seq2seq.keras")]
    out = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0] []"


def test_show_reads_no_tensor_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """show on a SavedModel or a checkpoint reads the index, the object graph and the metadata, never the
    weights themselves: flat in the file's size."""
    import lstm_inspect.io.tf_bundle as tb

    real = tb.TensorBundle.read

    def refuse(self: tb.TensorBundle, key: str) -> np.ndarray:
        raise AssertionError(f"show read the tensor {key}")

    monkeypatch.setattr(tb.TensorBundle, "read", refuse)
    for path in (TF215 / "bidir_stacked_savedmodel", TF215 / "bidir_stacked_ckpt"):
        result = CliRunner().invoke(app, ["show", str(path)])
        assert result.exit_code == 0, result.stderr
    monkeypatch.setattr(tb.TensorBundle, "read", real)


# ---------------------------------------------------------------- damaged checkpoints


def _damaged(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(TF215 / "bidir_stacked_ckpt", folder)
    index = folder / "cp.ckpt.index"
    data = next(folder.glob("cp.ckpt.data-*"))
    if how == "truncated index":
        index.write_bytes(index.read_bytes()[:-20])
    elif how == "truncated data":
        data.write_bytes(data.read_bytes()[:-100])
    elif how == "flipped data":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif how == "flipped index":
        raw = bytearray(index.read_bytes())
        raw[len(raw) // 3] ^= 0x55
        index.write_bytes(bytes(raw))
    elif how == "missing shard":
        data.unlink()
    return folder


@pytest.mark.parametrize("how", ["truncated index", "truncated data", "flipped data", "flipped index",
                                 "missing shard"])
def test_damaged_checkpoints_are_one_line(tmp_path: Path, how: str) -> None:
    folder = _damaged(tmp_path, how)
    np.save(tmp_path / "x.npy", np.zeros((2, 7, 3), np.float32))
    result = CliRunner().invoke(app, ["dump", str(folder), "-o", str(tmp_path / "d")])
    assert result.exit_code == 2, (how, result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-inspect: ") and "internal error" not in lines[0]
    assert not (tmp_path / "d").exists()


def test_a_savedmodel_without_keras_metadata_is_named_and_its_weights_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    shutil.copytree(TF215 / "single_savedmodel", folder)
    (folder / "keras_metadata.pb").unlink()
    r = run_cli("show", str(folder))
    assert r.returncode == 2 and "keras_metadata.pb" in r.stderr and "variables" in r.stderr
    # the way out it names: the weights as a TF checkpoint, whole with the architecture, as Keras computed
    whole = lstm_inspect.load(folder / "variables", TF215 / "single.json")
    with np.load(TF215 / "single.io.npz") as d:
        assert np.max(np.abs(whole.forward(d["x"]) - d["y"])) <= 1e-5


def test_a_file_of_a_savedmodel_stands_for_its_folder() -> None:
    for name in ("saved_model.pb", "keras_metadata.pb"):
        ckpt = lstm_inspect.load(TF215 / "single_savedmodel" / name)
        assert ckpt.format == "savedmodel" and ckpt.file == TF215 / "single_savedmodel"


WRITE_TRAINING_CHECKPOINT = r"""
import os, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras
out = sys.argv[1]
m = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(4, return_sequences=True),
                      keras.layers.GRU(2), keras.layers.Dense(1)])
checkpoint = tf.train.Checkpoint(model=m, optimizer=keras.optimizers.Adam())
tf.train.CheckpointManager(checkpoint, os.path.join(out, "training"), max_to_keep=2).save()
open(os.path.join(out, "model.json"), "w").write(m.to_json())
x = np.random.default_rng(2).normal(size=(2, 6, 3)).astype("float32")
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "y.npy"), m.predict(x, verbose=0))
np.save(os.path.join(out, "lstm.npy"), keras.Model(m.inputs, m.layers[0].output)(x).numpy())
"""


def test_a_tf_train_checkpoint_of_a_model_is_read(tmp_path: Path) -> None:
    """tf.train.Checkpoint(model=m, optimizer=...) with a CheckpointManager (the TF guide's training loop) keeps the
    model's layers under `model/`: read as weights only, and whole with --config, against Keras's outputs."""
    done = subprocess.run([sys.executable, "-c", WRITE_TRAINING_CHECKPOINT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    x = np.load(tmp_path / "x.npy")
    alone = lstm_inspect.load(tmp_path / "training")
    assert [d.kind for d in alone.directions] == ["LSTM", "GRU"] and alone.settings_from == "defaults"
    lstm = alone.directions[0]
    assert np.max(np.abs(lstm.forward(x) - np.load(tmp_path / "lstm.npy")[:, -1])) <= 1e-5
    whole = lstm_inspect.load(tmp_path / "training", tmp_path / "model.json")
    assert np.max(np.abs(whole.forward(x) - np.load(tmp_path / "y.npy"))) <= 1e-5


# A SavedModel as TF 2.0-2.4 wrote it: the Keras metadata of every object inside saved_model.pb (SavedUserObject
# .metadata), no keras_metadata.pb. Made from TF 2.15's SavedModel with TensorFlow's and tf_keras's own protobuf
# classes, then loaded by tf_keras's own loader (its `_read_legacy_metadata` path) to check it is one.
WRITE_LEGACY_SAVEDMODEL = r"""
import os, shutil, sys
import numpy as np
from tensorflow.core.protobuf import saved_model_pb2
from tf_keras.protobuf import saved_metadata_pb2
src, dst, io = sys.argv[1:4]
shutil.copytree(src, dst)
meta = saved_metadata_pb2.SavedMetadata()
meta.ParseFromString(open(os.path.join(dst, "keras_metadata.pb"), "rb").read())
model = saved_model_pb2.SavedModel()
model.ParseFromString(open(os.path.join(dst, "saved_model.pb"), "rb").read())
nodes = model.meta_graphs[0].object_graph_def.nodes
for node in meta.nodes:
    nodes[node.node_id].user_object.metadata = node.metadata
open(os.path.join(dst, "saved_model.pb"), "wb").write(model.SerializeToString())
os.remove(os.path.join(dst, "keras_metadata.pb"))
import tf_keras
d = np.load(io)
y = tf_keras.models.load_model(dst, compile=False).predict(d["x"], verbose=0)
assert np.max(np.abs(y - d["y"])) <= 1e-6, "tf_keras reads the legacy SavedModel as the model it was"
"""


def test_a_tf24_savedmodel_with_its_metadata_inside_saved_model_pb(tmp_path: Path) -> None:
    folder = tmp_path / "legacy_savedmodel"
    done = subprocess.run([sys.executable, "-c", WRITE_LEGACY_SAVEDMODEL, str(TF215 / "bidir_stacked_savedmodel"),
                           str(folder), str(TF215 / "bidir_stacked.io.npz")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (folder / "keras_metadata.pb").exists()
    ckpt = lstm_inspect.load(folder)
    assert ckpt.format == "savedmodel" and ckpt.keras_version == "2.15.0"
    with np.load(TF215 / "bidir_stacked.io.npz") as d:
        assert np.max(np.abs(ckpt.forward(d["x"]) - d["y"])) <= 1e-5
