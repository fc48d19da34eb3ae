"""The PyTorch target: `build` writes model.py + safetensors; one module per layer family registers its emitters.

Every module that registers into `registry.LAYERS` (the families, named as the engine's `engine/layers/`) or
`registry.CELLS` (`cells/`, one module per cell kind) is imported here, and nowhere else for its registrations.
The order matters: model.py lists the helpers it needs (`code.snippet`) in the order they were registered, so
this is that order (a cell kind's helpers go among the shared recurrent ones: `snippet(..., before=...)`).
"""

# isort: off
from lstm_inspect.export.torch import code, cells  # noqa: F401
from lstm_inspect.export.torch.cells import lstm, gru, simple_rnn, conv_lstm  # noqa: F401
from lstm_inspect.export.torch import core, activations, attention, conv, pooling  # noqa: F401
from lstm_inspect.export.torch import ops, build  # noqa: F401
# isort: on
