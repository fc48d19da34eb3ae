"""The ConvLSTM cell (ConvLSTM1D, ConvLSTM2D, ConvLSTM3D): an LSTM whose four gates are convolutions.

Keras (`keras/src/layers/rnn/conv_lstm.py`, `ConvLSTMCell.call`; `tf_keras/src/layers/rnn/base_conv_lstm.py`)
stores kernel (*k, C_in, 4·F) and recurrent_kernel (*k, F, 4·F), the gates i, f, c, o side by side on the last
axis, and bias (4·F,). At each step, on feature maps:

    z_g = conv(x_t, kernel_g; strides, padding, dilation_rate) + b_g + conv(h_{t-1}, recurrent_kernel_g; 'same')
    i = σ(z_i); f = σ(z_f); c = f⊙c_{t-1} + i⊙φ(z_c); o = σ(z_o); h = o⊙φ(c)

The recurrent convolution is always stride 1, padding "same", no dilation (Keras's `recurrent_conv`), so the
states keep the input convolution's output size: (batch, *spatial_out, F). "same" pads as TensorFlow does (the
smaller half before). The step runs channels_last; `data_format="channels_first"` inputs are moved to channels
last for the run and the outputs moved back (`ConvSpec.to_last` / `from_last`).

The convolution is one small NumPy primitive here (`conv_nd`), not the engine's Conv layers (rank 2, which this
rank-1 module may not import): one matrix product per kernel tap over a strided view of the padded input, so its
only intermediates are the padded input and the output (charged to `base.budget` before they are made).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_inspect.base import budget
from lstm_inspect.model.activations import Activation
from lstm_inspect.model.cells.base import (
    Cell,
    CellSettings,
    CellWeights,
    Gate,
    StepVariant,
    StoredShapes,
    activation_name,
    config_int,
    is_multi_backend_keras2,
    register,
    sequence_settings,
    split_gates,
)
from lstm_inspect.model.cells.lstm import GATES, LSTMGates

RANKS = {"ConvLSTM1D": 1, "ConvLSTM2D": 2, "ConvLSTM3D": 3}


@dataclass(frozen=True)
class ConvSpec:
    """The input convolution of a ConvLSTM layer (the recurrent one is stride 1, 'same', undilated)."""

    rank: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str  # "valid" or "same"
    dilation_rate: tuple[int, ...]
    data_format: str = "channels_last"

    def out_size(self, n: int, axis: int) -> int:
        k, s, d = self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis]
        if self.padding == "same":
            return -(-n // s)
        return max(0, (n - (k - 1) * d - 1) // s + 1)

    def state_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial size of the states for an input of spatial size `spatial` (channels_last order)."""
        return tuple(self.out_size(n, a) for a, n in enumerate(spatial))

    def to_last(self, x: np.ndarray) -> np.ndarray:
        """(..., C, *spatial) → (..., *spatial, C) for channels_first; unchanged otherwise."""
        return np.moveaxis(x, -1 - self.rank, -1) if self.data_format == "channels_first" else x

    def from_last(self, y: np.ndarray) -> np.ndarray:
        return np.moveaxis(y, -1, -1 - self.rank) if self.data_format == "channels_first" else y

    def describe(self) -> str:
        def t(v: tuple[int, ...]) -> str:
            return "×".join(map(str, v))
        return (f"kernel {t(self.kernel_size)}, strides {t(self.strides)}, padding {self.padding}, dilation "
                f"{t(self.dilation_rate)}, {self.data_format}")


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: the smaller half before."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def conv_nd(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...], padding: str,
            out: np.ndarray | None = None) -> np.ndarray:
    """x (n, *spatial, C) convolved (cross-correlated, as Keras) with kernel (*k, C, O): (n, *spatial_out, O).

    One product per kernel tap over a strided view of the (padded) input; written into `out` when given."""
    rank = kernel.ndim - 2
    spatial = x.shape[1:1 + rank]
    ks = kernel.shape[:rank]
    if padding == "same":
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, ks, strides, dilation)]
        if any(p != (0, 0) for p in pads):
            budget.need((x.shape[0], *(n + a + b for n, (a, b) in zip(spatial, pads)), x.shape[-1]),
                        itemsize=x.itemsize, what="the padded input of a convolution")
            x = np.pad(x, [(0, 0), *pads, (0, 0)])
        sizes = [-(-n // s) for n, s in zip(spatial, strides)]
    else:
        sizes = [max(0, (n - (k - 1) * d - 1) // s + 1) for n, k, s, d in zip(spatial, ks, strides, dilation)]
    if out is None:
        out = np.empty((x.shape[0], *sizes, kernel.shape[-1]), dtype=np.result_type(x, kernel))
    first = True
    for tap in itertools.product(*(range(k) for k in ks)):
        view = x[(slice(None), *(slice(t * d, t * d + (o - 1) * s + 1, s)
                                 for t, d, o, s in zip(tap, dilation, sizes, strides)), slice(None))]
        if first:
            np.matmul(view, kernel[tap], out=out)
            first = False
        else:
            out += view @ kernel[tap]
    return out


class ConvLSTM(LSTMGates, Cell):
    kind = "ConvLSTM"
    layer_classes = {"ConvLSTM1D": "keras", "ConvLSTM2D": "keras", "ConvLSTM3D": "keras"}
    cell_class = "ConvLSTMCell"
    # show, forward, trace and verify run it; these commands refuse it in one line until they handle feature maps
    not_yet = ("stats", "dump", "plot", "diagnose", "export")
    legend = "gates i, f, c, o, each W_x (*k, C_in, F) and W_h (*k, F, F) convolution kernels"
    legend_shapes = ("(N_i = C_in, N_c = F = filters; s strides, d dilation of the input convolution; the recurrent "
                     "one is stride 1, 'same')")

    def settings(self, cell_config: dict[str, Any], rnn_config: dict[str, Any], class_name: str,
                 keras_version: str | None) -> CellSettings:
        """From the layer config: Keras 3's ConvLSTM defaults recurrent_activation to sigmoid, tf_keras's and
        Keras 2's ConvLSTM2D to hard_sigmoid (every file stores it, so the default rarely decides)."""
        cfg = cell_config
        rank = RANKS.get(class_name) or int(cfg.get("rank", 2) or 2)
        old = is_multi_backend_keras2(keras_version, (3, 0)) or "tf" in str(keras_version or "") or \
            str(keras_version or "").startswith("2.")
        return CellSettings(
            units=config_int(cfg.get("filters")),
            activation=activation_name(cfg.get("activation"), "tanh"),
            recurrent_activation=activation_name(cfg.get("recurrent_activation"),
                                                 "hard_sigmoid" if old else "sigmoid"),
            use_bias=bool(cfg.get("use_bias", True)), unit_forget_bias=bool(cfg.get("unit_forget_bias", True)),
            conv=conv_spec(cfg, rank), **sequence_settings(rnn_config),
        )

    def input_ndim(self, settings: CellSettings) -> int:
        return 3 + (settings.conv.rank if settings.conv is not None else 2)

    def shape_settings(self, class_name: str, shapes: list[tuple[int, ...]], keras_version: str | None
                       ) -> dict[str, Any]:
        """A weights-only layer: the rank, kernel size and filters its kernels show; strides, padding, dilation and
        data_format are the writing Keras's defaults (1, valid, 1, channels_last), which only the architecture
        (--config) can correct."""
        if len(shapes) < 2 or len(shapes[0]) < 3:
            return {}
        return {"rank": len(shapes[0]) - 2, "kernel_size": list(shapes[0][:-2]), "filters": shapes[1][-2]}

    def keras_layer(self, settings: CellSettings) -> str:
        return f"ConvLSTM{settings.conv.rank if settings.conv is not None else 2}D"

    def kind_settings(self, settings: CellSettings) -> dict[str, Any]:
        c = settings.conv
        if c is None:
            return {}
        return {"kernel_size": list(c.kernel_size), "strides": list(c.strides), "padding": c.padding,
                "dilation_rate": list(c.dilation_rate), "data_format": c.data_format}

    def looks_like(self, shapes: list[tuple[int, ...]]) -> bool:
        if len(shapes) < 2:
            return False
        k, r = shapes[0], shapes[1]
        return (3 <= len(k) <= 5 and len(r) == len(k) and r[-1] == 4 * r[-2] and k[-1] == r[-1]
                and k[:-2] == r[:-2])

    def check_shapes(self, layer: str, storage: str, stored: StoredShapes, settings: CellSettings
                     ) -> tuple[int | None, int | None, list[str]]:
        """kernel (*k, C_in, 4·F), recurrent_kernel (*k, F, 4·F), bias (4·F,), against filters and kernel_size."""
        problems: list[str] = []
        conv, units = settings.conv, settings.units
        want = 3 if settings.use_bias else 2
        if len(stored.items) != want:
            return None, units, [f"layer {layer}: expected {want} arrays (kernel, recurrent_kernel"
                                 f"{', bias' if settings.use_bias else ''}), found {len(stored.items)}"]
        (k_key, k), (r_key, r) = stored.items[0], stored.items[1]
        rank = conv.rank if conv is not None else len(k) - 2
        ks = conv.kernel_size if conv is not None else tuple(k[:rank])
        f = units if units is not None else (r[-2] if len(r) == rank + 2 else None)
        if f is None:
            return None, None, [f"layer {layer}: dataset {r_key} should be (*kernel_size, F, 4·F), found {r}"]
        if tuple(r) != (*ks, f, 4 * f):
            problems.append(f"layer {layer}: dataset {r_key} should be {(*ks, f, 4 * f)} (kernel_size {ks}, "
                            f"filters={f}: recurrent_kernel), found {tuple(r)}")
        c_in = k[-2] if len(k) == rank + 2 else None
        if len(k) != rank + 2 or tuple(k[:rank]) != ks or k[-1] != 4 * f:
            problems.append(f"layer {layer}: dataset {k_key} should be {(*ks, 'C_in', 4 * f)} (kernel_size {ks}, "
                            f"filters={f}: kernel), found {tuple(k)}")
        if settings.use_bias:
            b_key, b = stored.items[2]
            if tuple(b) != (4 * f,):
                problems.append(f"layer {layer}: dataset {b_key} should be ({4 * f},) (4·filters: bias), found "
                                f"{tuple(b)}")
        return c_in, f, problems

    def weights_from(self, storage: str, arrays: list[np.ndarray], settings: CellSettings) -> CellWeights:
        return CellWeights(kernel=arrays[0], recurrent_kernel=arrays[1], bias=arrays[2] if len(arrays) > 2 else None)

    def gates_of(self, w: CellWeights) -> dict[str, Gate]:
        """Each gate's W_x (*k, C_in, F) and W_h (*k, F, F) convolution kernels, as Keras splits them, and b_g."""
        kernel = split_gates(w.kernel, 4)
        recurrent = split_gates(w.recurrent_kernel, 4)
        f = int(w.recurrent_kernel.shape[-2])
        biases = split_gates(w.bias, 4) if w.bias is not None else [np.zeros(f, w.kernel.dtype)] * 4
        return {g: ConvGate(name=g, W_x=k, W_h=r, b=b) for g, k, r, b in zip(GATES, kernel, recurrent, biases)}

    def step(self, w: CellWeights, settings: CellSettings, dtype: type, batch: int, hard_sigmoid: str,
             variant: StepVariant | None = None) -> ConvLSTMStep:
        act, rec = self.activations(settings, hard_sigmoid, variant)
        assert rec is not None and settings.conv is not None
        return ConvLSTMStep(w, settings.conv, dtype, act, rec)

    def equations(self, settings: CellSettings) -> list[str]:
        s, phi = settings.recurrent_activation, settings.activation
        return [
            "z = conv(x, kernel) + bias + conv(h, recurrent_kernel, 'same')  (blocks i, f, c, o of F channels)",
            f"i = {s}(z_i); f = {s}(z_f); c̃ = {phi}(z_c); o = {s}(z_o)",
            "c = f⊙c_prev + i⊙c̃",
            f"h = o⊙{phi}(c)",
        ]


@dataclass(frozen=True, kw_only=True)
class ConvGate(Gate):
    """One ConvLSTM gate: W_x (*k, C_in, F) and W_h (*k, F, F) are convolution kernels, not matrices."""

    @property
    def W(self) -> np.ndarray:
        """W_x and W_h side by side on the input-channel axis: (*k, C_in + F, F), acting on [x; h] channels
        (exact only where both convolutions see the same window: stride 1, no dilation, padding 'same')."""
        return np.concatenate([self.W_x, self.W_h], axis=-2)

    def __repr__(self) -> str:
        return (f"<ConvGate {self.name}: W_x {'×'.join(map(str, self.W_x.shape))} | W_h "
                f"{'×'.join(map(str, self.W_h.shape))}, b {self.b.shape[0]}>")


def conv_spec(cfg: dict[str, Any], rank: int) -> ConvSpec:
    """The input convolution a ConvLSTM config describes (Keras's standardize_tuple of each setting)."""
    def tup(key: str, default: int) -> tuple[int, ...]:
        v = cfg.get(key, default)
        v = default if v is None else v
        items = [v] * rank if isinstance(v, int) and not isinstance(v, bool) else list(v) if isinstance(
            v, (list, tuple)) else []
        if len(items) != rank or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in items):
            return tuple([0] * rank)  # check_shapes and the layer's checks name it
        return tuple(int(n) for n in items)

    padding = str(cfg.get("padding") or "valid").lower()
    return ConvSpec(rank=rank, kernel_size=tup("kernel_size", 1), strides=tup("strides", 1), padding=padding,
                    dilation_rate=tup("dilation_rate", 1), data_format=str(cfg.get("data_format") or "channels_last"))


class ConvLSTMStep:
    """One ConvLSTM step on feature maps (batch, *spatial, F), channels_last.

    `project` is the input convolution of many steps at once (the loop calls it per chunk, like the
    LSTM's input product); the step adds the recurrent convolution of h and applies the LSTM's gates."""

    n_states = 2

    def __init__(self, w: CellWeights, spec: ConvSpec, dtype: type, act: Activation, rec: Activation) -> None:
        self.spec = spec
        self.kernel = np.ascontiguousarray(w.kernel, dtype=dtype)
        self.recurrent_kernel = np.ascontiguousarray(w.recurrent_kernel, dtype=dtype)
        self.input_bias = None if w.bias is None else np.asarray(w.bias, dtype=dtype)
        self.filters = int(w.recurrent_kernel.shape[-2])
        self.act, self.rec = act, rec
        self.ones = (1,) * spec.rank

    def state_shape(self, features: tuple[int, ...]) -> tuple[int, ...]:
        """The states' shape after the batch, for an input step of shape `features` (channels_last)."""
        return (*self.spec.state_shape(tuple(features[:-1])), self.filters)

    def project(self, x: np.ndarray) -> np.ndarray:
        """conv(x, kernel) + bias for x of shape (n, *spatial, C_in): (n, *spatial_out, 4·F)."""
        s = self.spec
        y = conv_nd(x, self.kernel, s.strides, s.dilation_rate, s.padding)
        if self.input_bias is not None:
            y += self.input_bias
        return y

    def __call__(self, xp: np.ndarray, states: list[np.ndarray], new: list[np.ndarray],
                 record: dict[str, np.ndarray] | None, t: int) -> None:
        h, c = states
        h_new, c_new = new
        z = conv_nd(h, self.recurrent_kernel, self.ones, self.ones, "same")
        z += xp
        if record is not None:
            record["z"][:, t] = z
        i, f, zc, o = split_gates(z, 4)
        self.rec(i, out=i)
        self.rec(f, out=f)
        self.rec(o, out=o)
        c_tilde = self.act(zc, out=zc)
        np.multiply(f, c, out=c_new)
        c_new += i * c_tilde
        np.multiply(o, self.act(c_new), out=h_new)
        if record is not None:
            for name, value in (("i", i), ("f", f), ("c_tilde", c_tilde), ("o", o), ("c", c_new), ("h", h_new)):
                record[name][:, t] = value


register(ConvLSTM())
