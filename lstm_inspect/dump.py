"""Gate matrices written out in the layouts people port to, with a manifest that says exactly what they are.

- `gates`: per direction, one W_g (N_c × (N_i + N_c), columns x0.., h0..) and b_g per gate (and, for
  a GRU with reset_after, the recurrent bias b_h<g>);
- `keras`: kernel, recurrent_kernel, bias in the Keras layout of the kind (CuDNN and Keras 1
  weights converted, as Keras's own loader converts them);
- `pytorch`: per Keras layer, the state_dict of torch.nn.LSTM / GRU / RNN (`weight_ih_l0`,
  `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `_reverse` for a Bidirectional's backward half), in
  PyTorch's gate order;
- `onnx`: per Keras layer, the ONNX LSTM / GRU / RNN operator's W [num_directions, G·H, I],
  R [.., G·H, H], B [.., 2·G·H], in ONNX's gate order, and the operator's attributes.

The manifest (manifest.json) describes each layout only as that layout's reader must use it: the
tensor layouts, the gate order, the attributes or constructor arguments, what to do about time
order, and whether the target can compute the layer exactly (`exact_in_target`, with the reason
when it cannot). Every direction's settings are listed, marked `assumed` when the file stores no
architecture. Everything is written into a temporary folder renamed into place
(`io.arrays.atomic_dir`); names from the file are escaped (`io.arrays.safe_relpath`).

The `pytorch` and `onnx` layouts are the export targets' own (`export.torch.cells`, `export.onnx.cells`: gate
order, block names, arrays), so a dump and an export of one model agree by construction; that is why dump ranks
above export (ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base import __version__
from lstm_inspect.base.errors import InspectError
from lstm_inspect.export.onnx.registry import CELLS as ONNX_CELLS
from lstm_inspect.export.torch.cells import torch_cell
from lstm_inspect.io.arrays import atomic_dir, inside, safe_relpath
from lstm_inspect.model.activations import HARD_SIGMOID, HARD_SIGMOID_FORMULA
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection

LAYOUTS = ("gates", "keras", "pytorch", "onnx")
FORMATS = ("csv", "npz", "json")
CSV_READ = ("every CSV starts with one header row: read it with numpy.loadtxt(path, delimiter=',', skiprows=1, "
            "ndmin=2), or pandas.read_csv(path); values have 9 significant digits and read back as float32 exactly")

# Each layout gives, per group, producers of arrays rather than arrays: the writer makes one array,
# writes it, and lets it go, so memory stays near one layer's weights on any file.
Producers = dict[str, Callable[[], np.ndarray]]


# ---------------------------------------------------------------- activations as targets name them

# Keras activation -> ONNX RNN-family activation (name, alpha, beta); hard_sigmoid per generation.
ONNX_ACTIVATIONS = {"tanh": ("Tanh", None, None), "sigmoid": ("Sigmoid", None, None), "relu": ("Relu", None, None),
                    "linear": ("Affine", 1.0, 0.0), "softsign": ("Softsign", None, None),
                    "softplus": ("Softplus", None, None), "elu": ("Elu", 1.0, None)}


def onnx_activation(name: str, hard_sigmoid: str) -> tuple[str, float | None, float | None] | None:
    if name == "hard_sigmoid":
        slope, offset = HARD_SIGMOID[hard_sigmoid]
        return "HardSigmoid", slope, offset
    return ONNX_ACTIVATIONS.get(name)


def activation_text(name: str | None, hard_sigmoid: str) -> str | None:
    """An activation as a porter needs it: hard_sigmoid with its formula."""
    if name == "hard_sigmoid":
        return f"hard_sigmoid = {HARD_SIGMOID_FORMULA[hard_sigmoid]}"
    return name


def direction_settings(d: RecurrentDirection, layout: str) -> dict[str, Any]:
    """What a port needs to know about one direction besides its arrays."""
    s = d.settings
    out: dict[str, Any] = {
        "layer": d.name, "cell": d.cell.kind, "kind": d.kind, "direction": d.direction, "input_dim": d.input_dim,
        "units": d.units, "activation": activation_text(s.activation, d.hard_sigmoid),
        "recurrent_activation": activation_text(s.recurrent_activation, d.hard_sigmoid),
        "activations_assumed": s.assumed, "use_bias": s.use_bias, "return_sequences": s.return_sequences,
        "return_state": s.return_state, "go_backwards": s.go_backwards, "time_major": s.time_major,
        "bidirectional": d.wrapper,
        "merge_mode": d.merge_mode if d.wrapper else None, "storage_in_file": d.storage, "gates": list(d.cell.gates),
    }
    if d.stack_index is not None:  # a cell of an RNN over StackedRNNCells
        out["stacked_cell"] = d.stack_index
        out["reads"] = ("the layer's input" if d.stack_index == 0 else
                        f"the output sequence of {'/'.join((*d.parts[:-1], f'cell_{d.stack_index - 1}'))} in input "
                        "time order, with the layer's mask (Keras runs the stacked cells in turn within each step)")
    if s.assumed:
        out["assumed"] = ("this file stores no architecture: activations and flags are the defaults of the Keras "
                          "that wrote it, not facts read from the file")
    out.update(d.cell.kind_settings(s))
    if layout in ("gates", "keras"):
        out["equations"] = d.cell.equations(s)
        if s.go_backwards:
            out["time_order"] = ("go_backwards: the layer consumes the input reversed in time and returns its "
                                 "sequence in that processing order")
    return out


# ---------------------------------------------------------------- the layouts


def _gates(d: RecurrentDirection) -> tuple[Producers, dict[str, str]]:
    gates = d.gates()
    producers: Producers = {}
    meanings: dict[str, str] = {}
    for g in d.cell.gates:
        producers[f"W_{g}"] = lambda g=g: gates[g].W
        meanings[f"W_{g}"] = (f"W_{g}, the {d.cell.gate_names[g]} gate: rows units 0..N_c-1; columns x0..x(N_i-1) "
                              "(input) then h0..h(N_c-1) (recurrent)")
        producers[f"b_{g}"] = lambda g=g: gates[g].b
        meanings[f"b_{g}"] = f"b_{g}: the {d.cell.gate_names[g]} gate's bias, one per unit"
        if gates[g].b_h is not None:
            producers[f"b_h{g}"] = lambda g=g: gates[g].b_h  # type: ignore[return-value]
            meanings[f"b_h{g}"] = (f"b_h{g}: the {d.cell.gate_names[g]} gate's recurrent bias (reset_after=True: "
                                   "added to W_h·h before the reset gate multiplies it)")
    return producers, meanings


def _keras(d: RecurrentDirection) -> tuple[Producers, dict[str, str]]:
    w = d.weights()
    order = ", ".join(d.cell.gates)
    producers: Producers = {"kernel": lambda: w.kernel, "recurrent_kernel": lambda: w.recurrent_kernel}
    meanings = {"kernel": f"(N_i, {d.cell.n_gates}·N_c): rows inputs; columns gates {order} side by side",
                "recurrent_kernel": f"(N_c, {d.cell.n_gates}·N_c): rows h units; columns gates {order} side by side"}
    if w.bias is not None:
        producers["bias"] = lambda: w.bias  # type: ignore[return-value]
        meanings["bias"] = (f"(2, {d.cell.n_gates}·N_c): row 0 the input bias, row 1 the recurrent bias, gates {order}"
                            if w.bias.ndim == 2 else f"gates {order}, N_c each")
    return producers, meanings


def _groups(ckpt: Checkpoint, layout: str, layer: str | None
            ) -> Iterator[tuple[tuple[str, ...], Producers, dict[str, str], dict[str, Any]]]:
    """(name parts, array producers, their meanings, what they are) per direction (gates, keras) or per Keras
    layer (pytorch, onnx). Weights are read group by group: memory stays at one layer's weights."""
    directions = ckpt.directions_of(layer)
    if layout in ("gates", "keras"):
        for d in directions:
            producers, meanings = _gates(d) if layout == "gates" else _keras(d)
            yield d.parts, producers, meanings, {"direction": d.name}
        return
    by_layer: dict[str, list[RecurrentDirection]] = {}
    for d in directions:
        # one group per Keras layer (a Bidirectional's halves together); each stacked cell is one layer of its own
        by_layer.setdefault(d.name if d.stack_index is not None else d.layer_path or d.name, []).append(d)
    for ds in by_layer.values():
        parts = ds[0].parts[:-1] if ds[0].wrapper and len(ds[0].parts) > 1 else ds[0].parts
        if layout == "pytorch":
            yield (parts, *_pytorch(ds))
        else:
            yield (parts, *_onnx(ds))


def _pytorch(ds: list[RecurrentDirection]) -> tuple[Producers, dict[str, str], dict[str, Any]]:
    cell, d0 = ds[0].cell, ds[0]
    tc = torch_cell(cell)
    bidirectional = len(ds) == 2
    problems = [p for d in ds if (p := tc.problem(d.settings))]
    producers: Producers = {}
    meanings: dict[str, str] = {}
    g, labels = cell.n_gates, tc.labels
    for d in ds:
        suffix = "_reverse" if bidirectional and d.settings.go_backwards else ""
        cache: dict[str, np.ndarray] = {}

        def make(key: str, d: RecurrentDirection = d, cache: dict[str, np.ndarray] = cache) -> np.ndarray:
            if not cache:
                cache.update(tc.arrays(cell, d.weights()))
            return cache.pop(key)

        half = f" ({'backward' if suffix else 'forward'} direction)" if bidirectional else ""
        for key, meaning in (
            ("weight_ih", f"({g}·H, I): rows gates {labels} stacked, H each; columns inputs{half}"),
            ("weight_hh", f"({g}·H, H): rows gates {labels} stacked, H each; columns h units{half}"),
            ("bias_ih", f"({g}·H,): gates {labels}: Keras's input bias{half}"),
            ("bias_hh", f"({g}·H,): gates {labels}: " + ("Keras's recurrent bias" if d.settings.reset_after else
                                                         "zeros (Keras has one bias, all in bias_ih)") + half),
        ):
            producers[f"{key}_l0{suffix}"] = lambda key=key, make=make: make(key)
            meanings[f"{key}_l0{suffix}"] = meaning
    s = d0.settings
    ctor: dict[str, Any] = {"input_size": d0.input_dim, "hidden_size": d0.units, "num_layers": 1,
                            "batch_first": not s.time_major, "bidirectional": bidirectional, "bias": True}
    ctor.update(tc.options(s))
    meta: dict[str, Any] = {
        "target": tc.module, "constructor": ctor,
        "load": "module.load_state_dict({name: torch.from_numpy(array) for name, array in these arrays}, strict=True)",
        "exact_in_target": not problems,
        "directions": [direction_settings(d, "pytorch") for d in ds],
        "input": ("x of shape (steps, batch, input_size), as this time_major layer takes it (batch_first=False)"
                  if s.time_major else "x of shape (batch, steps, input_size) (batch_first=True)"),
        # the same instructions for programs: reverse x in time first; take the whole output or its last step;
        # merge the two halves of a bidirectional output so
        "time_axis": 0 if s.time_major else 1,
        "reverse_input_in_time": bool(s.go_backwards and not bidirectional),
        "return_sequences": s.return_sequences, "merge_mode": d0.merge_mode if bidirectional else None,
    }
    if problems:
        in_onnx = all(onnx_activation(name, d.hard_sigmoid) is not None for d in ds
                      for name in ONNX_CELLS[cell.kind].activations(d.settings))
        meta["why_not_exact"] = problems[0] + ("; run it exactly with the ONNX layout (which has the activations), "
                                               "or with a cell of your own" if in_onnx else
                                               "; run it exactly with a cell of your own")
    if bidirectional:
        merge = d0.merge_mode
        meta["time_order"] = ("bidirectional=True runs the backward half over the input reversed and returns its "
                              "outputs in input time order, as Keras's Bidirectional does")
        meta["outputs"] = _torch_bidirectional_outputs(merge, s.return_sequences)
    elif s.go_backwards:
        meta["time_order"] = (f"{tc.module} has no go_backwards: feed the input reversed in time "
                              "(x.flip(1)); its outputs then come out in processing order, as Keras returns them")
        meta["outputs"] = _torch_outputs(s.return_sequences)
    else:
        meta["time_order"] = "feed the input in its own order"
        meta["outputs"] = _torch_outputs(s.return_sequences)
    return producers, meanings, meta


def _torch_outputs(return_sequences: bool) -> str:
    if return_sequences:
        return "Keras's output is the module's output (batch, steps, H)"
    return "Keras's output is the module's output at the last step, output[:, -1] (= h_n[0])"


def _torch_bidirectional_outputs(merge: str | None, return_sequences: bool) -> str:
    if return_sequences:
        fw, bw = "output[..., :H]", "output[..., H:]"
    else:
        fw, bw = "output[:, -1, :H]", "output[:, 0, H:]"
    combine = {"concat": f"torch.cat([{fw}, {bw}], -1)", "sum": f"{fw} + {bw}", "mul": f"{fw} * {bw}",
               "ave": f"({fw} + {bw}) / 2", None: f"[{fw}, {bw}]"}.get(merge, f"merge {fw} and {bw}")
    return f"Keras's output (merge_mode={merge}) is {combine}"


def _onnx(ds: list[RecurrentDirection]) -> tuple[Producers, dict[str, str], dict[str, Any]]:
    cell, d0 = ds[0].cell, ds[0]
    s = d0.settings
    bidirectional = len(ds) == 2
    g, labels = cell.n_gates, ONNX_CELLS[cell.kind].labels
    cache: dict[str, list[np.ndarray]] = {}

    def make(key: str) -> np.ndarray:
        if key not in cache:
            per = [ONNX_CELLS[cell.kind].arrays(cell, d.weights()) for d in ds]
            for k in ("W", "R", "B"):
                cache[k] = [p[k] for p in per]
        return np.stack(cache.pop(key))

    producers: Producers = {k: (lambda k=k: make(k)) for k in ("W", "R", "B")}
    meanings = {
        "W": f"[num_directions, {g}·H, I]: gates {labels} stacked, H rows each",
        "R": f"[num_directions, {g}·H, H]: gates {labels} stacked, H rows each",
        "B": (f"[num_directions, {2 * g}·H]: the input biases W_b (gates {labels}) then the recurrent biases R_b "
              + ("(Keras's recurrent bias)" if s.reset_after else "(zeros: Keras has one bias)")),
    }
    activations, alphas, betas, problems = [], [], [], []
    for d in ds:
        for name in ONNX_CELLS[cell.kind].activations(d.settings):
            mapped = onnx_activation(name, d.hard_sigmoid)
            if mapped is None:
                problems.append(f"ONNX's {ONNX_CELLS[cell.kind].op} has no activation {name}")
                mapped = (name, None, None)
            activations.append(mapped[0])
            if mapped[1] is not None:
                alphas.append(mapped[1])
            if mapped[2] is not None:
                betas.append(mapped[2])
    attributes: dict[str, Any] = {"hidden_size": d0.units, "layout": 0, "activations": activations,
                                  "direction": "bidirectional" if bidirectional else (
                                      "reverse" if s.go_backwards else "forward")}
    attributes.update(ONNX_CELLS[cell.kind].attributes(s))
    # ONNX takes activation_alpha/beta as one flat list over the activations that use them, in order.
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    meta: dict[str, Any] = {
        "target": f"ONNX {ONNX_CELLS[cell.kind].op} operator", "attributes": attributes,
        "activations_order": f"per direction, ONNX's {ONNX_CELLS[cell.kind].activation_order}",
        "exact_in_target": not problems, "directions": [direction_settings(d, "onnx") for d in ds],
        "input": ("X of shape [seq_length, batch_size, input_size]: time-major (layout=0; ONNX Runtime accepts "
                  "only layout 0), " + ("as this time_major layer takes it" if s.time_major else
                                        "so transpose the layer's (batch, steps, features) input with "
                                        "x.transpose(1, 0, 2)")),
        "transpose_input": not s.time_major,
        "outputs": ("Y of shape [seq_length, num_directions, batch_size, hidden_size], in input time order; Y_h "
                    "[num_directions, batch_size, hidden_size]" + (", Y_c the same" if "c" in cell.states else "")),
        # the same instructions for programs: reverse Y in time to get Keras's order; take the whole sequence or
        # Y_h; merge the two directions so
        "reverse_output_in_time": bool(s.go_backwards and not bidirectional),
        "return_sequences": s.return_sequences, "merge_mode": d0.merge_mode if bidirectional else None,
    }
    if problems:
        meta["why_not_exact"] = problems[0]
    meta.update(_onnx_time_order(d0, bidirectional))
    return producers, meanings, meta


def _onnx_time_order(d0: RecurrentDirection, bidirectional: bool) -> dict[str, str]:
    """time_order and keras_output of an ONNX manifest: how Y maps back to the Keras layer's output."""
    s = d0.settings
    out: dict[str, str] = {}
    # Y is time-major [seq_length, num_directions, batch, hidden]: a batch-major Keras layer's sequence is Y's
    # slices with the time and batch axes swapped back
    back = "" if s.time_major else ", transposed back to batch-major (swap the time and batch axes)"
    if bidirectional:
        out["time_order"] = ("direction=bidirectional: feed the input in its own order; Y[:, 1] (backward) "
                             "comes out in input time order, as Keras's Bidirectional merges it")
        merge = d0.merge_mode
        out["keras_output"] = ({"concat": "concatenate Y[:, 0] and Y[:, 1] on the last axis", "sum": "Y[:, 0] + "
                                "Y[:, 1]", "mul": "Y[:, 0] * Y[:, 1]", "ave": "(Y[:, 0] + Y[:, 1]) / 2",
                                None: "[Y[:, 0], Y[:, 1]]"}.get(merge, "merge Y[:, 0] and Y[:, 1]")
                               + (back if s.return_sequences else "; return_sequences=False: the same with Y_h[0] "
                                  "and Y_h[1], the forward half at the last step and the backward half at step 0"))
    elif s.go_backwards:
        out["time_order"] = ("direction=reverse: feed the input in its own order (ONNX reverses it); Y comes out in "
                             "input time order, while Keras's go_backwards layer returns its sequence reversed "
                             "(processing order): reverse Y along time (Y[::-1]) to compare with Keras")
        out["keras_output"] = "Y[::-1, 0]" + back if s.return_sequences else "Y_h[0] (the last step processed)"
    else:
        out["time_order"] = "direction=forward: feed the input in its own order"
        out["keras_output"] = "Y[:, 0]" + back if s.return_sequences else "Y_h[0]"
    return out


# ---------------------------------------------------------------- writing


def _write_csv(path: Path, a: np.ndarray, n_i: int | None) -> None:
    if a.ndim == 2 and n_i is not None and a.shape[1] > n_i and path.name.startswith("W_"):
        header = ",".join([f"x{k}" for k in range(n_i)] + [f"h{k}" for k in range(a.shape[1] - n_i)])
    elif a.ndim == 1:
        header = "b"
    else:
        header = ",".join(f"c{k}" for k in range(a.shape[-1]))
    table = a.reshape(-1, a.shape[-1]) if a.ndim > 2 else (a[:, None] if a.ndim == 1 else a)
    # %.9g: nine significant digits read back bit for bit as float32
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.9g")


def dump(ckpt: Checkpoint, out: Path, fmt: str = "csv", layout: str = "gates", layer: str | None = None,
         force: bool = False) -> tuple[list[str], list[str]]:
    """Write the gate matrices; returns the files written (relative to `out`) and warnings for the user."""
    ckpt.refuse_not_yet("dump", layer)
    if layout not in LAYOUTS:
        raise InspectError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if fmt not in FORMATS:
        raise InspectError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if layout == "pytorch":
        for d in ckpt.directions_of(layer):
            refusal = torch_cell(d.cell).refusal(d.settings)
            if refusal:
                raise InspectError(f"layer {d.name}: {refusal}")
    written: list[str] = []
    warnings: list[str] = []
    manifest: dict[str, Any] = {
        "written_by": f"lstm-inspect {__version__}", "file": str(ckpt.file), "keras_version": ckpt.keras_version,
        "layout": layout, "format": fmt, "settings_from": ckpt.settings_from, "files": {},
    }
    if fmt == "csv":
        manifest["how_to_read"] = CSV_READ
    with atomic_dir(out, force, protect=[ckpt.file]) as tmp:
        for parts, producers, meanings, meta in _groups(ckpt, layout, layer):
            group = safe_relpath(parts)
            info = {"name": "/".join(parts), **meta}
            if layout in ("gates", "keras"):
                d = ckpt.direction(meta["direction"])
                info = {"name": d.name, **direction_settings(d, layout)}
                n_i = d.input_dim
            else:
                n_i = None
                if not meta.get("exact_in_target", True):
                    warnings.append(f"{info['name']}: {meta['why_not_exact']} (the manifest says exact_in_target: "
                                    "false)")
            if fmt == "csv":
                for name, make in producers.items():
                    rel = f"{group}/{name}.csv"
                    target = inside(tmp, rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    a = make()
                    _write_csv(target, a, n_i)
                    manifest["files"][rel] = {**info, "array": name, "shape": list(a.shape),
                                              "meaning": meanings.get(name, "")}
                    written.append(rel)
                continue
            rel = f"{group}.{fmt}"
            target = inside(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shapes = _write_npz(target, producers) if fmt == "npz" else _write_json(target, producers, info)
            manifest["files"][rel] = {**info, "arrays": {n: {"shape": list(shape), "meaning": meanings.get(n, "")}
                                                         for n, shape in shapes.items()}}
            written.append(rel)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return written, warnings


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
    path.write_text(json.dumps({**meta, "arrays": {n: a.astype(np.float64).tolist() for n, a in arrays.items()}},
                               ensure_ascii=False))
    return {n: a.shape for n, a in arrays.items()}
