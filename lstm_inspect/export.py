"""Gate matrices written out in the layouts people port to.

- `gates`: per direction, W_i ... W_o (N_c × (N_i + N_c), columns x0.., h0..) and b_i ... b_o;
- `keras`: kernel, recurrent_kernel, bias in the Keras LSTM layout (CuDNNLSTM and Keras 1 weights
  converted, as Keras's own loader converts them);
- `pytorch`: per Keras layer, `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` (and
  `_reverse` for a Bidirectional's backward half), gate order i, f, g, o, ready for
  `torch.nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=...).load_state_dict`;
- `onnx`: per Keras layer, the ONNX LSTM operator's W [num_directions, 4H, I], R [.., 4H, H],
  B [.., 8H], gate order i, o, f, c.

Everything is written into a temporary folder renamed into place (`arrays_io.atomic_dir`), so a
failure leaves nothing half-written, and an existing folder is only replaced with `force`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lstm_inspect.arrays_io import atomic_dir
from lstm_inspect.errors import InspectError
from lstm_inspect.gates import GATES, LSTMWeights
from lstm_inspect.model import Checkpoint, LSTMDirection

LAYOUTS = ("gates", "keras", "pytorch", "onnx")
FORMATS = ("csv", "npz", "json")
ONNX_ORDER = ("i", "o", "f", "c")


def _blocks(a: np.ndarray, units: int, axis: int = -1) -> dict[str, np.ndarray]:
    return {g: np.take(a, range(k * units, (k + 1) * units), axis=axis) for k, g in enumerate(GATES)}


# Each layout gives, per group, producers of arrays rather than arrays: the writer makes one array,
# writes it, and lets it go, so memory stays near one layer's weights on any file.
Producers = dict[str, Callable[[], np.ndarray]]


def gates_arrays(w: LSTMWeights) -> Producers:
    gates = w.gates()
    out: Producers = {f"W_{g}": (lambda g=g: gates[g].W) for g in GATES}
    out.update({f"b_{g}": (lambda g=g: gates[g].b) for g in GATES})
    return out


def keras_arrays(w: LSTMWeights) -> Producers:
    out: Producers = {"kernel": lambda: w.kernel, "recurrent_kernel": lambda: w.recurrent_kernel}
    if w.bias is not None:
        out["bias"] = lambda: w.bias  # type: ignore[return-value,assignment]
    return out


def pytorch_arrays(w: LSTMWeights, suffix: str) -> dict[str, np.ndarray]:
    """torch.nn.LSTM: weight_ih (4H, I) = kernelᵀ, same gate order; Keras has one bias, so bias_hh = 0."""
    return {name: make() for name, make in pytorch_producers(w, suffix).items()}


def pytorch_producers(w: LSTMWeights, suffix: str) -> Producers:
    def bias() -> np.ndarray:
        return w.bias if w.bias is not None else np.zeros(4 * w.units, dtype=w.kernel.dtype)

    return {
        f"weight_ih_l0{suffix}": lambda: np.ascontiguousarray(w.kernel.T),
        f"weight_hh_l0{suffix}": lambda: np.ascontiguousarray(w.recurrent_kernel.T),
        f"bias_ih_l0{suffix}": bias,
        f"bias_hh_l0{suffix}": lambda: np.zeros_like(bias()),
    }


def onnx_arrays(ws: list[LSTMWeights]) -> dict[str, np.ndarray]:
    return {name: make() for name, make in onnx_producers(ws).items()}


def onnx_producers(ws: list[LSTMWeights]) -> Producers:
    """ONNX LSTM: W, R, B stacked over directions, gates reordered i, o, f, c; B = [Wb, Rb] with Rb = 0."""
    def reorder(a: np.ndarray, units: int, axis: int) -> np.ndarray:
        blocks = _blocks(a, units, axis)
        return np.concatenate([blocks[g] for g in ONNX_ORDER], axis=axis)

    def bias(w: LSTMWeights) -> np.ndarray:
        b = w.bias if w.bias is not None else np.zeros(4 * w.units, dtype=w.kernel.dtype)
        return np.concatenate([reorder(b, w.units, 0), np.zeros(4 * w.units, dtype=b.dtype)])

    return {
        "W": lambda: np.stack([reorder(w.kernel, w.units, 1).T for w in ws]),
        "R": lambda: np.stack([reorder(w.recurrent_kernel, w.units, 1).T for w in ws]),
        "B": lambda: np.stack([bias(w) for w in ws]),
    }


def _groups(ckpt: Checkpoint, layout: str, layer: str | None) -> Iterator[tuple[str, Producers, dict[str, Any]]]:
    """(folder name, array producers, what they are) per direction (gates, keras) or per Keras layer
    (pytorch, onnx). Weights are read group by group: memory stays at one layer's weights."""
    directions = [ckpt.layer(layer)] if layer else ckpt.layers
    if layout in ("gates", "keras"):
        for d in directions:
            w = d.weights()
            arrays = gates_arrays(w) if layout == "gates" else keras_arrays(w)
            yield d.name, arrays, {"layer": d.name, "direction": d.direction, "input_dim": d.input_dim,
                                   "units": d.units, "storage_in_file": d.storage}
        return
    by_layer: dict[str, list[LSTMDirection]] = {}
    for d in directions:
        by_layer.setdefault(d.layer_path or d.name, []).append(d)
    for path, ds in by_layer.items():
        ws = [d.weights() for d in ds]
        meta = {"layer": path, "directions": [d.name for d in ds], "input_size": ds[0].input_dim,
                "hidden_size": ds[0].units, "bidirectional": len(ds) == 2,
                "activations": [ds[0].settings.activation, ds[0].settings.recurrent_activation]}
        if len(ds) == 1 and ds[0].settings.go_backwards:
            meta["note"] = "go_backwards: feed the input reversed in time; outputs come out in that order, as in Keras"
        if layout == "pytorch":
            arrays: Producers = {}
            for d, w in zip(ds, ws):
                arrays.update(pytorch_producers(w, "_reverse" if d.settings.go_backwards and len(ds) == 2 else ""))
            yield path, arrays, meta
        else:
            yield path, onnx_producers(ws), {**meta, "direction": "bidirectional" if len(ds) == 2 else
                                             ("reverse" if ds[0].settings.go_backwards else "forward")}
        del ws


def _describe(layout: str, name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    rows_cols = {
        "W_": "rows: units 0..N_c-1; columns: x0..x{N_i-1} (input) then h0..h{N_c-1} (recurrent)",
        "b_": "rows: units 0..N_c-1",
        "kernel": "rows: inputs; columns: gates i, f, c, o side by side, N_c each",
        "recurrent_kernel": "rows: h units; columns: gates i, f, c, o side by side, N_c each",
        "bias": "gates i, f, c, o, N_c each",
        "weight_ih": "rows: gates i, f, g, o stacked, H each; columns: inputs",
        "weight_hh": "rows: gates i, f, g, o stacked, H each; columns: h units",
        "bias_ih": "gates i, f, g, o, H each (Keras's bias)",
        "bias_hh": "zeros (Keras has one bias)",
        "W": "[num_directions, 4H, I], gates i, o, f, c",
        "R": "[num_directions, 4H, H], gates i, o, f, c",
        "B": "[num_directions, 8H]: input biases i, o, f, c then recurrent biases (zeros)",
    }
    meaning = next((v for k, v in rows_cols.items() if name == k or name.startswith(k)), "")
    gate = name[2] if layout == "gates" and len(name) == 3 else None
    return {"shape": list(shape), "gate": gate, "meaning": meaning}


def _write_csv(path: Path, name: str, a: np.ndarray, layout: str, meta: dict[str, Any]) -> None:
    if layout == "gates" and name.startswith("W_"):
        n_i = int(meta["input_dim"])
        header = ",".join([f"x{k}" for k in range(n_i)] + [f"h{k}" for k in range(a.shape[1] - n_i)])
    elif a.ndim == 1:
        header = "b"
    else:
        header = ",".join(f"c{k}" for k in range(a.shape[-1]))
    table = a.reshape(-1, a.shape[-1]) if a.ndim > 2 else (a[:, None] if a.ndim == 1 else a)
    # %.9g: nine significant digits read back bit for bit as float32
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.9g")


def dump(ckpt: Checkpoint, out: Path, fmt: str = "csv", layout: str = "gates", layer: str | None = None,
         force: bool = False) -> list[str]:
    """Write the gate matrices; returns the files written (relative to `out`)."""
    if layout not in LAYOUTS:
        raise InspectError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if fmt not in FORMATS:
        raise InspectError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    written: list[str] = []
    manifest: dict[str, Any] = {"file": str(ckpt.file), "keras_version": ckpt.keras_version, "layout": layout,
                                "format": fmt, "files": {}}
    with atomic_dir(out, force) as tmp:
        for group, producers, meta in _groups(ckpt, layout, layer):
            if fmt == "csv":
                for name, make in producers.items():
                    rel = f"{group}/{name}.csv"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    a = make()
                    _write_csv(tmp / rel, name, a, layout, meta)
                    manifest["files"][rel] = {**meta, **_describe(layout, name, a.shape)}
                    written.append(rel)
                continue
            rel = f"{group}.{fmt}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            described = _write_npz(tmp / rel, producers) if fmt == "npz" else _write_json(tmp / rel, producers, meta)
            manifest["files"][rel] = {**meta, "arrays": {n: _describe(layout, n, shape) for n, shape in described.items()}}
            written.append(rel)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return written


def _write_npz(path: Path, producers: Producers) -> dict[str, tuple[int, ...]]:
    """An .npz that np.load reads, written one array at a time; returns each array's shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, make in producers.items():
            a = make()
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(a), allow_pickle=False)
            shapes[name] = a.shape
            del a
    return shapes


def _write_json(path: Path, producers: Producers, meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    arrays = {name: make() for name, make in producers.items()}
    path.write_text(json.dumps({**meta, "arrays": {n: a.astype(np.float64).tolist() for n, a in arrays.items()}}))
    return {n: a.shape for n, a in arrays.items()}
