"""lstm-inspect: read Keras recurrent checkpoints (LSTM, GRU, SimpleRNN) without TensorFlow, split them into gates.

    >>> import lstm_inspect
    >>> model = lstm_inspect.load("model.h5")
    >>> model.layers[0].gates()["f"].W.shape      # (units, input_dim + units)
"""

from __future__ import annotations

from pathlib import Path

from lstm_inspect.base import __version__
from lstm_inspect.base.errors import InspectError
from lstm_inspect.io import read_checkpoint
from lstm_inspect.model.cells.base import CELLS, Cell, CellWeights, Gate, split_gates
from lstm_inspect.model.checkpoint import Checkpoint, LSTMDirection, RecurrentDirection


def load(path: str | Path, config: str | Path | None = None) -> Checkpoint:
    """Read a Keras checkpoint of any supported format (shapes and settings; weights lazily).

    `config` is a model architecture in a separate JSON file (`model.to_json()`, or the config.json
    of a .keras) for a weights-only checkpoint.
    """
    return read_checkpoint(Path(path), Path(config) if config is not None else None)


__all__ = [
           "CELLS",
           "Cell",
           "CellWeights",
           "Checkpoint",
           "Gate",
           "InspectError",
           "LSTMDirection",
           "RecurrentDirection",
           "__version__",
           "load",
           "split_gates",
]
