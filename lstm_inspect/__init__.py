"""lstm-inspect: read Keras LSTM checkpoints without TensorFlow and split them into gates.

    >>> import lstm_inspect
    >>> model = lstm_inspect.load("model.h5")
    >>> model.layers[0].gates()["f"].W.shape      # (units, input_dim + units)
"""

from __future__ import annotations

__version__ = "0.1.0"

from lstm_inspect.errors import InspectError
from lstm_inspect.gates import GATES, Gate, LSTMWeights
from lstm_inspect.model import Checkpoint, LSTMDirection, load

__all__ = ["GATES", "Checkpoint", "Gate", "InspectError", "LSTMDirection", "LSTMWeights", "load", "__version__"]
