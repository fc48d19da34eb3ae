"""Keras's recurrent cells, one module per kind (`lstm`, `gru`, `simple_rnn`, `conv_lstm`); `base` holds the `Cell` they
subclass, the weights and settings they share, and the registry `CELLS`.

Importing the package imports every kind, so `CELLS` is complete whichever module asks for it first.
"""

from lstm_inspect.model.cells import conv_lstm, gru, lstm, simple_rnn  # noqa: F401  (they register)
from lstm_inspect.model.cells.base import CELLS, Cell, CellSettings, CellWeights, Gate, StoredShapes, split_gates

__all__ = ["CELLS", "Cell", "CellSettings", "CellWeights", "Gate", "StoredShapes", "split_gates"]
