"""lstm-inspect: read Keras recurrent checkpoints (LSTM, GRU, SimpleRNN) without TensorFlow, split them into gates.

    >>> import lstm_inspect
    >>> model = lstm_inspect.load("model.h5")
    >>> model.layers[0].gates()["f"].W.shape      # (units, input_dim + units)
"""

from __future__ import annotations

__version__ = "0.2.0"

from lstm_inspect.cells import CELLS, Cell, CellWeights, Gate, split_gates
from lstm_inspect.errors import InspectError
from lstm_inspect.model import Checkpoint, LSTMDirection, RecurrentDirection, load

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
