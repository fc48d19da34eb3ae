"""The ONNX target: `build` writes the graph; `registry` holds the emitters of layer classes (`LAYERS`) and
the code of cell kinds (`CELLS`), one module per layer family and per cell kind, all imported here."""

from lstm_inspect.export.onnx import activations, attention, conv, core, ops, pooling  # noqa: F401
from lstm_inspect.export.onnx.cells import conv_lstm, gru, lstm, simple_rnn  # noqa: F401
