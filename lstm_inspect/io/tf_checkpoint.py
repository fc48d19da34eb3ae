"""TensorFlow-format weights checkpoints, read without TensorFlow.

`model.save_weights("cp.ckpt")` or `ModelCheckpoint("cp.ckpt", save_weights_only=True)` (TF 2.0-2.15) and
`tf.train.Checkpoint(model=m)` write a TF checkpoint: `cp.ckpt.index`, `cp.ckpt.data-NNNNN-of-MMMMM` (a tensor
bundle) and a `checkpoint` file. The bytes are read by `tf_bundle`; this module matches them to the model's layers
the way tf_keras's `load_weights` does: by the object graph's edge names, `layer_with_weights-M` for the M-th
layer of `model.layers` that has weights (an InputLayer has none, so Sequential and Functional count alike), then
`forward_layer` / `backward_layer` inside a Bidirectional and `cell/kernel`, `cell/recurrent_kernel`, `cell/bias`
inside a recurrent layer (tf_keras `src/engine/functional.py`, `_layer_checkpoint_dependencies`). A SavedModel's
variables are such a checkpoint, matched the same way (`savedmodel`).

A weights checkpoint holds no architecture: without `--config` its recurrent layers are found by their variables'
shapes, named by their TensorFlow variable names, and run with tf.keras 2's defaults (said so); with
`--config model.json` (a `to_json()` file) it reads like a full model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS
from lstm_inspect.engine.shapes import has_weights
from lstm_inspect.io.assemble import (
    default_settings,
    from_graph,
    guessed_kind,
    make_direction,
    model_graph,
    recurrent_halves,
)
from lstm_inspect.io.probe import Architecture, Probe
from lstm_inspect.io.storage import ZIP_SIGNATURE
from lstm_inspect.io.tf_bundle import TABLE_MAGIC, TensorBundle, keras_layer_weights, object_graph, resolve_prefix
from lstm_inspect.model.architecture import LayerNode, ModelGraph, RecurrentSpec
from lstm_inspect.model.checkpoint import Checkpoint, ModelLayer, RecurrentDirection, StoredArray

# The version a weights checkpoint is read as when nothing says: tf.keras 2 (TF 2.0-2.15) wrote them.
TF_KERAS = "2-tf"


CELL_VARIABLES = ("kernel", "recurrent_kernel", "bias")


@dataclass
class BundleSource:
    """The arrays of a TF checkpoint, read lazily, one tensor at a time (what directions and layers read)."""

    path: Path  # what the user named (for messages)
    prefix: Path
    root: Path  # the folder the user named: every file read lies inside it (tf_bundle.inside)
    _bundle: list[TensorBundle] = field(default_factory=list, repr=False)

    def bundle(self) -> TensorBundle:
        if not self._bundle:
            self._bundle.append(TensorBundle(self.prefix, self.root))
        return self._bundle[0]

    def read(self, keys: list[str]) -> list[np.ndarray]:
        bundle = self.bundle()
        return [bundle.read(k) for k in keys]


# ---------------------------------------------------------------- sniff and reader (io.READERS)


def is_tf_checkpoint(probe: Probe) -> bool:
    """`looks_like_tf_checkpoint`, but a zip is a .keras whatever its name."""
    path = probe.path
    return looks_like_tf_checkpoint(path) and not (path.is_file() and _signature(path)[:4] in (ZIP_SIGNATURE,))


def read(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    if architecture is not None:
        return read_tf_checkpoint(probe.path, architecture[0], architecture[1], config)
    return read_tf_checkpoint(probe.path)


def looks_like_tf_checkpoint(path: Path) -> bool:
    """By content: a TF index (its LevelDB footer's magic number), one of its data shards, a `checkpoint`
    state file, a folder holding one of those, or a prefix whose .index exists."""
    try:
        if path.is_dir():
            return (path / "checkpoint").is_file() or any(_is_index(p) for p in path.glob("*.index"))
        if not path.exists():
            return _is_index(Path(f"{path}.index"))
        if path.name == "checkpoint":
            with open(path, "rb") as f:
                return f.read(4096).lstrip().startswith(b"model_checkpoint_path")
        if _is_index(path):
            return True
        m = re.match(r"(?P<prefix>.+)\.data-\d{5}-of-\d{5}$", path.name)
        return bool(m) and _is_index(path.with_name(f"{m.group('prefix')}.index"))
    except OSError:
        return False


def _is_index(path: Path) -> bool:
    try:
        size = path.stat().st_size
        if not path.is_file() or size < 48:
            return False
        with open(path, "rb") as f:
            f.seek(size - 8)
            tail = f.read(8)
    except OSError:
        return False
    return int.from_bytes(tail[:4], "little") | (int.from_bytes(tail[4:], "little") << 32) == TABLE_MAGIC


def _signature(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


# ---------------------------------------------------------------- matching checkpoint layers to the config


def layer_paths(graph: ModelGraph, prefix: str = "", edges: dict[str, str] | None = None) -> dict[str, str]:
    """Model layer path -> its path in the checkpoint (`layer_with_weights-M`, nested inside a nested model).

    Counted from the classes' own weights, or, given `edges` (a top-level layer's name -> its edge, as a
    SavedModel's keras_metadata.pb records it), taken from the file: those number a layer of a class lstm-inspect
    does not know (a custom layer with weights) as Keras numbered it."""
    out: dict[str, str] = {}
    m = 0
    for node in graph.layers:
        if edges is not None:
            if node.name not in edges:
                continue
            path = f"{prefix}{edges[node.name]}"
        elif not has_weights(node):
            continue
        else:
            path = f"{prefix}layer_with_weights-{m}"
            m += 1
        out[node.path] = path
        if node.children is not None:
            out.update(layer_paths(node.children, f"{path}/"))
    return out


def model_prefix(weights: dict[str, list[tuple[str, str]]]) -> str:
    """Where the model's layers sit in the object graph: "" for the model's own checkpoint (save_weights,
    ModelCheckpoint, a SavedModel's variables), "model/" for `tf.train.Checkpoint(model=m)` and its
    CheckpointManager (the TF guide's way): the one object, not a layer, whose children are layers."""
    if any(re.fullmatch(r"layer_with_weights-\d+", p) for p in weights):
        return ""
    owners = {p.rsplit("/", 1)[0] for p in weights if re.fullmatch(r"[^/]+(/[^/]+)*/layer_with_weights-\d+", p)}
    owners = {o for o in owners if "layer_with_weights" not in o and not o.endswith(("forward_layer",
                                                                                    "backward_layer", "layer"))}
    return f"{owners.pop()}/" if len(owners) == 1 else ""


def _tops(weights: dict[str, list[tuple[str, str]]], prefix: str) -> list[str]:
    """The model's layers with weights (`<prefix>layer_with_weights-M`), in M's order."""
    found = [p for p in weights if p.startswith(prefix) and re.fullmatch(r"layer_with_weights-\d+", p[len(prefix):])]
    return sorted(found, key=lambda p: int(p.rsplit("-", 1)[1]))


def _stored(bundle: TensorBundle, key: str) -> StoredArray:
    entry = bundle.entry(key)
    return StoredArray(key=key, shape=tuple(entry.shape), dtype=entry.dtype)


def _direction_variables(weights: dict[str, list[tuple[str, str]]], path: str, stack_index: int | None = None
                         ) -> list[str]:
    """The checkpoint keys of one recurrent direction at `path`, in Keras's order (kernel, recurrent, bias); cell k
    of a StackedRNNCells holds its own under cell/cells/k/."""
    by_name = dict(weights.get(path, []))
    prefixes = ("cell/", "") if stack_index is None else (f"cell/cells/{stack_index}/",)
    for prefix in prefixes:  # a layer holds its cell; a CuDNN layer holds the variables itself
        keys = [by_name[f"{prefix}{name}"] for name in CELL_VARIABLES if f"{prefix}{name}" in by_name]
        if len(keys) >= 2:
            return keys
    return [key for _, key in weights.get(path, [])] if stack_index is None else []


def _unknown_layers(graph: ModelGraph) -> str:
    """The top-level layers of classes lstm-inspect does not know, for the count mismatch they may explain."""
    return ", ".join(f"{n.name} ({n.class_name})" for n in graph.layers if n.children is None and not n.is_op
                     and n.class_name not in LAYERS and not has_weights(n) and n.class_name != "InputLayer")


def config_locators(bundle: TensorBundle, graph: ModelGraph, where: Path, edges: dict[str, str] | None = None
                    ) -> tuple[Callable[[RecurrentSpec], Any], Callable[[LayerNode], list[StoredArray]], list[str]]:
    """The locate / arrays_of pair `assemble.from_graph` takes, for a checkpoint matched to a config."""
    weights = keras_layer_weights(object_graph(bundle))
    prefix = model_prefix(weights)
    notes: list[str] = []
    in_file = _tops(weights, prefix)

    def tops(paths: dict[str, str]) -> int:
        return sum(1 for p in paths.values() if "/" not in p[len(prefix):])

    paths = layer_paths(graph, prefix, edges)
    if edges is not None and tops(paths) != len(in_file):  # metadata that does not cover every layer: count
        paths = layer_paths(graph, prefix)
    expected = tops(paths)
    if len(in_file) != expected:
        unknown = _unknown_layers(graph)
        because = (f"; the model holds layers of classes lstm-inspect does not know (custom layers?): {unknown}, "
                   "whose weights cannot be numbered without Keras's metadata (a SavedModel's keras_metadata.pb)"
                   if unknown else ": they are not the same model")
        raise InspectError(f"{where}: the checkpoint holds {len(in_file)} layers with weights and the model config "
                           f"{expected}{because}")

    def locate(spec: RecurrentSpec) -> tuple[list[StoredArray], str, list[str]]:
        base = paths.get(spec.layer.path)
        if base is None:
            return [], "keras", [f"layer {spec.name}: the checkpoint has no weights for it"]
        path = f"{base}/{spec.half}" if spec.half else base
        keys = _direction_variables(weights, path, spec.stack_index)
        if not keys:
            return [], "keras", [f"layer {spec.name}: the checkpoint has no variables under {path}"]
        arrays = [_stored(bundle, k) for k in keys]
        return arrays, spec.cell.storage_of(spec.kind, [a.shape for a in arrays]), []

    def arrays_of(node: LayerNode) -> list[StoredArray]:
        base = paths.get(node.path)
        if base is None:
            return []
        return [_stored(bundle, key) for name, key in weights.get(base, [])
                if not name.startswith(("forward_layer/", "backward_layer/"))]

    return locate, arrays_of, notes


# ---------------------------------------------------------------- reading


def read_tf_checkpoint(path: Path, config: Any = None, config_version: str | None = None,
                       config_path: Path | None = None) -> Checkpoint:
    prefix = resolve_prefix(path)
    source = BundleSource(path, prefix, path if path.is_dir() else path.parent)
    bundle = source.bundle()
    if config is not None:
        graph = model_graph(config, str(config_path), path)
        locate, arrays_of, notes = config_locators(bundle, graph, path)
        ckpt = from_graph(path, "tf-checkpoint", config_version or TF_KERAS, graph, locate, source, arrays_of, config)
        ckpt.notes += [f"architecture from {config_path}; weights matched to it by the checkpoint's object graph "
                       "(layer_with_weights-M), as tf_keras's load_weights matches them", *notes]
        return ckpt
    return _weights_only(path, bundle, source)


def _weights_only(path: Path, bundle: TensorBundle, source: BundleSource) -> Checkpoint:
    """No architecture: each layer with weights, recurrent ones found by their variables' shapes."""
    graph = object_graph(bundle)
    weights = keras_layer_weights(graph)
    full_names = {a.checkpoint_key: a.full_name for node in graph.nodes for a in node.attributes}
    tops = _tops(weights, model_prefix(weights))
    directions: list[RecurrentDirection] = []
    model_layers: list[ModelLayer] = []
    for top in tops:
        halves = [f"{top}/forward_layer", f"{top}/backward_layer"]
        paths = halves if all(h in weights for h in halves) else [top]
        arrays = [[_stored(bundle, k) for k in _direction_variables(weights, p)] for p in paths]
        found = [recurrent_halves(a) for a in arrays]
        first_key = weights[top][0][1]
        layer_name = full_names.get(first_key, "").split("/")[0] or top
        if not all(f is not None and len(f[2]) == 1 for f in found):
            shapes = ", ".join("×".join(map(str, _stored(bundle, k).shape)) for _, k in weights[top])
            model_layers.append(ModelLayer(name=layer_name, class_name=f"arrays {shapes}"))
            continue
        cell, storage, _ = found[0]  # type: ignore[misc]
        kind = guessed_kind(cell, storage)
        model_layers.append(ModelLayer(name=layer_name, class_name=f"Bidirectional({kind})" if len(paths) == 2
                                       else kind))
        for k, (p, a) in enumerate(zip(paths, arrays)):
            parts = (layer_name,) if len(paths) == 1 else (layer_name, _half_name(full_names.get(a[0].key, ""), p))
            settings = default_settings(cell, kind, TF_KERAS, a, go_backwards=k == 1)
            d = make_direction(parts, cell, kind, settings, storage, a, source, TF_KERAS, [],
                               wrapper=layer_name if len(paths) == 2 else None,
                               merge_mode="concat" if len(paths) == 2 else None)
            d.layer_path = layer_name
            directions.append(d)
    if not directions:
        kinds = ", ".join(m.class_name for m in model_layers) or "nothing"
        raise InspectError(f"no recurrent layer (LSTM, GRU, SimpleRNN) in {path}; its layers hold: {kinds}")
    notes = ["TF checkpoint of weights only, no architecture: activations and flags are tf.keras 2's defaults "
             "(LSTM and GRU: tanh and sigmoid, GRU reset_after from its bias shape, return_sequences off); pass the "
             "architecture with --config model.json (model.to_json()) to use the model's own"]
    return Checkpoint(file=path, format="tf-checkpoint", keras_version=None, directions=directions,
                      layers=model_layers, settings_from="defaults", notes=notes, source=source)


def _half_name(full_name: str, path: str) -> str:
    """A Bidirectional half's name: its TF variable scope (`bidirectional/forward_lstm/lstm_cell/kernel`, or
    `bidirectional/forward_lstm/kernel` before TF 2.2 named the cell's scope), else its edge (`forward_layer`)."""
    scopes = full_name.split("/")
    return scopes[1] if len(scopes) > 2 else path.rsplit("/", 1)[-1]
