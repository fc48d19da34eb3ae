"""TensorFlow checkpoints and SavedModel Keras metadata, read without TensorFlow (lstm_inspect.io.tf_bundle).

Every tensor of every TF-format sample (sample_models/tf215/, written by TF 2.15) and of the real
TF checkpoints in ../shared/realworld/tf-formats/ must equal what TensorFlow itself reads
(`tf.train.load_checkpoint(prefix).get_tensor(key)`, run once in a subprocess), as must a
checkpoint TensorFlow writes here with every dtype, a string tensor and a partitioned variable.
The object graph must name the layers the way tf_keras does (checked against each sample's own
`get_weights()`), and broken or hostile files must give one InspectError line: never another
exception, never a hang, never a large allocation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_inspect.base.errors import InspectError
from lstm_inspect.io import tf_bundle as tb

from conftest import REALWORLD, ROOT, SAMPLES

TF215 = SAMPLES / "tf215"
NAMES = ("single", "bidir_stacked", "embedding_backwards", "seq2seq")
REAL_TF = REALWORLD / "tf-formats"
REAL_CKPT = REAL_TF / "bilstm_tfckpt_two_shards"
REAL_SAVEDMODEL = REAL_TF / "lstm_savedmodel_tf215"
HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_real = pytest.mark.skipif(not REAL_TF.is_dir(), reason="../shared/realworld/tf-formats is not beside this clone")
FUZZ = settings(derandomize=True, max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def sample_prefixes() -> dict[str, Path]:
    out = {}
    for name in NAMES:
        out[f"{name}_ckpt"] = TF215 / f"{name}_ckpt" / "cp.ckpt"
        out[f"{name}_savedmodel"] = TF215 / f"{name}_savedmodel" / "variables" / "variables"
    return out


def real_prefixes() -> dict[str, Path]:
    if not REAL_TF.is_dir():
        return {}
    return {"real_bilstm_two_shards": REAL_CKPT / "cp.ckpt",
            "real_savedmodel_tf215": REAL_SAVEDMODEL / "variables" / "variables"}


# ------------------------------------------------------------------ TensorFlow as the reference

SYNTHETIC = ("f16", "bf16", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "b", "c64", "c128", "scalar", "empty", "big",
             "strings")

# Run with the test venv's Python: writes a checkpoint with every dtype, a string tensor and a
# partitioned variable, then dumps what TensorFlow reads from each prefix into OUT/<i>.npz.
_TF_READER = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

out = sys.argv[1]
rng = np.random.default_rng(0)
synth = os.path.join(out, "synth", "ck")
tensors = {
    "f16": tf.constant(rng.normal(size=(3, 4)).astype(np.float16)),
    "bf16": tf.cast(tf.constant(rng.normal(size=(5,)).astype(np.float32)), tf.bfloat16),
    "f64": tf.constant(rng.normal(size=(2, 2, 2))),
    "i8": tf.constant(rng.integers(-100, 100, (5,)).astype(np.int8)),
    "i16": tf.constant(rng.integers(-999, 999, (5,)).astype(np.int16)),
    "i32": tf.constant(rng.integers(-9, 9, (4,)).astype(np.int32)),
    "i64": tf.constant(rng.integers(-2**40, 2**40, (3,))),
    "u8": tf.constant(rng.integers(0, 255, (6,)).astype(np.uint8)),
    "u16": tf.constant(rng.integers(0, 60000, (6,)).astype(np.uint16)),
    "b": tf.constant([True, False, True]),
    "c64": tf.constant((rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64)),
    "c128": tf.constant(rng.normal(size=2) + 1j * rng.normal(size=2)),
    "scalar": tf.constant(3.5),
    "empty": tf.zeros((0, 3)),
    "big": tf.constant(rng.normal(size=(300, 257)).astype(np.float32)),
    "strings": tf.constant([[b"abc", b""], [b"\x00\xff", b"x" * 300]]),
}
names = list(tensors)
tf.raw_ops.SaveV2(prefix=synth, tensor_names=names + ["partitioned"],
                  shape_and_slices=[""] * len(names) + ["4 6 0,2:-"],
                  tensors=[tensors[n] for n in names] + [tf.ones((2, 6))])
for i, prefix in enumerate([synth] + sys.argv[2:]):
    reader = tf.train.load_checkpoint(prefix)
    arrays = {}
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if key == "partitioned":
            arrays[f"{key}|sliced"] = np.zeros(0)
            continue
        value = reader.get_tensor(key)
        if dtype == tf.string:
            flat = np.asarray(value, dtype=object).reshape(-1)
            arrays[f"{key}|strcount|{flat.size}"] = np.zeros(0)
            for j, s in enumerate(flat):
                arrays[f"{key}|string|{j}"] = np.frombuffer(s, dtype=np.uint8)
        else:
            value = np.asarray(value)
            if dtype == tf.bfloat16:
                value = value.astype(np.float32)
            arrays[f"{key}|{dtype.name}"] = value
    np.savez(os.path.join(out, f"{i}.npz"), **arrays)
'''


def _reference(npz: Path) -> dict[str, tuple[str, Any]]:
    """key -> ("sliced", None) | ("string", [bytes]) | (dtype, array), as TensorFlow read them."""
    out: dict[str, tuple[str, Any]] = {}
    strings: dict[str, dict[int, bytes]] = {}
    counts: dict[str, int] = {}
    with np.load(npz) as data:
        for name in data.files:
            key, kind, *rest = name.split("|")
            if kind == "sliced":
                out[key] = ("sliced", None)
            elif kind == "strcount":
                counts[key] = int(rest[0])
            elif kind == "string":
                strings.setdefault(key, {})[int(rest[0])] = data[name].tobytes()
            else:
                out[key] = (kind, data[name])
    for key, n in counts.items():
        out[key] = ("string", [strings[key][j] for j in range(n)])
    return out


@pytest.fixture(scope="session")
def tensorflow_reads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    if not HAS_TF:
        pytest.skip("tensorflow is not installed (the `test` extra brings it); it is the reference here")
    out = tmp_path_factory.mktemp("tf_reads")
    prefixes = {**sample_prefixes(), **real_prefixes()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-c", _TF_READER, str(out), *map(str, prefixes.values())],
                       check=False, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    reads = {"synthetic": (out / "synth" / "ck", _reference(out / "0.npz"))}
    for i, (name, prefix) in enumerate(prefixes.items(), start=1):
        reads[name] = (prefix, _reference(out / f"{i}.npz"))
    return reads


def test_every_tensor_equals_what_tensorflow_reads(tensorflow_reads: dict[str, tuple[Path, dict]]) -> None:
    checked = 0
    for name, (prefix, expected) in tensorflow_reads.items():
        bundle = tb.TensorBundle(prefix)
        assert set(bundle.entries) == set(expected), name
        for key, (kind, value) in expected.items():
            if kind == "sliced":
                with pytest.raises(InspectError, match="partitioned"):
                    bundle.read(key)
            elif kind == "string":
                assert bundle.read_strings(key) == value, (name, key)
            else:
                got = bundle.read(key)
                assert got.dtype == value.dtype and got.shape == value.shape, (name, key, got.dtype, value.dtype)
                assert np.array_equal(got, value), (name, key)
                assert bundle.entries[key].dtype == ("bfloat16" if key == "bf16" else kind)
            checked += 1
    # What was built, not a count: the real checkpoints (../shared/realworld) are beside some clones only, so the
    # number of tensors differs from one machine to another (163 without them, more with them). Every prefix is
    # there, TensorFlow read the synthetic tensors written above, and every Keras prefix holds its object graph and
    # its layers' kernels.
    assert set(tensorflow_reads) == {"synthetic", *sample_prefixes(), *real_prefixes()}
    assert set(tensorflow_reads["synthetic"][1]) == {*SYNTHETIC, "partitioned"}
    for name, (_, expected) in tensorflow_reads.items():
        if name != "synthetic":
            assert "_CHECKPOINTABLE_OBJECT_GRAPH" in expected and any("kernel" in k for k in expected), name
    assert checked == sum(len(expected) for _, expected in tensorflow_reads.values())


def test_synthetic_dtypes_and_refusals(tensorflow_reads: dict[str, tuple[Path, dict]]) -> None:
    prefix, _ = tensorflow_reads["synthetic"]
    bundle = tb.TensorBundle(prefix)
    assert bundle.slice_parts == 1 and bundle.entries["partitioned"].sliced
    assert bundle.read("bf16").dtype == np.float32 and bundle.read("f16").dtype == np.float16
    assert bundle.read("scalar").shape == () and bundle.read("empty").shape == (0, 3)
    with pytest.raises(InspectError, match="holds strings") as e:
        bundle.read("strings")
    assert "\n" not in str(e.value)
    with pytest.raises(InspectError, match="not strings"):
        bundle.read_strings("f16")
    with pytest.raises(InspectError, match="no tensor named"):
        bundle.read("nope")
    with pytest.raises(InspectError, match="has no object graph"):
        tb.object_graph(bundle)


# ------------------------------------------------------------------ crc32c

def test_crc32c_known_vectors() -> None:
    # RFC 3720 appendix B.4, and the usual check value.
    assert tb.crc32c(bytes(32)) == 0x8A9136AA
    assert tb.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tb.crc32c(bytes(range(32))) == 0x46DD794E
    assert tb.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert tb.crc32c(b"123456789") == 0xE3069283
    assert tb.crc32c(b"") == 0
    for crc in (0, 1, 0x8A9136AA, 0xFFFFFFFF):
        assert tb.unmask_crc(tb.mask_crc(crc)) == crc


def test_crc32c_vector_path_agrees_with_the_plain_loop() -> None:
    rng = np.random.default_rng(3)
    group = tb._LANE * tb._LANES
    for n in (tb._SMALL - 1, tb._SMALL, tb._SMALL + 3, 200_001, group - 1, group, group + 1, group + 3,
              2 * group + 70_001, 3 * group):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        for start in (0, 0x12345678):
            plain = tb._reg_python(start ^ 0xFFFFFFFF, data) ^ 0xFFFFFFFF
            assert tb.crc32c(data.tobytes(), start) == plain, (n, start)
        k = n // 3
        assert tb.crc32c(data[k:], tb.crc32c(data[:k])) == tb.crc32c(data)


def test_crc32c_matches_googles_c_implementation() -> None:
    lib = pytest.importorskip("google_crc32c", reason="the test extra installs google-crc32c")
    value = lib.value
    rng = np.random.default_rng(4)
    for n in (0, 1, 5, 1000, 65_537, (4 << 20) + 5):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert tb.crc32c(data) == value(data)



# ------------------------------------------------------------------ object graph and Keras names

def _weighted_layers(config_json: Path) -> list[dict]:
    """The model's layers that hold weights, in `model.layers` order (from NAME.json)."""
    model = json.loads(config_json.read_text())
    return [layer for layer in model["config"]["layers"]
            if layer["class_name"] in ("LSTM", "Bidirectional", "Dense", "Embedding")]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["ckpt", "savedmodel"])
def test_layer_weights_match_keras_get_weights(name: str, kind: str) -> None:
    prefix = sample_prefixes()[f"{name}_{kind}"]
    bundle = tb.TensorBundle(prefix)
    by_layer = tb.keras_layer_weights(tb.object_graph(bundle))
    refs = np.load(TF215 / f"{name}.ref.npz")
    layers = _weighted_layers(TF215 / f"{name}.json")
    assert [k for k in by_layer if "/" not in k] == [f"layer_with_weights-{i}" for i in range(len(layers))]
    compared = 0
    for i, layer in enumerate(layers):
        path = f"layer_with_weights-{i}"
        lname = layer["config"]["name"]
        if layer["class_name"] == "LSTM":
            directions = {path: lname}
        elif layer["class_name"] == "Bidirectional":
            halves = sorted({k.split(":")[0] for k in refs.files if k.startswith(f"{lname}/")})
            directions = {f"{path}/{'forward' if '/forward_' in h else 'backward'}_layer": h for h in halves}
            assert [w for w, _ in by_layer[path]] == [f"{half}_layer/cell/{r}" for half in ("forward", "backward")
                                                      for r in ("kernel", "recurrent_kernel", "bias")]
        else:
            continue
        for layer_path, ref_name in directions.items():
            assert [w for w, _ in by_layer[layer_path]] == ["cell/kernel", "cell/recurrent_kernel", "cell/bias"]
            for (_, key), role in zip(by_layer[layer_path], ("kernel", "recurrent_kernel", "bias"), strict=True):
                assert np.array_equal(bundle.read(key), refs[f"{ref_name}:{role}"]), (layer_path, role)
                compared += 1
    assert compared == len(refs.files)


EXPECTED_PATHS = {
    "single": ["layer_with_weights-0/cell/kernel", "layer_with_weights-0/cell/recurrent_kernel",
               "layer_with_weights-0/cell/bias"],
    "bidir_stacked": [f"layer_with_weights-0/{half}_layer/cell/{r}" for half in ("forward", "backward")
                      for r in ("kernel", "recurrent_kernel", "bias")]
    + ["layer_with_weights-1/cell/kernel", "layer_with_weights-1/cell/recurrent_kernel",
       "layer_with_weights-1/cell/bias", "layer_with_weights-2/kernel", "layer_with_weights-2/bias"],
    "embedding_backwards": ["layer_with_weights-0/embeddings", "layer_with_weights-1/cell/kernel",
                            "layer_with_weights-1/cell/recurrent_kernel", "layer_with_weights-1/cell/bias",
                            "layer_with_weights-2/kernel", "layer_with_weights-2/bias"],
    "seq2seq": [f"layer_with_weights-{i}/cell/{r}" for i in (0, 1) for r in ("kernel", "recurrent_kernel", "bias")]
    + ["layer_with_weights-2/kernel", "layer_with_weights-2/bias"],
}


@pytest.mark.parametrize("name", NAMES)
def test_object_graph_paths_of_samples(name: str) -> None:
    ckpt = tb.TensorBundle(TF215 / f"{name}_ckpt" / "cp.ckpt")
    paths = tb.object_graph(ckpt).paths()
    assert list(paths) == EXPECTED_PATHS[name]
    # A weights checkpoint's keys are the paths themselves; the optimizer's state is left out.
    assert all(key == f"{path}/.ATTRIBUTES/VARIABLE_VALUE" for path, key in paths.items())
    optimizer_keys = [k for k in ckpt.entries if k.startswith("optimizer/") or ".OPTIMIZER_SLOT" in k]
    assert bool(optimizer_keys) == (name in ("bidir_stacked", "embedding_backwards"))
    # A SavedModel names the same variables by the same Keras paths, whatever key stores them.
    saved = tb.TensorBundle(TF215 / f"{name}_savedmodel" / "variables" / "variables")
    saved_paths = tb.object_graph(saved).paths()
    assert list(saved_paths) == EXPECTED_PATHS[name]
    for path in paths:
        assert np.array_equal(saved.read(saved_paths[path]), ckpt.read(paths[path]))


def test_object_graph_names_a_functional_models_inputs() -> None:
    graph = tb.object_graph(tb.TensorBundle(TF215 / "seq2seq_ckpt" / "cp.ckpt"))
    root = [(c.local_name, c.node_id) for c in graph.nodes[0].children]
    names = [n for n, _ in root]
    # model.layers of a Functional model starts with its two InputLayers.
    assert names[:3] == ["layer-0", "layer-1", "layer_with_weights-0"]
    assert dict(root)["layer_with_weights-0"] == dict(root)["layer-2"]


def test_legacy_optimizer_slots_are_in_the_graph_but_not_in_paths() -> None:
    graph = tb.object_graph(tb.TensorBundle(TF215 / "embedding_backwards_ckpt" / "cp.ckpt"))
    slots = [s for node in graph.nodes for s in node.slot_variables]
    assert {s.slot_name for s in slots} == {"m", "v"} and len(slots) == 12
    assert not any(".OPTIMIZER_SLOT" in key for key in graph.paths().values())


@needs_real
def test_real_two_shard_checkpoint() -> None:
    bundle = tb.TensorBundle(REAL_CKPT / "cp.ckpt")
    assert bundle.header.num_shards == 2
    assert {e.shard_id for e in bundle.entries.values()} == {0, 1}
    graph = tb.object_graph(bundle)
    by_layer = tb.keras_layer_weights(graph)
    assert list(by_layer) == ["layer_with_weights-0", "layer_with_weights-1", "layer_with_weights-1/forward_layer",
                              "layer_with_weights-1/backward_layer", "layer_with_weights-2", "layer_with_weights-3"]
    fwd = dict(by_layer["layer_with_weights-1/forward_layer"])
    assert bundle.read(fwd["cell/kernel"]).shape == (64, 256)
    # tf.keras ~2.1 counted the Sequential's InputLayer as layer-0; layer_with_weights-0 is the Embedding.
    root = {c.local_name: c.node_id for c in graph.nodes[0].children}
    assert root["layer_with_weights-0"] == root["layer-1"]
    assert not graph.nodes[root["layer-0"]].children


@needs_real
def test_real_savedmodel_variables_and_metadata() -> None:
    bundle = tb.TensorBundle(REAL_SAVEDMODEL / "variables" / "variables")
    paths = tb.object_graph(bundle).paths()
    assert paths["layer_with_weights-0/cell/kernel"] == "variables/0/.ATTRIBUTES/VARIABLE_VALUE"
    assert bundle.read(paths["layer_with_weights-0/cell/recurrent_kernel"]).shape == (64, 256)
    nodes = tb.read_keras_metadata(REAL_SAVEDMODEL)
    config, version = tb.keras_model_config(nodes)
    assert version == "2.15.0" and config["class_name"] == "Sequential"
    lstm = [layer for layer in config["config"]["layers"] if layer["class_name"] == "LSTM"]
    assert lstm[0]["config"]["units"] == 64
    assert {n["node_path"]: n["identifier"] for n in nodes}["root.layer_with_weights-0"] == "_tf_keras_rnn_layer"


def _strip(x: Any, keys: set[str]) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v, keys) for k, v in x.items() if k not in keys}
    if isinstance(x, list):
        return [_strip(v, keys) for v in x]
    return x


@pytest.mark.parametrize("name", NAMES)
def test_keras_metadata_of_samples(name: str) -> None:
    nodes = tb.read_keras_metadata(TF215 / f"{name}_savedmodel")
    assert nodes == tb.read_keras_metadata(TF215 / f"{name}_savedmodel" / "keras_metadata.pb")
    root = nodes[0]
    assert root["node_path"] == "root" and root["node_id"] == 0
    assert root["identifier"] == ("_tf_keras_network" if name == "seq2seq" else "_tf_keras_sequential")
    assert root["version"] == {"producer": 2, "min_consumer": 1}
    config, version = tb.keras_model_config(nodes)
    assert version == "2.15.0"
    written = json.loads((TF215 / f"{name}.json").read_text())
    assert config["class_name"] == written["class_name"]
    # The legacy serialization: no module/registered_name/build_config, shared_object_id added.
    assert _strip(config["config"], {"shared_object_id"}) == _strip(written["config"],
                                                                     {"module", "registered_name", "build_config"})
    paths = {n["node_path"]: n["identifier"] for n in nodes}
    lstm_nodes = [p for p, ident in paths.items() if ident == "_tf_keras_rnn_layer"]
    assert lstm_nodes and all(f"{p}.cell" in paths for p in lstm_nodes)


def test_keras_metadata_errors(tmp_path: Path) -> None:
    bad = tmp_path / "keras_metadata.pb"
    with pytest.raises(InspectError, match="no such file"):
        tb.read_keras_metadata(tmp_path)
    bad.write_bytes(b"")
    with pytest.raises(InspectError, match="holds no Keras objects"):
        tb.read_keras_metadata(bad)
    node = _pb(3, b"root") + _pb(5, b"{not json")
    bad.write_bytes(_pb(1, node))
    with pytest.raises(InspectError, match="not valid JSON"):
        tb.read_keras_metadata(bad)
    raw = (TF215 / "single_savedmodel" / "keras_metadata.pb").read_bytes()
    for cut in (1, 7, len(raw) // 2, len(raw) - 1):
        bad.write_bytes(raw[:cut])
        with pytest.raises(InspectError):
            tb.read_keras_metadata(bad)
    bad.write_bytes(_pb(1, _pb(3, b"root") + _pb(5, b'{"name": "x"}')))
    with pytest.raises(InspectError, match="no model configuration"):
        tb.keras_model_config(tb.read_keras_metadata(bad))


# ------------------------------------------------------------------ naming a checkpoint

@pytest.mark.parametrize("folder", [TF215 / "single_ckpt", TF215 / "seq2seq_savedmodel" / "variables",
                                    pytest.param(REAL_CKPT, marks=needs_real)])
def test_every_way_of_naming_a_checkpoint_resolves_to_one_prefix(folder: Path) -> None:
    index = next(folder.glob("*.index"))
    prefix = index.with_name(index.name[: -len(".index")])
    ways = [prefix, index, folder, *sorted(folder.glob("*.data-*"))]
    if (folder / "checkpoint").exists():
        ways.append(folder / "checkpoint")
    resolved = {tb.resolve_prefix(w) for w in ways}
    assert resolved == {Path(os.path.abspath(prefix))}
    assert len(ways) >= 4


def test_resolve_prefix_in_folders(tmp_path: Path) -> None:
    ck = tmp_path / "training"
    shutil.copytree(TF215 / "single_ckpt", ck)
    expected = Path(os.path.abspath(ck / "cp.ckpt"))
    (ck / "checkpoint").write_text(f'model_checkpoint_path: "{ck / "cp.ckpt"}"\n')
    assert tb.resolve_prefix(ck) == expected  # absolute, inside the folder
    (ck / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/cp.ckpt"\n')
    with pytest.raises(InspectError, match="outside the folder"):
        tb.resolve_prefix(ck)
    (ck / "checkpoint").write_text('model_checkpoint_path: "../training/../../x/cp.ckpt"\n')
    with pytest.raises(InspectError, match="outside the folder"):
        tb.resolve_prefix(ck)
    (ck / "checkpoint").write_text('model_checkpoint_path: "cp.ckpt-7"\n')
    with pytest.raises(InspectError, match="does not exist"):
        tb.resolve_prefix(ck)
    (ck / "checkpoint").write_text('all_model_checkpoint_paths: "cp.ckpt"\n')
    with pytest.raises(InspectError, match="no model_checkpoint_path"):
        tb.resolve_prefix(ck)
    (ck / "checkpoint").write_text('model_checkpoint_path: "c\\160.ckpt"\n')  # \160 is 'p'
    assert tb.resolve_prefix(ck) == expected
    (ck / "checkpoint").unlink()
    assert tb.resolve_prefix(ck) == expected  # the only prefix
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(ck / f"cp.ckpt{suffix}", ck / f"other{suffix}")
    with pytest.raises(InspectError, match=r"several checkpoints \(cp.ckpt, other\)"):
        tb.resolve_prefix(ck)
    (ck / "other.index").unlink()
    with pytest.raises(InspectError, match=r"index other.index is missing"):
        tb.resolve_prefix(ck / "other.data-00000-of-00001")
    with pytest.raises(InspectError, match="no such file"):
        tb.resolve_prefix(ck / "nothing")
    with pytest.raises(InspectError, match="not a TensorFlow checkpoint"):
        tb.resolve_prefix(TF215 / "single.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InspectError, match=r"no .index file"):
        tb.resolve_prefix(empty)
    with pytest.raises(InspectError, match="SavedModel"):
        tb.resolve_prefix(TF215 / "single_savedmodel")


# ------------------------------------------------------------------ broken and hostile files

def _copy(tmp_path: Path, name: str = "bidir_stacked_ckpt") -> Path:
    dst = tmp_path / name
    shutil.copytree(TF215 / name, dst)
    return dst / "cp.ckpt"


def _open_and_read_all(prefix: Path) -> None:
    """What a reader does with a checkpoint: open, every tensor, the object graph and its names."""
    bundle = tb.TensorBundle(prefix)
    for key, entry in bundle.entries.items():
        if entry.dtype == "string":
            bundle.read_strings(key)
        else:
            bundle.read(key)
    graph = tb.object_graph(bundle)
    graph.paths()
    tb.keras_layer_weights(graph)


def _one_line(e: pytest.ExceptionInfo[InspectError]) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_truncated_index(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    index = Path(f"{prefix}.index")
    raw = index.read_bytes()
    for cut in (0, 1, 30, 47, 48, 100, len(raw) // 2, len(raw) - 49, len(raw) - 1):
        index.write_bytes(raw[:cut])
        with pytest.raises(InspectError) as e:
            tb.TensorBundle(prefix)
        assert str(index) in _one_line(e)


def test_wrong_magic_number(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    raw[-1] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(InspectError, match="wrong magic number"):
        tb.TensorBundle(prefix)


def test_flipped_bit_in_index_block(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    index = Path(f"{prefix}.index")
    raw = index.read_bytes()
    offset, size = _data_block_span(raw)
    footer = len(raw) - 48
    _, meta_end = tb._varint(raw, footer, len(raw), "footer")
    _, index_handle = tb._varint(raw, meta_end, len(raw), "footer")  # the metaindex handle, unused, is skipped
    # in the data block, its trailer, the index block (just before the footer) and its handle
    for pos in (offset, offset + size // 2, offset + size + 2, footer - 12, index_handle):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x10
        index.write_bytes(bytes(flipped))
        with pytest.raises(InspectError, match=r"checksum|damaged|outside the file") as e:
            tb.TensorBundle(prefix)
        _one_line(e)


def test_flipped_bit_in_tensor_data(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    bundle = tb.TensorBundle(prefix)
    entry = bundle.entries["layer_with_weights-1/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    data = bundle.shard_path(0)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 7] ^= 0x04
    data.write_bytes(bytes(raw))
    with pytest.raises(InspectError, match=r"fails its checksum \(crc32c\)") as e:
        tb.TensorBundle(prefix).read(entry.key)
    assert str(data) in _one_line(e)
    # The other tensors still read.
    tb.TensorBundle(prefix).read("layer_with_weights-2/kernel/.ATTRIBUTES/VARIABLE_VALUE")


def test_flipped_bit_in_the_object_graph(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    bundle = tb.TensorBundle(prefix)
    entry = bundle.entries[tb.OBJECT_GRAPH_KEY]
    data = bundle.shard_path(0)
    for where in (0, 3, entry.size - 1):  # a length, its checksum, the proto bytes
        raw = bytearray(data.read_bytes())
        raw[entry.offset + where] ^= 0x01
        data.write_bytes(bytes(raw))
        with pytest.raises(InspectError, match=r"checksum|cut off|more bytes") as e:
            tb.object_graph(tb.TensorBundle(prefix))
        _one_line(e)
        raw[entry.offset + where] ^= 0x01
        data.write_bytes(bytes(raw))


def test_truncated_and_missing_data_shards(tmp_path: Path) -> None:
    prefix = _copy(tmp_path)
    data = Path(f"{prefix}.data-00000-of-00001")
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(InspectError, match="truncated") as e:
        tb.TensorBundle(prefix)
    assert str(data) in _one_line(e)
    data.unlink()
    with pytest.raises(InspectError, match="no such file") as e:
        tb.TensorBundle(prefix)
    assert str(data) in _one_line(e)


@needs_real
def test_missing_second_shard_of_the_real_checkpoint(tmp_path: Path) -> None:
    dst = tmp_path / "real"
    shutil.copytree(REAL_CKPT, dst)
    os.chmod(dst, 0o755)
    second = dst / "cp.ckpt.data-00001-of-00002"
    os.chmod(second, 0o644)
    second.unlink()
    with pytest.raises(InspectError, match=r"cp.ckpt.data-00001-of-00002: no such file"):
        tb.TensorBundle(tb.resolve_prefix(dst))


# A minimal LevelDB table and protobuf writer, to make files that are well-formed on the outside
# (checksums right) and absurd inside.

def _varint_bytes(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb(field: int, value: int | bytes, wire: int | None = None) -> bytes:
    if isinstance(value, bytes):
        return _varint_bytes(field << 3 | 2) + _varint_bytes(len(value)) + value
    if wire == 5:
        return _varint_bytes(field << 3 | 5) + value.to_bytes(4, "little")
    return _varint_bytes(field << 3) + _varint_bytes(value)


def _block(entries: list[tuple[bytes, bytes]], restarts: list[int] | None = None) -> bytes:
    body = b"".join(_varint_bytes(0) + _varint_bytes(len(k)) + _varint_bytes(len(v)) + k + v for k, v in entries)
    restarts = [0] if restarts is None else restarts
    return body + b"".join(r.to_bytes(4, "little") for r in restarts) + len(restarts).to_bytes(4, "little")


def _with_trailer(block: bytes, kind: int = 0) -> bytes:
    return block + bytes([kind]) + tb.mask_crc(tb.crc32c(block + bytes([kind]))).to_bytes(4, "little")


def _table(items: list[tuple[bytes, bytes]], data_kind: int = 0, raw_block: bytes | None = None) -> bytes:
    data = raw_block if raw_block is not None else _block(items)
    out = _with_trailer(data, data_kind)
    handle = _varint_bytes(0) + _varint_bytes(len(data))
    meta_offset = len(out)
    meta = _block([])
    out += _with_trailer(meta)
    index_offset = len(out)
    index = _block([(items[-1][0] if items else b"", handle)])
    out += _with_trailer(index)
    handles = (_varint_bytes(meta_offset) + _varint_bytes(len(meta)) + _varint_bytes(index_offset)
               + _varint_bytes(len(index)))
    return out + handles.ljust(40, b"\0") + tb.TABLE_MAGIC.to_bytes(8, "little")


def _header(num_shards: int = 1) -> bytes:
    return _pb(1, num_shards) + _pb(3, _pb(1, 1))


def _entry(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int = 0, shard: int = 0) -> bytes:
    dims = b"".join(_pb(2, _pb(1, d)) for d in shape)
    return _pb(1, dtype) + _pb(2, dims) + _pb(3, shard) + _pb(4, offset) + _pb(5, size) + _pb(6, crc, wire=5)


def _string_tensor(s: bytes) -> tuple[bytes, int]:
    """A scalar string tensor's bytes as BundleWriter writes them, and its masked entry crc."""
    length_crc = tb.crc32c(len(s).to_bytes(4, "little"))
    stored = tb.mask_crc(length_crc).to_bytes(4, "little")
    crc = tb.crc32c(s, tb.crc32c(stored, length_crc))
    return _varint_bytes(len(s)) + stored + s, tb.mask_crc(crc)


def _write(tmp_path: Path, items: list[tuple[bytes, bytes]], data: bytes = b"\0" * 64, **kw: Any) -> Path:
    prefix = tmp_path / "ck"
    Path(f"{prefix}.index").write_bytes(_table(items, **kw))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)
    return prefix


def test_the_test_writer_makes_files_the_reader_accepts(tmp_path: Path) -> None:
    values = np.arange(6, dtype="<f4")
    graph = _pb(1, _pb(1, _pb(1, 1) + _pb(2, b"kernel"))) + _pb(1, _pb(2, _pb(1, b"VARIABLE_VALUE") + _pb(3, b"w")))
    blob, graph_crc = _string_tensor(graph)
    data = values.tobytes() + blob
    items = [(b"", _header()), (b"_CHECKPOINTABLE_OBJECT_GRAPH", _entry(7, (), 24, len(blob), graph_crc)),
             (b"w", _entry(1, (2, 3), 0, 24, tb.mask_crc(tb.crc32c(values.tobytes()))))]
    prefix = _write(tmp_path, items, data)
    bundle = tb.TensorBundle(prefix)
    assert np.array_equal(bundle.read("w"), values.reshape(2, 3))
    assert tb.object_graph(bundle).paths() == {"kernel": "w"}


ABSURD: dict[str, tuple[list[tuple[bytes, bytes]], dict, str]] = {
    "huge declared size": ([(b"", _header()), (b"w", _entry(1, (1 << 40,), 0, 1 << 42))], {}, "the file has 64"),
    "huge offset": ([(b"", _header()), (b"w", _entry(1, (4,), (1 << 62), 16))], {}, "the file has 64"),
    "huge shape, small size": ([(b"", _header()), (b"w", _entry(1, (1 << 31,) * 3, 0, 16))], {}, "its entry says 16"),
    "negative dimension": ([(b"", _header()), (b"w", _entry(1, (-1, 4), 0, 16))], {}, "unknown dimension"),
    "eleven-byte varint": ([(b"", _header()), (b"w", b"\x08" + b"\xff" * 10 + b"\x01")], {}, "longer than 10 bytes"),
    "field longer than message": ([(b"", _header()), (b"w", b"\x12" + _varint_bytes(1 << 60))], {},
                                  "declares 1152921504606846976 bytes"),
    "wire type 3": ([(b"", _header()), (b"w", b"\x0b")], {}, "wire type 3"),
    "shard beyond num_shards": ([(b"", _header()), (b"w", _entry(1, (4,), 0, 16, shard=3))], {},
                                "in shard 3 but the header declares 1"),
    "absurd num_shards": ([(b"", _header(1 << 30)), (b"w", _entry(1, (4,), 0, 16))], {}, "data shards"),
    "negative num_shards": ([(b"", _header(-1)), (b"w", _entry(1, (4,), 0, 16))], {}, "declares -1 data shards"),
    "no header": ([(b"w", _entry(1, (4,), 0, 16))], {}, "no bundle header"),
    "newer format": ([(b"", _pb(1, 1) + _pb(3, _pb(1, 9) + _pb(2, 5)))], {}, "newer checkpoint format"),
    "snappy block": ([(b"", _header())], {"data_kind": 1}, "snappy"),
    "unknown block type": ([(b"", _header())], {"data_kind": 7}, "unknown compression"),
    "restart count too large": ([(b"", _header())], {"raw_block": b"\0" * 8 + (1 << 30).to_bytes(4, "little")},
                                "restart points"),
    "entry past its block": ([(b"", _header())], {"raw_block": b"\x00\x01\x7f" + b"k" + b"\0\0\0\0\x01\0\0\0"},
                             "does not fit"),
    "shared prefix longer than the key": ([(b"", _header())], {"raw_block": b"\x05\x01\x00k" + b"\0\0\0\0\x01\0\0\0"},
                                          "does not fit"),
    "keys out of order": ([(b"", _header()), (b"b", _entry(1, (), 0, 4)), (b"a", _entry(1, (), 0, 4))], {},
                          "out of order"),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_index_content_gives_one_line(tmp_path: Path, case: str) -> None:
    items, kw, message = ABSURD[case]
    prefix = _write(tmp_path, items, **kw)
    tracemalloc.start()
    try:
        with pytest.raises(InspectError) as e:
            _open_and_read_all(prefix)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message in _one_line(e)
    assert peak < 32 << 20


def test_absurd_object_graphs_and_string_tensors(tmp_path: Path) -> None:
    def graph_file(graph: bytes, shape: tuple[int, ...] = (), corrupt_crc: bool = False) -> Path:
        blob, crc = _string_tensor(graph)
        items = [(b"", _header()), (b"_CHECKPOINTABLE_OBJECT_GRAPH", _entry(7, shape, 0, len(blob), crc ^ corrupt_crc))]
        return _write(tmp_path, items, blob)

    cases = {
        "refers to a node that does not exist": _pb(1, _pb(1, _pb(1, 5) + _pb(2, b"x"))),
        "has no nodes": b"",
        "not valid UTF-8": _pb(1, _pb(1, _pb(1, 0) + _pb(2, b"\xff\xfe"))),
        "wrong type": _pb(1, _pb(1, _pb(1, b"zz"))),
    }
    for message, graph in cases.items():
        with pytest.raises(InspectError, match=message):
            tb.object_graph(tb.TensorBundle(graph_file(graph)))
    with pytest.raises(InspectError, match="declares 1099511627776 strings"):
        tb.object_graph(tb.TensorBundle(graph_file(b"", shape=(1 << 40,))))
    with pytest.raises(InspectError, match="fails its checksum"):
        tb.object_graph(tb.TensorBundle(graph_file(_pb(1, b""), corrupt_crc=True)))
    # A cycle through the children is walked once.
    cyclic = _pb(1, _pb(1, _pb(1, 1) + _pb(2, b"a"))) + _pb(1, _pb(1, _pb(1, 0) + _pb(2, b"b")))
    graph = tb.object_graph(tb.TensorBundle(graph_file(cyclic)))
    assert [p for p, _, _ in graph.walk()] == ["", "a"]


def test_expansion_bombs_are_refused_quickly(tmp_path: Path) -> None:
    """Inputs whose few bytes would expand quadratically: keys, object paths, string counts."""
    t = time.process_time()  # CPU time: a blow-up shows there, other jobs on the machine do not
    # Prefix compression: a 200 KB key, then 50,000 entries of 6 bytes each repeating it plus one byte.
    key = b"k" * 200_000
    body = bytearray(b"\x00" + _varint_bytes(len(key)) + b"\x00" + key)
    for i in range(50_000):
        body += _varint_bytes(len(key) + i) + b"\x01\x00\x01"
    block = bytes(body) + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    prefix = _write(tmp_path, [(b"k", b"")], raw_block=block)
    with pytest.raises(InspectError, match="keys expand to far more bytes"):
        tb.TensorBundle(prefix)

    def graph_bundle(graph: bytes, folder: str) -> tb.TensorBundle:
        (tmp_path / folder).mkdir()
        blob, crc = _string_tensor(graph)
        items = [(b"", _header()), (b"_CHECKPOINTABLE_OBJECT_GRAPH", _entry(7, (), 0, len(blob), crc))]
        return tb.TensorBundle(_write(tmp_path / folder, items, blob))

    def node(*children: tuple[int, bytes]) -> bytes:
        return _pb(1, b"".join(_pb(1, _pb(1, i) + _pb(2, name)) for i, name in children))

    # A chain deeper than any Keras model.
    chain = b"".join(node((i + 1, b"a")) for i in range(300)) + node()
    with pytest.raises(InspectError, match="more than 128 deep"):
        tb.object_graph(graph_bundle(chain, "deep")).paths()
    # A 1 MB name above 5,000 leaves: every leaf's path would repeat it.
    graph = node((1, b"x" * 1_000_000)) + node(*[(2 + j, b"b") for j in range(5_000)]) + node() * 5_000
    with pytest.raises(InspectError, match="expand to far more text"):
        tb.keras_layer_weights(tb.object_graph(graph_bundle(graph, "wide")))
    # A string tensor with millions of elements.
    items = [(b"", _header()), (b"s", _entry(7, (1 << 21,), 0, 1 << 21))]
    (tmp_path / "strings").mkdir()
    with pytest.raises(InspectError, match="reads at most"):
        tb.TensorBundle(_write(tmp_path / "strings", items, b"\0" * (1 << 21))).read_strings("s")
    assert time.process_time() - t < 20


def _data_block_span(index: bytes) -> tuple[int, int]:
    """(offset, size) of the first data block of a table, found through its footer and index block."""
    footer = index[-48:]
    pos = 0
    handles = []
    for _ in range(4):
        value, pos = tb._varint(footer, pos, 40, "footer")
        handles.append(value)
    index_block = index[handles[2]:handles[2] + handles[3]]
    _, handle = next(tb._block_entries(index_block, "index", "index block"))
    offset, p = tb._varint(handle, 0, len(handle), "handle")
    size, _ = tb._varint(handle, p, len(handle), "handle")
    return offset, size


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tf_fuzz")
    shutil.copytree(TF215 / "bidir_stacked_ckpt", d / "ck")
    return d / "ck" / "cp.ckpt"


def _survives(prefix: Path) -> None:
    t = time.process_time()  # CPU time: a blow-up shows there, other jobs on the machine do not
    try:
        _open_and_read_all(prefix)
    except InspectError as e:
        assert str(e) and "\n" not in str(e)
    assert time.process_time() - t < 10


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 1 << 16)))
def test_fuzz_index_bytes(fuzz_dir: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    original = (TF215 / "bidir_stacked_ckpt" / "cp.ckpt.index").read_bytes()
    raw = bytearray(original)
    for pos, byte in edits:
        raw[pos % len(raw)] = byte
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    Path(f"{fuzz_dir}.index").write_bytes(bytes(raw))
    _survives(fuzz_dir)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_index_block_content_with_checksums_fixed(fuzz_dir: Path, edits: list[tuple[int, int]]) -> None:
    """Mutations behind a correct block checksum reach the block and protobuf parsers."""
    original = (TF215 / "bidir_stacked_ckpt" / "cp.ckpt.index").read_bytes()
    offset, size = _data_block_span(original)
    block = bytearray(original[offset:offset + size + 1])
    for pos, byte in edits:
        block[pos % size] = byte
    crc = tb.mask_crc(tb.crc32c(bytes(block))).to_bytes(4, "little")
    raw = original[:offset] + bytes(block) + crc + original[offset + size + 5:]
    Path(f"{fuzz_dir}.index").write_bytes(raw)
    _survives(fuzz_dir)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6),
       st.one_of(st.none(), st.integers(0, 1 << 16)))
def test_fuzz_object_graph_with_checksums_fixed(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    """A mutated object graph stored with correct checksums: the graph parser and walk get it."""
    source = tb.TensorBundle(TF215 / "bidir_stacked_ckpt" / "cp.ckpt")
    graph = bytearray(source.read_strings(tb.OBJECT_GRAPH_KEY)[0])
    for pos, byte in edits:
        graph[pos % len(graph)] = byte
    if cut is not None:
        graph = graph[: cut % (len(graph) + 1)]
    blob, crc = _string_tensor(bytes(graph))
    items = [(b"", _header()), (b"_CHECKPOINTABLE_OBJECT_GRAPH", _entry(7, (), 0, len(blob), crc))]
    prefix = _write(tmp_path, items, blob)
    _survives(prefix)


# ------------------------------------------------------------------ no TensorFlow

def test_import_does_not_load_tensorflow() -> None:
    code = ("import sys, lstm_inspect.io.tf_bundle as t; from pathlib import Path; "
            f"b = t.TensorBundle(Path({str(TF215 / 'single_ckpt' / 'cp.ckpt')!r})); "
            "t.keras_layer_weights(t.object_graph(b)); "
            f"t.read_keras_metadata(Path({str(TF215 / 'single_savedmodel')!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', "
            "'google')))")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
