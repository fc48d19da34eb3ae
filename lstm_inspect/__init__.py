"""lstm-inspect: read Keras recurrent checkpoints (LSTM, GRU, SimpleRNN) without TensorFlow, split them into gates,
re-run them exactly in NumPy, and check a port against Keras. README.md's "Python API" is the tour.

    >>> import lstm_inspect
    >>> model = lstm_inspect.load("sample_models/k3_single.keras")
    >>> model.directions[0].gates()["f"].W.shape      # (units, input_dim + units)
    (5, 8)

Every function here is the library behind a command: `load` (show), `Checkpoint.forward` (forward),
`Checkpoint.trace` (trace), `stats`, `verify`, `diagnose`, `register_layer` / `load_layers` (--layers: the user's
own NumPy forms of custom and Lambda layers); each returns a typed result with a one-line repr,
a small HTML table in notebooks, and `to_dict()` (what the command's --json prints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base import __version__
from lstm_inspect.base.errors import InspectError
from lstm_inspect.check.diagnose import Diagnosis, Hypothesis, diagnose_port
from lstm_inspect.check.stats import DirectionStats, StatsReport
from lstm_inspect.check.stats import stats as collect_stats
from lstm_inspect.check.verify import Comparison, VerifyReport, check
from lstm_inspect.engine.network import DirectionTrace, Trace
from lstm_inspect.engine.shapes import InputSummary, LayerSummary, ModelSummary, summarize
from lstm_inspect.engine.user_layers import forget_layers, load_layers, register_layer
from lstm_inspect.io import read_checkpoint
from lstm_inspect.model.cells.base import CELLS, Cell, CellWeights, Gate, split_gates
from lstm_inspect.model.checkpoint import Checkpoint, LSTMDirection, ModelLayer, RecurrentDirection


def load(path: str | Path, config: str | Path | None = None) -> Checkpoint:
    """Read a Keras checkpoint of any supported format (shapes and settings; weights lazily).

    `config` is a model architecture in a separate JSON file (`model.to_json()`, or the config.json
    of a .keras) for a weights-only checkpoint.
    """
    return read_checkpoint(Path(path), Path(config) if config is not None else None)


def summary(ckpt: Checkpoint) -> ModelSummary:
    """What Keras's model.summary() gives (show's table): the inputs and what they take, each layer's output
    shapes, parameters and the layers feeding it, total and trainable parameters; from the config and the
    stored arrays' shapes, no weight data read. A shape the config does not determine is None."""
    return summarize(ckpt)


def stats(ckpt: Checkpoint, x: Any = None, seed: int = 0) -> StatsReport:
    """Per-gate statistics of every direction's weights, and of its gates' activations on x (one array or a list
    of the model's inputs; a seeded random input of the model's shape when None)."""
    return collect_stats(ckpt, x, seed)


def verify(ckpt: Checkpoint, x: Any = None, theirs: Any = None, *, layer: str | None = None, seed: int = 0,
           atol: float = 1e-5, rtol: float = 1e-4, dtype: type = np.float32) -> VerifyReport:
    """Run Keras itself (the `keras` extra) on x and compare: the engine's outputs, or THEIRS (a port's outputs
    for x). x: one array or a list of the model's inputs; None for a seeded random input (`seed`) of the
    model's shape. `layer`: one recurrent layer alone (a direction, or a Bidirectional by its Keras name)."""
    return check(ckpt, x, theirs, layer, seed, atol, rtol, dtype)


def diagnose(ckpt: Checkpoint, x: Any, theirs: Any, *, layer: str | None = None, atol: float = 1e-5,
             rtol: float = 1e-4) -> Diagnosis:
    """Which porting mistake reproduces THEIRS (a port's outputs for x); no TensorFlow needed."""
    return diagnose_port(ckpt, x, theirs, layer, atol, rtol)


__all__ = [
           "CELLS",
           "Cell",
           "CellWeights",
           "Checkpoint",
           "Comparison",
           "Diagnosis",
           "DirectionStats",
           "DirectionTrace",
           "Gate",
           "Hypothesis",
           "InputSummary",
           "InspectError",
           "LSTMDirection",
           "LayerSummary",
           "ModelLayer",
           "ModelSummary",
           "RecurrentDirection",
           "StatsReport",
           "Trace",
           "VerifyReport",
           "__version__",
           "diagnose",
           "forget_layers",
           "load",
           "load_layers",
           "register_layer",
           "split_gates",
           "stats",
           "summary",
           "verify",
]
