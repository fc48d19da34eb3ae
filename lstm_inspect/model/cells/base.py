"""Keras's recurrent cells, one module each (LSTM, GRU, SimpleRNN, ConvLSTM), and the one registry of them.

Keras itself is built this way (`keras/src/layers/rnn/`): a cell computes one time step from the
input and the carried states, and one `RNN` layer runs any cell over time (masks, go_backwards,
initial states, return_sequences/return_state), with `Bidirectional` around it. Here the sequence
runner is `lstm_inspect.engine.loop.run_sequence`; everything that differs between kinds lives in the
kind's module, as a `Cell`:

- what the config says (`settings`: units, activations, reset_after...) and its defaults per
  Keras version;
- how the fused weights are stored (`kernel` (N_i, G·N_c), `recurrent_kernel` (N_c, G·N_c),
  `bias`, gates side by side in the stored order), the older layouts converted the way Keras's
  own loader converts them (CuDNN, Keras 1's per-gate arrays), and their shape checks;
- the split into one matrix per gate on [x; h] (`gates`);
- the step equations (`step`), and what a trace records at each step.

What other parts do with a kind lives with them: its ONNX and PyTorch export in
`export/onnx/cells/<kind>.py` and `export/torch/cells/<kind>.py`, the porting mistakes `diagnose`
tries in `check/mistakes.py` (derived from the Cell's attributes, plus the kind's own if it has
any). Adding a recurrent kind is `model/cells/<kind>.py`, `export/onnx/cells/<kind>.py`,
`export/torch/cells/<kind>.py`, each named in its package's `__init__.py` import line, plus their tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lstm_inspect.model.activations import HARD_SIGMOID, Activation, activation_fn


def split_gates(a: np.ndarray, n: int, axis: int = -1) -> list[np.ndarray]:
    """The n gate blocks of a fused array, side by side along `axis` (views, in the stored order)."""
    size = a.shape[axis] // n
    index = [slice(None)] * a.ndim
    blocks = []
    for k in range(n):
        index[axis] = slice(k * size, (k + 1) * size)
        blocks.append(a[tuple(index)])
    return blocks


def join_gates(blocks: list[np.ndarray], axis: int = -1) -> np.ndarray:
    return np.concatenate(blocks, axis=axis)


@dataclass(frozen=True, kw_only=True)
class Gate:
    """One gate of one direction: z = W_x·x + W_h·h + b, with W = [W_x | W_h] acting on [x; h].

    `b_h` is a second, recurrent bias, added to W_h·h only (a GRU with reset_after=True, whose
    candidate multiplies r by W_h·h + b_h); None for every other gate.
    """

    name: str
    W_x: np.ndarray  # (units, input_dim): the input block
    W_h: np.ndarray  # (units, units): the recurrent block
    b: np.ndarray  # (units,): zeros when the layer has use_bias=False
    b_h: np.ndarray | None = None

    @property
    def W(self) -> np.ndarray:
        """W_g of shape units × (input_dim + units), acting on [x; h]."""
        return np.concatenate([self.W_x, self.W_h], axis=1)

    def __repr__(self) -> str:
        units, inputs = self.W_x.shape
        extra = ", b_h" if self.b_h is not None else ""
        return f"<Gate {self.name}: W {units}×{inputs + self.W_h.shape[1]} = [W_x {units}×{inputs} | W_h " \
               f"{units}×{self.W_h.shape[1]}], b {self.b.shape[0]}{extra}>"


@dataclass(frozen=True, kw_only=True)
class CellWeights:
    """A direction's weights in the Keras layout of its kind (after any conversion).

    kernel (N_i, G·N_c) acts on x, recurrent_kernel (N_c, G·N_c) on h, gates side by side in the
    stored order; bias is (G·N_c,), (2, G·N_c) for a GRU with reset_after (input bias, recurrent
    bias), or None when use_bias=False.
    """

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[-2])  # (N_c, G·N_c), or a ConvLSTM's (*k, F, 4·F)

    @property
    def input_dim(self) -> int:
        return int(self.kernel.shape[-2])

    def arrays(self) -> list[np.ndarray]:
        """What Keras's get_weights() returns for the layer, in its order."""
        return [self.kernel, self.recurrent_kernel] + ([self.bias] if self.bias is not None else [])

    def with_blocks(self, fn: Callable[[np.ndarray], np.ndarray]) -> CellWeights:
        """The same weights with `fn` applied to each of the three arrays (bias rows kept together)."""
        return CellWeights(kernel=fn(self.kernel), recurrent_kernel=fn(self.recurrent_kernel),
                           bias=None if self.bias is None else fn(self.bias))


@dataclass(frozen=True, kw_only=True)
class CellSettings:
    """What a config says about one recurrent direction; the math depends on all of it."""

    units: int | None
    activation: str = "tanh"
    recurrent_activation: str | None = "sigmoid"  # None for SimpleRNN
    use_bias: bool = True
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    stateful: bool = False
    unit_forget_bias: bool = False  # LSTM
    reset_after: bool | None = None  # GRU
    zero_output_for_mask: bool = False
    time_major: bool = False
    assumed: bool = False  # True when the file has no architecture: these are the writing Keras's defaults
    dropout: float = 0.0  # training only: Keras drops nothing at inference (diagnose's "dropout at inference")
    recurrent_dropout: float = 0.0
    conv: Any = None  # ConvLSTM: the input convolution (`conv_lstm.ConvSpec`); None for every other kind


@dataclass
class StepVariant:
    """A deliberate departure from Keras's step equations (how a port might compute; see `diagnose`).

    Activation names may carry the hard_sigmoid generation, e.g. "hard_sigmoid:keras2". `options`
    are kind-specific (e.g. LSTM "cell_activation", GRU "update_inverted", "reset_after").
    """

    activation: str | None = None
    recurrent_activation: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    """One cell, ready to run: its input projection and its step on preallocated buffers.

    The sequence runner computes `x_t · kernel + input_bias` for many steps at once, then calls the
    step once per time step with that projection, the carried states and buffers for the new ones.
    """

    kernel: np.ndarray  # (N_i, P): the input projection
    input_bias: np.ndarray | None  # (P,)
    n_states: int

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        """Write the new states into `new` (new[0] is the output h); record intermediates at step t."""


@dataclass(frozen=True)
class StoredShapes:
    """A direction's stored arrays by name and shape, in storage order (no data)."""

    items: list[tuple[str, tuple[int, ...]]]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [s for _, s in self.items]


class Cell:
    """A recurrent kind. Subclasses fill in the class attributes and the methods marked so."""

    kind: str = ""  # "LSTM", "GRU", "SimpleRNN"
    layer_classes: dict[str, str] = {}  # Keras layer class -> its storage ("keras", "cudnn")
    cell_class: str = ""  # the class inside RNN(...), e.g. "LSTMCell"
    gates: tuple[str, ...] = ()  # in the stored order
    gate_names: dict[str, str] = {}
    states: tuple[str, ...] = ("h",)
    trace_quantities: tuple[str, ...] = ()  # what `trace` records per step, in order
    gate_traces: dict[str, tuple[str, str]] = {}  # gate -> (trace quantity, "unit" (0, 1) or "signed" (-1, 1))
    fused_trace: str | None = None  # the traced quantity holding every gate's pre-activation (n_gates × N_c wide)
    preactivations: tuple[str, ...] = ()  # traced quantities before their activation (plots leave them out)
    forget_gate: str | None = None  # the gate whose bias sets how fast the cell forgets (stats' notes)
    legacy_arrays: int = 0  # Keras 1's per-gate array count (0: none)
    not_yet: tuple[str, ...] = ()  # the commands that refuse this kind in one line (`Checkpoint.refuse_not_yet`)

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    def input_ndim(self, settings: CellSettings) -> int:
        """The rank of the input the layer takes: (batch, steps, features), or a ConvLSTM's feature maps."""
        return 3

    def trace_width(self, quantity: str, units: int) -> int:
        """The last-axis size of one traced quantity."""
        return self.n_gates * units if quantity == self.fused_trace else units

    # ---- config
    def settings(self, cell_config: dict[str, Any], rnn_config: dict[str, Any], class_name: str,
                 keras_version: str | None) -> CellSettings:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def activations_label(self, settings: CellSettings, hard_sigmoid: str) -> str:
        """activation/recurrent_activation as `show` prints them."""
        def label(name: str | None) -> str:
            if name == "hard_sigmoid":
                slope, _ = HARD_SIGMOID[hard_sigmoid]
                return "hard_sigmoid (x/6+0.5)" if slope != 0.2 else "hard_sigmoid (0.2x+0.5)"
            return str(name)

        if settings.recurrent_activation is None:
            return label(settings.activation)
        return f"{label(settings.activation)}/{label(settings.recurrent_activation)}"

    # ---- storage
    def storage_of(self, class_name: str, shapes: list[tuple[int, ...]]) -> str:
        """'keras', 'cudnn' or 'keras1' for a direction's stored arrays."""
        if self.layer_classes.get(class_name) == "cudnn":
            return "cudnn"
        if self.legacy_arrays and len(shapes) == self.legacy_arrays:
            return "keras1"
        g = self.n_gates
        has_cudnn = "cudnn" in self.layer_classes.values()
        if has_cudnn and len(shapes) == 3 and len(shapes[1]) == 2 and shapes[2] == (2 * g * shapes[1][0],):
            return "cudnn"  # a CuDNN layer's weights (two biases) where the class is not recorded
        return "keras"

    def looks_like(self, shapes: list[tuple[int, ...]]) -> bool:
        """True when a layer's first two arrays have this kind's kernel and recurrent kernel shapes."""
        if len(shapes) < 2:
            return False
        k, r = shapes[0], shapes[1]
        g = self.n_gates
        return len(k) == 2 and len(r) == 2 and r[1] == g * r[0] and k[1] == r[1] and r[0] > 0

    def check_shapes(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings
                     ) -> tuple[int | None, int | None, list[str]]:  # pragma: no cover - every kind overrides
        """(N_i, N_c, problems): each problem names the layer, the dataset, the expected and the found shape."""
        raise NotImplementedError

    def _check_fused(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings,
                     bias_shapes: Callable[[int], list[tuple[tuple[int, ...], str]]]
                     ) -> tuple[int | None, int | None, list[str]]:
        """Shape checks shared by the fused layouts: kernel (N_i, G·N_c), recurrent_kernel (N_c, G·N_c), bias."""
        problems: list[str] = []
        g, units = self.n_gates, settings.units

        def bad(key: str, expected: str, found: tuple[int, ...]) -> None:
            problems.append(f"layer {layer}: dataset {key} should be {expected}, found {tuple(found)}")

        want = 3 if settings.use_bias else 2
        if len(stored.items) != want:
            names = ", ".join(k for k, _ in stored.items) or "none"
            return None, units, [f"layer {layer}: expected {want} arrays (kernel, recurrent_kernel"
                                 f"{', bias' if settings.use_bias else ''}), found {len(stored.items)} ({names})"]
        (k_key, k_shape), (r_key, r_shape) = stored.items[0], stored.items[1]
        mult = f"{g}·N_c" if g > 1 else "N_c"
        if len(r_shape) != 2 or r_shape[1] != g * r_shape[0]:
            n_c = units if units is not None else (r_shape[0] if r_shape else None)
            bad(r_key, f"(N_c, {mult}) = ({n_c}, {g * n_c if n_c else mult}) (recurrent_kernel)", r_shape)
            return (k_shape[0] if k_shape else None), n_c, problems
        n_c = r_shape[0]
        if units is not None and units != n_c:
            bad(r_key, f"({units}, {g * units}) for units={units} in the config (recurrent_kernel)", r_shape)
        if len(k_shape) != 2 or k_shape[1] != g * n_c:
            bad(k_key, f"(N_i, {g * n_c}) (kernel)", k_shape)
        n_i = k_shape[0] if len(k_shape) == 2 else None
        if settings.use_bias:
            b_key, b_shape = stored.items[2]
            options = bias_shapes(n_c)
            if tuple(b_shape) not in [s for s, _ in options]:
                bad(b_key, " or ".join(f"{s} ({what})" for s, what in options), b_shape)
        return n_i, n_c, problems

    def weights_from(self, storage: str, arrays: list[np.ndarray], settings: CellSettings
                     ) -> CellWeights:  # pragma: no cover - every kind overrides
        """The stored arrays (checked by check_shapes) in this kind's Keras layout."""
        raise NotImplementedError

    # ---- gates and equations
    def gates_of(self, w: CellWeights) -> dict[str, Gate]:
        """Each gate as its own W_g on [x; h] and b_g (see Gate)."""
        kernel = split_gates(w.kernel, self.n_gates)
        recurrent = split_gates(w.recurrent_kernel, self.n_gates)
        if w.bias is None:
            biases: list[np.ndarray] = [np.zeros(w.units, dtype=w.kernel.dtype)] * self.n_gates
            recurrent_biases: list[np.ndarray | None] = [None] * self.n_gates
        elif w.bias.ndim == 2:
            biases = split_gates(w.bias[0], self.n_gates)
            recurrent_biases = list(split_gates(w.bias[1], self.n_gates))
        else:
            biases = split_gates(w.bias, self.n_gates)
            recurrent_biases = [None] * self.n_gates
        return {g: Gate(name=g, W_x=k.T, W_h=r.T, b=b, b_h=bh)
                for g, k, r, b, bh in zip(self.gates, kernel, recurrent, biases, recurrent_biases)}

    def step(self, w: CellWeights, settings: CellSettings, dtype: type, batch: int, hard_sigmoid: str,
             variant: StepVariant | None = None) -> Step:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def equations(self, settings: CellSettings) -> list[str]:  # pragma: no cover - every kind overrides
        """The step equations in one short line each, for manifests and `--help`."""
        raise NotImplementedError

    def activations(self, settings: CellSettings, hard_sigmoid: str, variant: StepVariant | None
                    ) -> tuple[Activation, Activation | None]:
        v = variant or StepVariant()
        act = activation_fn(v.activation or settings.activation, hard_sigmoid)
        rec = settings.recurrent_activation if v.recurrent_activation is None else v.recurrent_activation
        return act, (activation_fn(rec, hard_sigmoid) if rec is not None else None)

    # ---- what the rest of lstm-inspect says and passes on about this kind
    legend: str = ""  # `show`'s legend: the gate matrices, e.g. "gates i, f, c, o, each W_g"
    legend_extra: str = ""  # said after "a bias b_g of N_c", e.g. a second bias row
    legend_shapes: str = "of N_c × (N_i + N_c) acting on [x; h]"  # what each W_g is, after `legend`

    def flags(self, settings: CellSettings) -> dict[str, str]:
        """The flags `show` adds for this kind's own settings, each with its meaning for the legend."""
        return {}

    def keras_layer(self, settings: CellSettings) -> str:
        """The Keras layer class that runs one direction of this kind alone (`keras_ref`)."""
        return self.kind

    def kind_settings(self, settings: CellSettings) -> dict[str, Any]:
        """This kind's settings beyond the common ones, by their Keras names: written into manifests, passed to
        Keras when it rebuilds one direction and to the exported PyTorch cells (a GRU's reset_after)."""
        return {}

    def shape_settings(self, class_name: str, shapes: list[tuple[int, ...]], keras_version: str | None
                       ) -> dict[str, Any]:
        """The config keys a weights-only direction's stored shapes decide (a GRU's reset_after from its bias), or
        else the writing Keras's default for them."""
        return {}

    def rebuild_config(self, config: dict[str, Any], class_name: str) -> dict[str, Any]:
        """The layer or cell config Keras rebuilds the reference from (`keras_ref`). A CuDNN class becomes the
        plain layer with CuDNN's fixed activations (`cudnn_settings`), as Keras's documented route to run one on
        a CPU; `missing_settings` fills what the writing Keras left out and the reading one would default
        differently."""
        if self.layer_classes.get(class_name) == "cudnn":
            config = {k: v for k, v in config.items() if k in CUDNN_KEPT_KEYS}
            config.update(activation="tanh", recurrent_activation="sigmoid", **self.cudnn_settings)
        return {**self.missing_settings, **config}

    cudnn_settings: dict[str, Any] = {}  # what the CuDNN class fixes beyond its activations
    missing_settings: dict[str, Any] = {}  # a key old configs lack -> the value the writing Keras computed with

    # ---- gate blocks in another order (the export targets' layouts: export/onnx/cells, export/torch/cells)
    def bias_pair(self, w: CellWeights) -> tuple[np.ndarray, np.ndarray]:
        """(input bias, recurrent bias) of G·N_c each: Keras's one bias and zeros, or a GRU's two rows."""
        zeros = np.zeros(self.n_gates * w.units, dtype=w.kernel.dtype)
        if w.bias is None:
            return zeros, zeros.copy()
        if w.bias.ndim == 2:
            return w.bias[0], w.bias[1]
        return w.bias, zeros

    def reorder(self, a: np.ndarray, order: tuple[str, ...], axis: int = -1) -> np.ndarray:
        """A fused array's gate blocks from the stored order into `order`."""
        blocks = dict(zip(self.gates, split_gates(a, self.n_gates, axis)))
        return np.concatenate([blocks[g] for g in order], axis=axis)

    def reordered_T(self, a: np.ndarray, order: tuple[str, ...]) -> np.ndarray:
        """A fused (rows, G·N_c) array's gate blocks in `order`, transposed to (G·N_c, rows): one copy."""
        blocks = dict(zip(self.gates, split_gates(a, self.n_gates)))
        return np.concatenate([blocks[g].T for g in order], axis=0)


CELLS: dict[str, Cell] = {}

# The keys a CuDNN layer's config keeps when Keras rebuilds it as the plain layer (`Cell.rebuild_config`).
CUDNN_KEPT_KEYS = frozenset({"name", "units", "return_sequences", "return_state", "go_backwards", "stateful",
                             "batch_input_shape", "trainable", "dtype"})


def register(cell: Cell) -> Cell:
    CELLS[cell.kind] = cell
    return cell


def recurrent_class(class_name: str, config: dict[str, Any]) -> tuple[Cell, str] | None:
    """(cell, display kind) for a Keras layer class lstm-inspect models as one recurrent direction.

    'LSTM', 'CuDNNLSTM', 'GRU', 'CuDNNGRU', 'SimpleRNN', and 'RNN(LSTMCell)'-style wrappers of one cell.
    """
    for cell in CELLS.values():
        if class_name in cell.layer_classes:
            return cell, class_name
    if class_name == "RNN":
        inner = config.get("cell")
        if isinstance(inner, dict):
            for cell in CELLS.values():
                if inner.get("class_name") == cell.cell_class:
                    return cell, f"RNN({cell.cell_class})"
    return None


def cell_of_class(class_name: str) -> Cell | None:
    """The kind a Keras layer class ("GRU", "CuDNNGRU") or cell class ("GRUCell") belongs to."""
    return next((c for c in CELLS.values() if class_name in c.layer_classes or class_name == c.cell_class), None)


def all_layer_classes() -> set[str]:
    """Every Keras class name a recurrent direction can come from (layers and cells)."""
    out: set[str] = {"RNN"}
    for cell in CELLS.values():
        out |= set(cell.layer_classes) | {cell.cell_class}
    return out


def keras_major_minor(keras_version: str | None) -> tuple[int | None, int | None]:
    if not keras_version:
        return None, None
    parts = str(keras_version).split("-")[0].split(".")
    try:
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None)
    except ValueError:
        return None, None


def is_multi_backend_keras2(keras_version: str | None, before: tuple[int, int]) -> bool:
    """True for Keras 1, or multi-backend Keras 2 before version `before` (tf.keras versions say '-tf')."""
    major, minor = keras_major_minor(keras_version)
    if major is None:
        return False
    if major < 2:
        return True
    return major == 2 and "tf" not in (keras_version or "") and minor is not None and (major, minor) < before


def default_recurrent_activation(keras_version: str | None) -> str:
    """Keras's default recurrent_activation for the version that wrote a file (LSTM and GRU).

    hard_sigmoid through Keras 2.2.x (and Keras 1's inner_activation); sigmoid from Keras 2.3
    and in every tf.keras v2 layer and Keras 3 (and when no version is known).
    """
    return "hard_sigmoid" if is_multi_backend_keras2(keras_version, (2, 3)) else "sigmoid"


def hard_sigmoid_generation(keras_version: str | None) -> str:
    """Which hard_sigmoid the writing Keras used: 'keras2' clip(0.2x+0.5), 'keras3' clip(x/6+0.5)."""
    major, _ = keras_major_minor(keras_version)
    return "keras3" if major is not None and major >= 3 else "keras2"


def activation_name(value: Any, default: str) -> str:
    """A config's activation: a string, or a Keras 3 serialized function object."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        return str(value.get("class_name", default)).lower()
    return str(value)


def config_int(value: Any) -> int | None:
    """A positive integer from a config, or None (absent, not a number, not finite, not whole)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and np.isfinite(value) and value.is_integer() and value > 0:
        return int(value)
    return None


def dropout_rates(cell_config: dict[str, Any]) -> dict[str, float]:
    """A cell config's dropout and recurrent_dropout (Keras 1: dropout_W, dropout_U); a rate that is not a number
    in [0, 1) reads as 0. They change nothing at inference; diagnose tries a port that scales by 1 - rate."""
    def rate(*keys: str) -> float:
        value = next((cell_config[k] for k in keys if k in cell_config), 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            return 0.0
        return float(value)

    return {"dropout": rate("dropout", "dropout_W"), "recurrent_dropout": rate("recurrent_dropout", "dropout_U")}


def sequence_settings(rnn_config: dict[str, Any]) -> dict[str, bool]:
    """The RNN layer's own settings (the same for every kind)."""
    return {key: bool(rnn_config.get(key, False)) for key in
            ("return_sequences", "return_state", "go_backwards", "stateful", "zero_output_for_mask", "time_major")}
