"""The NumPy engine: the reference every other result is checked against.

`loop` is the sequence loop shared by every cell (masks, go_backwards, states, as Keras's `RNN(cell)`);
`layers/` the non-recurrent layers by family and `ops` the TensorFlow op layers; `network` walks a checkpoint's
graph and runs each layer, within the budgets of `lstm_inspect.base.budget`.
"""
