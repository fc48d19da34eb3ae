"""SavedModel folders, read without TensorFlow.

From TF 2.0 to 2.15 `model.save("dir")` wrote a SavedModel folder: `keras_metadata.pb` holds the Keras config
(TF 2.0-2.4 kept it inside `saved_model.pb`), `variables/variables.{index,data-*}` the weights, a TF checkpoint
(tensor bundle) read by `tf_bundle` and matched to the config's layers as `tf_checkpoint.config_locators` matches
them, with keras_metadata.pb's own `layer_with_weights-M` edges where it records them.
"""

from __future__ import annotations

import re
from pathlib import Path

from lstm_inspect.base.errors import InspectError
from lstm_inspect.io.assemble import from_graph, model_graph
from lstm_inspect.io.probe import Architecture, Probe
from lstm_inspect.io.tf_bundle import keras_model_config, read_keras_metadata, read_legacy_keras_metadata
from lstm_inspect.io.tf_checkpoint import TF_KERAS, BundleSource, config_locators
from lstm_inspect.model.checkpoint import Checkpoint

# The files of a SavedModel folder that stand for the folder when named.
FOLDER_FILES = ("saved_model.pb", "keras_metadata.pb")


def is_savedmodel_path(probe: Probe) -> bool:
    """A SavedModel folder, or one of its FOLDER_FILES."""
    path = probe.path
    return (path.name in FOLDER_FILES and is_savedmodel(path.parent)) or is_savedmodel(path)


def read(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    path = probe.path
    if path.name in FOLDER_FILES and is_savedmodel(path.parent):
        path = path.parent  # a file of a SavedModel folder stands for the folder
    if architecture is not None:
        raise InspectError(f"{path}: is a SavedModel, which holds its own architecture; --config is for "
                           "weights-only files")
    return read_savedmodel(path)


def is_savedmodel(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in
                                 ("saved_model.pb", "keras_metadata.pb", "variables/variables.index"))


def metadata_edges(nodes: list[dict]) -> dict[str, str] | None:
    """A SavedModel's top-level layers with weights, name -> `layer_with_weights-M`, from keras_metadata.pb's
    node paths (`root.layer_with_weights-1`: tf_keras lists that edge before `layer-N`); None when it has none."""
    edges = {}
    for node in nodes:
        m = re.fullmatch(r"root\.(layer_with_weights-\d+)", str(node.get("node_path", "")))
        name = node.get("metadata", {}).get("name") if isinstance(node.get("metadata"), dict) else None
        if m and isinstance(name, str):
            edges[name] = m.group(1)
    return edges or None


def read_savedmodel(folder: Path) -> Checkpoint:
    if (folder / "keras_metadata.pb").is_file():
        nodes, source_name = read_keras_metadata(folder), "keras_metadata.pb"
    else:  # TF 2.0-2.4 kept the metadata inside saved_model.pb
        nodes, source_name = read_legacy_keras_metadata(folder), "saved_model.pb"
        if not nodes:
            raise InspectError(f"{folder}: is a SavedModel without Keras metadata (no keras_metadata.pb, none in "
                               "saved_model.pb: tf.saved_model.save and Keras 3's model.export write none); its "
                               f"weights are a TF checkpoint: lstm-inspect show {folder / 'variables'} (add --config "
                               "model.json, from model.to_json(), for the whole model)")
    config, version = keras_model_config(nodes, str(folder / source_name))
    graph = model_graph(config, source_name, folder)
    prefix = folder / "variables" / "variables"
    if not Path(f"{prefix}.index").is_file():
        raise InspectError(f"{folder}: has no variables/variables.index: the SavedModel's weights are missing")
    source = BundleSource(folder, prefix, folder)
    locate, arrays_of, notes = config_locators(source.bundle(), graph, folder, metadata_edges(nodes))
    ckpt = from_graph(folder, "savedmodel", version or TF_KERAS, graph, locate, source, arrays_of, config)
    ckpt.notes += notes
    return ckpt
