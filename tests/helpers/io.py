"""The Keras inputs and outputs stored beside the samples and real files (`<stem>.io.npz`), and how far an
output may be from Keras's: what the engine's and both exports' whole-model tests compare with."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

import lstm_inspect

from conftest import NOT_RUNNABLE, SAMPLES, realworld_checkpoints, sample_checkpoints


def io_path(path: Path) -> Path:
    """The `.io.npz` beside a sample (named by its stem) or a real file (by its whole name)."""
    stem = path.name.split(".")[0] if path.parent == SAMPLES else path.name
    return path.parent / f"{stem}.io.npz"


def _with_outputs(paths: list[Path]) -> list[Path]:
    """Full models with Keras outputs beside them (weights-only files have no model to run)."""
    keep = []
    for p in paths:
        if not io_path(p).exists() or "weights" in p.name or p.name.startswith(NOT_RUNNABLE):
            continue
        if lstm_inspect.load(p).graph is None:
            continue
        keep.append(p)
    return keep


@cache
def models_with_outputs() -> tuple[Path, ...]:
    """Every sample and real file that is a whole model with Keras's outputs beside it."""
    return tuple(_with_outputs(sample_checkpoints()) + _with_outputs(realworld_checkpoints(with_weights=True)))


def inputs_and_outputs(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(io_path(path)) as d:
        xs = [d[k] for k in sorted(d.files) if k.startswith("x")]
        ys = [d[k] for k in sorted(d.files) if k.startswith("y")]
    return xs, ys


def max_error(outs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """max |ours - keras| / max(1, |keras|) over every output."""
    return max(float(np.max(np.abs(o - y) / np.maximum(1.0, np.abs(y)))) for o, y in zip(outs, ys))
