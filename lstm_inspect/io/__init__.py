"""Reading files: every checkpoint format (one module each), the user's input arrays and the arrays lstm-inspect
writes. Nothing here imports TensorFlow.

`READERS` is the one place the formats are told apart: (sniff, read) pairs, tried in order on the path the user
named (`probe.Probe`); the first whose sniff says yes reads it, or refuses it with the reason. A new format is a
module with its sniff and read, listed here where it must be tried. The order matters: a SavedModel folder and a
TF checkpoint are told before a path must be an existing file; an HDF5 file's kind by its root attributes
(`model_config` before `layer_names` before Keras 3's groups).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lstm_inspect.io import keras3, keras_h5, probe, savedmodel, tf_checkpoint
from lstm_inspect.io.config_file import read_config_file
from lstm_inspect.io.probe import Architecture, Probe
from lstm_inspect.model.checkpoint import Checkpoint

Sniff = Callable[[Probe], bool]
Read = Callable[[Probe, Architecture | None, Path | None], Checkpoint]

READERS: list[tuple[Sniff, Read]] = [
    (savedmodel.is_savedmodel_path, savedmodel.read),  # a SavedModel folder, or its saved_model.pb
    (tf_checkpoint.is_tf_checkpoint, tf_checkpoint.read),  # an index, a shard, a prefix, its folder
    (probe.is_missing, probe.refuse_missing),
    (probe.is_folder, probe.refuse_folder),
    (probe.is_empty, probe.refuse_empty),
    (keras3.is_keras_zip, keras3.read_keras_zip),  # .keras
    (keras_h5.is_full_model, keras_h5.read_full_model),  # HDF5, model_config
    (keras_h5.is_weights, keras_h5.read_weights),  # HDF5, layer_names
    (keras_h5.is_keras0_weights, keras_h5.refuse_keras0_weights),
    (keras3.is_weights, keras3.read_weights),  # HDF5, layers/ or vars/
    (keras_h5.is_weights_without_config, keras_h5.refuse_weights_without_config),
    (probe.is_hdf5, probe.refuse_other_hdf5),
    (probe.anything, probe.refuse_unknown),
]


def read_checkpoint(path: Path, config: Path | None = None) -> Checkpoint:
    """The checkpoint at `path` (with its architecture from the JSON file `config`, for a weights-only file)."""
    architecture = read_config_file(config) if config is not None else None
    with Probe(path) as found:
        for sniff, read in READERS:
            if sniff(found):
                return read(found, architecture, config)
    raise AssertionError("the last of READERS takes every path")
