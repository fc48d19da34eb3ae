"""Checking outputs against Keras: the engine's, or the user's own reimplementation's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.errors import InspectError
from lstm_inspect.model import Checkpoint, check_sizes
from lstm_inspect.network import Network, RunRecord


@dataclass
class Comparison:
    """One output compared element-wise: ok when |ours - ref| <= atol + rtol·|ref| everywhere."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    ok: bool
    first_bad: dict[str, int] | None  # where the first element past tolerance is (sample, step, unit)
    per_step: list[float] | None  # max |error| at each time step, for sequences

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "max_abs_error": self.max_abs,
                "max_rel_error": self.max_rel, "ok": self.ok, "first_past_tolerance": self.first_bad,
                "error_per_step": self.per_step}


def compare(name: str, ours: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> Comparison:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Comparison(name, tuple(ref.shape), float("inf"), float("inf"), False,
                          {"shape_expected": list(ref.shape), "shape_found": list(ours.shape)}, None)  # type: ignore[dict-item]
    err = np.abs(ours - ref)
    err = np.where(np.isnan(err), np.inf, err)
    bad = err > atol + rtol * np.abs(ref)
    significant = np.abs(ref) > atol
    max_rel = float(np.max(err[significant] / np.abs(ref[significant]))) if significant.any() else 0.0
    first = None
    if bad.any():
        if bad.ndim == 3:  # (sample, step, unit): the earliest step first, then sample, then unit
            t = int(np.argmax(bad.any(axis=(0, 2))))
            b = int(np.argmax(bad[:, t].any(axis=1)))
            first = {"sample": b, "step": t, "unit": int(np.argmax(bad[b, t]))}
        else:
            idx = np.unravel_index(int(np.argmax(bad.reshape(-1))), bad.shape)
            first = {"sample": int(idx[0]), "unit": int(idx[-1])} if bad.ndim >= 2 else {"index": int(idx[0])}
    per_step = [float(e) for e in err.max(axis=(0, 2))] if err.ndim == 3 else None
    return Comparison(name, tuple(ref.shape), float(err.max()) if err.size else 0.0, max_rel, not bad.any(), first,
                      per_step)


@dataclass
class VerifyReport:
    file: Path
    reference: str
    against: Path | None
    atol: float
    rtol: float
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "reference": self.reference,
                "compared": "theirs" if self.against else "engine",
                "against": str(self.against) if self.against else None, "atol": self.atol, "rtol": self.rtol,
                "ok": self.ok, "outputs": [c.to_dict() for c in self.comparisons], "notes": self.notes}


def hard_sigmoid_notes(ckpt: Checkpoint, reference: str) -> list[str]:
    if not any(d.settings.recurrent_activation == "hard_sigmoid" or d.settings.activation == "hard_sigmoid"
               for d in ckpt.layers):
        return []
    writer = "Keras 3: clip(x/6 + 0.5, 0, 1)" if ckpt.layers[0].hard_sigmoid == "keras3" \
        else "Keras 1/2: clip(0.2·x + 0.5, 0, 1)"
    runner = "clip(x/6 + 0.5, 0, 1)" if reference.startswith("keras ") else "clip(0.2·x + 0.5, 0, 1)"
    agree = "agree" if (reference.startswith("keras ")) == (ckpt.layers[0].hard_sigmoid == "keras3") else "DISAGREE"
    return [f"hard_sigmoid: the file's Keras ({ckpt.keras_version}) defines it as {writer}; the reference "
            f"{reference} computes {runner}; they {agree}"]


def verify(
    ckpt: Checkpoint, xs: list[np.ndarray], theirs: list[np.ndarray] | None = None, against: Path | None = None,
    atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32,
) -> VerifyReport:
    """Run Keras and compare: the engine's layer and final outputs, or THEIRS (final outputs) with Keras's."""
    from lstm_inspect.keras_ref import run_keras

    _refuse_non_finite(ckpt)
    net = Network(ckpt, dtype)
    xs = net.check_inputs(xs)
    keras = run_keras(ckpt, xs)
    comparisons: list[Comparison] = []
    if theirs is not None:
        if len(theirs) != len(keras.outputs):
            raise InspectError(f"{against}: holds {len(theirs)} output(s) but the model gives {len(keras.outputs)}")
        for k, (t, ref) in enumerate(zip(theirs, keras.outputs)):
            _same_shape(against, f"output_{k}", t, ref)
            comparisons.append(compare(f"output_{k}", t, ref, atol, rtol))
    else:
        rec = RunRecord()
        outs = net.run(xs, rec)
        for path, ref in keras.layer_outputs.items():
            comparisons.append(compare(f"layer {path}", rec.layer_outputs[path][0], ref, atol, rtol))
        for k, (o, ref) in enumerate(zip(outs, keras.outputs)):
            comparisons.append(compare(f"output_{k}", o, ref, atol, rtol))
    notes = keras.notes + hard_sigmoid_notes(ckpt, keras.library)
    return VerifyReport(ckpt.file, keras.library, against, atol, rtol, comparisons, notes)


def verify_direction(
    ckpt: Checkpoint, name: str, x: np.ndarray, theirs: np.ndarray | None = None, against: Path | None = None,
    atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32,
) -> VerifyReport:
    """One direction alone: the engine's (or THEIRS) output against Keras's.

    THEIRS may be the whole output sequence (batch, steps, N_c) or only its last step (batch, N_c),
    what `forward --layer` writes for a layer with return_sequences=False; the same is compared.
    """
    from lstm_inspect.keras_ref import run_keras_direction
    from lstm_inspect.network import run_direction

    d = ckpt.layer(name)
    _refuse_non_finite(ckpt, d.name)
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[-1] != d.input_dim:
        raise InspectError(f"layer {d.name}: input has shape {x.shape} but the layer expects {d.input_layout}")
    check_sizes(x.shape, f"layer {d.name}: the input")
    # x is as the layer takes it ((steps, batch, N_i) for a time_major layer), and so is Keras's sequence
    ref, library = run_keras_direction(ckpt, d.name, x)
    what = "sequence"
    if theirs is not None and np.ndim(theirs) == 2 and ref.ndim == 3:
        ref, what = d.layer_layout(ref)[:, -1], "last step"
    if theirs is not None:
        theirs = np.asarray(theirs)
        _same_shape(against, f"the {what}", theirs, ref)
    ours = (theirs if theirs is not None else
            d.layer_layout(run_direction(d, d.layer_layout(x), dtype=dtype).outputs))
    comparison = compare(f"layer {d.name} ({what})", ours, ref, atol, rtol)
    notes = hard_sigmoid_notes(ckpt, library)
    if ckpt.settings_from == "defaults":
        notes.append("this file stores no architecture: Keras ran the direction with the default settings shown by "
                     "show")
    return VerifyReport(ckpt.file, library, against, atol, rtol, [comparison], notes)


def _same_shape(against: Path | None, what: str, theirs: np.ndarray, ref: np.ndarray) -> None:
    if np.shape(theirs) != np.shape(ref):
        raise InspectError(f"{against}: {what} has shape {tuple(np.shape(theirs))} but Keras gives "
                           f"{tuple(np.shape(ref))} for this input")
    if np.asarray(theirs).dtype.kind not in "fiu":
        raise InspectError(f"{against}: {what} holds {np.asarray(theirs).dtype}, not numbers")


def _refuse_non_finite(ckpt: Checkpoint, only: str | None = None) -> None:
    """NaN or Inf weights make every output NaN: nothing to verify, so say it instead of a mismatch."""
    for d in ckpt.layers:
        if only is not None and d.name != only:
            continue
        d.weights()
        if d.warnings:
            raise InspectError(f"{ckpt.file}: {d.warnings[0]}, so there is nothing to verify")
