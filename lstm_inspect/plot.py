"""Pictures of a recurrent layer's gates (matplotlib, Agg backend; the `plot` extra).

Per direction: heatmaps of each gate's W_g (LSTM W_i, W_f, W_c, W_o; GRU W_z, W_r, W_h; SimpleRNN
W; units on rows, the input and recurrent columns split by a line, a diverging colormap centred on
0), the biases per gate, the singular-value spectrum of each recurrent block U_g, and the traced
quantities over time for one sample of an engine run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base import progress
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import trace_run
from lstm_inspect.io.arrays import atomic_dir, inside, safe_relpath, shown
from lstm_inspect.model.cells.base import Gate
from lstm_inspect.model.checkpoint import RecurrentDirection

TRACE_UNITS = 4  # units drawn one by one in the activation plot, besides the mean


def _title(name: str) -> str:
    """A name from the file as plain text in a figure: shortened (a title of 400,000 characters took matplotlib
    ten minutes to lay out), no control characters, no mathtext ($...$)."""
    return shown(name).replace("$", r"\$")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InspectError("plot needs matplotlib: pip install 'lstm-inspect[plot]'") from None
    return plt


def plot_weights(d: RecurrentDirection, gates: dict[str, Gate], path: Path) -> None:
    plt = _pyplot()
    limit = max(float(np.nanmax(np.abs(g.W))) for g in gates.values()) or 1.0
    n_i = d.input_dim or 0
    names = d.cell.gates
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4.8), constrained_layout=True, sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, g in zip(axes, names):
        image = ax.imshow(gates[g].W, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                          interpolation="nearest")
        ax.axvline(n_i - 0.5, color="black", linewidth=1.2)
        ax.set_title(f"W_{g} ({d.cell.gate_names[g]})")
        ax.set_xlabel(f"x: columns 0..{n_i - 1} | h: {n_i}..{n_i + (d.units or 0) - 1}")
    axes[0].set_ylabel("unit")
    fig.colorbar(image, ax=axes, shrink=0.85, label="weight")
    fig.suptitle(f"{_title(d.name)}: gate matrices acting on [x; h]  (N_i={d.input_dim}, N_c={d.units})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_biases(d: RecurrentDirection, gates: dict[str, Gate], path: Path) -> None:
    plt = _pyplot()
    names = d.cell.gates
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.75 * len(names) + 0.5), constrained_layout=True,
                             sharex=True, squeeze=False)
    axes = axes[:, 0]
    units = np.arange(d.units or 0)
    for ax, g in zip(axes, names):
        b = gates[g].b
        ax.bar(units, b, color=np.where(b >= 0, "#b2182b", "#2166ac"))
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel(f"b_{g}")
        extra = "" if gates[g].b_h is None else f" (recurrent bias b_h{g}: mean {gates[g].b_h.mean():.3f})"
        ax.set_title(f"{d.cell.gate_names[g]} gate bias: mean {b.mean():.3f}{extra}", fontsize=9, loc="left")
    axes[-1].set_xlabel("unit")
    fig.suptitle(f"{_title(d.name)}: biases per gate")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectrum(d: RecurrentDirection, gates: dict[str, Gate], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for g in d.cell.gates:
        sigma = np.linalg.svd(gates[g].W_h.astype(np.float64), compute_uv=False)
        ax.plot(np.arange(1, sigma.size + 1), sigma, marker="o", markersize=3,
                label=f"U_{g} ({d.cell.gate_names[g]})")
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("singular value index")
    ax.set_ylabel("singular value")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{_title(d.name)}: singular values of the recurrent blocks U_g")
    fig.savefig(path, dpi=110)
    plt.close(fig)


LABELS = {"c_tilde": "c̃ (candidate)", "c": "c (cell)", "h": "h (output)", "h_tilde": "h̃ (candidate)",
          "z": "z (update)", "r": "r (reset)", "i": "i (input)", "f": "f (forget)", "o": "o (output)"}


def plot_activations(d: RecurrentDirection, trace: dict[str, np.ndarray], path: Path, sample: int = 0) -> None:
    plt = _pyplot()
    names = [q for q in d.cell.trace_quantities if q not in d.cell.preactivations]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.7 * cols, 3.25 * rows + 0.5), constrained_layout=True,
                             sharex=True, squeeze=False)
    steps = np.arange(trace["h"].shape[1])
    for ax, q in zip(axes.flat, names):
        v = trace[q][sample]
        for u in range(min(TRACE_UNITS, v.shape[1])):
            ax.plot(steps, v[:, u], linewidth=0.9, alpha=0.7, label=f"unit {u}")
        ax.plot(steps, v.mean(axis=1), color="black", linewidth=2, label="mean over units")
        ax.set_title(LABELS.get(q, q))
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step (processing order)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{_title(d.name)}: gate activations over time, sample {sample}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_direction(d: RecurrentDirection, trace: dict[str, np.ndarray] | None, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    gates = d.gates()
    written = []
    for name, fn in (("weights.png", plot_weights), ("biases.png", plot_biases), ("spectrum.png", plot_spectrum)):
        fn(d, gates, folder / name)
        written.append(name)
    if trace is not None:
        plot_activations(d, trace, folder / "activations.png")
        written.append("activations.png")
    return written


def plot(ckpt: Any, out: Path, xs: list[np.ndarray] | None = None, seed: int = 0, force: bool = False,
         layer: str | None = None) -> tuple[list[str], str]:
    """PNGs for every direction (or one) into folder `out`, written atomically; returns (files, input used)."""
    ckpt.refuse_not_yet("plot", layer)
    _pyplot()
    rec, source = trace_run(ckpt, xs, seed)
    directions = ckpt.directions_of(layer)
    written: list[str] = []
    manifest: dict[str, Any] = {"file": str(ckpt.file), "activations_from": source, "folders": {}}
    with atomic_dir(out, force, protect=[ckpt.file]) as tmp:
        for k, d in enumerate(directions):
            progress.advance("directions drawn", k, len(directions))
            rel = safe_relpath(d.parts)  # names from the file are escaped, never a path of their own
            files = plot_direction(d, rec.traces.get(d.name), inside(tmp, rel))
            manifest["folders"][rel] = {"direction": d.name, "files": files}
            written += [f"{rel}/{f}" for f in files]
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return written, source
