"""What lstm-inspect knows about a checkpoint: its recurrent directions, lazily backed by the file.

`lstm_inspect.load(path)` (`io.read_checkpoint`) reads the format, the architecture and every array's *shape*;
weight data is read only when asked for (`RecurrentDirection.weights()`), so `show` stays instant on any file size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lstm_inspect.base.display import brief, html_table
from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.architecture import ModelGraph
from lstm_inspect.model.cells.base import Cell, CellSettings, CellWeights, Gate, StoredShapes, hard_sigmoid_generation


@dataclass(frozen=True)
class StoredArray:
    """One stored weight array: where it is in its file and what shape it has (no data)."""

    key: str
    shape: tuple[int, ...]
    dtype: str


class WeightSource(Protocol):
    """Where a checkpoint's weights are read from, lazily (`lstm_inspect.io.storage.WeightFile`, a TF bundle)."""

    path: Path

    def read(self, keys: list[str]) -> list[np.ndarray]: ...


@dataclass(kw_only=True, repr=False)
class RecurrentDirection:
    """One direction of one recurrent layer (LSTM, GRU, SimpleRNN, ConvLSTM): settings, stored arrays, gate matrices."""

    name: str  # unique path, e.g. "bidirectional/forward_lstm"
    parts: tuple[str, ...] = ()  # the names that make up `name` (files are named from these, escaped)
    cell: Cell
    kind: str  # "LSTM", "CuDNNLSTM", "RNN(LSTMCell)", "GRU", "CuDNNGRU", "SimpleRNN", ...
    direction: str  # "forward" or "backward" (go_backwards)
    input_dim: int | None  # N_i
    units: int | None  # N_c
    settings: CellSettings
    storage: str  # "keras" (kernel, recurrent_kernel, bias), "cudnn", "keras1" (per-gate arrays)
    arrays: list[StoredArray]
    source: WeightSource
    keras_version: str | None
    merge_mode: str | None = None  # set inside a Bidirectional
    wrapper: str | None = None  # the Bidirectional's name
    expected_input_dim: int | None = None  # what feeds this layer, from the architecture
    problems: list[str] = field(default_factory=list)
    weights_stored: bool = True  # False for a model saved before it was built: no arrays at all
    layer_path: str = ""  # the model layer it belongs to (the Bidirectional for both halves)
    warnings: list[str] = field(default_factory=list)  # found while reading the weights (NaN, Inf)
    initial_state_from: list[str] = field(default_factory=list)  # e.g. ["encoder h", "encoder c"]
    stack_index: int | None = None  # cell k of an RNN over StackedRNNCells (named <layer>/cell_<k>)

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = (self.name,)

    def __repr__(self) -> str:
        return (f"<RecurrentDirection {brief(self.name)}: {self.kind} {self.direction}, N_i={self.input_dim}, "
                f"N_c={self.units}, gates {''.join(self.cell.gates)}>")

    def _repr_html_(self) -> str:
        s = self.settings
        rows = [("kind", self.kind), ("direction", self.direction), ("N_i (input_dim)", self.input_dim),
                ("N_c (units)", self.units), ("gates", ", ".join(self.cell.gates)),
                ("W_g, each gate", "×".join(map(str, self.gate_shape() or ())) or "?"),
                ("activation", s.activation), ("recurrent_activation", s.recurrent_activation),
                ("return_sequences", s.return_sequences), ("go_backwards", s.go_backwards),
                ("merge_mode", self.merge_mode), ("params", f"{self.param_count:,}")]
        return html_table(f"RecurrentDirection {self.name}", ("", ""), rows)

    @property
    def shapes_ok(self) -> bool:
        return not self.problems

    @property
    def hard_sigmoid(self) -> str:
        """Which hard_sigmoid the writing Keras used: 'keras2' clip(0.2x+0.5), 'keras3' clip(x/6+0.5)."""
        return hard_sigmoid_generation(self.keras_version)

    @property
    def gate_names(self) -> tuple[str, ...]:
        return self.cell.gates

    @property
    def param_count(self) -> int:
        return int(sum(int(np.prod(a.shape)) for a in self.arrays))

    def gate_shape(self) -> tuple[int, ...] | None:
        """W_g's shape: units × (input_dim + units); a ConvLSTM gate's kernels (*k, C_in + F, F) side by side."""
        if self.units is None or self.input_dim is None:
            return None
        if self.settings.conv is not None:
            return (*self.settings.conv.kernel_size, self.input_dim + self.units, self.units)
        return (self.units, self.input_dim + self.units)

    def weights(self) -> CellWeights:
        """Read the arrays and return them in the Keras layout of this kind (CuDNN and Keras 1 converted)."""
        if self.problems:
            raise InspectError(f"{self.source.path}: {self.problems[0]}")
        if not self.weights_stored:
            raise InspectError(f"{self.source.path}: the file stores no weights for layer {self.name} "
                               "(the model was saved before it was built)")
        arrays = self.source.read([a.key for a in self.arrays])
        for a, data in zip(self.arrays, arrays):
            if not np.issubdtype(data.dtype, np.floating):
                raise InspectError(f"{self.source.path}: layer {self.name}: dataset {a.key} holds {data.dtype}, "
                                   "not floating-point weights")
            if tuple(data.shape) != tuple(a.shape):
                raise InspectError(f"{self.source.path}: layer {self.name}: dataset {a.key} changed shape while "
                                   "being read")
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad:
                warning = f"layer {self.name}: dataset {a.key} holds {bad} NaN or Inf weights; outputs will be NaN"
                if warning not in self.warnings:
                    self.warnings.append(warning)
        return self.cell.weights_from(self.storage, arrays, self.settings)

    def gates(self) -> dict[str, Gate]:
        return self.cell.gates_of(self.weights())

    def forward(self, x: np.ndarray, dtype: type = np.float32, initial_state: list[np.ndarray] | None = None,
                mask: np.ndarray | None = None, return_state: bool = False
                ) -> np.ndarray | tuple[np.ndarray, list[np.ndarray]]:
        """This direction alone on x as the layer takes it (`input_layout`: (batch, steps, input_dim), or
        (steps, batch, input_dim) for a time_major layer): its output as the layer returns it.

        The full sequence in processing order when return_sequences (reversed in time for
        go_backwards, as Keras returns it; time-major for a time_major layer), else the last output.
        `initial_state`: the cell's states (`cell.states`: h, and c for an LSTM), each (batch, units);
        `return_state`: also return the final states, `(y, [h, c])`, as Keras's return_state.
        """
        from lstm_inspect.engine.network import run_direction

        x = self.layer_layout(np.asarray(x))
        if mask is not None and self.settings.time_major:  # (steps, batch) as the layer takes it
            mask = np.swapaxes(np.asarray(mask), 0, 1)
        self.check_input(x, initial_state)
        sequences = self.settings.return_sequences
        res = run_direction(self, x, mask, initial_state, dtype, sequences=sequences)
        y = self.layer_layout(res.outputs) if sequences else res.last_output
        return (y, list(res.states)) if return_state else y

    def layer_layout(self, a: np.ndarray) -> np.ndarray:
        """Between the engine's (batch, steps, ...) and the layer's own layout: (steps, batch, ...) for a
        time_major layer, which tf.keras transposes in and out; unchanged otherwise. Its own inverse."""
        return np.swapaxes(a, 0, 1) if self.settings.time_major and np.ndim(a) >= 3 else a

    @property
    def input_layout(self) -> str:
        """The input this direction takes alone, as `show`'s and the errors' words."""
        axes = "steps, batch" if self.settings.time_major else "batch, steps"
        conv = self.settings.conv
        if conv is not None:  # ConvLSTM: feature maps
            spatial = ", ".join(["d1", "d2", "d3"][:conv.rank])
            maps = f"{self.input_dim}, {spatial}" if conv.data_format == "channels_first" else \
                f"{spatial}, {self.input_dim}"
            return f"({axes}, {maps})"
        return f"({axes}, {self.input_dim})"

    def channels(self, x: np.ndarray) -> int:
        """The input's features (a ConvLSTM's channels) of x as the engine runs it (batch, steps, ...)."""
        conv = self.settings.conv
        return int(x.shape[2] if conv is not None and conv.data_format == "channels_first" else x.shape[-1])

    def random_input_shape(self, batch: int, steps: int) -> tuple[int, ...]:
        """The shape of a seeded input for this direction alone, batch-major: (batch, steps, N_i); a ConvLSTM's
        frames of RANDOM_MAP_SIZE pixels a side (at least the kernel's dilated extent), in its data_format."""
        conv = self.settings.conv
        if conv is None:
            return (batch, steps, self.input_dim or 1)
        spatial = tuple(max(RANDOM_MAP_SIZE, (k - 1) * d + 1) for k, d in zip(conv.kernel_size, conv.dilation_rate))
        channels = self.input_dim or 1
        maps = (channels, *spatial) if conv.data_format == "channels_first" else (*spatial, channels)
        return (batch, steps, *maps)

    def state_shape(self, x: np.ndarray) -> tuple[int, ...]:
        """One state's shape for x (batch, steps, ...): (batch, units), or a ConvLSTM's feature map."""
        conv = self.settings.conv
        if conv is None:
            return (x.shape[0], self.units or 0)
        spatial = conv.state_shape(tuple(conv.to_last(x[:1, 0]).shape[1:-1]))
        return (x.shape[0], *conv.from_last(np.empty((*spatial, self.units or 0))).shape)

    def check_input(self, x: np.ndarray, initial_state: list[np.ndarray] | None = None) -> None:
        """One clear error when x (batch-major, as the engine runs it) or a state does not fit this direction."""
        if x.ndim != self.cell.input_ndim(self.settings) or (self.input_dim is not None and
                                                               self.channels(x) != self.input_dim):
            raise InspectError(f"layer {self.name}: input has shape {self.layer_layout(x).shape} but the layer "
                               f"expects {self.input_layout}")
        check_sizes(x.shape, f"layer {self.name}: the input")
        if x.dtype.kind not in "fiu" or not np.all(np.isfinite(x)):
            raise InspectError(f"layer {self.name}: input must hold finite numbers")
        if initial_state is not None:
            if len(initial_state) != len(self.cell.states):
                raise InspectError(f"layer {self.name}: a {self.cell.kind} takes {len(self.cell.states)} initial "
                                   f"state(s) ({', '.join(self.cell.states)}), {len(initial_state)} were given")
            want = self.state_shape(x)
            for which, s in zip(self.cell.states, initial_state):
                if np.shape(s) != want:
                    raise InspectError(f"layer {self.name}: initial state {which} has shape {np.shape(s)} but the "
                                       f"layer expects {want}")
                s = np.asarray(s)
                if s.dtype.kind not in "fiu" or not np.all(np.isfinite(s)):
                    raise InspectError(f"layer {self.name}: initial state {which} must hold finite numbers")

    def stored_shapes(self) -> StoredShapes:
        return StoredShapes([(a.key, a.shape) for a in self.arrays])

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        shape = self.gate_shape()
        return {
            "name": self.name,
            "cell": self.cell.kind,
            "kind": self.kind,
            "direction": self.direction,
            "input_dim": self.input_dim,
            "units": self.units,
            "activation": s.activation,
            "recurrent_activation": s.recurrent_activation,
            "hard_sigmoid": self.hard_sigmoid if "hard_sigmoid" in (s.recurrent_activation, s.activation) else None,
            "reset_after": s.reset_after,
            "use_bias": s.use_bias,
            "return_sequences": s.return_sequences,
            "return_state": s.return_state,
            "go_backwards": s.go_backwards,
            "stateful": s.stateful,
            "time_major": s.time_major,
            "unit_forget_bias": s.unit_forget_bias,
            "zero_output_for_mask": s.zero_output_for_mask,
            "settings_assumed": s.assumed,
            "merge_mode": self.merge_mode,
            "bidirectional": self.wrapper,
            "stacked_cell": self.stack_index,
            "storage": self.storage,
            "gates": {g: {"shape": list(shape) if shape else None} for g in self.cell.gates},
            "params": self.param_count,
            "datasets": [{"name": a.key, "shape": list(a.shape), "dtype": a.dtype} for a in self.arrays],
            "expected_input_dim": self.expected_input_dim,
            "initial_state_from": list(self.initial_state_from) or None,
            "weights_stored": self.weights_stored,
            "shapes_ok": self.shapes_ok if self.weights_stored else None,
            "problems": list(self.problems),
        }


LSTMDirection = RecurrentDirection  # the name of lstm-inspect 0.1

# A ConvLSTM's seeded frames (verify, trace and stats of one layer without --input): this many pixels a side.
RANDOM_MAP_SIZE = 8

# Inputs bigger than this many values are refused before any buffer is made (4 GB of float32).
MAX_INPUT_VALUES = 1 << 30


def check_sizes(shape: tuple[int, ...], what: str) -> None:
    """An input must have a batch, steps and features, and fit in memory."""
    if any(n == 0 for n in shape):
        names = ["batch", "time steps", "features"] if len(shape) == 3 else [f"axis {k}" for k in range(len(shape))]
        empty = ", ".join(f"0 {n}" for n, k in zip(names, shape) if k == 0)
        raise InspectError(f"{what} has shape {tuple(shape)}: {empty}; there is nothing to run")
    if float(np.prod(shape, dtype=np.float64)) > MAX_INPUT_VALUES:
        raise InspectError(f"{what} has shape {tuple(shape)}, more than {MAX_INPUT_VALUES:,} values")


# Keras 3 stores a layer's variables by number (vars/0, vars/1): their names, in Keras's order, per class
KERAS3_WEIGHT_NAMES = {
    "Dense": ("kernel", "bias"), "EinsumDense": ("kernel", "bias"), "Embedding": ("embeddings",),
    "Conv1D": ("kernel", "bias"), "Conv2D": ("kernel", "bias"), "Conv3D": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LayerNormalization": ("gamma", "beta"),
}


@dataclass(kw_only=True, repr=False)
class ModelLayer:
    """One layer of the model (recurrent ones included), in the model's order.

    `inbound`: the layers whose outputs it takes; `weights`: its stored arrays by name (kernel, bias,
    embeddings...; a recurrent layer's in Keras's layout per direction, e.g. forward/kernel), read from the
    file each time they are asked for; `output_shape`: when the file declares it (None otherwise)."""

    name: str
    class_name: str
    inbound: tuple[str, ...] = ()
    output_shape: tuple[int | None, ...] | None = None
    reader: Callable[[], dict[str, np.ndarray]] | None = field(default=None, compare=False)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self.reader() if self.reader is not None else {}

    def __repr__(self) -> str:
        fed = f" <- {', '.join(map(brief, self.inbound))}" if self.inbound else ""
        return f"<ModelLayer {brief(self.name)} ({brief(self.class_name)}){fed}>"

    def _repr_html_(self) -> str:
        rows = [(k, "×".join(map(str, a.shape)), str(a.dtype)) for k, a in self.weights.items()]
        return html_table(f"{self.name} ({self.class_name})" + (f" <- {', '.join(self.inbound)}" if self.inbound
                                                                 else ""), ("weight", "shape", "dtype"), rows)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "class_name": self.class_name}


TF_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"  # a variable's value in a TF checkpoint, after its object path


def weight_names(keys: list[str], class_name: str) -> list[str]:
    """Names for a layer's stored arrays: the file's (kernel:0 -> kernel; a TF checkpoint's
    layer_with_weights-1/W/.ATTRIBUTES/VARIABLE_VALUE -> W), or Keras 3's by class for vars/N."""
    names = [k.removesuffix(TF_VALUE_SUFFIX).rstrip("/").split("/")[-1].split(":")[0] for k in keys]
    known = KERAS3_WEIGHT_NAMES.get(class_name, ())
    if all(n.isdigit() for n in names) and len(names) <= len(known):
        return list(known[: len(names)])
    return names if len(set(names)) == len(names) else [k for k in keys]


@dataclass(kw_only=True, repr=False)
class Checkpoint:
    """A Keras checkpoint as lstm-inspect reads it: `layers` the model's layers in order (`ModelLayer`),
    `directions` its recurrent directions (`RecurrentDirection`), in the order the model applies them.
    `to_dict()` (show --json) keeps its keys: "model_layers" the layers, "layers" the directions."""

    file: Path
    format: str  # "keras3", "keras3-weights", "legacy-h5", "legacy-weights-h5", "savedmodel", "tf-checkpoint"
    keras_version: str | None
    directions: list[RecurrentDirection]
    layers: list[ModelLayer]
    graph: ModelGraph | None = None
    settings_from: str = "config"  # "config", or "defaults" when the file has no architecture
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # across the model (what feeds what)
    source: WeightSource | None = None
    layer_arrays: dict[str, list[StoredArray]] = field(default_factory=dict)  # other layers' weights
    raw_config: Any = None  # the model config as stored (JSON), for rebuilding the model in Keras
    _engines: dict[Any, Any] = field(default_factory=dict, repr=False)  # one NumPy engine per dtype, reused
    _layer_warnings: list[str] = field(default_factory=list, repr=False)  # from other layers' weights

    def __post_init__(self) -> None:
        nodes = {n.path: n for n in self.graph.walk()} if self.graph is not None else {}
        chain = {n.path for n in self.graph.layers} if self.graph is not None and \
            self.graph.class_name == "Sequential" else set()  # a Sequential's own layers: each fed by the one before
        for k, m in enumerate(self.layers):
            node = nodes.get(m.name)
            if not m.inbound and node is not None:
                if node.path in chain:
                    m.inbound = (self.layers[k - 1].name,) if k > 0 else ()
                else:
                    m.inbound = tuple(dict.fromkeys(r.layer for call in node.inbound for r in call.tensors()))
            if m.output_shape is None and node is not None and node.class_name == "InputLayer":
                shape = node.config.get("batch_shape") or node.config.get("batch_input_shape")
                if isinstance(shape, list) and all(n is None or isinstance(n, int) for n in shape):
                    m.output_shape = tuple(shape)
            if m.reader is None:
                m.reader = self._reader_of(m.name, node.class_name if node is not None else m.class_name)

    def _reader_of(self, name: str, class_name: str) -> Callable[[], dict[str, np.ndarray]]:
        def read() -> dict[str, np.ndarray]:
            directions = [d for d in self.directions if (d.layer_path or d.name) == name]
            if directions:
                out = {}
                for d in directions:
                    w = d.weights()
                    prefix = f"{d.direction}/" if len(directions) > 1 else ""
                    names = ["kernel", "recurrent_kernel", "bias"]
                    out.update({prefix + n: a for n, a in zip(names, w.arrays())})
                return out
            arrays = self.layer_arrays.get(name, [])
            return dict(zip(weight_names([a.key for a in arrays], class_name), self.read_layer(name)))
        return read

    def __repr__(self) -> str:
        kinds = ", ".join(self.cells) or "no recurrent layer"
        return (f"<Checkpoint {brief(self.file.name)}: {self.format}, Keras {self.keras_version or '?'}, "
                f"{len(self.layers)} layers, {len(self.directions)} recurrent direction(s) ({kinds})>")

    def _repr_html_(self) -> str:
        rows = [(k, d.name, d.kind, d.direction, d.input_dim, d.units, "×".join(map(str, d.gate_shape() or ())),
                 f"{d.param_count:,}") for k, d in enumerate(self.directions)]
        title = f"{self.file.name}: {self.format}, Keras {self.keras_version or '?'}"
        layers = [(m.name, m.class_name, ", ".join(m.inbound) or "-") for m in self.layers]
        return (html_table(title, ("#", "direction", "kind", "runs", "N_i", "N_c", "W_g", "params"), rows)
                + (html_table("layers", ("layer", "type", "fed by"), layers) if layers else ""))

    def read_layer(self, path: str) -> list[np.ndarray]:
        """The stored arrays of a non-recurrent layer (Dense, Embedding, ...), in Keras's weight order."""
        arrays = self.layer_arrays.get(path, [])
        if not arrays or self.source is None:
            return []
        values = self.source.read([a.key for a in arrays])
        for a, v in zip(arrays, values):
            bad = int(v.size - np.count_nonzero(np.isfinite(v))) if v.dtype.kind == "f" else 0
            warning = f"layer {path}: dataset {a.key} holds {bad} NaN or Inf weights; outputs will be NaN"
            if bad and warning not in self._layer_warnings:
                self._layer_warnings.append(warning)
        return values

    def refuse_not_yet(self, command: str, layer: str | None = None) -> None:
        """One sentence naming the layer when `command` does not handle one of the directions' kinds yet."""
        for d in self.directions if layer is None else self.directions_of(layer):
            if command in d.cell.not_yet:
                raise InspectError(f"{self.file}: {command} does not handle layer {d.layer_path or d.name} ({d.kind}) "
                                   "yet; show, forward, trace and verify do")

    def direction(self, name: str) -> RecurrentDirection:
        """One recurrent direction by its full name (`show`'s) or an unambiguous last part."""
        for d in self.directions:
            if d.name == name:
                return d
        matches = [d for d in self.directions if d.name.split("/")[-1] == name or d.name.startswith(f"{name}/")]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(d.name for d in self.directions)
        pairs = sorted({d.layer_path for d in self.directions if d.wrapper is not None and d.layer_path})
        whole = f" (a Bidirectional whole, where a command takes one: {', '.join(pairs)})" if pairs else ""
        raise InspectError(f"{self.file}: no recurrent direction named {name!r}; it has: {names}{whole}")

    def layer(self, name: str) -> ModelLayer:
        """One of the model's layers (`layers`) by its name, as `show` prints it."""
        for m in self.layers:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.layers)
        raise InspectError(f"{self.file}: no layer named {name!r}; it has: {names}")

    def directions_of(self, name: str | None) -> list[RecurrentDirection]:
        """The directions a name means: every direction for None; a recurrent layer's (both halves of a
        Bidirectional, by its Keras name); one direction by its full name or an unambiguous last part."""
        if name is None:
            return list(self.directions)
        exact = [d for d in self.directions if d.name == name]
        if exact:
            return exact
        whole = [d for d in self.directions if d.layer_path == name]
        if whole:
            return whole
        return [self.direction(name)]

    def forward(self, x: Any, initial_state: list[np.ndarray] | None = None, return_state: bool = False,
                layer: str | None = None, dtype: type = np.float32) -> Any:
        """What Keras computes for x, in NumPy.

        The whole model (layer=None): what model.predict returns, one array or a list for several outputs;
        x is one array, or a list of arrays in the model's input order. One recurrent layer alone (`layer`: a
        direction's name, or a Bidirectional's Keras name, whose two directions run and merge as Keras merges
        them): x as the layer takes it, (batch, steps, N_i); `initial_state` the states to start from (each
        direction's, forward's first); `return_state` returns (output, final states) as Keras's return_state
        (a merge_mode=None Bidirectional's output is a list of two arrays).
        """
        from lstm_inspect.engine.network import Network, as_inputs, run_layer

        if layer is not None:
            directions = self.directions_of(layer)
            outs, states, _ = run_layer(directions, np.asarray(x), initial_state, dtype)
            y = outs[0] if len(outs) == 1 else outs
            return (y, states) if return_state else y
        if initial_state is not None or return_state:
            raise InspectError(f"{self.file}: initial_state and return_state need a layer: a whole model takes "
                               "its states from its own graph and returns its outputs")
        if dtype not in self._engines:
            self._engines[dtype] = Network(self, dtype, cache_weights=True)
        outs = self._engines[dtype].run(as_inputs(x))
        return outs[0] if len(outs) == 1 else outs

    def trace(self, x: Any = None, layer: str | None = None, initial_state: list[np.ndarray] | None = None,
              seed: int = 0, dtype: type = np.float32) -> Any:
        """Every recurrent direction's values at every step (`engine.network.Trace`): gates, states, the
        input x each direction consumed and the mask it saw. The whole model on x (one array or a list), or
        one layer alone (`layer`, as for `forward`); without x, a seeded random input."""
        from lstm_inspect.engine.network import as_inputs, trace

        return trace(self, None if x is None else as_inputs(x), seed, layer, initial_state, dtype)

    @property
    def cells(self) -> list[str]:
        """The recurrent kinds in the model, in order of first appearance."""
        return list(dict.fromkeys(d.cell.kind for d in self.directions))

    @property
    def warnings(self) -> list[str]:
        """What reading the weights found that still lets the command finish (NaN or Inf weights)."""
        return [w for d in self.directions for w in d.warnings] + list(self._layer_warnings)

    @property
    def all_problems(self) -> list[str]:
        return [p for d in self.directions for p in d.problems] + self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "format": self.format,
            "keras_version": self.keras_version,
            "settings_from": self.settings_from,
            "model_layers": [m.to_dict() for m in self.layers],
            "layers": [d.to_dict() for d in self.directions],
            "shapes_ok": not self.all_problems,
            "problems": self.all_problems,
            "notes": list(self.notes),
        }
